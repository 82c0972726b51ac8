"""The guard of every `/v1/` request (pure ASGI middleware, before body parsing and validation):
bearer token (401), body size (413), per-tenant rate (429); request metrics for every request."""

from __future__ import annotations

import time

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway import metrics
from services.gateway.adapters import Gateway
from services.gateway.auth import Principal, Unauthorized, bearer_token
from services.gateway.problems import (
    Problem,
    problem_response,
    unauthorized,
)

API_PREFIX = "/v1/"


async def authenticate(gateway: Gateway, authorization: str | None) -> Principal:
    """The caller of a request with this `Authorization` header; raises `Problem` (401)."""
    try:
        token = bearer_token(authorization)
        if gateway.verify_in_thread:
            return await anyio.to_thread.run_sync(gateway.verifier.verify, token)
        return gateway.verifier.verify(token)
    except Unauthorized as error:
        raise unauthorized(str(error)) from None


class GuardMiddleware:
    """401 / 413 / 429 for every `/v1/` request; the principal goes to `scope["state"]["principal"]`;
    request metrics for every request."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                route = scope.get("route")
                template = getattr(route, "path", "unmatched")
                metrics.REQUEST_SECONDS.labels(scope["method"], template).observe(
                    time.perf_counter() - started
                )
                metrics.REQUESTS.labels(scope["method"], template, str(message["status"])).inc()
            await send(message)

        path: str = scope["path"]
        if not path.startswith(API_PREFIX):
            await self.app(scope, receive, send_recording)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            principal = await authenticate(self.gateway, headers.get("authorization"))
        except Problem as refused:
            metrics.AUTH_FAILURES.labels("401").inc()
            await problem_response(refused, path)(scope, receive, send_recording)
            return
        settings = self.gateway.settings
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            await problem_response(_too_large(settings.max_body_bytes), path)(scope, receive, send_recording)
            return
        retry_after = self.gateway.limiter.take(principal.tenant_id)
        if retry_after:
            metrics.RATE_LIMITED.labels(principal.tenant_id).inc()
            problem = Problem(
                429,
                "rate-limited",
                "Too many requests",
                f"your tenant's request rate is limited; retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )
            await problem_response(problem, path)(scope, receive, send_recording)
            return
        scope.setdefault("state", {})["principal"] = principal
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
            buffered = await _read_limited(receive, settings.max_body_bytes)
            if buffered is None:
                await problem_response(_too_large(settings.max_body_bytes), path)(
                    scope, receive, send_recording
                )
                return
            receive = _replay(buffered, receive)
        await self.app(scope, receive, send_recording)


def _too_large(limit: int) -> Problem:
    return Problem(
        413, "body-too-large", "Request body too large", f"request bodies are limited to {limit} bytes"
    )


async def _read_limited(receive: Receive, limit: int) -> list[Message] | None:
    """The request's body messages (a body sent without Content-Length), or None once it exceeds `limit`."""
    messages: list[Message] = []
    seen = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages
        seen += len(message.get("body", b""))
        if seen > limit:
            return None
        if not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
