"""In-memory ConnectWise data with pre-serialised records, indexes and a query cache.

Every record is kept as a dict (for conditions) plus its orjson bytes (for responses); a change
re-serialises only that record and bumps its collection's version, which invalidates cached query
results. Agreements are indexed by id (sorted), company id and `_info.lastUpdated`, so the usual
poller queries (`company/id = X`, `lastUpdated >= [T]`, `id > pageId`) narrow candidates before the
predicate runs, and a query's result list is cached per collection version (later pages are O(pageSize)).

Mutations happen on the server's event loop only (single-threaded); each one stamps
`_info.lastUpdated` from the simulator clock and notifies listeners (callbacks) with a `Change`.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from devtools.cwsim.clock import SimClock, format_cw
from devtools.cwsim.conditions import And, Comparison, Node, Predicate, build_predicate, conjuncts
from devtools.cwsim.generator import (
    BILLING_CYCLES,
    CURRENCIES,
    PRODUCTS,
    DataSet,
    Factory,
    GeneratorSettings,
    Json,
    generate,
    midnight,
)
from devtools.cwsim.query import SortKey, parse_order_by, sort_records
from devtools.cwsim.schema import ADDITION_FIELDS, AGREEMENT_FIELDS, COMPANY_FIELDS, TABLES

Action = Literal["added", "updated", "deleted"]
log = logging.getLogger(__name__)
_SERIAL = itertools.count(1)
CONTROL_MEMBER = "SimControl"


class StoreError(ValueError):
    """A control-API request that cannot be applied (unknown id, bad field)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Rec:
    id: int
    data: Json
    raw: bytes


class Result:
    """A query's matches in answer order, with their JSON bytes and ids as parallel lists (slicing a
    page out of them is a C-level list slice; `ids` serves forward-only `pageId` bisection)."""

    __slots__ = ("ids", "raws", "recs")

    def __init__(self, recs: list[Rec]) -> None:
        self.recs = recs
        self.raws = [r.raw for r in recs]
        self.ids = [r.id for r in recs]

    def __len__(self) -> int:
        return len(self.recs)


@dataclass(frozen=True, slots=True)
class Change:
    """One data change, as callbacks see it: `entity` is None for a delete."""

    type: Literal["agreement", "company", "addition"]
    action: Action
    id: int
    entity: Json | None
    member: str
    # for additions: the parent agreement; for a deleted agreement: its last state (callback levels)
    agreement: Json | None = None


def _serialise(data: Json) -> bytes:
    return orjson.dumps(data)


class Collection:
    """Records of one kind, ordered by id, each with cached JSON bytes."""

    def __init__(self, name: str, records: Iterable[Json] = ()) -> None:
        self.name = name
        self.uid = next(_SERIAL)  # unique per collection object: part of query-cache keys
        self.by_id: dict[int, Rec] = {}
        self.ids: list[int] = []
        self.version = 0
        self._sorted: tuple[int, list[Rec]] = (-1, [])
        self._all: tuple[int, Result] = (-1, Result([]))
        for data in records:
            self.by_id[data["id"]] = Rec(data["id"], data, _serialise(data))
        self.ids = sorted(self.by_id)

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, id_: int) -> Rec | None:
        return self.by_id.get(id_)

    def put(self, data: Json) -> Rec:
        rec = Rec(data["id"], data, _serialise(data))
        if rec.id not in self.by_id:
            bisect.insort(self.ids, rec.id)
        self.by_id[rec.id] = rec
        self.version += 1
        return rec

    def remove(self, id_: int) -> Rec | None:
        rec = self.by_id.pop(id_, None)
        if rec is not None:
            del self.ids[bisect.bisect_left(self.ids, id_)]
            self.version += 1
        return rec

    def in_id_order(self) -> list[Rec]:
        if self._sorted[0] != self.version:
            self._sorted = (self.version, [self.by_id[i] for i in self.ids])
        return self._sorted[1]

    def everything(self) -> Result:
        """All records as a Result (cached per version): the answer to an unfiltered or all-matching query."""
        if self._all[0] != self.version:
            self._all = (self.version, Result(self.in_id_order()))
        return self._all[1]

    def id_range(self, lo: int | None, hi: int | None) -> list[Rec]:
        """Records with lo < id <= hi (either bound optional), in id order."""
        recs = self.in_id_order()
        start = 0 if lo is None else bisect.bisect_right(self.ids, lo)
        end = len(self.ids) if hi is None else bisect.bisect_right(self.ids, hi)
        return recs[start:end]


