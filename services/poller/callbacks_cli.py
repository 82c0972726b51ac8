"""`contract-sync callbacks list | register`: the ConnectWise callbacks (webhooks) that wake the poller.

The poller's endpoint (`POLLER_CALLBACKS_PORT`) is `POST /callbacks/{tenant_id}`. ConnectWise calls it
for the entries registered on the tenant's site; the one the poller needs is

    url = <base URL of the poller's callback endpoint>/callbacks/<tenant id>
    type = agreement, level = owner, objectId = 1   (every agreement of the company)

`register` creates that entry with the tenant's credentials from the tenants file unless an entry
with the same url, type, level and objectId already exists (idempotent: running it again changes
nothing). `list` prints every entry registered on the tenant's site (id, url, type, level, objectId,
active), marking the ones that point at this tenant's poller endpoint.
Exit codes: 0 done; 1 ConnectWise refused or could not be reached; 2 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CALLBACK_TYPE = "agreement"
CALLBACK_LEVEL = "owner"
CALLBACK_OBJECT_ID = 1  # owner level: the object id is 1 (the whole company)
DESCRIPTION = "contract-sync poller"


def endpoint_url(base_url: str, tenant_id: str) -> str:
    """The poller's callback URL for a tenant (pure): `<base>/callbacks/<tenant>`."""
    return f"{base_url.rstrip('/')}/callbacks/{tenant_id}"


def desired_entry(base_url: str, tenant_id: str) -> dict[str, Any]:
    """The CallbackEntry the poller needs for a tenant (pure)."""
    return {
        "url": endpoint_url(base_url, tenant_id),
        "objectId": CALLBACK_OBJECT_ID,
        "type": CALLBACK_TYPE,
        "level": CALLBACK_LEVEL,
        "description": DESCRIPTION,
    }


def same_callback(entry: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Same url, type, level and objectId (ConnectWise's own duplicate rule; case-insensitive type/level)."""
    return bool(
        entry.get("url") == wanted["url"]
        and str(entry.get("type", "")).lower() == wanted["type"]
        and str(entry.get("level", "")).lower() == wanted["level"]
        and entry.get("objectId") == wanted["objectId"]
    )


def summary(entry: Mapping[str, Any], tenant_url_prefix: str) -> dict[str, Any]:
    return {
        "id": entry.get("id"),
        "url": entry.get("url"),
        "type": entry.get("type"),
        "level": entry.get("level"),
        "objectId": entry.get("objectId"),
        "active": not entry.get("inactiveFlag", False),
        "this_tenant": str(entry.get("url", "")).startswith(tenant_url_prefix),
    }


async def _with_client(args: argparse.Namespace, action: str) -> int:
    from services.poller.connectwise import ConnectWiseClient, ConnectWiseError
    from services.poller.tenants import TenantConfigError, connection_for, load_config

    try:
        config = load_config(args.config)
        tenant = next((t for t in config.tenants if t.id == args.tenant), None)
        if tenant is None:
            known = [t.id for t in config.tenants]
            print(
                f"callbacks: tenant {args.tenant!r} is not in {args.config} (tenants: {known})",
                file=sys.stderr,
            )
            return 2
        connection = connection_for(tenant, base_dir=config.base_dir)
    except (TenantConfigError, ValueError, OSError) as error:
        print(f"callbacks: invalid configuration: {error}", file=sys.stderr)
        return 2
    async with ConnectWiseClient(connection, tenant_id=tenant.id) as client:
        try:
            if action == "register":
                return await _register(client, args)
            return await _list(client, args)
        except ConnectWiseError as error:
            print(f"callbacks: ConnectWise refused or failed: {error}", file=sys.stderr)
            return 1


async def _entries(client: Any) -> list[dict[str, Any]]:
    fields = ("id", "url", "objectId", "type", "level", "inactiveFlag")
    return [{name: getattr(entry, name) for name in fields} async for entry in client.list_callbacks()]


async def _register(client: Any, args: argparse.Namespace) -> int:
    from services.poller.connectwise import ConnectWiseError

    wanted = desired_entry(args.url, args.tenant)
    existing = next((e for e in await _entries(client) if same_callback(e, wanted)), None)
    if existing is None:
        try:
            created = await client.create_callback(
                wanted["url"],
                type=wanted["type"],
                level=wanted["level"],
                object_id=wanted["objectId"],
                description=wanted["description"],
            )
            existing = {"id": created.id, **wanted, "inactiveFlag": created.inactiveFlag}
            state = "registered"
        except ConnectWiseError as error:  # registered meanwhile by someone else: fine
            if not any(e.get("code") == "ObjectExists" for e in error.errors):
                raise
            existing = next(e for e in await _entries(client) if same_callback(e, wanted))
            state = "already registered"
    else:
        state = "already registered"
    line = summary(existing, endpoint_url(args.url, args.tenant))
    print(json.dumps({"result": state, **line}) if args.json else f"{state}: {_row(line)}")
    return 0


async def _list(client: Any, args: argparse.Namespace) -> int:
    prefix = endpoint_url(args.url, args.tenant) if args.url else f"/callbacks/{args.tenant}"
    rows = []
    for entry in await _entries(client):
        row = (
            summary(entry, prefix)
            if args.url
            else summary(entry, "") | {"this_tenant": str(entry.get("url", "")).endswith(prefix)}
        )
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no callbacks registered")
    for row in rows:
        print(_row(row))
    return 0


def _row(row: Mapping[str, Any]) -> str:
    mark = "*" if row["this_tenant"] else " "
    active = "active" if row["active"] else "inactive"
    return (
        f"{mark} id={row['id']} type={row['type']} level={row['level']} objectId={row['objectId']} "
        f"{active} url={row['url']}"
    )


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_with_client(args, args.callbacks_command))


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "callbacks",
        help="register / list the ConnectWise callbacks that wake the poller",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="callbacks_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, required=True, help="the poller's tenants TOML file")
    common.add_argument("--tenant", required=True, help="tenant id (its site and credentials are used)")
    common.add_argument("--json", action="store_true", help="print JSON")
    register = actions.add_parser(
        "register", parents=[common], help="register the agreement/owner callback unless it exists"
    )
    register.add_argument(
        "--url",
        required=True,
        help="base URL at which ConnectWise reaches the poller's callback endpoint, e.g. "
        "https://poller.example.com (the command appends /callbacks/<tenant>)",
    )
    register.set_defaults(func=run)
    listing = actions.add_parser("list", parents=[common], help="list every callback on the tenant's site")
    listing.add_argument("--url", default=None, help="base URL, to mark exactly this tenant's entries")
    listing.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="contract-sync")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))
