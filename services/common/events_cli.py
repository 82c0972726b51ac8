"""`contract-sync events [--follow] [--json]`: read `sync.events.v1` as a dashboard would.

Reads from the beginning (or only new events with `--from-now`) without a consumer group,
so it never disturbs a service's offsets. Filters by tenant/client/type.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from schemas.topics import SYNC_EVENTS, parse
from services.common.kafka import new_consumer
from services.common.settings import KafkaSettings


def summarize(event: dict[str, Any]) -> str:
    """One human line for a sync event (pure)."""
    data = event.get("data", {})
    detail = {k: v for k, v in data.items() if k not in ("tenant_id", "client_id")}
    text = ", ".join(f"{k}={v}" for k, v in detail.items())
    return f"{event.get('time', '')[:23]}  {event.get('type', '?'):<24} {event.get('subject', ''):<20} {text}"


async def read_events(
    settings: KafkaSettings,
    *,
    follow: bool,
    from_now: bool = False,
    idle_timeout: float = 2.0,
) -> AsyncIterator[dict[str, Any]]:
    """Yield sync events (as dicts) in partition order; stops after `idle_timeout` s of silence unless following."""
    consumer = new_consumer(
        settings, SYNC_EVENTS, group_id=None, auto_offset_reset="latest" if from_now else "earliest"
    )
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_timeout * 1000), max_records=1000)
            if not batch and not follow:
                return
            for records in batch.values():
                for record in records:
                    try:
                        yield json.loads(parse(SYNC_EVENTS, record.value or b"").to_bytes())
                    except ValidationError:
                        continue
    finally:
        await consumer.stop()


def _matches(event: dict[str, Any], args: argparse.Namespace) -> bool:
    subject = str(event.get("subject", ""))
    tenant, _, client = subject.partition(":")
    return (
        (not args.tenant or tenant == args.tenant)
        and (not args.client or client in (args.client, "*"))
        and (not args.type or str(event.get("type", "")).startswith(args.type))
    )


async def _tail(args: argparse.Namespace) -> None:
    async for event in read_events(KafkaSettings(), follow=args.follow, from_now=args.from_now):
        if _matches(event, args):
            print(json.dumps(event) if args.json else summarize(event), flush=True)


def _run(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(args))
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("events", help="read the sync events dashboards see")
    parser.add_argument("--follow", "-f", action="store_true", help="keep reading new events")
    parser.add_argument("--from-now", action="store_true", help="only events published from now on")
    parser.add_argument("--json", action="store_true", help="one CloudEvent JSON per line")
    parser.add_argument("--tenant")
    parser.add_argument("--client")
    parser.add_argument("--type", help="type prefix, e.g. sync.contracts")
    parser.set_defaults(func=_run)
