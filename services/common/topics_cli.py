"""`contract-sync topics ensure|list`: create every registry topic idempotently (replication factor and
`min.insync.replicas` from `KAFKA_TOPIC_*` settings), correct config drift and report replication or
partition drift of existing topics (exit 2), or list them."""

from __future__ import annotations

import argparse
import asyncio

from schemas.topics import TOPICS
from services.common.kafka import reconcile_topics
from services.common.settings import KafkaSettings


def _ensure(args: argparse.Namespace) -> int:
    """Create missing topics, correct config drift, report replication/partition drift (exit 2)."""
    settings = KafkaSettings()
    created, drifts = asyncio.run(
        reconcile_topics(settings, partitions=args.partitions, apply_config=not args.check)
    )
    by_topic = {d.topic: d for d in drifts}
    unfixable = False
    for spec in TOPICS:
        state = "created" if spec.name in created else "exists"
        rf = max(spec.replication_factor, settings.topic_replication_factor)
        print(f"{spec.name:<24} {state:<8} partitions={args.partitions or spec.partitions} replicas={rf}")
        drift = by_topic.get(spec.name)
        for line in drift.describe() if drift else []:
            print(f"{'':<24} drift: {line}")
        if drift and (drift.config and not args.check):
            print(f"{'':<24} config corrected")
        if drift and (drift.partitions or drift.replication_factor or (args.check and drift.config)):
            unfixable = True
    return 2 if unfixable else 0


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
    ensure.add_argument(
        "--check", action="store_true", help="report drift without correcting the config (exit 2 on drift)"
    )
    ensure.set_defaults(func=_ensure)
    actions.add_parser("list", help="list the topics and their message types").set_defaults(func=_list)
