"""The local development stack: a real Kafka broker and PostgreSQL server under `.stack/`.

Public API: `LocalStack`, `Endpoints`, `ComponentStatus`, `StackError`. The CLI is
`contract-sync stack up | down | status | env` (devtools.stack.cli).
"""

from devtools.stack.errors import StackError
from devtools.stack.local import ComponentStatus, Endpoints, LocalStack, resolve_settings

__all__ = ["ComponentStatus", "Endpoints", "LocalStack", "StackError", "resolve_settings"]