class AgreementIndex:
    """Secondary indexes on agreements: by company id and by `_info.lastUpdated` (sorted strings)."""

    def __init__(self) -> None:
        self.by_company: dict[int, list[int]] = {}
        self.by_updated: list[tuple[str, int]] = []
        self._updated_ids: list[int] = []  # parallel to by_updated: slices without a Python-level loop
        self._keys: dict[int, tuple[int | None, str]] = {}

    def add(self, data: Json) -> None:
        company = data.get("company", {}).get("id")
        stamp = data.get("_info", {}).get("lastUpdated", "")
        self._keys[data["id"]] = (company, stamp)
        if company is not None:
            bisect.insort(self.by_company.setdefault(company, []), data["id"])
        pos = bisect.bisect_left(self.by_updated, (stamp, data["id"]))
        self.by_updated.insert(pos, (stamp, data["id"]))
        self._updated_ids.insert(pos, data["id"])

    def remove(self, id_: int) -> None:
        key = self._keys.pop(id_, None)
        if key is None:
            return
        company, stamp = key
        if company is not None:
            ids = self.by_company.get(company, [])
            pos = bisect.bisect_left(ids, id_)
            if pos < len(ids) and ids[pos] == id_:
                del ids[pos]
        pos = bisect.bisect_left(self.by_updated, (stamp, id_))
        if pos < len(self.by_updated) and self.by_updated[pos] == (stamp, id_):
            del self.by_updated[pos]
            del self._updated_ids[pos]

    def updated_between(self, low: str | None, high: str | None) -> list[int]:
        """Ids (sorted) whose lastUpdated stamp s satisfies low <= s < high (either bound optional).
        Stamps are fixed-width `YYYY-MM-DDTHH:MM:SSZ`, so string order is time order."""
        start = 0 if low is None else bisect.bisect_left(self.by_updated, (low, -1))
        end = len(self.by_updated) if high is None else bisect.bisect_left(self.by_updated, (high, -1))
        if start == 0 and end == len(self._updated_ids):
            return sorted(self._keys)  # everything: dict keys are far cheaper to sort than a shuffled slice
        return sorted(self._updated_ids[start:end])


class QueryCache:
    """LRU of query results keyed by (collection, conditions, orderBy), valid for one collection version."""

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], tuple[int, Result]] = OrderedDict()
        self._predicates: OrderedDict[tuple[str, str], tuple[Node, Predicate]] = OrderedDict()

    def predicate(self, table: str, text: str) -> tuple[Node, Predicate]:
        key = (table, text)
        hit = self._predicates.get(key)
        if hit is None:
            hit = build_predicate(text, TABLES[table])
            self._predicates[key] = hit
            if len(self._predicates) > self.size:
                self._predicates.popitem(last=False)
        return hit

    def get(self, key: tuple[Any, ...], version: int) -> Result | None:
        hit = self._items.get(key)
        if hit is None or hit[0] != version:
            return None
        self._items.move_to_end(key)
        return hit[1]

    def put(self, key: tuple[Any, ...], version: int, result: Result) -> None:
        self._items[key] = (version, result)
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


def _stamp_bounds(op: str, value: datetime) -> tuple[str | None, str | None] | None:
    """[low, high) stamp bounds equivalent to `lastUpdated <op> value` on whole-second stamps.
    E.g. `>= 12:00:11.5` -> low 12:00:12; `> 12:00:11` -> low 12:00:12; `<= 12:00:11.5` -> high 12:00:12."""
    floor = value.replace(microsecond=0)
    ceil = floor if value.microsecond == 0 else floor + timedelta(seconds=1)
    after = format_cw(floor + timedelta(seconds=1))
    if op == ">=":
        return format_cw(ceil), None
    if op == ">":
        return after, None
    if op == "<":
        return None, format_cw(ceil)
    if op == "<=":
        return None, after
    if op == "=":
        return (format_cw(floor), after) if value.microsecond == 0 else (after, after)
    return None


