"""The console's state-changing requests (POST): sign-in/out, Sync selected, Auto-sync, contract edits.

Each command goes through the gateway's `CommandStore` exactly like the API's (recorded, published once,
its outcome read back by `/ui/commands/{id}`), with the same refusals: manual sync while auto-sync is
on answers 409 `auto_sync_enabled`; an edit of a PSA-owned field of a PSA-synced contract answers 422
`psa_owned_field` and publishes nothing. Every POST except sign-in needs the session's CSRF token
(`session.check_csrf`); sign-in is same-origin only.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from schemas.commands import (
    EditCommand,
    EditData,
    SelectCommand,
    SelectData,
    SetAutoSyncCommand,
    SetAutoSyncData,
)
from schemas.envelope import CloudEvent
from schemas.ownership import LOCAL, PSA_SEEDED, split_edit
from services.gateway import metrics
from services.gateway.command_store import request_hash
from services.gateway.guard import authenticate
from services.gateway.problems import Problem, not_found
from services.gateway.routing import SOURCE, client_in_scope
from services.gateway.ui.console import Console, SignedIn
from services.gateway.ui.pages import safe_next
from services.gateway.ui.session import (
    Forbidden,
    check_csrf,
    clear_session,
    form_fields,
    same_origin,
    session_token,
    set_session,
)
from services.gateway.views import contract_view

_DATE_FIELDS = ("start_date", "end_date")
MAX_COOKIE_TOKEN = 3800
"""Longest token kept in the session cookie (browsers drop cookies above ~4 KB)."""
_REMINDER_RE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})\s*(.*)$")


def first(fields: dict[str, list[str]], name: str) -> str:
    return (fields.get(name) or [""])[0]


def ids(fields: dict[str, list[str]], name: str) -> list[int]:
    """The integer ids of a repeated form field; a non-integer is an invalid request (422)."""
    try:
        return [int(value) for value in fields.get(name, [])]
    except ValueError:
        raise Problem(422, "invalid-request", "Invalid request", f"{name} must be integers") from None


def form_value(name: str, text: str) -> Any:
    """A contract field's value from its form text (pure): dates ISO or None, tags comma-separated,
    reminders one `YYYY-MM-DD note` a line, other text as given (empty -> None)."""
    text = text.replace("\r\n", "\n")
    if name == "tags":
        return [tag.strip() for tag in text.split(",") if tag.strip()]
    if name == "reminders":
        reminders = []
        for line in text.split("\n"):
            if not line.strip():
                continue
            match = _REMINDER_RE.match(line)
            if not match:
                raise Problem(
                    422, "invalid-value", "Invalid reminder", "write each reminder as YYYY-MM-DD and a note"
                )
            note = match.group(2).strip()
            reminders.append({"date": match.group(1), **({"note": note} if note else {})})
        return reminders
    if name in _DATE_FIELDS:
        return text.strip() or None
    return text if text.strip() else None


def current_value(view: dict[str, Any], name: str) -> Any:
    if name in PSA_SEEDED:
        value = view["psa_seeded"][name]["value"]
        return value[:10] if name in _DATE_FIELDS and isinstance(value, str) else value
    value = view["local"].get(name)
    if name == "tags":
        return list(value or [])
    if name == "reminders":
        return [
            {k: v for k, v in item.items() if k in ("date", "note") and v not in (None, "")}
            for item in value or []
        ]
    return value


def changed_fields(view: dict[str, Any], fields: dict[str, list[str]]) -> dict[str, Any]:
    """The edit a contract form asks for: only fields present and different from the contract's value,
    so saving never turns an untouched PSA-seeded field into an override (pure)."""
    changes: dict[str, Any] = {}
    for name, values in fields.items():
        if name in ("csrf_token",):
            continue
        value = form_value(name, values[0]) if name in PSA_SEEDED or name in LOCAL else values[0]
        if (name in PSA_SEEDED or name in LOCAL) and value == current_value(view, name):
            continue
        changes[name] = value
    return changes


def add_actions(router: APIRouter, console: Console) -> None:
    gateway = console.gateway
    read_model = gateway.read_model

    async def guarded(request: Request) -> tuple[SignedIn, dict[str, list[str]]]:
        me = await console.signed_in(request)
        fields = await form_fields(request, gateway.settings.max_body_bytes)
        check_csrf(request, session_token(request), fields)
        return me, fields

    async def submit(
        request: Request, me: SignedIn, command: CloudEvent, contract_key: str | None = None
    ) -> Response:
        body = command.data.model_dump(mode="json")
        submitted = await gateway.commands.submit(
            command,
            requested_by=me.principal.subject,
            idempotency_key=None,
            fingerprint=request_hash(request.method, request.url.path, body),
            contract_key=contract_key,
        )
        metrics.COMMANDS_PUBLISHED.labels(command.type).inc()
        state = await gateway.commands.state(me.principal.tenant_id, submitted.command_id)
        return console.page(request, "_progress.html", {"me": me, "command": state, "attempt": 0}, status=202)

    async def own_client(me: SignedIn, client: str) -> None:
        if not client_in_scope(me.principal, client) or not await read_model.client_exists(
            me.principal.tenant_id, client
        ):
            raise not_found("client")

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        if not same_origin(request):
            raise Forbidden("cross-origin sign-in")
        fields = await form_fields(request, gateway.settings.max_body_bytes)
        token = first(fields, "token").strip()
        target = safe_next(first(fields, "next"))
        try:
            await authenticate(gateway, f"Bearer {token}")
        except Problem as refused:
            context = {"next": target, "error": refused.detail or "the token was refused"}
            return console.page(request, "sign_in.html", context, status=401)
        if len(token) > MAX_COOKIE_TOKEN:
            error = "the token is too large for a browser cookie; sign in through the reverse proxy (docs/console.md)"
            return console.page(request, "sign_in.html", {"next": target, "error": error}, status=400)
        response = RedirectResponse(target, status_code=303)
        set_session(response, request, token)
        return response

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        await guarded(request)
        response = RedirectResponse("/ui/sign-in", status_code=303)
        clear_session(response)
        return response

    @router.post("/clients/{client}/sync")
    async def sync_selected(request: Request, client: str) -> Response:
        me, fields = await guarded(request)
        me.require("sync:write")
        await own_client(me, client)
        settings = await read_model.settings(me.principal.tenant_id, client)
        if settings and settings["auto_sync"]:
            raise Problem(
                409,
                "auto-sync-enabled",
                "Auto-sync is on",
                "manual sync is disabled while auto-sync from the PSA is on for this client",
            )
        try:
            data = SelectData(
                tenant_id=me.principal.tenant_id,
                client_id=client,
                agreement_ids=ids(fields, "agreement_ids"),
                addition_ids=ids(fields, "addition_ids"),
                requested_by=me.principal.subject,
            )
        except ValidationError as error:
            raise Problem(422, "invalid-request", "Nothing to sync", _first_error(error)) from None
        return await submit(request, me, SelectCommand.build(data, source=SOURCE))

    @router.post("/clients/{client}/auto-sync")
    async def set_auto_sync(request: Request, client: str) -> Response:
        me, fields = await guarded(request)
        me.require("sync:write")
        await own_client(me, client)
        data = SetAutoSyncData(
            tenant_id=me.principal.tenant_id,
            client_id=client,
            enabled=first(fields, "enabled") in ("on", "true", "1"),
            requested_by=me.principal.subject,
        )
        return await submit(request, me, SetAutoSyncCommand.build(data, source=SOURCE))

    async def edit(request: Request, me: SignedIn, contract_key: str, changes: dict[str, Any]) -> Response:
        me.require("contracts:write")
        row = await read_model.contract(me.principal.tenant_id, contract_key)
        if row is None or (me.principal.clients is not None and row["client_id"] not in me.principal.clients):
            raise not_found("contract")
        split = split_edit(changes, psa_synced=bool(row["psa_synced"]))
        if split.psa_owned:
            raise Problem(
                422,
                "psa-owned-field",
                "PSA-owned field",
                f"{', '.join(split.psa_owned)} of a PSA-synced contract can only change in ConnectWise",
            )
        if split.unknown:
            raise Problem(422, "unknown-field", "Unknown field", f"no field {', '.join(split.unknown)}")
        if not changes:
            raise Problem(422, "no-change", "Nothing changed", "no field differs from the contract")
        try:
            data = EditData(
                tenant_id=me.principal.tenant_id,
                client_id=row["client_id"],
                contract_id=contract_key,
                changes=changes,
                requested_by=me.principal.subject,
            )
        except ValidationError as error:
            raise Problem(422, "invalid-request", "Invalid edit", _first_error(error)) from None
        return await submit(request, me, EditCommand.build(data, source=SOURCE), contract_key)

    @router.post("/contracts/{contract_key}/edit")
    async def edit_contract(request: Request, contract_key: str) -> Response:
        me, fields = await guarded(request)
        row = await read_model.contract(me.principal.tenant_id, contract_key)
        if row is None:
            raise not_found("contract")
        return await edit(request, me, contract_key, changed_fields(contract_view(row), fields))

    @router.post("/contracts/{contract_key}/revert")
    async def revert_field(request: Request, contract_key: str) -> Response:
        """Set a PSA-seeded field back to the PSA's current value."""
        me, fields = await guarded(request)
        name = first(fields, "field")
        row = await read_model.contract(me.principal.tenant_id, contract_key)
        if row is None:
            raise not_found("contract")
        if name not in PSA_SEEDED:
            raise Problem(422, "unknown-field", "Not a PSA-seeded field", f"{name[:40]!r} has no PSA value")
        psa_value = contract_view(row)["psa_seeded"][name]["psa_value"]
        if isinstance(psa_value, date):
            psa_value = psa_value.isoformat()
        return await edit(request, me, contract_key, {name: psa_value})


def _first_error(error: ValidationError) -> str:
    errors = error.errors(include_url=False)
    return str(errors[0].get("msg", "invalid")) if errors else "invalid"
