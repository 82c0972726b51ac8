"""`contract-sync contracts --tenant T --client C [--json]`: a client's contracts with field ownership."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _seeded(view: dict[str, Any], name: str) -> str:
    field = view["psa_seeded"][name]
    value = "" if field["value"] is None else str(field["value"])
    if field["overridden"]:
        return f"[cyan]{value}[/] [dim](local override; PSA: {field['psa_value']})[/]"
    return value


def _run(args: argparse.Namespace) -> int:
    from services.common.settings import DatabaseSettings
    from services.writer.store import PostgresStore, list_contracts
    from services.writer.views import contract_view

    store = PostgresStore(args.database_url or DatabaseSettings().url)
    try:
        views = [contract_view(row) for row in list_contracts(store.engine, args.tenant, args.client)]
    finally:
        store.close()
    if args.json:
        print(
            json.dumps(
                {"tenant_id": args.tenant, "client_id": args.client, "contracts": views},
                indent=2,
                default=str,
            )
        )
        return 0

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Contracts - {args.tenant}:{args.client}",
        caption="🔒 PSA-owned (read-only while synced from the PSA); cyan = local override of a PSA-seeded field",
    )
    for column in (
        "contract",
        "name",
        "status",
        "billing cost",
        "cycle",
        "type",
        "start",
        "end",
        "local",
        "PSA",
    ):
        table.add_column(column)
    for view in views:
        owned = view["psa_owned"]
        lock = "🔒 " if owned["locked"] else ""
        cost = owned["billing_cost"]
        local = {k: v for k, v in view["local"].items() if v not in (None, [], {})}
        psa = (
            "removed " + view["removed_in_psa_at"]
            if view["removed_in_psa_at"]
            else ("synced" if view["psa_synced"] else "local")
        )
        table.add_row(
            view["contract_key"],
            _seeded(view, "name"),
            f"{lock}{owned['status']}",
            f"{lock}{cost['amount']} {cost['currency']}",
            f"{lock}{owned['billing_cycle']}",
            _seeded(view, "contract_type"),
            _seeded(view, "start_date"),
            _seeded(view, "end_date"),
            ", ".join(f"{k}={v}" for k, v in local.items()),
            psa,
        )
    Console().print(table)
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "contracts", help="list a client's contracts with locked and overridden fields"
    )
    parser.add_argument("--tenant", required=True, help="tenant id")
    parser.add_argument("--client", required=True, help="client id")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--database-url", default=None, help="default: env DATABASE_URL")
    parser.set_defaults(func=_run)
