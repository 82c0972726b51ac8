"""The Sync API as an ASGI application (FastAPI): routes, authentication, limits, problem+json.

`build_app(gateway)` wires the routes to a `Gateway` (the adapters, built by `service.py`). Order of
the checks on `/v1/*`: bearer token (401), body size (413), per-tenant rate (429), then the route's
scope (403), then the request itself (404 for anything not of the caller's tenant, 422 for invalid
input). Web pages (the console) are added as routers under `/ui/` through `build_app(routers=...)`;
they authenticate with `authenticate()` like the API.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import anyio
import orjson
from aiokafka import AIOKafkaConsumer
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.commands import (
    EditCommand,
    EditData,
    RefreshCommand,
    RefreshData,
    SelectCommand,
    SelectData,
    SetAutoSyncCommand,
    SetAutoSyncData,
)
from schemas.envelope import CLIENT_ID_PATTERN, CloudEvent
from schemas.ownership import split_edit
from services.gateway import metrics, models
from services.gateway.auth import Principal, TokenVerifier, Unauthorized, bearer_token
from services.gateway.catalog_cache import CatalogCache
from services.gateway.command_store import CommandStore, IdempotencyConflict, request_hash
from services.gateway.event_stream import parse_last_event_id, selector_for, sse_events
from services.gateway.problems import (
    PROBLEM_CONTENT_TYPE,
    Problem,
    ProblemDocument,
    forbidden_scope,
    not_found,
    problem_response,
    unauthorized,
)
from services.gateway.ratelimit import TenantRateLimiter
from services.gateway.readmodel import ReadModel
from services.gateway.settings import GatewaySettings
from services.gateway.views import DEFAULT_STATES, catalog_view, client_summary, contract_view, count_states

SOURCE = "contract-sync/gateway"
API_PREFIX = "/v1/"
_CLIENT_RE_TEXT = CLIENT_ID_PATTERN
_JSON = "application/json"


@dataclass
class Gateway:
    """The gateway's adapters (built by `service.py`; tests and the benchmark build their own)."""

    settings: GatewaySettings
    verifier: TokenVerifier
    read_model: ReadModel
    commands: CommandStore
    limiter: TenantRateLimiter
    new_event_consumer: Callable[[], AIOKafkaConsumer]
    ready_checks: dict[str, Callable[[], Awaitable[bool]]]
    verify_in_thread: bool = False
    """True when verification may block (JWKS fetched over HTTP)."""


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type=_JSON, headers=headers)


# ------------------------------------------------------------------------------------------------
# authentication and limits (pure ASGI middleware: runs before body parsing and validation)


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


# ------------------------------------------------------------------------------------------------
# dependencies

_bearer = HTTPBearer(auto_error=False, description="A JWT access token of your identity provider")


def principal_of(request: Request) -> Principal:
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):  # pragma: no cover - the middleware guards /v1/
        raise unauthorized("no bearer token")
    return principal


def require(*scopes: str) -> Callable[..., Principal]:
    """A dependency: the caller, who must hold one of `scopes` (403 otherwise)."""

    def dependency(request: Request, _: Annotated[Any, Depends(_bearer)] = None) -> Principal:
        principal = principal_of(request)
        if not principal.scopes.intersection(scopes):
            metrics.AUTH_FAILURES.labels("403").inc()
            raise forbidden_scope(scopes[0])
        return principal

    return dependency


ClientPath = Annotated[str, Path(max_length=64, description="Client id (ConnectWise company id)")]
ContractKeyPath = Annotated[str, Path(max_length=200, description="`cw:{tenant}:{agreement|addition}:{id}`")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Retry-safe key: a repeated request with the same key answers the same command id",
    ),
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDocument, "content": {PROBLEM_CONTENT_TYPE: {}}, "description": text}
    for status, text in (
        (401, "No valid bearer token"),
        (403, "The token lacks the scope"),
        (404, "Not found for your tenant"),
        (422, "Invalid request"),
        (429, "Rate limited (Retry-After)"),
    )
}
_COMMAND_ERRORS = {
    **_ERRORS,
    409: {"model": ProblemDocument, "content": {PROBLEM_CONTENT_TYPE: {}}, "description": "Conflict"},
    413: {"model": ProblemDocument, "content": {PROBLEM_CONTENT_TYPE: {}}, "description": "Body too large"},
}


def client_in_scope(principal: Principal, client: str) -> bool:
    """True when `client` is a well-formed client id the caller's token may see (its tenant's
    existence check is separate)."""
    import re

    if not re.match(_CLIENT_RE_TEXT, client) or client == "*":
        return False
    return principal.clients is None or client in principal.clients


# ------------------------------------------------------------------------------------------------
# the application


