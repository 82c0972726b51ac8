"""The API's contract routes: a client's contracts, one contract with field ownership, local edits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from schemas.commands import (
    EditCommand,
    EditData,
)
from schemas.ownership import split_edit
from services.gateway import models
from services.gateway.adapters import Gateway
from services.gateway.auth import Principal
from services.gateway.problems import (
    Problem,
    not_found,
)
from services.gateway.routing import (
    COMMAND_ERRORS,
    SOURCE,
    ClientPath,
    ContractKeyPath,
    IdempotencyKey,
    client_in_scope,
    command_data,
    json_response,
    require,
    submit,
)
from services.gateway.views import contract_view


def add_contract_routes(api: APIRouter, gateway: Gateway) -> None:
    """Add the routes to `api` (the order is the OpenAPI document's)."""
    read_model = gateway.read_model
    commands = gateway.commands

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
        responses=COMMAND_ERRORS,
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
            commands, request, principal, command, body.model_dump(mode="json"), idempotency_key, contract_key
        )
