"""`contract-sync stack up | down | status | env`: run the local Kafka + PostgreSQL.

Exit codes: 0 success (for `status`: both running); 1 a start/stop failed (the message
and the log tail are printed to stderr); 3 `status` found a component stopped.
"""

from __future__ import annotations

import argparse
import sys
import time

from services.stack.errors import StackError
from services.stack.local import ENV_CONTROLLER_PORT, ENV_DIR, ENV_KAFKA_PORT, ENV_PG_PORT, LocalStack

EXIT_NOT_RUNNING = 3


def _say(line: str) -> None:
    print(line, flush=True)


def _stack(args: argparse.Namespace) -> LocalStack:
    return LocalStack(
        args.dir,
        kafka_port=args.kafka_port,
        controller_port=args.controller_port,
        pg_port=args.pg_port,
        report=_say,
    )


def run_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        _stack(args).up(timeout_s=args.timeout)
    except StackError as error:
        print(f"stack up failed: {error}", file=sys.stderr, flush=True)
        return 1
    _say(f"stack up in {time.monotonic() - started:.1f} s")
    return 0


def run_down(args: argparse.Namespace) -> int:
    try:
        _stack(args).down()
    except StackError as error:
        print(f"stack down failed: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


def run_status(args: argparse.Namespace) -> int:
    components = _stack(args).status()
    for component in components:
        state = "running" if component.running else "stopped"
        pid = f"pid {component.pid}" if component.pid else "-"
        _say(f"{component.name:<9} {state:<8} {pid:<11} {component.endpoint}")
    return 0 if all(c.running for c in components) else EXIT_NOT_RUNNING


def run_env(args: argparse.Namespace) -> int:
    """Print `export NAME=value` lines for `eval "$(contract-sync stack env)"`."""
    endpoints = _stack(args).endpoints
    _say(f"export KAFKA_BOOTSTRAP_SERVERS={endpoints.kafka_bootstrap}")
    _say(f"export DATABASE_URL={endpoints.database_url}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=None, help=f"stack directory (env {ENV_DIR}; default <repo>/.stack)")
    common.add_argument(
        "--kafka-port", type=int, default=None, help=f"Kafka port (env {ENV_KAFKA_PORT}; 19092)"
    )
    common.add_argument(
        "--controller-port",
        type=int,
        default=None,
        help=f"KRaft controller port (env {ENV_CONTROLLER_PORT}; 19093)",
    )
    common.add_argument(
        "--pg-port", type=int, default=None, help=f"PostgreSQL port (env {ENV_PG_PORT}; 15432)"
    )

    parser = subparsers.add_parser("stack", help="run the local Kafka broker and PostgreSQL server")
    actions = parser.add_subparsers(dest="stack_command", metavar="ACTION", required=True)
    up = actions.add_parser("up", parents=[common], help="start both (idempotent) and write stack.env")
    up.add_argument(
        "--timeout", type=float, default=180.0, help="readiness deadline in seconds (default 180)"
    )
    up.set_defaults(func=run_up)
    actions.add_parser("down", parents=[common], help="stop what the stack started").set_defaults(
        func=run_down
    )
    actions.add_parser(
        "status", parents=[common], help="print each component; exit 0 if all running else 3"
    ).set_defaults(func=run_status)
    actions.add_parser("env", parents=[common], help="print export lines for the endpoints").set_defaults(
        func=run_env
    )