def build_app(gateway: Gateway, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The Sync API; `routers` (e.g. the console's pages under `/ui/`) are included as given."""
    app = FastAPI(
        title="contract-sync Sync API",
        version="1.0.0",
        description="The authenticated HTTP front door of contract-sync: the Sync-from-PSA catalog, "
        "contracts with field ownership, sync commands and the tenant's live sync events. "
        "Errors are RFC 9457 problem documents. See docs/gateway.md.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    api = APIRouter(prefix="/v1", responses=_ERRORS)
    read_model = gateway.read_model
    commands = gateway.commands
    catalog_cache = CatalogCache(gateway.settings.catalog_cache_entries)

    async def require_client(principal: Principal, client: str) -> None:
        if not client_in_scope(principal, client) or not await read_model.client_exists(
            principal.tenant_id, client
        ):
            raise not_found("client")

    async def submit(
        request: Request,
        principal: Principal,
        command: CloudEvent,
        body: Any,
        idempotency_key: str | None,
        contract_key: str | None = None,
    ) -> Response:
        fingerprint = request_hash(request.method, request.url.path, body)
        try:
            submitted = await commands.submit(
                command,
                requested_by=principal.subject,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                contract_key=contract_key,
            )
        except IdempotencyConflict:
            raise Problem(
                422,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was already used with a different request",
                reason="idempotency_key_reused",
            ) from None
        if submitted.replayed:
            metrics.IDEMPOTENT_REPLAYS.inc()
        else:
            metrics.COMMANDS_PUBLISHED.labels(command.type).inc()
        status_url = f"/v1/commands/{submitted.command_id}"
        return json_response(
            {"command_id": str(submitted.command_id), "status_url": status_url},
            status=202,
            headers={"Location": status_url},
        )

    def command_data(model: type[Any], **values: Any) -> Any:
        try:
            return model(**values)
        except ValidationError as error:
            raise RequestValidationError(error.errors(include_url=False)) from None

    @api.get("/clients", response_model=models.ClientList, summary="Clients with catalog counts")
    async def list_clients(principal: Annotated[Principal, Depends(require("catalog:read"))]) -> Response:
        rows = await read_model.clients(principal.tenant_id)
        clients = [
            client_summary(row)
            for row in rows
            if principal.clients is None or row["client_id"] in principal.clients
        ]
        return json_response({"clients": clients})

    @api.get(
        "/clients/{client}/catalog",
        response_model=models.Catalog,
        summary="The Sync-from-PSA dialog: agreements with their additions, state and field-level changes",
    )
    async def get_catalog(
        client: ClientPath,
        principal: Annotated[Principal, Depends(require("catalog:read"))],
        state: Annotated[
            list[models.CatalogState] | None,
            Query(description="States to list (repeatable); default new and updated"),
        ] = None,
    ) -> Response:
        if not client_in_scope(principal, client):
            raise not_found("client")
        states = tuple(state) if state else DEFAULT_STATES
        key = (principal.tenant_id, client, states)
        version = await read_model.catalog_version(principal.tenant_id, client)
        cached = catalog_cache.get(key, version) if version is not None else None
        if cached is not None:
            metrics.CATALOG_CACHE.labels("hit").inc()
            return Response(cached, media_type=_JSON)
        metrics.CATALOG_CACHE.labels("miss").inc()
        rows = await read_model.catalog(principal.tenant_id, client)
        settings = await read_model.settings(principal.tenant_id, client)
        if not rows and settings is None and not await read_model.client_exists(principal.tenant_id, client):
            raise not_found("client")
        document = orjson.dumps(
            {
                "client_id": client,
                "auto_sync": bool(settings and settings["auto_sync"]),
                "last_synced_at": settings["last_synced_at"] if settings else None,
                "states": list(states),
                "counts": count_states(rows),
                "agreements": catalog_view(rows, states),
            }
        )
        if version is not None:
            catalog_cache.put(key, version, document)
        return Response(document, media_type=_JSON)

    @api.post(
        "/clients/{client}/sync",
        status_code=202,
        response_model=models.CommandAccepted,
        responses=_COMMAND_ERRORS,
        summary="Sync the selected agreements and additions now (refused while auto-sync is on)",
    )
    async def sync_selected(
        request: Request,
        client: ClientPath,
        body: models.SyncRequest,
        principal: Annotated[Principal, Depends(require("sync:write"))],
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        await require_client(principal, client)
        settings = await read_model.settings(principal.tenant_id, client)
        if settings and settings["auto_sync"]:
            raise Problem(
                409,
                "auto-sync-enabled",
                "Auto-sync is on",
                "manual sync is disabled while auto-sync from the PSA is on for this client",
                reason="auto_sync_enabled",
            )
        data = command_data(
            SelectData,
            tenant_id=principal.tenant_id,
            client_id=client,
            agreement_ids=body.agreement_ids,
            addition_ids=body.addition_ids,
            requested_by=principal.subject,
        )
        command = SelectCommand.build(data, source=SOURCE)
        return await submit(request, principal, command, body.model_dump(mode="json"), idempotency_key)

    @api.put(
        "/clients/{client}/auto-sync",
        status_code=202,
        response_model=models.CommandAccepted,
        responses=_COMMAND_ERRORS,
        summary="Turn auto-sync from the PSA on or off",
    )
    async def set_auto_sync(
        request: Request,
        client: ClientPath,
        body: models.AutoSyncRequest,
        principal: Annotated[Principal, Depends(require("sync:write"))],
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        await require_client(principal, client)
        data = SetAutoSyncData(
            tenant_id=principal.tenant_id,
            client_id=client,
            enabled=body.enabled,
            requested_by=principal.subject,
        )
        command = SetAutoSyncCommand.build(data, source=SOURCE)
        return await submit(request, principal, command, body.model_dump(mode="json"), idempotency_key)

    @api.post(
        "/clients/{client}/refresh",
        status_code=202,
        response_model=models.CommandAccepted,
        responses=_COMMAND_ERRORS,
        summary="Re-read the client from ConnectWise now",
    )
    async def refresh(
        request: Request,
        client: ClientPath,
        principal: Annotated[Principal, Depends(require("sync:write"))],
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        await require_client(principal, client)
        data = RefreshData(tenant_id=principal.tenant_id, client_id=client, requested_by=principal.subject)
        command = RefreshCommand.build(data, source=SOURCE)
        return await submit(request, principal, command, {}, idempotency_key)

    @api.get(
        "/clients/{client}/contracts",
        response_model=models.ContractList,
        summary="The client's contracts with field ownership",
    )
    async def list_contracts(
        client: ClientPath, principal: Annotated[Principal, Depends(require("contracts:read"))]
    ) -> Response:
        if not client_in_scope(principal, client):
            raise not_found("client")
        rows = await read_model.contracts(principal.tenant_id, client)
        if not rows and not await read_model.client_exists(principal.tenant_id, client):
            raise not_found("client")
        return json_response({"client_id": client, "contracts": [contract_view(row) for row in rows]})

    async def own_contract(principal: Principal, contract_key: str) -> dict[str, Any]:
        row = await read_model.contract(principal.tenant_id, contract_key)
        if row is None or (principal.clients is not None and row["client_id"] not in principal.clients):
            raise not_found("contract")
        return row

    @api.get(
        "/contracts/{contract_key}",
        response_model=models.Contract,
        summary="One contract with field ownership",
    )
    async def get_contract(
        contract_key: ContractKeyPath, principal: Annotated[Principal, Depends(require("contracts:read"))]
    ) -> Response:
        return json_response(contract_view(await own_contract(principal, contract_key)))

    @api.patch(
        "/contracts/{contract_key}",
        status_code=202,
        response_model=models.CommandAccepted,
        responses=_COMMAND_ERRORS,
        summary="Edit a contract locally (PSA-owned fields of a PSA-synced contract are refused with 422)",
    )
    async def edit_contract(
        request: Request,
        contract_key: ContractKeyPath,
        body: models.EditRequest,
        principal: Annotated[Principal, Depends(require("contracts:write"))],
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        row = await own_contract(principal, contract_key)
        split = split_edit(body.changes, psa_synced=bool(row["psa_synced"]))
        if split.psa_owned:
            raise Problem(
                422,
                "psa-owned-field",
                "PSA-owned field",
                f"{', '.join(split.psa_owned)} of a PSA-synced contract can only change in ConnectWise",
                reason="psa_owned_field",
                fields=list(split.psa_owned),
            )
        if split.unknown:
            raise Problem(
                422,
                "unknown-field",
                "Unknown field",
                f"contracts have no field {', '.join(split.unknown)}",
                reason="unknown_field",
                fields=list(split.unknown),
            )
        data = command_data(
            EditData,
            tenant_id=principal.tenant_id,
            client_id=row["client_id"],
            contract_id=contract_key,
            changes=body.changes,
            requested_by=principal.subject,
        )
        command = EditCommand.build(data, source=SOURCE)
        return await submit(
            request, principal, command, body.model_dump(mode="json"), idempotency_key, contract_key
        )

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

    app.include_router(api)
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return JSONResponse({"status": "alive", "service": "gateway"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        results: dict[str, bool] = {}
        for name, check in gateway.ready_checks.items():
            try:
                with anyio.fail_after(5):
                    results[name] = bool(await check())
            except Exception:
                results[name] = False
        ready = all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "service": "gateway", "checks": results},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(Problem)
    async def on_problem(request: Request, problem: Problem) -> Response:
        return problem_response(problem, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in error.errors()[:50]
        ]
        problem = Problem(
            422, "invalid-request", "Invalid request", "the request does not match the API", errors=errors
        )
        return problem_response(problem, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, error: StarletteHTTPException) -> Response:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http-error")
        problem = Problem(error.status_code, slug, str(error.detail), headers=dict(error.headers or {}))
        return problem_response(problem, request.url.path)

    @app.exception_handler(Exception)
    async def on_error(request: Request, error: Exception) -> Response:
        problem = Problem(500, "internal-error", "Internal error", "the request failed; it is safe to retry")
        return problem_response(problem, request.url.path)

    app.add_middleware(GuardMiddleware, gateway=gateway)
    return app
