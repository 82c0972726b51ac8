"""`/healthz`, `/readyz` and `/metrics` for a service, served on the service's own event loop.

- `/healthz`: 200 while the process's loop answers (liveness).
- `/readyz`: 200 when every readiness check passes, else 503; the body names each check's result.
  A check is a sync or async callable returning bool; an exception counts as not ready.
- `/metrics`: Prometheus text format from prometheus-client's default registry.
Port 0 disables the server (`start` is then a no-op).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

Check = Callable[[], bool | Awaitable[bool]]


async def run_checks(checks: Mapping[str, Check]) -> dict[str, bool]:
    results: dict[str, bool] = {}
    for name, check in checks.items():
        try:
            outcome = check()
            if inspect.isawaitable(outcome):
                outcome = await asyncio.wait_for(outcome, timeout=5)
            results[name] = bool(outcome)
        except Exception:
            results[name] = False
    return results


def build_app(service: str, checks: Mapping[str, Check]) -> Starlette:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive", "service": service})

    async def readyz(_: Request) -> Response:
        results = await run_checks(checks)
        ready = all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "service": service, "checks": results},
            status_code=200 if ready else 503,
        )

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
    )


class _ServerWithoutSignals(uvicorn.Server):
    """The service owns SIGTERM/SIGINT; the health server must not take them over."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HealthServer:
    """Runs the health app as a task on the current loop until `stop()`."""

    def __init__(self, service: str, host: str, port: int, checks: Mapping[str, Check]) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.checks = dict(checks)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.port == 0:
            return
        config = uvicorn.Config(
            build_app(self.service, self.checks),
            host=self.host,
            port=self.port,
            log_level="warning",
            log_config=None,  # uvicorn logs through the service's handler (services.common.logging)
            access_log=False,
            lifespan="off",
        )
        self._server = _ServerWithoutSignals(config)
        self._task = asyncio.create_task(self._server.serve())
        log.info("health server listening", extra={"port": self.port})

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
