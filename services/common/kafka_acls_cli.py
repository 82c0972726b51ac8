"""`contract-sync kafka acls`: the per-service Kafka principals' ACLs, derived from the topic registry.

Prints them as `kafka-acls.sh` commands (default) or Strimzi `KafkaUser` resources, or adds them to a
cluster (`--apply`) with an admin principal's client properties through the Kafka CLI of the local
stack's jars. Exit codes: 0 done; 1 `--apply` was refused (the CLI's error is printed).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from services.common.kafka_acls import (
    SERVICES,
    acl_bindings,
    apply_with_cli,
    kafka_acls_commands,
    strimzi_users,
)

DEFAULT_LIBS = Path(__file__).resolve().parents[2] / ".stack" / "kafka" / "libs"


def _acls(args: argparse.Namespace) -> int:
    bindings = acl_bindings(services=args.service or SERVICES)
    if args.apply:
        if not args.command_config:
            print("--apply needs --command-config (the admin principal's client properties)", file=sys.stderr)
            return 1
        try:
            apply_with_cli(
                bindings,
                bootstrap=args.bootstrap_server,
                command_config=Path(args.command_config),
                libs=Path(args.libs),
            )
        except subprocess.CalledProcessError as error:
            print(f"kafka acls --apply failed: {error.stderr.strip()[-2000:]}", file=sys.stderr)
            return 1
        print(f"{len(bindings)} ACLs present on {args.bootstrap_server}")
        return 0
    if args.format == "strimzi":
        print(
            yaml.safe_dump_all(
                strimzi_users(bindings, cluster=args.cluster, namespace=args.namespace), sort_keys=False
            ),
            end="",
        )
    else:
        print(
            "\n".join(
                kafka_acls_commands(
                    bindings, args.bootstrap_server, args.command_config or "admin.properties"
                )
            )
        )
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("kafka", help="Kafka identities and ACLs")
    actions = parser.add_subparsers(dest="action", required=True)
    acls = actions.add_parser(
        "acls", help="print (or --apply) the services' ACLs, derived from schemas/topics.py"
    )
    acls.add_argument("--format", choices=("commands", "strimzi"), default="commands")
    acls.add_argument("--service", action="append", choices=SERVICES, help="only this service (repeatable)")
    acls.add_argument("--bootstrap-server", default="<bootstrap>", help="for the commands and --apply")
    acls.add_argument(
        "--command-config", default=None, help="admin client properties (for the commands, --apply)"
    )
    acls.add_argument("--cluster", default="my-cluster", help="Strimzi cluster label of the KafkaUsers")
    acls.add_argument("--namespace", default=None, help="namespace of the KafkaUsers")
    acls.add_argument("--apply", action="store_true", help="add them with the Kafka CLI (idempotent)")
    acls.add_argument(
        "--libs", default=str(DEFAULT_LIBS), help="directory of the Kafka jars (default .stack/kafka/libs)"
    )
    acls.set_defaults(func=_acls)
