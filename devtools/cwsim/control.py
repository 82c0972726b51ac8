"""The `/_sim` control API (JSON, no ConnectWise auth): data changes, clock, faults, budget, permissions,
reset and statistics. Errors answer `{"error": message}` with 400 (bad input) or 404 (unknown id).

| method | path | body / effect |
|---|---|---|
| GET | /_sim/health | `{"ok": true}` |
| GET | /_sim/baseline | fixed tiny JSON, or `?rows=N` a fixed N-agreement array (benchmark ceilings) |
| GET | /_sim/info | configuration without secrets, record counts |
| POST | /_sim/companies | `{name?, identifier?, currency?}` -> 201 company |
| POST | /_sim/agreements | `{company_id, type?, billingCycle?, parentAgreement?, <Agreement fields>}` -> 201 |
| PATCH | /_sim/agreements/{id} | `{<Agreement fields>}` (null removes a field) -> 200 |
| POST | /_sim/agreements/{id}/cancel | `{reason?}` -> 200 |
| DELETE | /_sim/agreements/{id} | -> 204 (its additions go too) |
| POST | /_sim/agreements/touch | `{ids: [..]}` or `{count: n}` -> `{ids}` (lastUpdated bumped) |
| POST | /_sim/agreements/{id}/additions | `{product? (id or identifier), <Addition fields>}` -> 201 |
| PATCH | /_sim/agreements/{id}/additions/{aid} | `{<Addition fields>}` -> 200 |
| POST | /_sim/agreements/{id}/additions/{aid}/cancel | `{date?}` -> 200 |
| DELETE | /_sim/agreements/{id}/additions/{aid} | -> 204 |
| GET/POST | /_sim/clock | `{set?: datetime, advance_s?: n, freeze?: bool, reset?: true}` |
| GET/POST/DELETE | /_sim/faults | partial update of Faults (see faults.py); DELETE clears all |
| GET/POST | /_sim/budget | `{requests_per_minute, window_s?}` |
| GET/POST | /_sim/permissions | `{finance_agreements?, company_maintenance?, table_setup?, system_callbacks?}` |
| POST | /_sim/reset | `{seed?, companies?, agreements_per_company?, additions_per_agreement?, anchor?}` |
| GET/DELETE | /_sim/stats | request statistics / reset them |
| GET | /_sim/callbacks/deliveries | the recent callback delivery log |
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from devtools.cwsim.store import StoreError

if TYPE_CHECKING:
    from devtools.cwsim.app import Simulator

Endpoint = Callable[[Request], Awaitable[Response]]

RESET_KEYS = ("seed", "companies", "agreements_per_company", "additions_per_agreement", "anchor")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(message: str, status: int = 400) -> Response:
    return _json({"error": message}, status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the request body must be a JSON object")
    return data


def _guard(handler: Callable[[Request], Awaitable[Response]]) -> Endpoint:
    """Turn bad input into 400/404 JSON errors instead of 500s."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except StoreError as error:
            return _error(str(error), error.status)
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as error:
            return _error(str(error) or type(error).__name__)

    return endpoint


def _pid(request: Request, name: str = "id") -> int:
    return int(request.path_params[name])


