"""The console's pages and fragments (GET, read-only): clients, a client's contracts with the Sync-from-PSA
dialog, one contract, the activity page, and a command's progress.

Every read goes through the Sync API's read model and views (`ReadModel`, `views.py`) with the signed-in
caller's tenant, and the same scopes as the API: what the API would answer 404 for is a 404 page here.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from schemas.ownership import LOCAL, PSA_SEEDED
from services.gateway.problems import not_found
from services.gateway.routing import client_in_scope
from services.gateway.ui.console import Console, SignedIn
from services.gateway.views import DEFAULT_STATES, STATES, catalog_view, client_summary, contract_view

SHOW_ALL_STATES = STATES
FIELD_LABELS = {
    "status": "Status",
    "billing_cost": "Billing cost",
    "billing_cost.amount": "Billing cost",
    "billing_cost.currency": "Currency",
    "billing_cycle": "Billing cycle",
    "name": "Name",
    "contract_type": "Contract type",
    "start_date": "Start date",
    "end_date": "End date",
    "description": "Description",
    "notes": "Notes",
    "owner": "Owner",
    "impact": "Impact",
    "tags": "Tags",
    "reminders": "Reminders",
}


def is_fragment(request: Request) -> bool:
    """True for an htmx request (it wants a fragment, not a whole page)."""
    return request.headers.get("hx-request") == "true" and not request.headers.get(
        "hx-history-restore-request"
    )


def add_pages(router: APIRouter, console: Console) -> None:
    read_model = console.gateway.read_model

    async def require_client(me: SignedIn, client: str) -> None:
        if not client_in_scope(me.principal, client) or not await read_model.client_exists(
            me.principal.tenant_id, client
        ):
            raise not_found("client")

    @router.get("/")
    async def home() -> Response:
        return RedirectResponse("/ui/clients", status_code=303)

    @router.get("/sign-in")
    async def sign_in_page(request: Request, next: str = "/ui/clients") -> Response:
        return console.page(request, "sign_in.html", {"next": safe_next(next), "error": None})

    @router.get("/clients")
    async def clients_page(request: Request, q: Annotated[str, Query(max_length=100)] = "") -> Response:
        me = await console.signed_in(request)
        me.require("catalog:read")
        rows = await read_model.clients(me.principal.tenant_id)
        needle = q.strip().lower()
        clients = [
            client_summary(row)
            for row in rows
            if (me.principal.clients is None or row["client_id"] in me.principal.clients)
            and needle in str(row["client_id"]).lower()
        ]
        context = {"me": me, "clients": clients, "q": q, "total": len(rows)}
        if is_fragment(request) and request.headers.get("hx-target") == "clients-rows":
            return console.page(request, "_clients_rows.html", context)
        return console.page(request, "clients.html", context)

    async def contracts_context(me: SignedIn, client: str) -> dict[str, Any]:
        rows = await read_model.contracts(me.principal.tenant_id, client)
        settings = await read_model.settings(me.principal.tenant_id, client)
        return {
            "me": me,
            "client": client,
            "contracts": [contract_view(row) for row in rows],
            "auto_sync": bool(settings and settings["auto_sync"]),
            "last_synced_at": settings["last_synced_at"] if settings else None,
        }

    @router.get("/clients/{client}")
    async def client_page(request: Request, client: str) -> Response:
        me = await console.signed_in(request)
        me.require("contracts:read")
        await require_client(me, client)
        return console.page(request, "client.html", await contracts_context(me, client))

    @router.get("/clients/{client}/contracts")
    async def contracts_fragment(request: Request, client: str) -> Response:
        me = await console.signed_in(request)
        me.require("contracts:read")
        await require_client(me, client)
        return console.page(request, "_contracts.html", await contracts_context(me, client))

    @router.get("/clients/{client}/dialog")
    async def sync_dialog(request: Request, client: str, show_all: bool = False) -> Response:
        me = await console.signed_in(request)
        me.require("catalog:read")
        await require_client(me, client)
        tenant = me.principal.tenant_id
        rows = await read_model.catalog(tenant, client)
        settings = await read_model.settings(tenant, client)
        states = SHOW_ALL_STATES if show_all else DEFAULT_STATES
        return console.page(
            request,
            "_dialog.html",
            {
                "me": me,
                "client": client,
                "show_all": show_all,
                "agreements": catalog_view(rows, states),
                "auto_sync": bool(settings and settings["auto_sync"]),
                "last_synced_at": settings["last_synced_at"] if settings else None,
                "last_status": settings["last_status"] if settings else None,
                "labels": FIELD_LABELS,
            },
        )

    @router.get("/contracts/{contract_key}")
    async def contract_page(request: Request, contract_key: str) -> Response:
        me = await console.signed_in(request)
        me.require("contracts:read")
        row = await read_model.contract(me.principal.tenant_id, contract_key)
        if row is None or (me.principal.clients is not None and row["client_id"] not in me.principal.clients):
            raise not_found("contract")
        context = {
            "me": me,
            "contract": contract_view(row),
            "labels": FIELD_LABELS,
            "seeded_fields": PSA_SEEDED,
            "local_fields": LOCAL,
        }
        if is_fragment(request) and request.headers.get("hx-target") == "contract-form":
            return console.page(request, "_contract_form.html", context)
        return console.page(request, "contract.html", context)

    @router.get("/activity")
    async def activity_page(request: Request) -> Response:
        me = await console.signed_in(request)
        me.require("events:read")
        return console.page(request, "activity.html", {"me": me})

    @router.get("/commands/{command_id}")
    async def command_progress(request: Request, command_id: str, attempt: int = 0) -> Response:
        """A command's progress fragment; it polls itself until the command is applied, rejected or
        failed, then tells the page (`HX-Trigger: contracts-changed`) to refresh what it shows."""
        me = await console.signed_in(request)
        if not (me.may("sync:write") or me.may("contracts:write")):
            me.require("sync:write")
        try:
            parsed = UUID(command_id)
        except ValueError:
            raise not_found("command") from None
        state = await console.gateway.commands.state(me.principal.tenant_id, parsed)
        if state is None:
            raise not_found("command")
        headers: dict[str, str] = {}
        if state["status"] != "pending":
            headers["HX-Trigger"] = "contracts-changed"
        return console.page(
            request,
            "_progress.html",
            {"me": me, "command": state, "attempt": attempt + 1},
            headers=headers,
        )


def safe_next(target: str) -> str:
    """A redirect target inside the console only (no open redirect), else the clients page (pure)."""
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/clients"
