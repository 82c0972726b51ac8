"""Shared pieces of the API's routes: scope dependencies, path and header parameters, documented
errors, JSON answers and command submission (Idempotency-Key)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPBearer
from pydantic import ValidationError
from starlette.responses import Response

from schemas.envelope import CLIENT_ID_PATTERN, CloudEvent
from services.gateway import metrics
from services.gateway.auth import Principal
from services.gateway.command_store import CommandStore, IdempotencyConflict, request_hash
from services.gateway.problems import (
    PROBLEM_CONTENT_TYPE,
    Problem,
    ProblemDocument,
    forbidden_scope,
    not_found,
    unauthorized,
)
from services.gateway.readmodel import ReadModel

SOURCE = "contract-sync/gateway"
_CLIENT_RE_TEXT = CLIENT_ID_PATTERN
_JSON = "application/json"


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type=_JSON, headers=headers)


_bearer = HTTPBearer(auto_error=False, description="A JWT access token of your identity provider")


def principal_of(request: Request) -> Principal:
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):  # pragma: no cover - the middleware guards /v1/
        raise unauthorized("no bearer token")
    return principal


def require(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold one of `scopes` (403 otherwise). A coroutine: FastAPI
    would run a plain function in a worker thread, a thread hop per request for a set lookup."""

    async def dependency(request: Request, _: Annotated[Any, Depends(_bearer)] = None) -> Principal:
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

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDocument, "content": {PROBLEM_CONTENT_TYPE: {}}, "description": text}
    for status, text in (
        (401, "No valid bearer token"),
        (403, "The token lacks the scope"),
        (404, "Not found for your tenant"),
        (422, "Invalid request"),
        (429, "Rate limited (Retry-After)"),
    )
}
COMMAND_ERRORS = {
    **ERRORS,
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


async def require_client(read_model: ReadModel, principal: Principal, client: str) -> None:
    """404 unless the caller may see `client` and its tenant has it."""
    if not client_in_scope(principal, client) or not await read_model.client_exists(
        principal.tenant_id, client
    ):
        raise not_found("client")


async def submit(
    commands: CommandStore,
    request: Request,
    principal: Principal,
    command: CloudEvent,
    body: Any,
    idempotency_key: str | None,
    contract_key: str | None = None,
) -> Response:
    """Publish `command` once per Idempotency-Key and answer 202 with its id and status URL."""
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
    """A command's data; invalid values answer 422 like an invalid request."""
    try:
        return model(**values)
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False)) from None
