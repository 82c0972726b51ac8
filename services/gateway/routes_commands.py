"""The API's command status route and the tenant's Server-Sent Events stream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Request
from starlette.responses import Response, StreamingResponse

from services.gateway import metrics, models
from services.gateway.adapters import Gateway
from services.gateway.auth import Principal
from services.gateway.event_stream import parse_last_event_id, selector_for, sse_events
from services.gateway.problems import (
    not_found,
)
from services.gateway.routing import (
    json_response,
    require,
)


def add_command_routes(api: APIRouter, gateway: Gateway) -> None:
    """Add the routes to `api` (the order is the OpenAPI document's)."""
    commands = gateway.commands

    @api.get(
        "/commands/{command_id}",
        response_model=models.CommandState,
        summary="A command's status (pending, applied, rejected, failed) from its outcome events",
    )
    async def get_command(
        command_id: Annotated[str, Path(max_length=64)],
        principal: Annotated[Principal, Depends(require("sync:write", "contracts:write"))],
    ) -> Response:
        try:
            parsed = UUID(command_id)
        except ValueError:
            raise not_found("command") from None
        state = await commands.state(principal.tenant_id, parsed)
        if state is None:
            raise not_found("command")
        return json_response(state)

    @api.get(
        "/events",
        summary="Server-Sent Events: the tenant's sync events (CloudEvents JSON), resumable with Last-Event-ID",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "The event stream"}},
    )
    async def events(
        request: Request,
        principal: Annotated[Principal, Depends(require("events:read"))],
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20_000)] = None,
    ) -> Response:
        consumer = gateway.new_event_consumer()
        await consumer.start()
        metrics.SSE_CONNECTIONS.inc()

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for chunk in sse_events(
                    consumer,
                    gateway.settings.events_topic,
                    selector_for(principal.tenant_id, principal.clients),
                    parse_last_event_id(last_event_id),
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
