"""The Sync API as an ASGI application (FastAPI): assembles the routes, the guard, health, metrics
and the problem+json handlers.

`build_app(gateway)` wires the routes (`routes_clients.py`, `routes_contracts.py`,
`routes_commands.py`, shared pieces in `routing.py`) to a `Gateway` (`adapters.py`, built by
`service.py`) behind the guard (`guard.py`). Order of
the checks on `/v1/*`: bearer token (401), body size (413), per-tenant rate (429), then the route's
scope (403), then the request itself (404 for anything not of the caller's tenant, 422 for invalid
input). Web pages (the console) are added as routers under `/ui/` through `build_app(routers=...)`;
they authenticate with `authenticate()` like the API.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from services.gateway.adapters import Gateway
from services.gateway.guard import API_PREFIX, GuardMiddleware, authenticate
from services.gateway.problems import (
    Problem,
    problem_response,
)
from services.gateway.routes_clients import add_client_routes
from services.gateway.routes_commands import add_command_routes
from services.gateway.routes_contracts import add_contract_routes
from services.gateway.routing import ERRORS, SOURCE, client_in_scope, json_response

__all__ = ["API_PREFIX", "SOURCE", "Gateway", "GuardMiddleware", "authenticate", "build_app", "client_in_scope",
           "json_response"]  # fmt: skip


def build_app(gateway: Gateway, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The Sync API; `routers` (e.g. the console's pages under `/ui/`) are included as given."""
    app = FastAPI(
        title="contract-sync Sync API",
        version="1.0.0",
        description="The authenticated HTTP front door of contract-sync: the Sync-from-PSA catalog, "
        "contracts with field ownership, sync commands and the tenant's live sync events. "
        "Errors are RFC 9457 problem documents. See docs/gateway.md.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    api = APIRouter(prefix="/v1", responses=ERRORS)
    add_client_routes(api, gateway)
    add_contract_routes(api, gateway)
    add_command_routes(api, gateway)

    app.include_router(api)
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return JSONResponse({"status": "alive", "service": "gateway"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        results: dict[str, bool] = {}
        for name, check in gateway.ready_checks.items():
            try:
                with anyio.fail_after(5):
                    results[name] = bool(await check())
            except Exception:
                results[name] = False
        ready = all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "service": "gateway", "checks": results},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(Problem)
    async def on_problem(request: Request, problem: Problem) -> Response:
        return problem_response(problem, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in error.errors()[:50]
        ]
        problem = Problem(
            422, "invalid-request", "Invalid request", "the request does not match the API", errors=errors
        )
        return problem_response(problem, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, error: StarletteHTTPException) -> Response:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http-error")
        problem = Problem(error.status_code, slug, str(error.detail), headers=dict(error.headers or {}))
        return problem_response(problem, request.url.path)

    @app.exception_handler(Exception)
    async def on_error(request: Request, error: Exception) -> Response:
        problem = Problem(500, "internal-error", "Internal error", "the request failed; it is safe to retry")
        return problem_response(problem, request.url.path)

    app.add_middleware(GuardMiddleware, gateway=gateway)
    return app