class Store:
    """All simulator data; see the module docstring for the guarantees."""

    def __init__(self, settings: GeneratorSettings, clock: SimClock) -> None:
        self.clock = clock
        self.listeners: list[Callable[[Change], None]] = []
        self.cache = QueryCache()
        self.load(settings)

    # -- loading ------------------------------------------------------------------------------------
    def load(self, settings: GeneratorSettings) -> None:
        """Replace all data with `generate(settings)`."""
        self.settings = settings
        data: DataSet = generate(settings)
        self.factory = Factory(random.Random(f"control-{settings.seed}"), settings.anchor, settings.href_base)
        self.billing_cycles = Collection("billingCycle", data.billing_cycles)
        self.agreement_types = Collection("agreementType", data.agreement_types)
        self.companies = Collection("company", data.companies)
        self.agreements = Collection("agreement", data.agreements)
        self.index = AgreementIndex()
        for a in data.agreements:
            self.index.add(a)
        self.additions: dict[int, Collection] = {a["id"]: Collection("addition") for a in data.agreements}
        grouped: dict[int, list[Json]] = {}
        for add in data.additions:
            grouped.setdefault(add["agreementId"], []).append(add)
        for aid, items in grouped.items():
            self.additions[aid] = Collection("addition", items)
        self.addition_parent: dict[int, int] = {add["id"]: add["agreementId"] for add in data.additions}
        self.callbacks = Collection("callback")
        self.cache.clear()
        self._next_agreement = max(self.agreements.ids, default=1000)
        self._next_addition = max(self.addition_parent, default=5000)
        self._next_company = max(self.companies.ids, default=249)
        self._next_callback = 26550

    # -- queries ------------------------------------------------------------------------------------
    def query(self, coll: Collection, table: str, conditions: str | None, order_by: str | None) -> Result:
        """Matching records, ordered by `order_by` (default id ascending). Raises ConditionError/QueryError."""
        key = (coll.uid, conditions or "", order_by or "")
        hit = self.cache.get(key, coll.version)
        if hit is not None:
            return hit
        order: tuple[SortKey, ...] = parse_order_by(order_by, TABLES[table]) if order_by else ()
        everything = coll.in_id_order()
        if conditions and conditions.strip():
            node, predicate = self.cache.predicate(table, conditions)
            candidates, exact = self._candidates(coll, node)
            recs = candidates if exact else [r for r in candidates if predicate(r.data)]
        else:
            recs = everything
        if order and not (len(order) == 1 and order[0].keys == ("id",) and not order[0].descending):
            by_id = {id(r.data): r for r in recs}
            recs = [by_id[id(d)] for d in sort_records([r.data for r in recs], order)]
        result = coll.everything() if recs is everything else Result(recs)
        self.cache.put(key, coll.version, result)
        return result

    def _candidates(self, coll: Collection, node: Node) -> tuple[list[Rec], bool]:
        """Candidates in id order, narrowed by the indexable top-level AND terms, and whether they are
        exactly the matches (every term was answered by an index, so the predicate need not run)."""
        terms = conjuncts(node) if isinstance(node, And | Comparison) else ()
        narrowed: list[list[Rec]] = []
        exact = bool(terms)
        for term in terms:
            found = self._narrow(coll, term) if isinstance(term, Comparison) and not term.negated else None
            if found is None:
                exact = False
            else:
                narrowed.append(found)
        if not narrowed:
            return coll.in_id_order(), False
        narrowed.sort(key=len)
        best = narrowed[0]
        if exact and len(narrowed) > 1:
            keep = set.intersection(*({r.id for r in other} for other in narrowed[1:]))
            best = [r for r in best if r.id in keep]
        return best, exact

    def _narrow(self, coll: Collection, term: Comparison) -> list[Rec] | None:
        """The records (id order) an index says satisfy `term` exactly, or None when no index applies."""
        spec = TABLES[coll.name].resolve(term.path) if coll.name in TABLES else None
        if spec is None:
            return None
        value = term.value
        if spec.keys == ("id",) and isinstance(value, int) and not isinstance(value, bool):
            bounds = {
                "=": (value - 1, value),
                ">": (value, None),
                ">=": (value - 1, None),
                "<": (None, value - 1),
                "<=": (None, value),
            }.get(term.op)
            return coll.id_range(*bounds) if bounds else None
        if coll is not self.agreements:
            return None
        if spec.keys == ("company", "id"):
            wanted: tuple[Any, ...] = ()
            if term.op == "=":
                wanted = (value,)
            elif term.op == "in" and isinstance(value, tuple):
                wanted = value
            if not wanted or not all(isinstance(v, int) and not isinstance(v, bool) for v in wanted):
                return None
            ids = sorted({i for v in wanted for i in self.index.by_company.get(int(v), [])})
            return [coll.by_id[i] for i in ids]
        if spec.keys == ("_info", "lastUpdated") and isinstance(value, datetime):
            stamp_bounds = _stamp_bounds(term.op, value)
            if stamp_bounds is None:
                return None
            ids = self.index.updated_between(*stamp_bounds)
            if len(ids) == len(coll):
                return coll.in_id_order()
            return [coll.by_id[i] for i in ids]
        return None

    def additions_of(self, agreement_id: int) -> Collection | None:
        return self.additions.get(agreement_id) if agreement_id in self.agreements.by_id else None

    # -- change plumbing ----------------------------------------------------------------------------
    def _stamp(self, data: Json, member: str) -> None:
        info = dict(data.get("_info") or {})
        info["lastUpdated"] = self.clock.now_cw()
        info["updatedBy"] = member
        data.pop("_info", None)
        data["_info"] = info
        if data.get("customFields") is not None:  # keep customFields after _info, as generated
            data["customFields"] = data.pop("customFields")

    def _emit(self, change: Change) -> None:
        for listener in list(self.listeners):
            try:
                listener(change)
            except Exception:  # a listener must never fail a data change
                log.exception("change listener failed")

    def _put_agreement(self, data: Json, action: Action, member: str) -> Json:
        self._stamp(data, member)
        self.index.remove(data["id"])
        previous = self.agreements.get(data["id"])
        self.agreements.put(data)
        status = data.get("agreementStatus")
        if previous is not None and previous.data.get("agreementStatus") != status:
            self._mirror_status(data["id"], status)
        self.index.add(data)
        self.additions.setdefault(data["id"], Collection("addition"))
        self._emit(Change("agreement", action, data["id"], data, member))
        return data

    def _mirror_status(self, agreement_id: int, status: Any) -> None:
        """An addition's `agreementStatus` is its agreement's (computed on read by the real API), so it
        follows the agreement without touching the addition's own `_info.lastUpdated`."""
        coll = self.additions.get(agreement_id)
        if coll is None:
            return
        for rec in list(coll.in_id_order()):
            updated = dict(rec.data)
            if status is None:
                updated.pop("agreementStatus", None)
            else:
                updated["agreementStatus"] = status
            coll.put(updated)

    def _put_addition(self, data: Json, action: Action, member: str) -> Json:
        self._stamp(data, member)
        aid = data["agreementId"]
        self.additions.setdefault(aid, Collection("addition")).put(data)
        self.addition_parent[data["id"]] = aid
        parent = self.agreements.by_id[aid].data
        self._emit(Change("addition", action, data["id"], data, member, agreement=parent))
        return data

    # -- agreements ---------------------------------------------------------------------------------
    def _agreement(self, id_: int) -> Json:
        rec = self.agreements.get(id_)
        if rec is None:
            raise StoreError(f"Agreement {id_} not found", 404)
        return dict(rec.data)

    def create_agreement(
        self, company_id: int, fields: Json | None = None, member: str = CONTROL_MEMBER
    ) -> Json:
        """Create an agreement for a company with realistic defaults (active, starting today) + `fields`."""
        company = self.companies.get(company_id)
        if company is None:
            raise StoreError(f"Company {company_id} not found", 404)
        fields = dict(fields or {})
        type_id = self._type_id(fields.pop("type")) if "type" in fields else None
        self._next_agreement += 1
        self.factory.anchor = self.clock.now().date()
        data = self.factory.agreement(self._next_agreement, company.data, status="active", type_id=type_id)
        data["startDate"] = midnight(self.clock.now().date())
        data["billStartDate"] = data["startDate"]
        data.pop("customFields", None)
        if "parentAgreement" in fields:
            parent_id = fields.pop("parentAgreement")
            parent = self._agreement(int(parent_id["id"] if isinstance(parent_id, dict) else parent_id))
            data["parentAgreement"] = {
                "id": parent["id"],
                "name": parent["name"],
                "type": parent["type"]["name"],
                "_info": {"agreement_href": f"{self.factory.href}/finance/agreements/{parent['id']}"},
            }
        self._apply_fields(data, fields, AGREEMENT_FIELDS)
        return self._put_agreement(data, "added", member)

    def update_agreement(self, id_: int, fields: Json, member: str = CONTROL_MEMBER) -> Json:
        """Merge `fields` into the agreement (a null value removes the field) and stamp lastUpdated."""
        data = self._agreement(id_)
        fields = dict(fields)
        if "type" in fields:
            tid = self._type_id(fields.pop("type"))
            tname = self.agreement_types.by_id[tid].data["name"]
            data["type"] = self.factory.ref("type", tid, tname, "finance/agreements/types")
        self._apply_fields(data, fields, AGREEMENT_FIELDS)
        return self._put_agreement(data, "updated", member)

    def cancel_agreement(
        self, id_: int, reason: str = "Cancelled by request", member: str = CONTROL_MEMBER
    ) -> Json:
        data = self._agreement(id_)
        data["cancelledFlag"] = True
        data["dateCancelled"] = midnight(self.clock.now().date())
        data["reasonCancelled"] = reason[:100]
        data["agreementStatus"] = "Cancelled"
        data.pop("nextInvoiceDate", None)
        return self._put_agreement(data, "updated", member)

    def delete_agreement(self, id_: int, member: str = CONTROL_MEMBER) -> None:
        """Delete an agreement and its additions (a `deleted` callback fires for the agreement)."""
        old = self._agreement(id_)
        self.agreements.remove(id_)
        self.index.remove(id_)
        for add_id in list(self.additions.pop(id_, Collection("addition")).ids):
            self.addition_parent.pop(add_id, None)
        self._emit(Change("agreement", "deleted", id_, None, member, agreement=old))

    def touch_agreements(
        self, ids: list[int] | None = None, count: int | None = None, member: str = CONTROL_MEMBER
    ) -> list[int]:
        """Bump lastUpdated of the given agreements, or of `count` pseudo-randomly chosen ones."""
        if ids is None:
            pool = list(self.agreements.ids)
            ids = self.factory.rng.sample(pool, min(count or 0, len(pool)))
        for id_ in ids:
            self._put_agreement(self._agreement(id_), "updated", member)
        return ids

    # -- additions ----------------------------------------------------------------------------------
    def _addition(self, agreement_id: int, id_: int) -> Json:
        coll = self.additions_of(agreement_id)
        rec = coll.get(id_) if coll is not None else None
        if rec is None:
            raise StoreError(f"Addition {id_} not found", 404)
        return dict(rec.data)

    def create_addition(
        self, agreement_id: int, fields: Json | None = None, member: str = CONTROL_MEMBER
    ) -> Json:
        agreement = self._agreement(agreement_id)
        fields = dict(fields or {})
        product_id = fields.pop("product", None)
        if isinstance(product_id, dict):
            product_id = product_id.get("id")
        if isinstance(product_id, str):
            product_id = next((p.id for p in PRODUCTS if p.identifier.lower() == product_id.lower()), None)
            if product_id is None:
                raise StoreError("unknown product identifier")
        self._next_addition += 1
        self.factory.anchor = self.clock.now().date()
        seq = len(self.additions.get(agreement_id, Collection("addition"))) + 1
        data = self.factory.addition(self._next_addition, agreement, seq, product_id=product_id)
        data["effectiveDate"] = midnight(self.clock.now().date())
        data.pop("cancelledDate", None)
        data["billCustomer"] = "Billable"
        self._apply_fields(data, fields, ADDITION_FIELDS)
        Factory.price_addition(data)
        return self._put_addition(data, "added", member)

    def update_addition(
        self, agreement_id: int, id_: int, fields: Json, member: str = CONTROL_MEMBER
    ) -> Json:
        data = self._addition(agreement_id, id_)
        self._apply_fields(data, dict(fields), ADDITION_FIELDS)
        Factory.price_addition(data)
        return self._put_addition(data, "updated", member)

    def cancel_addition(
        self, agreement_id: int, id_: int, when: str | None = None, member: str = CONTROL_MEMBER
    ) -> Json:
        data = self._addition(agreement_id, id_)
        data["cancelledDate"] = when or midnight(self.clock.now().date())
        return self._put_addition(data, "updated", member)

    def delete_addition(self, agreement_id: int, id_: int, member: str = CONTROL_MEMBER) -> None:
        data = self._addition(agreement_id, id_)
        self.additions[agreement_id].remove(id_)
        self.addition_parent.pop(id_, None)
        parent = self.agreements.by_id[agreement_id].data
        self._emit(Change("addition", "deleted", id_, None, member, agreement=parent))
        del data

    # -- companies ----------------------------------------------------------------------------------
    def add_company(self, fields: Json | None = None, member: str = CONTROL_MEMBER) -> Json:
        fields = dict(fields or {})
        currency = fields.pop("currency", None)
        if isinstance(currency, dict):
            currency = currency.get("currencyCode")
        if currency is not None and currency not in CURRENCIES:
            raise StoreError(f"unknown currency {currency!r}; one of {sorted(CURRENCIES)}")
        self._next_company += 1
        self.factory.anchor = self.clock.now().date()
        data = self.factory.company(
            self._next_company,
            name=fields.pop("name", None),
            identifier=fields.pop("identifier", None),
            currency=currency,
        )
        if any(
            c.data["identifier"].lower() == data["identifier"].lower() for c in self.companies.by_id.values()
        ):
            raise StoreError(f"company identifier {data['identifier']!r} already exists", 409)
        self._apply_fields(data, fields, COMPANY_FIELDS)
        self._stamp(data, member)
        self.companies.put(data)
        self._emit(Change("company", "added", data["id"], data, member))
        return data

    # -- helpers ------------------------------------------------------------------------------------
    def _type_id(self, value: Any) -> int:
        if isinstance(value, dict):
            value = value.get("id", value.get("name"))
        if isinstance(value, int) and value in self.agreement_types.by_id:
            return value
        if isinstance(value, str):
            for rec in self.agreement_types.by_id.values():
                if rec.data["name"].lower() == value.lower():
                    return rec.id
        raise StoreError(f"unknown agreement type {value!r}")

    def _apply_fields(self, data: Json, fields: Json, allowed: dict[str, Any]) -> None:
        """Merge control-API fields. Conveniences: billingCycle by name, currency by code; null removes."""
        top = {p for p in allowed if "/" not in p} | {"customFields"}
        for key, value in fields.items():
            if key in ("id", "_info", "agreementId"):
                raise StoreError(f"{key} is read-only")
            if key not in top:
                raise StoreError(f"unknown field {key!r}")
            if value is None:
                data.pop(key, None)
            elif key == "billingCycle" and isinstance(value, str):
                if value not in {c[2] for c in BILLING_CYCLES}:
                    raise StoreError(f"unknown billing cycle {value!r}")
                data[key] = self.factory.cycle_ref(value)
            elif key == "currency" and isinstance(value, str):
                if value not in CURRENCIES:
                    raise StoreError(f"unknown currency {value!r}")
                data[key] = self.factory.currency_ref(value)
            elif allowed.get(key) == "datetime" and isinstance(value, str):
                try:
                    parsed = datetime.fromisoformat(value)
                except ValueError:
                    raise StoreError(f"{key}: invalid datetime {value!r}") from None
                data[key] = format_cw(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
            else:
                data[key] = value
