"""The API's client routes: clients, the Sync-from-PSA catalog (answered from `catalog_cache` while
the read model is unchanged), sync of a selection, auto-sync and refresh."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from schemas.commands import (
    RefreshCommand,
    RefreshData,
    SelectCommand,
    SelectData,
    SetAutoSyncCommand,
    SetAutoSyncData,
)
from services.gateway import metrics, models
from services.gateway.adapters import Gateway
from services.gateway.auth import Principal
from services.gateway.catalog_cache import CatalogCache
from services.gateway.problems import (
    Problem,
    not_found,
)
from services.gateway.routing import (
    COMMAND_ERRORS,
    SOURCE,
    ClientPath,
    IdempotencyKey,
    client_in_scope,
    command_data,
    json_response,
    require,
    require_client,
    submit,
)
from services.gateway.views import DEFAULT_STATES, catalog_view, client_summary, count_states

_JSON = "application/json"


def add_client_routes(api: APIRouter, gateway: Gateway) -> None:
    """Add the routes to `api` (the order is the OpenAPI document's)."""
    read_model = gateway.read_model
    commands = gateway.commands
    catalog_cache = CatalogCache(gateway.settings.catalog_cache_entries)

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
        responses=COMMAND_ERRORS,
        summary="Sync the selected agreements and additions now (refused while auto-sync is on)",
    )
    async def sync_selected(
        request: Request,
        client: ClientPath,
        body: models.SyncRequest,
        principal: Annotated[Principal, Depends(require("sync:write"))],
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        await require_client(read_model, principal, client)
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
        return await submit(
            commands, request, principal, command, body.model_dump(mode="json"), idempotency_key
        )

    @api.put(
        "/clients/{client}/auto-sync",
        status_code=202,
        response_model=models.CommandAccepted,
        responses=COMMAND_ERRORS,
        summary="Turn auto-sync from the PSA on or off",
    )
    async def set_auto_sync(
        request: Request,
        client: ClientPath,
        body: models.AutoSyncRequest,
        principal: Annotated[Principal, Depends(require("sync:write"))],
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        await require_client(read_model, principal, client)
        data = SetAutoSyncData(
            tenant_id=principal.tenant_id,
            client_id=client,
            enabled=body.enabled,
            requested_by=principal.subject,
        )
        command = SetAutoSyncCommand.build(data, source=SOURCE)
        return await submit(
            commands, request, principal, command, body.model_dump(mode="json"), idempotency_key
        )

    @api.post(
        "/clients/{client}/refresh",
        status_code=202,
        response_model=models.CommandAccepted,
        responses=COMMAND_ERRORS,
        summary="Re-read the client from ConnectWise now",
    )
    async def refresh(
        request: Request,
        client: ClientPath,
        principal: Annotated[Principal, Depends(require("sync:write"))],
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        await require_client(read_model, principal, client)
        data = RefreshData(tenant_id=principal.tenant_id, client_id=client, requested_by=principal.subject)
        command = RefreshCommand.build(data, source=SOURCE)
        return await submit(commands, request, principal, command, {}, idempotency_key)
