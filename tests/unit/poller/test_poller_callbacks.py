from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from poller_fakes import InMemoryStore, RecordingPublisher, make_simulator, sim_client

from devtools.cwsim.callbacks import sign
from services.poller.callbacks import (
    KeyFetcher,
    build_app,
    expected_signature,
    key_url_allowed,
    parse_callback,
    signature_valid,
)
from services.poller.service import TenantPoller
from services.poller.tenants import parse_config

KEY = "signing-key-for-tests"
KEY_URL = "https://api-na.myconnectwise.net/v2025_1//system/callbackkey/index.rails?companyName=acme&id=abc"


def test_signature_matches_connectwise_scheme_and_rejects_tampering() -> None:
    body = b'{"ID": 5}'
    assert expected_signature(body, KEY) == sign(body, KEY)  # the simulator signs like ConnectWise
    assert signature_valid(body, sign(body, KEY), KEY)
    assert not signature_valid(body + b" ", sign(body, KEY), KEY)
    assert not signature_valid(body, None, KEY)
    assert not signature_valid(body, sign(body, "other-key"), KEY)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        (KEY_URL, True),
        ("https://evil.example.com/key", False),
        ("http://api-na.myconnectwise.net/key", False),  # plain HTTP only on loopback
        ("http://127.0.0.1:8089/key", True),
        ("https://user:pw@api-na.myconnectwise.net/key", False),
        ("not a url", False),
    ],
)
def test_signing_keys_are_fetched_only_from_allowed_hosts(url: str, allowed: bool) -> None:
    assert key_url_allowed(url, {"api-na.myconnectwise.net", "127.0.0.1"}) is allowed


def test_parse_callback_reads_agreement_hints_and_ignores_other_types() -> None:
    hint = parse_callback(
        {"Type": "agreement", "ID": 12, "Action": "deleted", "Metadata": {"key_url": KEY_URL}}
    )
    assert hint is not None and not isinstance(hint, str)
    assert (hint.agreement_id, hint.action) == (12, "deleted")
    assert parse_callback({"Type": "company", "ID": 1}) is None
    assert parse_callback([1]) == "body is not a JSON object"
    assert parse_callback(
        {"Type": "agreement", "ID": "x", "Action": "added", "Metadata": {"key_url": KEY_URL}}
    ) == ("ID is not a positive integer")


def payload(agreement_id: int, action: str = "updated", key_url: str = KEY_URL) -> bytes:
    return json.dumps(
        {
            "Action": action,
            "Type": "agreement",
            "ID": agreement_id,
            "Entity": None,
            "Metadata": {"key_url": key_url},
        }
    ).encode()


async def test_endpoint_queues_a_recheck_for_a_validly_signed_callback_only() -> None:
    fetched: list[dict[str, Any]] = []

    def key_server(request: httpx.Request) -> httpx.Response:
        fetched.append({"url": str(request.url), "client": request.headers.get("clientId")})
        return httpx.Response(200, json={"signing_key": KEY})

    sim = make_simulator()
    tenant = parse_config(
        {
            "tenants": [
                {
                    "id": "acme",
                    "site": "api-na.myconnectwise.net",
                    "company_id": "acme",
                    "credentials": {
                        "public_key": {"env": "A"},
                        "private_key": {"env": "B"},
                        "client_id": {"env": "C"},
                    },
                }
            ]
        }
    ).tenants[0]
    poller = TenantPoller(tenant, sim_client(sim), RecordingPublisher(), InMemoryStore())
    fetcher = KeyFetcher(httpx.AsyncClient(transport=httpx.MockTransport(key_server)))
    app = build_app({"acme": poller}, fetcher, {"acme": "client-guid"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://poller") as http:
        good = payload(1001)
        ok = await http.post(
            "/callbacks/acme", content=good, headers={"x-content-signature": sign(good, KEY)}
        )
        forged = await http.post(
            "/callbacks/acme", content=payload(1002), headers={"x-content-signature": "bad"}
        )
        evil = payload(1003, key_url="https://evil.example.com/key")
        foreign = await http.post(
            "/callbacks/acme", content=evil, headers={"x-content-signature": sign(evil, KEY)}
        )
        unknown = await http.post(
            "/callbacks/other", content=good, headers={"x-content-signature": sign(good, KEY)}
        )
        garbage = await http.post("/callbacks/acme", content=b"{nope")
    assert [
        ok.status_code,
        forged.status_code,
        foreign.status_code,
        unknown.status_code,
        garbage.status_code,
    ] == [
        202,
        401,
        401,
        404,
        400,
    ]
    assert all(f["url"] == KEY_URL and f["client"] == "client-guid" for f in fetched)
    assert poller.hints.rechecks == {1001: False}
    await poller.client.aclose()
