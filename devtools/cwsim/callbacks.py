"""Callbacks (webhooks): registration rules, payload and signature (docs/connectwise.md#callbacks), async delivery.

Pure parts: `validate_entry`, `matches`, `build_payload`, `sign`. `Dispatcher` is the adapter: it
queues deliveries without blocking and POSTs them from the event loop with ConnectWise's retry policy
(retry on 404/409/419/429 and on transport errors after 2 s then 4 s; 5 s timeout; any 2xx = success).
A delivery failure is logged and recorded, never raised into the data change that caused it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from devtools.cwsim.store import Change

log = logging.getLogger(__name__)

# type -> accepted levels (lower-case, as clients send them)
LEVELS: dict[str, tuple[str, ...]] = {
    "agreement": ("owner", "type", "company", "agreement"),
    "company": ("owner", "company"),
}
RETRY_STATUSES = frozenset({404, 409, 419, 429})
RETRY_DELAYS_S = (2.0, 4.0)
DELIVERY_TIMEOUT_S = 5.0


class CallbackError(ValueError):
    """An invalid callback registration; `errors` are ConnectWise ValidationError dicts."""

    def __init__(self, message: str, errors: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


def _invalid(code: str, message: str, field_name: str) -> CallbackError:
    return CallbackError(
        "callback object is invalid",
        [{"code": code, "message": message, "resource": "callback", "field": field_name}],
    )


def validate_entry(body: Mapping[str, Any], existing: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Check a CallbackEntry POST body; returns the writable fields normalised. Raises CallbackError
    (MissingRequiredField / InvalidField / ObjectExists) like the real API."""
    for name in ("url", "objectId", "type", "level"):
        if body.get(name) in (None, ""):
            raise _invalid("MissingRequiredField", f"The {name} field is required.", name)
    url = str(body["url"])
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid("InvalidField", "Invalid URL", "url")
    try:
        object_id = int(body["objectId"])
    except (TypeError, ValueError):
        raise _invalid("InvalidField", "objectId must be an integer", "objectId") from None
    kind = str(body["type"]).strip().lower()
    level = str(body["level"]).strip().lower()
    if kind not in LEVELS:
        raise _invalid("InvalidField", f"Unrecognized type, {body['type']}", "type")
    if level not in LEVELS[kind]:
        raise _invalid("InvalidField", f"Unrecognized level for type, {body['level']}", "level")
    description = body.get("description")
    if description is not None and len(str(description)) > 100:
        raise _invalid("InvalidField", "description must be at most 100 characters", "description")
    for other in existing:
        if (
            other["url"] == url
            and other["type"].lower() == kind
            and other["level"].lower() == level
            and other["objectId"] == object_id
        ):
            raise CallbackError(
                "callback object is invalid",
                [
                    {
                        "code": "ObjectExists",
                        "message": "A matching callback entry already exists",
                        "resource": "callback",
                        "field": "objectId",
                    }
                ],
            )
    entry: dict[str, Any] = {"url": url, "objectId": object_id, "type": kind, "level": level}
    if description is not None:
        entry["description"] = str(description)
    entry["inactiveFlag"] = bool(body.get("inactiveFlag", False))
    entry["payloadVersion"] = str(body.get("payloadVersion") or "3.0.0")
    entry["isSelfSuppressedFlag"] = bool(body.get("isSelfSuppressedFlag", False))
    return entry


def matches(entry: Mapping[str, Any], change: Change) -> bool:
    """Does a registered callback fire for this change? (Additions fire nothing: no such callback type.)"""
    if entry.get("inactiveFlag") or change.type != entry["type"]:
        return False
    level, object_id = entry["level"], entry["objectId"]
    if level == "owner":
        return True
    if change.type == "company":
        return bool(level == "company" and object_id == change.id)
    if level == "agreement":
        return bool(object_id == change.id)
    entity = change.entity or change.agreement or {}  # a delete matches on the record's last state
    if level == "type":
        return bool(entity.get("type", {}).get("id") == object_id)
    if level == "company":
        return bool(entity.get("company", {}).get("id") == object_id)
    return False


