"""The console's live data: the signed-in tenant's sync events as Server-Sent Events (`/ui/events`).

The same stream as the API's `/v1/events` (`event_stream.sse_events`: only the caller's tenant's
events, and only its clients for a client-scoped token), authenticated by the session cookie because
a browser's `EventSource` cannot send a bearer token. `?client=` narrows it to one client of the
caller's scope. It starts at the end of the topic: the pages show what happens while they are open.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from services.gateway import metrics
from services.gateway.event_stream import selector_for, sse_events
from services.gateway.problems import not_found
from services.gateway.routing import client_in_scope
from services.gateway.ui.console import Console


def add_live(router: APIRouter, console: Console) -> None:
    gateway = console.gateway

    @router.get("/events")
    async def events(
        request: Request, client: Annotated[str | None, Query(max_length=64)] = None
    ) -> Response:
        me = await console.signed_in(request)
        me.require("events:read")
        clients = me.principal.clients
        if client is not None:
            if not client_in_scope(me.principal, client):
                raise not_found("client")
            clients = frozenset({client})
        consumer = gateway.new_event_consumer()
        await consumer.start()
        metrics.SSE_CONNECTIONS.inc()

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for chunk in sse_events(
                    consumer,
                    gateway.settings.events_topic,
                    selector_for(me.principal.tenant_id, clients),
                    None,
                    gateway.settings.sse_heartbeat_seconds,
                    request.is_disconnected,
                ):
                    yield chunk
            finally:
                metrics.SSE_CONNECTIONS.dec()
                with contextlib.suppress(Exception):
                    await consumer.stop()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