def routes(sim: Simulator) -> list[tuple[str, Endpoint, list[str]]]:
    """The control routes bound to one simulator instance."""

    async def health(request: Request) -> Response:
        return _json({"ok": True})

    baseline_pages: dict[int, bytes] = {}

    async def baseline(request: Request) -> Response:
        """The framework's ceiling: a fixed tiny JSON, or with `?rows=N` a fixed pre-serialised array of N
        copies of one agreement (what a 1000-row page costs Starlette + uvicorn to ship, minus the simulator)."""
        rows = min(int(request.query_params.get("rows", "0") or 0), 1000)
        if rows <= 0:
            return _json({"ok": True, "items": [1, 2, 3]})
        if rows not in baseline_pages:
            sample = sim.store.agreements.in_id_order()[0].raw if len(sim.store.agreements) else b"{}"
            baseline_pages[rows] = b"[" + b",".join([sample] * rows) + b"]"
        return Response(baseline_pages[rows], media_type="application/json")

    async def info(request: Request) -> Response:
        store = sim.store
        return _json(
            {
                **sim.config.public_view(),
                "counts": {
                    "companies": len(store.companies),
                    "agreements": len(store.agreements),
                    "additions": len(store.addition_parent),
                    "callbacks": len(store.callbacks),
                },
                "clock": sim.clock.state(),
            }
        )

    async def create_company(request: Request) -> Response:
        return _json(sim.store.add_company(await _body(request)), 201)

    async def create_agreement(request: Request) -> Response:
        body = await _body(request)
        company_id = body.pop("company_id", None)
        if company_id is None:
            raise ValueError("company_id is required")
        return _json(sim.store.create_agreement(int(company_id), body), 201)

    async def update_agreement(request: Request) -> Response:
        return _json(sim.store.update_agreement(_pid(request), await _body(request)))

    async def cancel_agreement(request: Request) -> Response:
        body = await _body(request)
        return _json(
            sim.store.cancel_agreement(_pid(request), str(body.get("reason") or "Cancelled by request"))
        )

    async def delete_agreement(request: Request) -> Response:
        sim.store.delete_agreement(_pid(request))
        return Response(status_code=204)

    async def touch(request: Request) -> Response:
        body = await _body(request)
        ids = body.get("ids")
        count = body.get("count")
        if ids is None and count is None:
            raise ValueError("give ids or count")
        touched = sim.store.touch_agreements(
            [int(i) for i in ids] if ids is not None else None, int(count) if count is not None else None
        )
        return _json({"ids": touched})

    async def create_addition(request: Request) -> Response:
        return _json(sim.store.create_addition(_pid(request), await _body(request)), 201)

    async def update_addition(request: Request) -> Response:
        return _json(sim.store.update_addition(_pid(request), _pid(request, "aid"), await _body(request)))

    async def cancel_addition(request: Request) -> Response:
        body = await _body(request)
        when = body.get("date")
        if when is not None:
            parsed = datetime.fromisoformat(str(when))
            when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _json(sim.store.cancel_addition(_pid(request), _pid(request, "aid"), when))

    async def delete_addition(request: Request) -> Response:
        sim.store.delete_addition(_pid(request), _pid(request, "aid"))
        return Response(status_code=204)

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body = await _body(request)
            if body.get("reset"):
                sim.clock.reset()
            if "set" in body:
                value = datetime.fromisoformat(str(body["set"]))
                sim.clock.set(value if value.tzinfo else value.replace(tzinfo=UTC))
            if "advance_s" in body:
                sim.clock.advance(float(body["advance_s"]))
            if body.get("freeze") is True:
                sim.clock.freeze()
            elif body.get("freeze") is False:
                sim.clock.resume()
        return _json(sim.clock.state())

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            sim.faults.update(
                {
                    "latency_ms": 0,
                    "spike_rate": 0,
                    "error_rate": 0,
                    "timeout_rate": 0,
                    "force_401_s": 0,
                    "force_403_s": 0,
                }
            )
        elif request.method == "POST":
            sim.faults.update(await _body(request))
        return _json(sim.faults.view())

    async def budget(request: Request) -> Response:
        if request.method == "POST":
            body = await _body(request)
            window = body.get("window_s")
            sim.budget.set(
                int(body.get("requests_per_minute", 0)), float(window) if window is not None else None
            )
        return _json(sim.budget.view())

    async def permissions(request: Request) -> Response:
        if request.method == "POST":
            sim.permissions.update(await _body(request))
        return _json(sim.permissions.granted)

    async def reset(request: Request) -> Response:
        body = await _body(request)
        unknown = set(body) - set(RESET_KEYS)
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; allowed {list(RESET_KEYS)}")
        sim.reset(**body)
        return await info(request)

    async def stats(request: Request) -> Response:
        if request.method == "DELETE":
            sim.stats.reset()
        return _json(sim.stats.view())

    async def deliveries(request: Request) -> Response:
        return _json([d.view() for d in sim.dispatcher.deliveries])

    table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/_sim/health", health, ["GET"]),
        ("/_sim/baseline", baseline, ["GET"]),
        ("/_sim/info", info, ["GET"]),
        ("/_sim/companies", create_company, ["POST"]),
        ("/_sim/agreements", create_agreement, ["POST"]),
        ("/_sim/agreements/touch", touch, ["POST"]),
        ("/_sim/agreements/{id:int}", update_agreement, ["PATCH"]),
        ("/_sim/agreements/{id:int}/cancel", cancel_agreement, ["POST"]),
        ("/_sim/agreements/{id:int}/additions", create_addition, ["POST"]),
        ("/_sim/agreements/{id:int}/additions/{aid:int}", update_addition, ["PATCH"]),
        ("/_sim/agreements/{id:int}/additions/{aid:int}/cancel", cancel_addition, ["POST"]),
        ("/_sim/clock", clock, ["GET", "POST"]),
        ("/_sim/faults", faults, ["GET", "POST", "DELETE"]),
        ("/_sim/budget", budget, ["GET", "POST"]),
        ("/_sim/permissions", permissions, ["GET", "POST"]),
        ("/_sim/reset", reset, ["POST"]),
        ("/_sim/stats", stats, ["GET", "DELETE"]),
        ("/_sim/callbacks/deliveries", deliveries, ["GET"]),
    ]
    # DELETE on the same paths as PATCH: separate routes so each has one handler
    table += [
        ("/_sim/agreements/{id:int}", delete_agreement, ["DELETE"]),
        ("/_sim/agreements/{id:int}/additions/{aid:int}", delete_addition, ["DELETE"]),
    ]
    return [(path, _guard(handler), methods) for path, handler, methods in table]
