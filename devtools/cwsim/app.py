"""The simulator's ASGI application: ConnectWise paths (raw ASGI, hot path) plus the `/_sim` control API.

ConnectWise requests go through, in order: fault injection (latency, spikes, timeouts, 5xx) -> auth
(forced 401/403 periods, Basic `company+public:private`, `clientId` header) -> the per-minute budget
(429 + Retry-After) -> the route (with its security-role permission, 403 when missing). Every answer
is recorded in the request statistics. The control API (`/_sim/...`, Starlette, JSON, no ConnectWise
auth) changes data, the clock, faults, budget and permissions, and reads statistics.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import hmac
import itertools
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from devtools.cwsim.callbacks import CallbackError, Dispatcher, matches, validate_entry
from devtools.cwsim.clock import SimClock
from devtools.cwsim.conditions import ConditionError
from devtools.cwsim.faults import PERMISSIONS, Budget, FaultDice, Faults, Permissions, Stats
from devtools.cwsim.generator import GeneratorSettings
from devtools.cwsim.query import (
    QueryError,
    forward_only_links,
    link_header,
    navigable_links,
    page_slice,
    parse_fields,
    parse_paging,
    project,
)
from devtools.cwsim.store import Change, Collection, Store

log = logging.getLogger(__name__)


API_VERSION = "2025.8"
_PARAM_NAMES = {
    n.lower(): n
    for n in (
        "conditions",
        "childConditions",
        "customFieldConditions",
        "orderBy",
        "fields",
        "page",
        "pageSize",
        "pageId",
        "columns",
    )
}


@dataclass(frozen=True)
class SimConfig:
    """Everything a simulator instance is configured with. Secrets never appear in `public_view()`."""

    company_id: str = "simco"
    public_key: str = "cwsimPublicKey01"
    private_key: str = "cwsimPrivateKey01"
    client_id: str = "8b9c6f6e-3f57-4d2a-9c3e-6b8d1d2f7a10"
    codebase: str = "v4_6_release"
    public_url: str = "http://127.0.0.1:8089"  # site root as clients reach it (hrefs, Link, key_url)
    seed: int = 1
    companies: int = 20
    agreements_per_company: int = 5
    additions_per_agreement: int = 4
    anchor: date | None = None  # generated data's "today"; None = the simulator clock's date at start
    requests_per_minute: int = 0  # 0 = no throttling
    fault_seed: int = 0

    def generator_settings(self, anchor: date) -> GeneratorSettings:
        return GeneratorSettings(
            seed=self.seed,
            companies=self.companies,
            agreements_per_company=self.agreements_per_company,
            additions_per_agreement=self.additions_per_agreement,
            anchor=self.anchor or anchor,
            href_base=f"{self.public_url.rstrip('/')}/{self.codebase}/apis/3.0",
        )

    def public_view(self) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "codebase": self.codebase,
            "public_url": self.public_url,
            "api_base_url": f"{self.public_url.rstrip('/')}/{self.codebase}/apis/3.0",
            "seed": self.seed,
            "companies": self.companies,
            "agreements_per_company": self.agreements_per_company,
            "additions_per_agreement": self.additions_per_agreement,
            "anchor": self.anchor.isoformat() if self.anchor else None,
        }


def error_body(code: str, message: str, errors: list[dict[str, str]] | None = None) -> bytes:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return orjson.dumps(body)


@dataclass
class Answer:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    rows: int = 0


_PROXY_404_PAGE = (
    b"<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1><hr>nginx</body></html>"
)


def _by_id(path: str) -> bool:
    """Whether an API path names one record by its numeric id (`.../agreements/12`, `.../12/additions`)."""
    marker = path.lower().find("/apis/3.0")
    return marker >= 0 and any(seg.isdigit() for seg in path[marker + 9 :].split("/"))


def _not_found_endpoint() -> Answer:
    return Answer(404, error_body("ConnectWiseApi", "The endpoint does not exist."))


def _bad_request(message: str, resource: str, field_name: str) -> Answer:
    """400 for a malformed query parameter. The real body is UNCONFIRMED (docs/connectwise.md#unconfirmed-points); this
    uses the documented ErrorResponseMessage shape with one ValidationError naming the parameter."""
    return Answer(
        400,
        error_body(
            "InvalidObject",
            f"The {field_name} parameter is invalid: {message}",
            [{"code": "InvalidField", "message": message, "resource": resource, "field": field_name}],
        ),
    )


_BASE_HEADERS = [
    (b"content-type", b"application/json; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"pragma", b"no-cache"),
    (b"x-server-name", b"cwsim"),
    (b"api-current-version", API_VERSION.encode()),
]


@dataclass
class _Req:
    """The parts of a ConnectWise request the handlers need."""

    method: str
    path: str
    params: dict[str, str]
    forward_only: bool
    base: str  # scheme://host + path, for Link headers
    receive: Receive


class Simulator:
    """One simulator instance: state plus the ASGI callable (`simulator.asgi`)."""

    def __init__(self, config: SimConfig, clock: SimClock | None = None) -> None:
        self.config = config
        self.clock = clock or SimClock()
        self.store = Store(config.generator_settings(self.clock.now().date()), self.clock)
        self.faults = Faults()
        self.dice = FaultDice(config.fault_seed)
        self.budget = Budget(config.requests_per_minute)
        self.permissions = Permissions()
        self.stats = Stats()
        self.signing_key = secrets.token_urlsafe(32)
        self.key_id = (
            f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}"
        )
        self.dispatcher = Dispatcher(self.signing_key, config.company_id, config.client_id)
        self.store.listeners.append(self._on_change)
        self._good_auth: set[bytes] = set()
        self._request_ids = itertools.count(1)
        self._control = self._control_app()

    # -- ASGI -----------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        if scope["path"].startswith("/_sim"):
            await self._control(scope, receive, send)
            return
        await self._connectwise(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.dispatcher.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _connectwise(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        route, answer = "?", None
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers[name] = value
        faults = self.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if self.dice.roll(faults.spike_rate):
            await asyncio.sleep(faults.spike_ms / 1000)
        if self.dice.roll(faults.timeout_rate):
            self.stats.record("(dropped)", 0)
            await asyncio.sleep(faults.timeout_hang_s)
            await _drop_connection(send)
            return
        if self.dice.roll(faults.error_rate):
            answer = Answer(faults.error_status, error_body("ConnectWiseApi", "An error has occurred."))
            route = "(fault)"
        elif (
            faults.proxy_404_rate
            and scope["method"] == "GET"
            and _by_id(path)
            and self.dice.roll(faults.proxy_404_rate)
        ):
            answer = Answer(404, _PROXY_404_PAGE, [(b"content-type", b"text/html")])
            route = "(proxy 404)"
        lower = path.lower()
        if answer is None:
            if lower.startswith("/login/companyinfo/"):
                route, answer = "/login/companyinfo/{company}", self._company_info(path[19:].strip("/"))
            elif "/system/callbackkey/index.rails" in lower:
                route, answer = "/system/callbackkey", self._callback_key(scope)
            else:
                marker = lower.find("/apis/3.0")
                if marker < 0:
                    route, answer = "(unknown)", _not_found_endpoint()
                else:
                    try:
                        route, answer = await self._api(scope, receive, headers, path, marker)
                    except Exception:  # a simulator bug answers like a ConnectWise 500, and is logged
                        log.exception("unhandled error path=%s", path)
                        route = "(error)"
                        answer = Answer(500, error_body("ConnectWiseApi", "An error has occurred."))
        self.stats.record(route, answer.status)
        self.stats.rows_served += answer.rows
        own = {name for name, _ in answer.headers}
        out = [
            *(h for h in _BASE_HEADERS if h[0] not in own),
            (b"content-length", str(len(answer.body)).encode()),
            (b"x-cw-request-id", str(next(self._request_ids)).encode()),
            *answer.headers,
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": out})
        await send({"type": "http.response.body", "body": answer.body})

    async def _api(
        self, scope: Scope, receive: Receive, headers: dict[bytes, bytes], path: str, marker: int
    ) -> tuple[str, Answer]:
        resource = path[marker + len("/apis/3.0") :]
        raw_segments = [s for s in resource.split("/") if s]
        route = "/" + "/".join("{id}" if seg.isdigit() else seg for seg in raw_segments)
        auth = self._authenticate(headers)
        if auth is not None:
            return route, auth
        wait = self.budget.take()
        if wait:
            body = orjson.dumps(
                {
                    "error": "ConnectWiseAPI",
                    "message": f"Too many requests. Please try again in {wait} seconds.",
                }
            )
            return route, Answer(429, body, [(b"retry-after", str(wait).encode())])
        segments = [seg.lower() for seg in raw_segments]
        query = scope.get("query_string", b"").decode("latin-1")
        params: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            params[_PARAM_NAMES.get(key.lower(), key)] = value
        host = headers.get(b"host", b"localhost").decode("latin-1")
        scheme = scope.get("scheme", "http")
        req = _Req(
            method=scope["method"],
            path=path,
            params=params,
            forward_only=headers.get(b"pagination-type", b"").lower() == b"forward-only",
            base=f"{scheme}://{host}{path}",
            receive=receive,
        )
        return route, await self._route(segments, req)

    def _authenticate(self, headers: Mapping[bytes, bytes]) -> Answer | None:
        """None when the request may proceed, else the 401/403 answer. Never echoes credentials."""
        if self.faults.forced_401():
            return Answer(401, error_body("Unauthorized", "Authentication failed."))
        raw = headers.get(b"authorization", b"")
        client_id = headers.get(b"clientid", b"")
        if raw not in self._good_auth and not self._check_basic(raw):
            return Answer(401, error_body("Unauthorized", "Authentication failed."))
        if not client_id:
            return Answer(401, error_body("Unauthorized", "The clientId header is required."))
        if client_id.decode("latin-1").strip().lower() != self.config.client_id.lower():
            return Answer(401, error_body("Unauthorized", "The clientId is not recognised."))
        if self.faults.forced_403():
            return self._forbidden(None)
        return None

    def _check_basic(self, raw: bytes) -> bool:
        if raw[:6].lower() != b"basic ":
            return False
        try:
            decoded = base64.b64decode(raw[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, private = decoded.partition(":")
        company, plus, public = user.partition("+")
        if not sep or not plus:
            return False
        cfg = self.config
        company_ok = company.lower() == cfg.company_id.lower()
        public_ok = hmac.compare_digest(public.encode(), cfg.public_key.encode())
        private_ok = hmac.compare_digest(private.encode(), cfg.private_key.encode())
        ok = company_ok and public_ok and private_ok
        if ok:
            self._good_auth.add(raw)
        return ok

    @staticmethod
    def _forbidden(missing: str | None) -> Answer:
        """403. The real body is UNCONFIRMED; the documented {code, message} shape, naming the missing
        security-role permission when one is known."""
        message = "Improper security role settings for the supplied authentication."
        if missing:
            message += f" The API member's security role needs {missing}."
        return Answer(403, error_body("Forbidden", message))

    def _permission(self, permission: str) -> Answer | None:
        return None if self.permissions.allows(permission) else self._forbidden(PERMISSIONS[permission])

    # -- routing --------------------------------------------------------------------------------------
    async def _route(self, s: list[str], req: _Req) -> Answer:
        store = self.store
        n = len(s)
        if n >= 2 and s[0] == "finance" and s[1] == "agreements":
            if n >= 3 and s[2] == "types":
                return self._setup_table(
                    s[3:],
                    req,
                    store.agreement_types,
                    "agreementType",
                    "AgreementType",
                )
            denied = self._permission("finance_agreements")
            if n == 2:
                return denied or _only_get(req) or self._list(store.agreements, "agreement", req)
            if n == 3 and s[2] == "count":
                return denied or _only_get(req) or self._count(store.agreements, "agreement", req)
            agreement_id = _int(s[2])
            if agreement_id is None:
                return _not_found_endpoint()
            if agreement_id in self.faults.missing_agreements:
                return denied or Answer(404, error_body("NotFound", f"Agreement {agreement_id} not found"))
            if n == 3:
                return (
                    denied
                    or _only_get(req)
                    or self._one(store.agreements, agreement_id, "agreement", "Agreement", req)
                )
            if s[3] != "additions" or n > 5:
                return _not_found_endpoint()
            if denied or (denied := _only_get(req)):
                return denied
            coll = store.additions_of(agreement_id)
            if coll is None:
                return Answer(404, error_body("NotFound", f"Agreement {agreement_id} not found"))
            if n == 4:
                return self._list(coll, "addition", req)
            if s[4] == "count":
                return self._count(coll, "addition", req)
            addition_id = _int(s[4])
            if addition_id is None:
                return _not_found_endpoint()
            return self._one(coll, addition_id, "addition", "Addition", req)
        if n >= 2 and s[0] == "finance" and s[1] == "billingcycles":
            return self._setup_table(s[2:], req, store.billing_cycles, "billingCycle", "BillingCycle")
        if n >= 2 and s[0] == "company" and s[1] == "companies":
            denied = self._permission("company_maintenance") or _only_get(req)
            if n == 2:
                return denied or self._list(store.companies, "company", req)
            if n == 3 and s[2] == "count":
                return denied or self._count(store.companies, "company", req)
            company_id = _int(s[2]) if n == 3 else None
            if company_id is None:
                return _not_found_endpoint()
            return denied or self._one(store.companies, company_id, "company", "Company", req)
        if n == 2 and s[0] == "system" and s[1] == "info":
            return _only_get(req) or self._system_info()
        if n >= 2 and s[0] == "system" and s[1] == "callbacks":
            return await self._callbacks(s[2:], req)
        return _not_found_endpoint()

    def _setup_table(self, rest: list[str], req: _Req, coll: Collection, table: str, label: str) -> Answer:
        denied = self._permission("table_setup") or _only_get(req)
        if not rest:
            return denied or self._list(coll, table, req)
        if len(rest) == 1 and rest[0] == "count":
            return denied or self._count(coll, table, req)
        record_id = _int(rest[0]) if len(rest) == 1 else None
        if record_id is None:
            return _not_found_endpoint()
        return denied or self._one(coll, record_id, table, label, req)

    # -- handlers -------------------------------------------------------------------------------------
    def _list(self, coll: Collection, table: str, req: _Req) -> Answer:
        try:
            return self._list_page(coll, table, req)
        except ConditionError as error:
            return _bad_request(str(error), table, "conditions")
        except QueryError as error:
            return _bad_request(str(error), table, error.param)

    def _list_page(self, coll: Collection, table: str, req: _Req) -> Answer:
        params = req.params
        if req.forward_only and params.get("orderBy"):
            raise QueryError("orderBy is not supported with forward-only pagination", "orderBy")
        result = self.store.query(coll, table, params.get("conditions"), params.get("orderBy"))
        paging = parse_paging(params, req.forward_only)
        if req.forward_only:
            start = 0 if paging.page_id is None else bisect.bisect_right(result.ids, paging.page_id)
            window = slice(start, start + paging.page_size)
            last_id = result.ids[window][-1:]
            links = forward_only_links(req.base, params, last_id[0] if last_id else None)
        else:
            window = page_slice(paging.page, paging.page_size)
            links = navigable_links(req.base, params, paging.page, paging.page_size, len(result))
        headers = [(b"link", link_header(links).encode())] if links else []
        fields = params.get("fields")
        if fields and fields.strip():
            paths = parse_fields(fields)
            body = orjson.dumps([project(r.data, paths) for r in result.recs[window]])
            rows = len(result.recs[window])
        else:
            raws = result.raws[window]
            rows = len(raws)
            body = json_array(raws)
        return Answer(200, body, headers, rows=rows)

    def _count(self, coll: Collection, table: str, req: _Req) -> Answer:
        try:
            recs = self.store.query(coll, table, req.params.get("conditions"), None)
        except ConditionError as error:
            return _bad_request(str(error), table, "conditions")
        return Answer(200, orjson.dumps({"count": len(recs)}))

    def _one(self, coll: Collection, record_id: int, table: str, label: str, req: _Req) -> Answer:
        rec = coll.get(record_id)
        if rec is None:
            return Answer(404, error_body("NotFound", f"{label} {record_id} not found"))
        fields = req.params.get("fields")
        if fields and fields.strip():
            return Answer(200, orjson.dumps(project(rec.data, parse_fields(fields))), rows=1)
        return Answer(200, rec.raw, rows=1)

    def _system_info(self) -> Answer:
        return Answer(
            200,
            orjson.dumps(
                {
                    "version": f"v{API_VERSION}.10431",
                    "isCloud": self._is_cloud(),
                    "serverTimeZone": "Eastern Standard Time",
                    "licenseBits": [
                        {"activeFlag": True, "name": "Agreements"},
                        {"activeFlag": True, "name": "API"},
                    ],
                    **({"cloudRegion": "NA"} if self._is_cloud() else {}),
                }
            ),
        )

    def _is_cloud(self) -> bool:
        return self.config.codebase.strip("/") != "v4_6_release"

    def _company_info(self, company: str) -> Answer:
        if company.lower() != self.config.company_id.lower():
            return Answer(404, error_body("NotFound", f"Company {company} not found"))
        return Answer(
            200,
            orjson.dumps(
                {
                    "CompanyName": "ConnectWise Simulator",
                    "Codebase": f"{self.config.codebase.strip('/')}/",
                    "VersionCode": f"v{API_VERSION}",
                    "VersionNumber": "v4.6.10431",
                    "CompanyID": self.config.company_id,
                    "IsCloud": "True" if self._is_cloud() else "False",
                }
            ),
        )

    def _callback_key(self, scope: Scope) -> Answer:
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if params.get("id") != self.key_id:
            return Answer(404, error_body("NotFound", "Signing key not found"))
        return Answer(200, orjson.dumps({"signing_key": self.signing_key}))

    def key_url(self) -> str:
        site = self.config.public_url.rstrip("/")
        return (
            f"{site}/{self.config.codebase.strip('/')}//system/callbackkey/index.rails"
            f"?companyName={self.config.company_id}&id={self.key_id}"
        )

    async def _callbacks(self, rest: list[str], req: _Req) -> Answer:
        denied = self._permission("system_callbacks")
        coll = self.store.callbacks
        if not rest:
            if denied:
                return denied
            if req.method == "GET":
                return self._list(coll, "callback", req)
            if req.method != "POST":
                return _method_not_allowed(req)
            try:
                body = orjson.loads(await _read_body(req.receive) or b"null")
            except orjson.JSONDecodeError:
                return Answer(400, error_body("InvalidObject", "The request body is not valid JSON."))
            if not isinstance(body, dict):
                return Answer(400, error_body("InvalidObject", "callback object is invalid"))
            try:
                entry = validate_entry(body, [r.data for r in coll.in_id_order()])
            except CallbackError as error:
                return Answer(400, error_body("InvalidObject", str(error), error.errors))
            self.store._next_callback += 1
            entry = {
                "id": self.store._next_callback,
                **entry,
                "memberId": 243,
                "isSoapCallbackFlag": False,
                "connectWiseID": f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-"
                f"{secrets.token_hex(2)}-{secrets.token_hex(6)}",
                "_info": {"lastUpdated": self.clock.now_cw(), "updatedBy": self.config.company_id},
            }
            rec = coll.put(entry)
            return Answer(201, rec.raw)
        if len(rest) == 1 and rest[0] == "count":
            return denied or _only_get(req) or self._count(coll, "callback", req)
        callback_id = _int(rest[0]) if len(rest) == 1 else None
        if callback_id is None:
            return _not_found_endpoint()
        if denied:
            return denied
        if req.method == "GET":
            return self._one(coll, callback_id, "callback", "Callback", req)
        if req.method == "DELETE":
            if coll.remove(callback_id) is None:
                return Answer(404, error_body("NotFound", f"Callback {callback_id} not found"))
            return Answer(204, b"")
        return _method_not_allowed(req)

    def _on_change(self, change: Change) -> None:
        """Store listener: queue a signed delivery for every matching callback (never blocks or raises)."""
        entries = [r.data for r in self.store.callbacks.in_id_order()]
        if not entries:
            return
        host = self.config.public_url.split("://", 1)[-1].rstrip("/")
        for entry in entries:
            if matches(entry, change):
                self.dispatcher.submit(entry, change, host, self.key_url())

    # -- control API ----------------------------------------------------------------------------------
    def _control_app(self) -> Starlette:
        from devtools.cwsim.control import routes

        return Starlette(
            routes=[Route(path, endpoint, methods=methods) for path, endpoint, methods in routes(self)]
        )

    def reset(self, **overrides: Any) -> None:
        """Return to the startup state, optionally with new generator settings."""
        if "anchor" in overrides and isinstance(overrides["anchor"], str):
            overrides["anchor"] = date.fromisoformat(overrides["anchor"])
        self.config = replace(self.config, **overrides)
        self.clock.reset()
        self.store.load(self.config.generator_settings(self.clock.now().date()))
        self.faults = Faults()
        self.dice = FaultDice(self.config.fault_seed)
        self.budget = Budget(self.config.requests_per_minute)
        self.permissions = Permissions()
        self.stats.reset()
        self.dispatcher.deliveries.clear()


def json_array(items: list[bytes]) -> bytes:
    """`[a,b,c]` from pre-serialised items with a single copy of the big payload (`b"[" + x + b"]"`
    would copy a 3 MB page twice more)."""
    if not items:
        return b"[]"
    if len(items) == 1:
        return b"[" + items[0] + b"]"
    return b",".join([b"[" + items[0], *items[1:-1], items[-1] + b"]"])


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _only_get(req: _Req) -> Answer | None:
    return None if req.method in ("GET", "HEAD") else _method_not_allowed(req)


def _method_not_allowed(req: _Req) -> Answer:
    return Answer(
        405,
        error_body("ConnectWiseApi", f"The requested resource does not support http method '{req.method}'."),
    )


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _drop_connection(send: Send) -> None:
    """Close the TCP connection without an HTTP answer (a 'timeout' fault). Works with uvicorn's
    protocols, whose `send` is bound to a cycle holding the transport; otherwise answers 504."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()
        await asyncio.sleep(0)
        return
    await send({"type": "http.response.start", "status": 504, "headers": list(_BASE_HEADERS)})
    await send({"type": "http.response.body", "body": error_body("ConnectWiseApi", "Gateway timeout")})
