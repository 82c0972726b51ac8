"""The one exception the local stack raises."""

from __future__ import annotations


class StackError(RuntimeError):
    """A local service could not be prepared, started, reached or stopped.

    The message says what failed and, for start-up failures, carries the tail of the
    service's log; it never contains credentials (the local stack has none).
    """
