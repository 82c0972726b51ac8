"""Shared helpers (no tests) for the ConnectWise client unit tests: fake clock, scripted MockTransport."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.poller.connectwise import ConnectWiseClient, ConnectWiseConnection, RetryPolicy

PUBLIC_KEY = "PUBkey7f3a9c1e"
PRIVATE_KEY = "PRIVkey-9b8c7d6e5f"
CLIENT_ID = "c1d2e3f4-0000-4abc-9def-123456789abc"
SITE = "https://cw.example.test"
CODEBASE = "v2025_1/"
API = f"{SITE}/{CODEBASE}apis/3.0"


def connection(**overrides: Any) -> ConnectWiseConnection:
    values: dict[str, Any] = {
        "site": SITE,
        "company_id": "acme",
        "public_key": PUBLIC_KEY,
        "private_key": PRIVATE_KEY,
        "client_id": CLIENT_ID,
        "requests_per_minute": 60_000,
    }
    values.update(overrides)
    return ConnectWiseConnection(**values)


@dataclass
class FakeTime:
    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeConnectWise:
    """Routes requests: companyinfo answers `codebase`; API paths go to `api(request)`."""

    api: Handler
    codebase: str = CODEBASE
    requests: list[httpx.Request] = field(default_factory=list)
    companyinfo_calls: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.startswith("/login/companyinfo/"):
            self.companyinfo_calls += 1
            return httpx.Response(
                200,
                json={
                    "CompanyName": "Acme",
                    "Codebase": self.codebase,
                    "VersionCode": "v2025.1",
                    "IsCloud": "True",
                },
            )
        prefix = f"/{self.codebase}apis/3.0"
        if not request.url.path.startswith(prefix):
            return httpx.Response(
                404, json={"code": "ConnectWiseApi", "message": "The endpoint does not exist."}
            )
        return self.api(request)

    @property
    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if not r.url.path.startswith("/login/")]


def make_client(
    api: Handler, *, fake_time: FakeTime | None = None, policy: RetryPolicy | None = None, **conn: Any
) -> tuple[ConnectWiseClient, FakeConnectWise, FakeTime]:
    fake = FakeConnectWise(api)
    ft = fake_time or FakeTime()
    client = ConnectWiseClient(
        connection(**conn),
        transport=httpx.MockTransport(fake),
        sleep=ft.sleep,
        clock=ft.clock,
        rng=lambda: 0.5,
        retry_policy=policy,
    )
    return client, fake, ft


def expected_basic() -> str:
    return "Basic " + base64.b64encode(f"acme+{PUBLIC_KEY}:{PRIVATE_KEY}".encode()).decode()


def rows(ids: range | list[int]) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"Agreement {i}", "_info": {"lastUpdated": "2026-01-01T00:00:00Z"}} for i in ids
    ]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )
