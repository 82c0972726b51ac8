"""The simulator over real HTTP (uvicorn on a local port): auth, errors, paging, throttling, faults,
fields, count, the clock, callbacks, TLS and the CLI. Needs no Kafka or PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import orjson
import pytest

from devtools.cwsim.testing import SimHandle, run_simulator

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    # 3 x 400 = 1,200 agreements: more than one 1,000-row page
    with run_simulator(companies=3, agreements_per_company=400, additions_per_agreement=2,
                       anchor=date(2026, 5, 1)) as handle:  # fmt: skip
        yield handle


@pytest.fixture
def api(sim: SimHandle) -> Iterator[httpx.Client]:
    sim.control.clear_faults()
    sim.control.set_budget(0)
    sim.control.set_permissions(finance_agreements=True, company_maintenance=True)
    with sim.client(timeout=30) as client:
        yield client


def next_link(response: httpx.Response) -> str | None:
    return response.links.get("next", {}).get("url")


# -- auth ---------------------------------------------------------------------------------------------------


class TestAuth:
    def test_rejects_missing_credentials_with_401(self, sim: SimHandle) -> None:
        response = httpx.get(f"{sim.base_url}/finance/agreements", headers={"clientId": sim.client_id})
        assert response.status_code == 401
        assert response.json()["code"] == "Unauthorized"

    def test_rejects_a_wrong_private_key_with_401_without_echoing_it(self, sim: SimHandle) -> None:
        token = base64.b64encode(f"{sim.company_id}+{sim.public_key}:wrong-secret".encode()).decode()
        response = httpx.get(
            f"{sim.base_url}/finance/agreements",
            headers={"Authorization": f"Basic {token}", "clientId": sim.client_id},
        )
        assert response.status_code == 401
        assert "wrong-secret" not in response.text and sim.public_key not in response.text

    def test_requires_the_client_id_header(self, sim: SimHandle) -> None:
        headers = {"Authorization": sim.auth_headers()["Authorization"]}
        missing = httpx.get(f"{sim.base_url}/system/info", headers=headers)
        wrong = httpx.get(f"{sim.base_url}/system/info", headers={**headers, "ClientID": "nope"})
        assert (missing.status_code, wrong.status_code) == (401, 401)

    def test_client_id_header_name_is_case_insensitive_and_company_too(self, sim: SimHandle) -> None:
        token = base64.b64encode(
            f"{sim.company_id.upper()}+{sim.public_key}:{sim.private_key}".encode()
        ).decode()
        response = httpx.get(
            f"{sim.base_url}/system/info",
            headers={"authorization": f"Basic {token}", "CLIENTID": sim.client_id},
        )
        assert response.status_code == 200

    def test_missing_agreement_permission_answers_403_naming_it(
        self, sim: SimHandle, api: httpx.Client
    ) -> None:
        sim.control.set_permissions(finance_agreements=False)
        agreements = api.get("/finance/agreements")
        additions = api.get("/finance/agreements/1/additions")
        companies = api.get("/company/companies")
        assert (agreements.status_code, additions.status_code, companies.status_code) == (403, 403, 200)
        body = agreements.json()
        assert body["code"] == "Forbidden"
        assert "Finance > Agreements" in body["message"]

    def test_missing_company_permission_answers_403(self, sim: SimHandle, api: httpx.Client) -> None:
        sim.control.set_permissions(company_maintenance=False)
        response = api.get("/company/companies")
        assert response.status_code == 403
        assert "Company Maintenance" in response.json()["message"]

    def test_forced_401_and_403_periods(self, sim: SimHandle, api: httpx.Client) -> None:
        sim.control.set_faults(force_401_s=30)
        assert api.get("/system/info").status_code == 401
        sim.control.set_faults(force_401_s=0, force_403_s=-1)
        assert api.get("/system/info").status_code == 403
        sim.control.set_faults(force_403_s=0)
        assert api.get("/system/info").status_code == 200

    def test_company_info_needs_no_auth_and_names_the_codebase(self, sim: SimHandle) -> None:
        body = httpx.get(f"{sim.site_url}/login/companyinfo/{sim.company_id}").json()
        assert body["Codebase"] == "v4_6_release/"
        assert body["IsCloud"] in ("True", "False")
        assert body["CompanyID"] == sim.company_id


# -- queries ------------------------------------------------------------------------------------------------


class TestQueries:
    def test_rejects_malformed_condition_with_400(self, api: httpx.Client) -> None:
        response = api.get("/finance/agreements", params={"conditions": "company/id = = 3"})
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "InvalidObject"
        assert body["errors"][0]["field"] == "conditions"

    def test_rejects_unknown_field_in_condition_with_400(self, api: httpx.Client) -> None:
        response = api.get("/finance/agreements/count", params={"conditions": "nosuchfield = 1"})
        assert response.status_code == 400

    def test_count_honours_conditions(self, api: httpx.Client) -> None:
        condition = 'agreementStatus = "Active" and billAmount > 0'
        count = api.get("/finance/agreements/count", params={"conditions": condition}).json()["count"]
        rows = api.get("/finance/agreements", params={"conditions": condition, "pageSize": 1000}).json()
        expected = [r for r in rows if r["agreementStatus"] == "Active" and r["billAmount"] > 0]
        assert count == len(expected) == len(rows)
        assert 0 < count < 1200

    def test_fields_returns_partial_records(self, api: httpx.Client) -> None:
        rows = api.get(
            "/finance/agreements", params={"fields": "id,company/id,_info/lastUpdated", "pageSize": 5}
        ).json()
        assert len(rows) == 5
        for row in rows:
            assert set(row) == {"id", "company", "_info"}
            assert set(row["company"]) == {"id"}
            assert set(row["_info"]) == {"lastUpdated"}

    def test_order_by_descending(self, api: httpx.Client) -> None:
        rows = api.get(
            "/finance/agreements", params={"orderBy": "id desc", "pageSize": 10, "fields": "id"}
        ).json()
        ids = [r["id"] for r in rows]
        assert ids == sorted(ids, reverse=True)

    def test_default_page_size_is_25(self, api: httpx.Client) -> None:
        assert len(api.get("/finance/agreements").json()) == 25

    def test_navigable_paging_visits_every_agreement_once(self, api: httpx.Client) -> None:
        url: str | None = "/finance/agreements"
        params: dict[str, Any] | None = {"pageSize": 1000, "orderBy": "id asc", "fields": "id"}
        seen: list[int] = []
        pages = 0
        while url:
            response = api.get(url, params=params)
            assert response.status_code == 200
            seen += [r["id"] for r in response.json()]
            url, params = next_link(response), None
            pages += 1
        assert pages == 2
        assert len(seen) == 1200 and seen == sorted(set(seen))

    def test_navigable_links_carry_conditions(self, api: httpx.Client) -> None:
        condition = "lastUpdated >= [2000-01-01T00:00:00Z]"
        first = api.get("/finance/agreements", params={"conditions": condition, "pageSize": 500})
        assert set(first.links) == {"next", "last"}
        second = api.get(first.links["next"]["url"])
        assert set(second.links) == {"first", "prev", "next", "last"}
        third = api.get(second.links["next"]["url"])
        assert set(third.links) == {"first", "prev"}
        assert len(third.json()) == 200

    def test_forward_only_paging_visits_every_agreement_once(self, api: httpx.Client) -> None:
        headers = {"pagination-type": "forward-only"}
        url: str | None = "/finance/agreements"
        params: dict[str, Any] | None = {"pageSize": 1000, "fields": "id"}
        seen: list[int] = []
        requests = 0
        while url:
            response = api.get(url, params=params, headers=headers)
            assert response.status_code == 200
            seen += [r["id"] for r in response.json()]
            url, params = next_link(response), None
            requests += 1
        assert len(seen) == 1200 and seen == sorted(set(seen))
        assert requests == 3  # 1000 + 200 + the empty page, which has no Link

    def test_forward_only_page_id_means_id_greater_than(self, api: httpx.Client) -> None:
        ids = [
            r["id"] for r in api.get("/finance/agreements", params={"pageSize": 10, "fields": "id"}).json()
        ]
        response = api.get(
            "/finance/agreements",
            params={"pageId": ids[4], "pageSize": 3, "fields": "id"},
            headers={"Pagination-Type": "Forward-Only"},
        )
        assert [r["id"] for r in response.json()] == ids[5:8]
        assert f"pageId={ids[7]}" in response.links["next"]["url"]

    def test_forward_only_refuses_order_by(self, api: httpx.Client) -> None:
        response = api.get(
            "/finance/agreements", params={"orderBy": "id desc"}, headers={"pagination-type": "forward-only"}
        )
        assert response.status_code == 400

    def test_unknown_record_and_endpoint_answer_404(self, api: httpx.Client) -> None:
        missing = api.get("/finance/agreements/1")
        unknown = api.get("/finance/nothing")
        assert missing.json() == {"code": "NotFound", "message": "Agreement 1 not found"}
        assert unknown.json()["code"] == "ConnectWiseApi"


# -- throttling and faults ------------------------------------------------------------------------------------


class TestThrottlingAndFaults:
    def test_over_budget_answers_429_with_retry_after(self, sim: SimHandle, api: httpx.Client) -> None:
        sim.control.reset_stats()
        sim.control.set_budget(3)
        statuses = [api.get("/system/info").status_code for _ in range(5)]
        throttled = api.get("/system/info")
        assert statuses == [200, 200, 200, 429, 429]
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
        assert throttled.json()["error"] == "ConnectWiseAPI"
        assert sim.control.stats()["throttled"] == 3

    def test_budget_window_resets(self, sim: SimHandle, api: httpx.Client) -> None:
        sim.control.set_budget(1, window_s=0.5)
        assert api.get("/system/info").status_code == 200
        assert api.get("/system/info").status_code == 429
        time.sleep(0.6)
        assert api.get("/system/info").status_code == 200

    def test_error_rate_one_answers_5xx(self, sim: SimHandle, api: httpx.Client) -> None:
        sim.control.set_faults(error_rate=1.0, error_status=503)
        assert api.get("/finance/agreements").status_code == 503

    def test_timeout_fault_drops_the_connection(self, sim: SimHandle, api: httpx.Client) -> None:
        sim.control.set_faults(timeout_rate=1.0, timeout_hang_s=0.2)
        with pytest.raises(httpx.TransportError):
            api.get("/finance/agreements")

    def test_latency_is_added(self, sim: SimHandle, api: httpx.Client) -> None:
        sim.control.set_faults(latency_ms=150)
        start = time.perf_counter()
        api.get("/system/info")
        assert time.perf_counter() - start >= 0.15

    def test_stats_count_by_path_and_status(self, sim: SimHandle, api: httpx.Client) -> None:
        sim.control.reset_stats()
        api.get("/finance/agreements")
        api.get("/finance/agreements/1")
        stats = sim.control.stats()
        assert stats["by_path"] == {"/finance/agreements": 1, "/finance/agreements/{id}": 1}
        assert stats["by_status"] == {"200": 1, "404": 1}


# -- data changes, clock, callbacks ---------------------------------------------------------------------------


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


class TestChanges:
    def test_updates_stamp_last_updated_from_the_simulator_clock(
        self, sim: SimHandle, api: httpx.Client
    ) -> None:
        agreement_id = api.get("/finance/agreements", params={"pageSize": 1}).json()[0]["id"]
        sim.control.clock(set="2031-02-03T04:05:06Z", freeze=True)
        try:
            sim.control.update_agreement(agreement_id, billAmount=123.45)
            found = api.get(
                "/finance/agreements", params={"conditions": "lastUpdated >= [2031-02-03T04:05:06Z]"}
            ).json()
        finally:
            sim.control.clock(reset=True)
        assert [a["id"] for a in found] == [agreement_id]
        assert found[0]["_info"]["lastUpdated"] == "2031-02-03T04:05:06Z"
        assert found[0]["billAmount"] == 123.45

    def test_signed_callbacks_are_delivered_for_agreement_changes(
        self, sim: SimHandle, api: httpx.Client, receiver: str
    ) -> None:
        created = api.post(
            "/system/callbacks",
            json={"url": f"{receiver}/cw?recordId=", "objectId": 1, "type": "agreement", "level": "owner"},
        )
        assert created.status_code == 201
        callback = created.json()
        try:
            duplicate = api.post(
                "/system/callbacks",
                json={
                    "url": f"{receiver}/cw?recordId=",
                    "objectId": 1,
                    "type": "agreement",
                    "level": "owner",
                },
            )
            assert duplicate.status_code == 400
            assert duplicate.json()["errors"][0]["code"] == "ObjectExists"
            company_id = api.get("/company/companies", params={"pageSize": 1}).json()[0]["id"]
            agreement = sim.control.create_agreement(company_id, name="Callback test")
            sim.control.delete_agreement(agreement["id"])
            wait_for(lambda: len(Receiver.received) >= 2)
        finally:
            assert api.delete(f"/system/callbacks/{callback['id']}").status_code == 204
        (path1, headers1, body1), (_, _, body2) = Receiver.received[:2]
        added, deleted = orjson.loads(body1), orjson.loads(body2)
        assert path1 == f"/cw?recordId={agreement['id']}"
        assert (added["Action"], added["Type"], added["ID"]) == ("added", "agreement", agreement["id"])
        assert orjson.loads(added["Entity"])["name"] == "Callback test"
        assert (deleted["Action"], deleted["Entity"]) == ("deleted", None)
        key_response = httpx.get(added["Metadata"]["key_url"], headers={"ClientId": sim.client_id})
        signing_key = key_response.json()["signing_key"]
        expected = base64.b64encode(
            hmac.new(hashlib.sha256(signing_key.encode()).digest(), body1, hashlib.sha256).digest()
        ).decode()
        assert headers1["x-content-signature"] == expected
        assert api.get(f"/system/callbacks/{callback['id']}").status_code == 404

    def test_an_unreachable_callback_never_fails_the_change(self, sim: SimHandle, api: httpx.Client) -> None:
        created = api.post(
            "/system/callbacks",
            json={"url": "http://127.0.0.1:9/nothing", "objectId": 1, "type": "agreement", "level": "owner"},
        ).json()
        try:
            agreement_id = api.get("/finance/agreements", params={"pageSize": 1}).json()[0]["id"]
            updated = sim.control.update_agreement(agreement_id, customerPO="PO-CB")
            assert updated["customerPO"] == "PO-CB"
            wait_for(lambda: any(d["error"] for d in sim.control.deliveries()))
        finally:
            api.delete(f"/system/callbacks/{created['id']}")

    def test_addition_changes_recompute_amounts(self, sim: SimHandle, api: httpx.Client) -> None:
        agreement_id = api.get("/finance/agreements", params={"pageSize": 1}).json()[0]["id"]
        addition = sim.control.create_addition(agreement_id, product="M365-BP", quantity=10, unitPrice=22.5)
        assert addition["extPrice"] == 225.0
        updated = sim.control.update_addition(agreement_id, addition["id"], lessIncluded=2)
        served = api.get(f"/finance/agreements/{agreement_id}/additions/{addition['id']}").json()
        assert served == updated
        assert (served["billedQuantity"], served["extPrice"]) == (8.0, 180.0)
        cancelled = sim.control.cancel_addition(agreement_id, addition["id"], date="2026-07-01")
        assert cancelled["cancelledDate"] == "2026-07-01T00:00:00Z"


# -- TLS and the CLI ------------------------------------------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("openssl") is None and os.environ.get("CI", "").lower() != "true",
    reason="tls=True makes its certificate with the openssl CLI (under CI=true a missing openssl fails instead)",
)
def test_serves_https_with_a_certificate() -> None:
    with run_simulator(companies=1, agreements_per_company=2, tls=True) as sim:
        assert sim.base_url.startswith("https://")
        with sim.client() as client:
            response = client.get("/finance/agreements")
        assert response.status_code == 200
        assert len(response.json()) == 2


def test_cli_ctl_drives_a_simulator_running_in_a_subprocess() -> None:
    with run_simulator(companies=2, agreements_per_company=3, subprocess=True) as sim:
        command = [
            sys.executable,
            "-m",
            "devtools.cwsim",
            "ctl",
            "faults",
            "latency_ms=5",
            "--url",
            sim.site_url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
        assert orjson.loads(result.stdout)["latency_ms"] == 5
        info = subprocess.run(
            [sys.executable, "-m", "devtools.cwsim", "ctl", "info", "--url", sim.site_url],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert orjson.loads(info.stdout)["counts"]["agreements"] == 6
        assert sim.private_key not in info.stdout