def sign(body: bytes, signing_key: str) -> str:
    """`x-content-signature`: base64(HMAC-SHA256(key = SHA256(signing_key) digest, msg = raw body))."""
    key = hashlib.sha256(signing_key.encode()).digest()
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def delivery_url(url: str, record_id: int) -> str:
    """ConnectWise appends the record id to URLs ending in `=` (e.g. `...?recordId=`)."""
    return f"{url}{record_id}" if url.endswith("=") else url


def build_payload(
    *, entry: Mapping[str, Any], change: Change, company_id: str, from_host: str, key_url: str
) -> bytes:
    """The JSON body ConnectWise POSTs: PascalCase keys, `Entity` a JSON string (null on delete)."""
    payload = {
        "Action": change.action,
        "CallbackObjectRecId": entry["id"],
        "CompanyId": company_id,
        "Entity": None if change.entity is None else orjson.dumps(change.entity).decode(),
        "FromUrl": from_host,
        "ID": change.id,
        "MemberId": change.member,
        "MessageId": str(uuid.uuid4()),
        "Metadata": {"key_url": key_url},
        "PartnerId": "cwsim-partner",
        "ProductInstanceId": "cwsim-instance",
        "Type": change.type,
    }
    return orjson.dumps(payload)


@dataclass
class Delivery:
    callback_id: int
    url: str
    action: str
    record_id: int
    type: str
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    delivered: bool = False
    done: bool = False

    def view(self) -> dict[str, Any]:
        return {
            "callback_id": self.callback_id,
            "url": self.url,
            "type": self.type,
            "action": self.action,
            "id": self.record_id,
            "attempts": self.attempts,
            "status": self.status,
            "error": self.error,
            "delivered": self.delivered,
            "done": self.done,
        }


@dataclass
class Dispatcher:
    """Fire-and-forget delivery of signed callbacks from the running event loop; deliveries to one
    registered callback go out in the order the changes happened, different callbacks in parallel."""

    signing_key: str
    company_id: str
    client_id: str
    retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S
    timeout_s: float = DELIVERY_TIMEOUT_S
    log_size: int = 1000
    deliveries: deque[Delivery] = field(default_factory=deque)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _last: dict[int, asyncio.Task[None]] = field(
        default_factory=dict
    )  # per callback: deliveries stay in order
    _client: httpx.AsyncClient | None = None

    def submit(self, entry: Mapping[str, Any], change: Change, from_host: str, key_url: str) -> None:
        """Queue one delivery; returns at once and never raises."""
        try:
            body = build_payload(
                entry=entry, change=change, company_id=self.company_id, from_host=from_host, key_url=key_url
            )
            delivery = Delivery(
                entry["id"], delivery_url(entry["url"], change.id), change.action, change.id, change.type
            )
            self.deliveries.append(delivery)
            while len(self.deliveries) > self.log_size:
                self.deliveries.popleft()
            previous = self._last.get(entry["id"])
            task = asyncio.get_running_loop().create_task(self._deliver(delivery, body, previous))
            self._tasks.add(task)
            self._last[entry["id"]] = task
            task.add_done_callback(self._forget)
        except Exception:
            log.exception("could not queue callback delivery")

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        for key, last in list(self._last.items()):
            if last is task:
                del self._last[key]

    async def _deliver(self, delivery: Delivery, body: bytes, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])  # one callback's deliveries go out in change order
        headers = {
            "content-type": "application/json",
            "x-content-signature": sign(body, self.signing_key),
            "user-agent": "ConnectWise-Callback-Simulator",
        }
        try:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
            for attempt, delay in enumerate((0.0, *self.retry_delays_s)):
                if delay:
                    await asyncio.sleep(delay)
                delivery.attempts = attempt + 1
                try:
                    response = await self._client.post(delivery.url, content=body, headers=headers)
                except httpx.HTTPError as error:
                    delivery.error = type(error).__name__
                    delivery.status = None
                    continue
                delivery.status = response.status_code
                delivery.error = None
                if response.is_success:
                    delivery.delivered = True
                    return
                if response.status_code not in RETRY_STATUSES:
                    return
            log.warning(
                "callback delivery failed callback_id=%s status=%s error=%s",
                delivery.callback_id,
                delivery.status,
                delivery.error,
            )
        except Exception:
            log.exception("callback delivery crashed callback_id=%s", delivery.callback_id)
        finally:
            delivery.done = True

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
