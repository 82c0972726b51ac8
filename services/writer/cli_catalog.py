"""`contract-sync catalog --tenant T --client C [--json]`: the Sync-from-PSA dialog's list of one client."""

from __future__ import annotations

import argparse
import json
from typing import Any

_STATE_STYLE = {"new": "bold green", "updated": "bold yellow", "synced": "dim", "removed": "red"}


def _money(summary: dict[str, Any]) -> str:
    amount = summary.get("bill_amount")
    if amount is None and summary.get("unit_price") is not None:
        return f"{summary.get('quantity', '?')} x {summary['unit_price']}"
    return f"{amount} {summary.get('currency') or ''}".strip() if amount is not None else ""


def _run(args: argparse.Namespace) -> int:
    from services.common.settings import DatabaseSettings
    from services.writer.store import PostgresStore, list_catalog, sync_settings
    from services.writer.views import catalog_view

    store = PostgresStore(args.database_url or DatabaseSettings().url)
    try:
        items = catalog_view(list_catalog(store.engine, args.tenant, args.client))
        settings = sync_settings(store.engine, args.tenant, args.client) or {}
    finally:
        store.close()
    if args.json:
        document = {
            "tenant_id": args.tenant,
            "client_id": args.client,
            "auto_sync": bool(settings.get("auto_sync", False)),
            "last_synced_at": settings["last_synced_at"].isoformat()
            if settings.get("last_synced_at")
            else None,
            "agreements": items,
        }
        print(json.dumps(document, indent=2, default=str))
        return 0

    from rich.console import Console
    from rich.table import Table

    last = settings.get("last_synced_at")
    table = Table(
        title=f"Sync from PSA - {args.tenant}:{args.client}",
        caption=f"auto-sync {'on' if settings.get('auto_sync') else 'off'}; "
        f"last synced {last.isoformat(timespec='seconds') if last else 'never'}",
    )
    for column in ("state", "item", "name", "cost", "cycle / product", "PSA version"):
        table.add_column(column)
    for agreement in items:
        summary = agreement.get("summary") or {}
        state = agreement["state"] or "-"
        table.add_row(
            f"[{_STATE_STYLE.get(state, '')}]{state}[/]",
            f"agreement {agreement['agreement_id']}",
            agreement["name"] or "(not observed)",
            _money(summary),
            str(summary.get("billing_cycle") or ""),
            str(agreement.get("psa_last_updated") or ""),
        )
        for addition in agreement["additions"]:
            sub = addition["summary"]
            table.add_row(
                f"[{_STATE_STYLE.get(addition['state'], '')}]{addition['state']}[/]",
                f"  └ addition {addition['addition_id']}",
                addition["name"],
                _money(sub),
                str(sub.get("product") or ""),
                str(addition["psa_last_updated"]),
            )
    Console().print(table)
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "catalog",
        help="list a client's agreements and additions with their sync state (new/updated/synced/removed)",
    )
    parser.add_argument("--tenant", required=True, help="tenant id")
    parser.add_argument("--client", required=True, help="client id")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--database-url", default=None, help="default: env DATABASE_URL")
    parser.set_defaults(func=_run)
