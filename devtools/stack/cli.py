"""`contract-sync stack up | down | status | env`: run the local Kafka + PostgreSQL.

The stack directory (`--dir`, env CONTRACT_SYNC_STACK_DIR, default <repo>/.stack) is the one setting
that tells stacks apart: `up` in any other directory picks free ports itself (unless given) and
records them in `<dir>/ports.json`; `status`/`down` use the recorded ports; `env` prints the
endpoints from `<dir>/stack.env`. Given ports (options or CONTRACT_SYNC_*_PORT) always win.

Exit codes: 0 success (for `status`: both running); 1 a start/stop failed (the message
and the log tail are printed to stderr), or `env` found no stack.env; 3 `status` found a
component stopped.
"""

from __future__ import annotations

import argparse
import sys
import time

from devtools.stack.errors import StackError
from devtools.stack.local import (
    ENV_CONTROLLER_PORT,
    ENV_DIR,
    ENV_KAFKA_PORT,
    ENV_PG_PORT,
    LocalStack,
    read_env_file,
    stack_directory,
)

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
        secure=getattr(args, "secure", False),
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
    """Print `export NAME=value` lines for `eval "$(contract-sync stack env)"`: the endpoints the stack
    in the chosen directory recorded in its `stack.env` when it started (exit 1 when it never did)."""
    directory = stack_directory(args.dir)
    try:
        values = read_env_file(directory)
    except StackError as error:
        print(f"stack env failed: {error}", file=sys.stderr, flush=True)
        return 1
    for name, value in values.items():
        _say(f"export {name}={value}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--dir",
        default=None,
        help=f"stack directory (env {ENV_DIR}; default <repo>/.stack); the one setting a second stack needs",
    )
    common = argparse.ArgumentParser(add_help=False, parents=[where])
    ports_note = "given > recorded in <dir>/ports.json > default"
    common.add_argument(
        "--kafka-port",
        type=int,
        default=None,
        help=f"Kafka port (env {ENV_KAFKA_PORT}; {ports_note}: 19092 in <repo>/.stack, else a free port)",
    )
    common.add_argument(
        "--controller-port",
        type=int,
        default=None,
        help=f"KRaft controller port (env {ENV_CONTROLLER_PORT}; {ports_note}: 19093 in <repo>/.stack, else a free port)",
    )
    common.add_argument(
        "--pg-port",
        type=int,
        default=None,
        help=f"PostgreSQL port (env {ENV_PG_PORT}; {ports_note}: 15432 in <repo>/.stack, else a free port)",
    )

    parser = subparsers.add_parser(
        "stack",
        help="run the local Kafka broker and PostgreSQL server",
        description="Run a local Kafka + PostgreSQL under one directory. A second stack needs only "
        "another directory (--dir or CONTRACT_SYNC_STACK_DIR): it picks free ports and records them.",
    )
    actions = parser.add_subparsers(dest="stack_command", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up", parents=[common], help="start both (idempotent); record ports.json and stack.env"
    )
    up.add_argument(
        "--timeout", type=float, default=180.0, help="readiness deadline in seconds (default 180)"
    )
    up.add_argument(
        "--secure",
        action="store_true",
        help="a secured broker: SASL_SSL (SCRAM-SHA-512, a CA and broker certificate under <dir>/tls), "
        "the StandardAuthorizer with one user and the ACLs per service (only for a new directory; "
        "later starts of that directory stay secured)",
    )
    up.set_defaults(func=run_up)
    actions.add_parser("down", parents=[common], help="stop what the stack started").set_defaults(
        func=run_down
    )
    actions.add_parser(
        "status", parents=[common], help="print each component; exit 0 if all running else 3"
    ).set_defaults(func=run_status)
    actions.add_parser(
        "env", parents=[where], help="print export lines for the endpoints in <dir>/stack.env"
    ).set_defaults(func=run_env)
