"""`contract-sync command select|auto-sync|refresh|edit`: publish the same commands a UI publishes.

Uses only the wire contract: one CloudEvent on `sync.commands.v1`, keyed by the client. Prints
the command id, which every resulting event carries as `correlationid`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json

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
from schemas.envelope import CloudEvent
from schemas.topics import SYNC_COMMANDS
from services.common.kafka import new_producer, publish
from services.common.settings import KafkaSettings

SOURCE = "contract-sync/cli"


def _ids(text: str | None) -> list[int]:
    return [int(part) for part in (text or "").split(",") if part.strip()]


def build_command(args: argparse.Namespace) -> CloudEvent:
    """The command event the arguments describe (pure)."""
    common = {"tenant_id": args.tenant, "client_id": args.client, "requested_by": args.requested_by}
    if args.action == "select":
        data = SelectData(**common, agreement_ids=_ids(args.agreements), addition_ids=_ids(args.additions))
        return SelectCommand.build(data, source=SOURCE)
    if args.action == "auto-sync":
        return SetAutoSyncCommand.build(SetAutoSyncData(**common, enabled=args.state == "on"), source=SOURCE)
    if args.action == "refresh":
        return RefreshCommand.build(RefreshData(**common), source=SOURCE)
    changes = json.loads(args.changes) if args.changes else {}
    for pair in args.set or []:
        field, _, value = pair.partition("=")
        changes[field] = value
    return EditCommand.build(EditData(**common, contract_id=args.contract, changes=changes), source=SOURCE)


async def send_command(command: CloudEvent, settings: KafkaSettings | None = None) -> None:
    producer = new_producer(settings or KafkaSettings())
    await producer.start()
    try:
        await publish(producer, SYNC_COMMANDS, command)
    finally:
        await producer.stop()


def _run(args: argparse.Namespace) -> int:
    command = build_command(args)
    asyncio.run(send_command(command))
    if args.json:
        print(command.to_bytes().decode())
    else:
        print(f"published {command.type} id={command.id} subject={command.subject}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("command", help="publish a sync command, as a UI would")
    actions = parser.add_subparsers(dest="action", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--tenant", required=True)
        sub.add_argument("--client", required=True)
        sub.add_argument("--requested-by", default=getpass.getuser())
        sub.add_argument("--json", action="store_true", help="print the published CloudEvent")
        sub.set_defaults(func=_run)

    select = actions.add_parser("select", help="import/update these agreements and additions now")
    select.add_argument("--agreements", help="comma-separated agreement ids")
    select.add_argument("--additions", help="comma-separated addition ids")
    common(select)
    auto = actions.add_parser("auto-sync", help="turn auto-sync on or off for a client")
    auto.add_argument("state", choices=["on", "off"])
    common(auto)
    common(actions.add_parser("refresh", help="re-read a client from ConnectWise now"))
    edit = actions.add_parser("edit", help="edit a contract locally")
    edit.add_argument("--contract", required=True, help="contract key, e.g. cw:acme:agreement:1234")
    edit.add_argument(
        "--set", action="append", metavar="FIELD=VALUE", help="a string field value (repeatable)"
    )
    edit.add_argument("--changes", help='JSON object of changes, e.g. {"tags": ["vip"]}')
    common(edit)
