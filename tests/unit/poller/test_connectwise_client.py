"""ConnectWise client over httpx.MockTransport: headers, codebase discovery, typed errors, redaction."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from test_connectwise_support import (
    API,
    CLIENT_ID,
    PRIVATE_KEY,
    PUBLIC_KEY,
    connection,
    expected_basic,
    json_response,
    make_client,
)

from services.poller.connectwise import (
    Agreement,
    ConnectWiseAuthenticationError,
    ConnectWiseBadRequestError,
    ConnectWiseClient,
    ConnectWiseError,
    ConnectWiseForeignNotFoundError,
    ConnectWiseNotFoundError,
    ConnectWisePermissionError,
    ConnectWiseProtocolError,
    ConnectWiseServerError,
    ConnectWiseThrottledError,
    ConnectWiseTransportError,
    RetryPolicy,
)
from services.poller.connectwise import conditions as cond

AGREEMENT = {
    "id": 1234,
    "name": "Acme - Managed Services",
    "company": {"id": 250, "identifier": "AcmeCorp", "name": "Acme Corporation", "_info": {}},
    "billingCycle": {"id": 2, "name": "Monthly", "_info": {}},
    "billAmount": 1500.1,
    "currency": {"id": 7, "currencyCode": "USD", "_info": {}},
    "startDate": "2024-01-01T00:00:00Z",
    "agreementStatus": "Active",
    "site": {},
    "someFutureField": {"nested": [1, 2]},
    "_info": {"lastUpdated": "2025-03-14T16:02:11Z", "updatedBy": "jsmith"},
}


async def test_every_api_request_carries_basic_auth_client_id_and_pinned_version() -> None:
    client, fake, _ = make_client(lambda r: json_response(200, AGREEMENT), api_version="2025.8")
    async with client:
        await client.get_agreement(1234)
    request = fake.api_requests[0]
    assert request.headers["Authorization"] == expected_basic()
    assert request.headers["clientId"] == CLIENT_ID
    assert request.headers["Accept"] == "application/vnd.connectwise.com+json; version=2025.8"
    assert str(request.url) == f"{API}/finance/agreements/1234"


async def test_discovers_codebase_once_and_caches_it() -> None:
    client, fake, _ = make_client(lambda r: json_response(200, AGREEMENT))
    async with client:
        await client.get_agreement(1)
        await client.get_agreement(2)
    assert fake.companyinfo_calls == 1
    info_request = next(r for r in fake.requests if r.url.path == "/login/companyinfo/acme")
    assert "Authorization" not in info_request.headers
    assert client.codebase == "v2025_1/"


async def test_configured_codebase_skips_discovery() -> None:
    client, fake, _ = make_client(lambda r: json_response(200, AGREEMENT), codebase="v2025_1")
    async with client:
        await client.get_agreement(1)
    assert fake.companyinfo_calls == 0
    assert fake.api_requests[0].url.path == "/v2025_1/apis/3.0/finance/agreements/1"


async def test_refreshes_codebase_once_on_404_and_retries_when_it_moved() -> None:
    client, fake, ft = make_client(lambda r: json_response(200, AGREEMENT))
    async with client:
        await client.get_agreement(1)
        fake.codebase = "v2025_2/"  # the cloud upgraded the site
        ft.now += 120
        agreement = await client.get_agreement(1)
    assert agreement.id == 1234
    assert fake.companyinfo_calls == 2
    assert [r.url.path for r in fake.api_requests] == [
        "/v2025_1/apis/3.0/finance/agreements/1",
        "/v2025_1/apis/3.0/finance/agreements/1",
        "/v2025_2/apis/3.0/finance/agreements/1",
    ]
    assert client.stats.codebase_refreshes == 1


async def test_a_real_404_is_surfaced_after_one_refresh_with_unchanged_codebase() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/99"):
            return json_response(404, {"code": "NotFound", "message": "Agreement 99 not found"})
        return json_response(200, AGREEMENT)

    client, fake, ft = make_client(api)
    async with client:
        await client.get_agreement(1)
        ft.now += 120
        with pytest.raises(ConnectWiseNotFoundError) as raised:
            await client.get_agreement(99)
    assert raised.value.code == "NotFound"
    assert raised.value.cw_message == "Agreement 99 not found"
    assert raised.value.retryable is False
    assert fake.companyinfo_calls == 2  # discovery, then one refresh on the 404
    assert [r.url.path.rsplit("/", 1)[1] for r in fake.api_requests] == ["1", "99"]  # not retried


async def test_a_404_right_after_discovery_does_not_rediscover() -> None:
    client, fake, _ = make_client(lambda r: json_response(404, {"code": "NotFound", "message": "gone"}))
    async with client:
        with pytest.raises(ConnectWiseNotFoundError):
            await client.get_agreement(99)
    assert fake.companyinfo_calls == 1
    assert len(fake.api_requests) == 1


async def test_404_refresh_is_rate_limited_to_once_per_minute() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return json_response(404, {"code": "NotFound", "message": "gone"})

    client, fake, ft = make_client(api)
    async with client:
        ft.now += 120
        for _ in range(5):
            with pytest.raises(ConnectWiseNotFoundError):
                await client.get_agreement(5)
        ft.now += 120
        with pytest.raises(ConnectWiseNotFoundError):
            await client.get_agreement(5)
    assert fake.companyinfo_calls == 2


async def test_companyinfo_without_codebase_is_a_protocol_error_naming_the_fix() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response(200, {"CompanyName": None, "Codebase": None})

    client = ConnectWiseClient(connection(), transport=httpx.MockTransport(handler))
    async with client:
        with pytest.raises(ConnectWiseProtocolError) as raised:
            await client.system_info()
    assert "company id" in raised.value.operator_action


async def test_models_keep_unknown_fields_raw_json_and_decimal_money() -> None:
    client, _, _ = make_client(lambda r: json_response(200, AGREEMENT))
    async with client:
        agreement = await client.get_agreement(1234)
    assert isinstance(agreement, Agreement)
    assert agreement.billAmount == Decimal("1500.1")
    assert agreement.company is not None and agreement.company.id == 250
    assert agreement.currency is not None and agreement.currency.currencyCode == "USD"
    assert agreement.site is not None and agreement.site.id is None
    assert agreement.raw == AGREEMENT
    assert agreement.model_extra == {"someFutureField": {"nested": [1, 2]}}
    assert (
        agreement.last_updated is not None
        and agreement.last_updated.isoformat() == "2025-03-14T16:02:11+00:00"
    )


async def test_dirty_values_do_not_fail_a_row() -> None:
    dirty = {"id": 5, "startDate": "not a date", "billAmount": "abc", "company": "oops", "_info": None}
    client, _, _ = make_client(lambda r: json_response(200, dirty))
    async with client:
        agreement = await client.get_agreement(5)
    assert agreement.id == 5
    assert agreement.startDate is None and agreement.billAmount is None and agreement.company is None
    assert agreement.raw == dirty


async def test_count_returns_the_count_for_the_same_conditions() -> None:
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params.get("conditions", ""))
        return json_response(200, {"count": 1234})

    client, _, _ = make_client(api)
    async with client:
        count = await client.count_agreements(cond.eq("company/id", 250))
    assert count == 1234
    assert seen == ["company/id = 250"]


async def test_callbacks_are_created_with_the_documented_body_and_deleted() -> None:
    bodies: list[bytes] = []

    def api(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            bodies.append(request.content)
            return json_response(
                201,
                {
                    "id": 26552,
                    "url": "https://hooks.example/cw?recordId=",
                    "objectId": 1,
                    "type": "agreement",
                    "level": "owner",
                    "memberId": 243,
                },
            )
        assert request.method == "DELETE"
        return httpx.Response(204)

    client, fake, _ = make_client(api)
    async with client:
        created = await client.create_callback(
            "https://hooks.example/cw?recordId=", description="contract-sync"
        )
        await client.delete_callback(created.id or 0)
    assert created.id == 26552
    import json

    assert json.loads(bodies[0]) == {
        "url": "https://hooks.example/cw?recordId=",
        "objectId": 1,
        "type": "agreement",
        "level": "owner",
        "inactiveFlag": False,
        "isSelfSuppressedFlag": True,
        "description": "contract-sync",
    }
    assert fake.api_requests[-1].url.path.endswith("/system/callbacks/26552")


@pytest.mark.parametrize(
    ("status", "body", "error_type", "retryable"),
    [
        (
            400,
            {
                "code": "InvalidObject",
                "message": "conditions is invalid",
                "errors": [{"code": "InvalidField", "message": "bad", "field": "conditions"}],
            },
            ConnectWiseBadRequestError,
            False,
        ),
        (
            401,
            {"code": "Unauthorized", "message": "UserNotAuthenticated"},
            ConnectWiseAuthenticationError,
            False,
        ),
        (403, {"code": "Forbidden", "message": "Improper security role"}, ConnectWisePermissionError, False),
        (409, {"code": "Conflict", "message": "conflict"}, ConnectWiseBadRequestError, False),
        (500, {"code": "ServerError", "message": "boom"}, ConnectWiseServerError, True),
        (429, {"error": "ConnectWiseAPI", "message": "Too many requests."}, ConnectWiseThrottledError, True),
    ],
)
async def test_statuses_map_to_typed_errors(
    status: int, body: dict[str, Any], error_type: type[ConnectWiseError], retryable: bool
) -> None:
    client, _, _ = make_client(lambda r: json_response(status, body), policy=RetryPolicy(max_attempts=1))
    async with client:
        with pytest.raises(error_type) as raised:
            await client.count_agreements()
    error = raised.value
    assert error.status_code == status
    assert error.retryable is retryable
    assert error.code == (body.get("code") or body.get("error"))
    assert error.cw_message == body["message"]
    assert error.path == "/finance/agreements/count"
    assert error.to_event_fields()["retryable"] is retryable


async def test_bad_request_carries_connectwise_validation_errors() -> None:
    body = {"code": "InvalidObject", "message": "invalid", "errors": [{"code": "InvalidField", "field": "x"}]}
    client, _, _ = make_client(lambda r: json_response(400, body))
    async with client:
        with pytest.raises(ConnectWiseBadRequestError) as raised:
            await client.count_agreements()
    assert raised.value.errors == [{"code": "InvalidField", "field": "x"}]
    assert client.stats.retries == 0


@pytest.mark.parametrize(
    ("call", "permission"),
    [
        ("agreements", "Finance > Agreements: Inquire Level All"),
        ("additions", "Finance > Agreements: Inquire Level All"),
        ("companies", "Companies > Company Maintenance: Inquire Level All"),
    ],
)
async def test_403_names_the_connectwise_permission_to_grant(call: str, permission: str) -> None:
    client, _, _ = make_client(lambda r: json_response(403, {"code": "Forbidden", "message": "no"}))
    async with client:
        with pytest.raises(ConnectWisePermissionError) as raised:
            if call == "agreements":
                await client.count_agreements()
            elif call == "additions":
                await client.count_additions(7)
            else:
                await client.count_companies()
    assert raised.value.permission == permission
    assert permission in raised.value.operator_action
    assert permission in str(raised.value)


async def test_401_operator_action_says_to_check_keys_and_pauses() -> None:
    client, _, _ = make_client(lambda r: json_response(401, {"code": "Unauthorized", "message": "no"}))
    async with client:
        with pytest.raises(ConnectWiseAuthenticationError) as raised:
            await client.system_info()
    assert "private key" in raised.value.operator_action
    assert "paused" in raised.value.operator_action


async def test_redirects_are_not_followed() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://evil.example/steal"})

    client, fake, _ = make_client(api)
    async with client:
        with pytest.raises(ConnectWiseProtocolError):
            await client.system_info()
    assert all(r.url.host == "cw.example.test" for r in fake.requests)


async def test_non_json_answers_are_protocol_errors() -> None:
    client, _, _ = make_client(lambda r: httpx.Response(200, text="<html>login</html>"))
    async with client:
        with pytest.raises(ConnectWiseProtocolError, match="not JSON"):
            await client.system_info()


def test_connection_refuses_plain_http_except_loopback() -> None:
    with pytest.raises(ValidationError, match="HTTPS"):
        connection(site="http://api-na.myconnectwise.net")
    assert connection(site="http://127.0.0.1:8080").origin == "http://127.0.0.1:8080"
    assert connection(site="api-na.myconnectwise.net").origin == "https://api-na.myconnectwise.net"


def test_rejects_ids_that_are_not_positive_int32() -> None:
    client, _, _ = make_client(lambda r: json_response(200, {}))
    for bad in (0, -1, 2**31, True):
        with pytest.raises(ValueError):
            client.list_additions(bad)  # type: ignore[arg-type]


# --- credentials never leak ------------------------------------------------------------------------

SECRETS = (PUBLIC_KEY, PRIVATE_KEY, CLIENT_ID)


def assert_no_secret(text: str) -> None:
    for secret in (*SECRETS, expected_basic().removeprefix("Basic ")):
        assert secret not in text


def test_connection_and_client_reprs_hold_no_credentials() -> None:
    conn = connection()
    client = ConnectWiseClient(conn, transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    for text in (
        repr(conn),
        str(conn),
        repr(client),
        str(client),
        conn.model_dump_json(),
        str(conn.model_dump()),
        repr(client.stats),
    ):
        assert_no_secret(text)


async def test_every_error_type_holds_no_credentials_even_when_the_server_echoes_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    echo = f"bad key acme+{PUBLIC_KEY}:{PRIVATE_KEY} client {CLIENT_ID}"
    errors: list[ConnectWiseError] = []
    caplog.set_level(logging.DEBUG)
    for status, code in (
        (400, echo),
        (401, echo),
        (403, echo),
        (404, echo),
        (404, "NotFound"),
        (429, echo),
        (500, echo),
        (503, echo),
    ):
        body = {"code": code, "message": echo, "errors": [{"message": echo}]}
        client, _, ft = make_client(
            lambda r, s=status, b=body: json_response(s, b), policy=RetryPolicy(max_attempts=2)
        )
        async with client:
            ft.now += 120
            with pytest.raises(ConnectWiseError) as raised:
                await client.count_agreements()
        errors.append(raised.value)

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect {echo}", request=request)

    client = ConnectWiseClient(
        connection(codebase="v1"),
        transport=httpx.MockTransport(broken),
        retry_policy=RetryPolicy(max_attempts=1),
    )
    async with client:
        with pytest.raises(ConnectWiseTransportError) as transport_error:
            await client.system_info()
    errors.append(transport_error.value)

    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=f"<html>{echo}</html>", headers={"content-type": "text/html"})

    client = ConnectWiseClient(connection(codebase="v1"), transport=httpx.MockTransport(html))
    async with client:
        with pytest.raises(ConnectWiseProtocolError) as protocol_error:
            await client.system_info()
    errors.append(protocol_error.value)
    assert {type(e) for e in errors} >= {
        ConnectWiseBadRequestError,
        ConnectWiseAuthenticationError,
        ConnectWisePermissionError,
        ConnectWiseNotFoundError,
        ConnectWiseForeignNotFoundError,
        ConnectWiseThrottledError,
        ConnectWiseServerError,
        ConnectWiseTransportError,
        ConnectWiseProtocolError,
    }
    for error in errors:
        for text in (
            str(error),
            repr(error),
            str(error.to_event_fields()),
            str(error.errors),
            str(error.args),
        ):
            assert_no_secret(text)
        if not isinstance(error, ConnectWiseProtocolError):  # built without the server's text at all
            assert "[redacted]" in str(error) or "[redacted]" in repr(error)
    assert_no_secret(caplog.text)
    assert "connectwise" in caplog.text  # the requests were logged, without credentials


async def test_unknown_company_at_discovery_says_to_check_the_company_id() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response(404, {"code": "NotFound", "message": "company not found"})

    client = ConnectWiseClient(connection(), transport=httpx.MockTransport(handler))
    async with client:
        with pytest.raises(ConnectWiseProtocolError) as raised:
            await client.count_agreements()
    assert raised.value.status_code == 404
    assert "company id" in raised.value.operator_action


async def test_never_more_requests_in_flight_than_max_connections() -> None:
    import asyncio

    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        if request.url.path.startswith("/login/"):
            return json_response(200, {"Codebase": "v2025_1/"})
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return json_response(200, AGREEMENT)

    conn = connection(max_connections=10, requests_per_minute=1_000_000)
    async with ConnectWiseClient(conn, transport=httpx.MockTransport(handler)) as client:
        results = await asyncio.gather(*(client.get_agreement(1) for _ in range(60)))
    assert len(results) == 60
    assert peak == 10
