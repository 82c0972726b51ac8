"""The chaos suite's private Kafka + PostgreSQL.

The stack lives in its own directory with its own ports (never the shared 19092/15432), so
stopping its broker or database mid-stream affects no one else. Scenarios use distinct tenant ids
and topics of their own (`{tenant}.psa.agreements.v1`, ...), so one stack serves them all.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from devtools.stack import LocalStack
from devtools.stack.local import REPO_ROOT

log = logging.getLogger(__name__)

DEFAULT_DIR = REPO_ROOT / ".stack" / "chaos"
# Below the kernel's ephemeral range (32768-60999): while the broker is stopped, clients that keep
# reconnecting to 127.0.0.1:<port> can be handed that very port as their own source port (a TCP
# self-connect), and the restarted broker then fails with "Address already in use".
DEFAULT_KAFKA_PORT = 29192
DEFAULT_CONTROLLER_PORT = 29193
DEFAULT_PG_PORT = 29432


def private_stack(directory: Path | None = None) -> LocalStack:
    """The chaos stack: `CHAOS_STACK_DIR`, `CHAOS_KAFKA_PORT`, `CHAOS_CONTROLLER_PORT`, `CHAOS_PG_PORT`."""
    env = os.environ
    return LocalStack(
        directory or Path(env.get("CHAOS_STACK_DIR") or DEFAULT_DIR),
        kafka_port=int(env.get("CHAOS_KAFKA_PORT") or DEFAULT_KAFKA_PORT),
        controller_port=int(env.get("CHAOS_CONTROLLER_PORT") or DEFAULT_CONTROLLER_PORT),
        pg_port=int(env.get("CHAOS_PG_PORT") or DEFAULT_PG_PORT),
        report=lambda line: log.info("stack: %s", line),
    )
