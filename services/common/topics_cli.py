"""`contract-sync topics ensure|list`: create every registry topic idempotently, or list them."""

from __future__ import annotations

import argparse
import asyncio

from schemas.topics import TOPICS
from services.common.kafka import ensure_topics
from services.common.settings import KafkaSettings


def _ensure(args: argparse.Namespace) -> int:
    settings = KafkaSettings()
    created = asyncio.run(ensure_topics(settings, partitions=args.partitions))
    for spec in TOPICS:
        state = "created" if spec.name in created else "exists"
        print(f"{spec.name:<24} {state:<8} partitions={args.partitions or spec.partitions} {spec.config}")
    return 0


def _list(_: argparse.Namespace) -> int:
    for spec in TOPICS:
        types = ", ".join(t.model_fields["type"].default for t in spec.message_types) or "(original bytes)"
        print(f"{spec.name:<24} {spec.description}\n{'':<24} types: {types}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("topics", help="Kafka topics of the wire contract")
    actions = parser.add_subparsers(dest="action", required=True)
    ensure = actions.add_parser("ensure", help="create every topic that is missing (idempotent)")
    ensure.add_argument(
        "--partitions", type=int, default=None, help="override the registry's partition count"
    )
    ensure.set_defaults(func=_ensure)
    actions.add_parser("list", help="list the topics and their message types").set_defaults(func=_list)
