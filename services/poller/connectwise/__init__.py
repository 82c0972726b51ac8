"""ConnectWise Manage API client for the poller.

Public names: `ConnectWiseClient`, `ConnectWiseConnection`, the `conditions` builder module
(`from services.poller.connectwise import conditions as cond`), `Paging`, the models and the
error tree (see `errors`). Guide: docs/connectwise-client.md.
"""

from services.poller.connectwise import conditions
from services.poller.connectwise.client import ConnectWiseClient, render_order_by
from services.poller.connectwise.conditions import Condition, ConditionError
from services.poller.connectwise.config import DEFAULT_API_VERSION, ConnectWiseConnection
from services.poller.connectwise.errors import (
    ConnectWiseAuthenticationError,
    ConnectWiseBadRequestError,
    ConnectWiseError,
    ConnectWiseForeignNotFoundError,
    ConnectWiseNotFoundError,
    ConnectWisePermissionError,
    ConnectWiseProtocolError,
    ConnectWiseServerError,
    ConnectWiseThrottledError,
    ConnectWiseTransportError,
    permission_for_path,
)
from services.poller.connectwise.models import (
    Addition,
    Agreement,
    CallbackEntry,
    Company,
    CompanyInfo,
    Reference,
    SystemInfo,
)
from services.poller.connectwise.paging import MAX_PAGE_SIZE, Paging
from services.poller.connectwise.ratelimit import TokenBucket
from services.poller.connectwise.retry import RetryPolicy, parse_retry_after
from services.poller.connectwise.stats import ClientStats, StatsSnapshot

__all__ = [
    "DEFAULT_API_VERSION",
    "MAX_PAGE_SIZE",
    "Addition",
    "Agreement",
    "CallbackEntry",
    "ClientStats",
    "Company",
    "CompanyInfo",
    "Condition",
    "ConditionError",
    "ConnectWiseAuthenticationError",
    "ConnectWiseBadRequestError",
    "ConnectWiseClient",
    "ConnectWiseConnection",
    "ConnectWiseError",
    "ConnectWiseForeignNotFoundError",
    "ConnectWiseNotFoundError",
    "ConnectWisePermissionError",
    "ConnectWiseProtocolError",
    "ConnectWiseServerError",
    "ConnectWiseThrottledError",
    "ConnectWiseTransportError",
    "Paging",
    "Reference",
    "RetryPolicy",
    "StatsSnapshot",
    "SystemInfo",
    "TokenBucket",
    "conditions",
    "parse_retry_after",
    "permission_for_path",
    "render_order_by",
]
