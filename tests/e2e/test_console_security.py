"""The console's session rules over HTTP on the running gateway: sign-in sets a strict cookie, pages
need a session, state-changing requests need the session's CSRF token and the console's origin, and a
refused request records and publishes no command."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from e2e_support import E2E

from services.gateway.local_issuer import ensure_keys, mint_token

CSRF_RE = re.compile(r'"X-CSRF-Token": "([0-9a-f]{64})"')


@pytest.fixture(scope="module")
def subject() -> str:
    return f"console-{secrets.token_hex(4)}@msp.example"


@pytest.fixture(scope="module")
def session(e2e: E2E, subject: str) -> Iterator[httpx.Client]:
    url = e2e.pipeline.gateway_url or ""
    with httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/ui/sign-in", data={"token": e2e.pipeline.gateway_token(subject=subject)})
        assert response.status_code == 303, response.text
        yield client


def commands_of(e2e: E2E, subject: str) -> int:
    with e2e.pipeline.engine.connect() as connection:
        return int(
            connection.execute(
                sa.text("SELECT count(*) FROM gateway_commands WHERE requested_by = :s"), {"s": subject}
            ).scalar_one()
        )


def a_client(session: httpx.Client) -> str:
    page = session.get("/ui/clients")
    assert page.status_code == 200
    found = re.search(r'data-client="([^"]+)"', page.text)
    assert found, "no client listed"
    return found.group(1)


def a_synced_contract(e2e: E2E) -> str:
    """A PSA-synced contract of this session's tenant (synced here when there is none yet)."""

    def synced() -> str | None:
        rows = e2e._rows(
            "SELECT contract_key FROM contracts WHERE tenant_id = :t AND psa_synced LIMIT 1", t=e2e.tenant
        )
        return str(rows[0]["contract_key"]) if rows else None

    if (key := synced()) is not None:
        return key
    new = e2e.wait_for(
        "a new agreement in the catalog",
        lambda: e2e._rows(
            "SELECT client_id, agreement_id FROM catalog_item_states "
            "WHERE tenant_id = :t AND kind = 'agreement' AND state = 'new' LIMIT 1",
            t=e2e.tenant,
        ),
    )[0]
    e2e.select(str(new["client_id"]), [int(new["agreement_id"])], [])
    return e2e.wait_for("the selected agreement synced", synced)


def test_pages_without_a_session_redirect_to_sign_in(e2e: E2E) -> None:
    response = httpx.get(f"{e2e.pipeline.gateway_url}/ui/clients", timeout=30)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/sign-in?next=%2Fui%2Fclients"


def test_a_refused_token_signs_nobody_in(e2e: E2E) -> None:
    url = e2e.pipeline.gateway_url or ""
    response = httpx.post(f"{url}/ui/sign-in", data={"token": "not-a-token"}, timeout=30)
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert "Sign-in refused" in response.text


def test_sign_in_sets_a_strict_http_only_cookie(e2e: E2E) -> None:
    url = e2e.pipeline.gateway_url or ""
    response = httpx.post(
        f"{url}/ui/sign-in",
        data={"token": e2e.pipeline.gateway_token(), "next": "https://evil.example/"},
        timeout=30,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/clients"  # never an open redirect
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("cs_console=")
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie


def test_a_token_too_large_for_a_cookie_is_refused_with_the_reason(e2e: E2E) -> None:
    pipeline = e2e.pipeline
    huge = mint_token(
        ensure_keys(pipeline.options.work_dir / "gateway-keys"),
        tenant_id=e2e.tenant,
        subject="big@msp.example",
        scopes=["catalog:read"],
        issuer=pipeline.GATEWAY_ISSUER,
        audience=pipeline.GATEWAY_AUDIENCE,
        ttl_seconds=600,
        client_scope=[f"{n:06d}" for n in range(500)],
    )
    assert len(huge) > 4000
    response = httpx.post(f"{pipeline.gateway_url}/ui/sign-in", data={"token": huge}, timeout=30)
    assert response.status_code == 400 and "too large for a browser cookie" in response.text
    assert "set-cookie" not in response.headers


def test_a_cross_origin_sign_in_is_refused(e2e: E2E) -> None:
    url = e2e.pipeline.gateway_url or ""
    response = httpx.post(
        f"{url}/ui/sign-in",
        data={"token": e2e.pipeline.gateway_token()},
        headers={"Origin": "https://evil.example"},
        timeout=30,
    )
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_pages_carry_a_strict_content_security_policy(session: httpx.Client) -> None:
    response = session.get("/ui/clients")
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


def test_state_changing_requests_without_the_csrf_token_or_from_another_origin_are_refused(
    e2e: E2E, session: httpx.Client, subject: str
) -> None:
    client = a_client(session)
    page = session.get(f"/ui/clients/{client}")
    csrf = CSRF_RE.search(page.text)
    assert csrf, "the page carries no CSRF token"
    body = {"agreement_ids": ["1"]}
    missing = session.post(f"/ui/clients/{client}/sync", data=body)
    wrong = session.post(f"/ui/clients/{client}/sync", data=body, headers={"X-CSRF-Token": "0" * 64})
    foreign = session.post(
        f"/ui/clients/{client}/sync",
        data=body,
        headers={"X-CSRF-Token": csrf.group(1), "Origin": "https://evil.example"},
    )
    auto_sync = session.post(f"/ui/clients/{client}/auto-sync", data={"enabled": "true"})
    assert [r.status_code for r in (missing, wrong, foreign, auto_sync)] == [403, 403, 403, 403]
    assert commands_of(e2e, subject) == 0


def test_a_body_above_the_limit_is_refused_before_it_is_read(session: httpx.Client) -> None:
    client = a_client(session)
    csrf = CSRF_RE.search(session.get(f"/ui/clients/{client}").text)
    assert csrf
    huge = {"agreement_ids": ["1"] * 40_000}  # ~600 kB, above the 256 kB default
    response = session.post(f"/ui/clients/{client}/sync", data=huge, headers={"X-CSRF-Token": csrf.group(1)})
    assert response.status_code == 413


def test_a_psa_owned_edit_posted_to_the_console_is_refused_and_publishes_nothing(
    e2e: E2E, session: httpx.Client, subject: str
) -> None:
    key = a_synced_contract(e2e)
    page = session.get(f"/ui/contracts/{key}")
    csrf = CSRF_RE.search(page.text)
    assert page.status_code == 200 and csrf
    refused = session.post(
        f"/ui/contracts/{key}/edit", data={"status": "cancelled"}, headers={"X-CSRF-Token": csrf.group(1)}
    )
    assert refused.status_code == 422 and "PSA-owned" in refused.text
    assert commands_of(e2e, subject) == 0


def test_a_reverse_proxys_bearer_token_is_a_session(e2e: E2E) -> None:
    url = e2e.pipeline.gateway_url or ""
    token = e2e.pipeline.gateway_token(scopes=["catalog:read"])
    response = httpx.get(f"{url}/ui/clients", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200 and e2e.tenant in response.text
    # and its scopes still apply
    forbidden = httpx.get(f"{url}/ui/activity", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert forbidden.status_code == 403
