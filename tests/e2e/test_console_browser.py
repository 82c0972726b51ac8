"""The Sync-from-PSA console in a real Chromium over the running pipeline, its gateway and the simulator.

One walkthrough covers the imitated flow's seven steps on a company of its own (open the dialog; new
and updated items with their additions; tick items and see the count on the button; sync and see the
contracts appear without a reload; a PSA-owned field read-only and its edit through the API refused;
auto-sync on disables manual sync and a ConnectWise change appears without a reload; Last synced
shows the time), with a screenshot of each step and the axe-core check on the four pages. A second
test signs in as the other tenant polling the same simulator and finds none of the first tenant's data.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from browser_support import Shots, axe_violations, chromium_path, no_browser
from e2e_support import E2E
from gateway_support import bearer
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

WAIT_MS = 60_000
LAST_SYNCED_RE = re.compile(r"Last synced: (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) UTC")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:
        no_browser("no Chromium found (apt-get install chromium, or set CONTRACT_SYNC_CHROMIUM)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def shots() -> Shots:
    return Shots()


@pytest.fixture(scope="module")
def company(e2e: E2E) -> dict[str, object]:
    """A company of this module in the simulator: three agreements, the first two with two additions."""
    control = e2e.pipeline.control
    marker = secrets.token_hex(3)  # the simulator is shared by both tenants: names carry no tenant id
    created = control.add_company(name=f"Console {marker}")
    agreements = []
    for n, label in enumerate(("Managed Workstations", "Backup Plan", "Firewall Care")):
        agreement = control.create_agreement(
            created["id"], name=f"{label} {marker}", billAmount=100 + n, billingCycle="Monthly"
        )
        additions = [
            control.create_addition(agreement["id"], quantity=3 + k, unitPrice=5)
            for k in range(2 if n < 2 else 0)
        ]
        agreements.append({**agreement, "additions": additions})
    return {"id": str(created["id"]), "agreements": agreements}


def signed_in(
    browser: Browser, url: str, token: str, check_accessibility: bool = False
) -> tuple[BrowserContext, Page]:
    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto("/ui/")
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))
    if check_accessibility:
        assert_accessible(page, "sign-in page")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/ui/clients$"))
    return context, page


def assert_accessible(page: Page, where: str) -> None:
    violations = axe_violations(page)
    assert not violations, f"axe-core: serious/critical issues on the {where}: {violations}"


def wait_for_client_listed(page: Page, client: str) -> None:
    deadline = time.monotonic() + 60
    row = page.locator(f'#clients-rows tr[data-client="{client}"]')
    while time.monotonic() < deadline:
        page.goto(f"/ui/clients?q={client}")
        if row.count() and int(row.locator('[data-count="new"]').inner_text()) >= 7:
            return
        time.sleep(1)
    raise AssertionError(f"client {client} with its 7 new items never listed on the clients page")


def test_the_sync_from_psa_flow_in_a_real_browser(
    e2e: E2E, browser: Browser, shots: Shots, company: dict[str, object]
) -> None:
    pipeline = e2e.pipeline
    url = pipeline.gateway_url or ""
    other_tenant = pipeline.options.extra_tenants[0]
    client = str(company["id"])
    first, second, third = company["agreements"]  # type: ignore[misc]
    context, page = signed_in(
        browser, url, pipeline.gateway_token(subject="ops@msp.example"), check_accessibility=True
    )
    activity = context.new_page()
    try:
        activity.goto("/ui/activity")
        expect(activity.locator("#activity-state")).to_contain_text("Live")

        # the clients page: counts, search
        wait_for_client_listed(page, client)
        row = page.locator(f'#clients-rows tr[data-client="{client}"]')
        expect(row.locator('[data-count="new"]')).to_have_text("7")
        expect(row.locator('[data-count="synced"]')).to_have_text("0")
        page.goto("/ui/clients")
        page.get_by_label("Search clients").fill(client)
        expect(page.locator("#clients-rows tr")).to_have_count(1)
        shots.take(page, "clients")
        assert_accessible(page, "clients page")

        # 1. open the dialog from the client's contracts page
        page.get_by_role("link", name=f"Client {client}", exact=True).click()
        expect(page.get_by_role("heading", name=f"Contracts of client {client}")).to_be_visible()
        page.evaluate("() => { window.stillTheSamePage = true; }")
        page.get_by_role("button", name="Sync from PSA").focus()  # keyboard only, as a person could
        page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name="Sync from PSA")
        expect(dialog).to_be_visible()
        shots.take(page, "dialog-open")

        # 2. new items, additions nested under their agreement
        for agreement in (first, second, third):
            group = dialog.locator(f'fieldset[data-agreement="{agreement["id"]}"]')
            expect(group.get_by_role("checkbox", name=agreement["name"], exact=True)).to_be_visible()
            expect(group.locator("legend .state")).to_have_text("new")
            expect(group.locator('input[name="addition_ids"]')).to_have_count(len(agreement["additions"]))

        # 3. tick items: the button counts them live
        button = dialog.get_by_role("button", name=re.compile(r"^Sync \d+ Selected Contracts$"))
        expect(button).to_have_accessible_name("Sync 0 Selected Contracts")
        expect(button).to_be_disabled()
        dialog.get_by_role("checkbox", name=first["name"], exact=True).focus()
        page.keyboard.press("Space")
        expect(button).to_have_accessible_name("Sync 1 Selected Contracts")
        first_group = dialog.locator(f'fieldset[data-agreement="{first["id"]}"]')
        first_group.get_by_role("button", name="Select all additions of this agreement").click()
        dialog.get_by_role("checkbox", name=second["name"], exact=True).check()
        expect(button).to_have_accessible_name("Sync 4 Selected Contracts")
        expect(button).to_be_enabled()
        shots.take(page, "items-ticked")
        assert_accessible(page, "client contracts page with the Sync from PSA dialog")

        # 4. sync: progress until applied, then the contracts appear without a reload
        button.click()
        expect(dialog.locator('#sync-status [data-status="applied"]')).to_be_visible()
        contract_rows = page.locator("#contracts-table tbody tr[data-contract]")
        expect(contract_rows).to_have_count(4)
        assert page.evaluate("() => window.stillTheSamePage") is True
        expected_keys = {f"cw:{e2e.tenant}:agreement:{a['id']}" for a in (first, second)} | {
            f"cw:{e2e.tenant}:addition:{x['id']}" for x in first["additions"]
        }
        assert {r.get_attribute("data-contract") for r in contract_rows.all()} == expected_keys
        shots.take(page, "contracts-appeared")

        # 2b. a ConnectWise change makes the synced agreement "updated" with its field-level difference
        pipeline.control.update_agreement(second["id"], billAmount=250.25)
        second_group = dialog.locator(f'fieldset[data-agreement="{second["id"]}"]')
        expect(second_group.locator("legend .state")).to_have_text("updated")
        cost = second_group.locator('table.diff tr[data-field="billing_cost.amount"]')
        expect(cost.locator("del")).to_have_text("101.00")
        expect(cost.locator("ins")).to_have_text("250.25")
        shots.take(page, "updated-with-difference")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()

        # 5. a PSA-owned field is read-only on the contract page; the API refuses its edit
        first_key = f"cw:{e2e.tenant}:agreement:{first['id']}"
        page.locator(f'tr[data-contract="{first_key}"]').get_by_role("link").click()
        status = page.get_by_label("Status")
        expect(status).to_have_value("active")
        expect(status).not_to_be_editable()
        expect(page.locator("#owned-reason")).to_contain_text("owned by ConnectWise")
        refused = httpx.patch(
            f"{url}/v1/contracts/{first_key}",
            json={"changes": {"status": "cancelled"}},
            headers=bearer(pipeline.gateway_token()),
            timeout=30,
        )
        assert refused.status_code == 422 and refused.json()["reason"] == "psa_owned_field"
        # a local field and a PSA-seeded override are editable; the override can be reverted
        page.get_by_label("Notes").fill("renewal call in May")
        page.get_by_label("Name", exact=True).fill("Our workstations")
        page.get_by_role("button", name="Save changes").click()
        expect(page.locator('#edit-status [data-status="applied"]')).to_be_visible()
        expect(page.locator('[data-field="name"] [data-overridden]')).to_have_text("overridden")
        expect(page.get_by_label("Notes")).to_have_value("renewal call in May")
        shots.take(page, "contract-psa-owned-read-only")
        assert_accessible(page, "contract page")
        page.get_by_role("button", name="Revert Name to the ConnectWise value").click()
        expect(page.get_by_label("Name", exact=True)).to_have_value(first["name"])
        expect(page.locator('[data-field="name"] [data-overridden]')).to_have_count(0)

        # 6. auto-sync on: manual sync disabled with the reason; a ConnectWise change arrives by itself
        page.get_by_role("link", name=f"Contracts of client {client}").click()
        page.evaluate("() => { window.stillTheSamePage = true; }")
        page.get_by_role("button", name="Sync from PSA").click()
        dialog.get_by_role("switch", name="Auto-sync from PSA").check()
        expect(dialog.locator("#sync-disabled-reason")).to_contain_text(
            "disabled while Auto-sync from PSA is on"
        )
        expect(dialog.get_by_role("button", name=re.compile(r"Selected Contracts$"))).to_be_disabled()
        # turning it on syncs what was still new (the third agreement) by itself
        third_key = f"cw:{e2e.tenant}:agreement:{third['id']}"
        expect(page.locator(f'#contracts-table tr[data-contract="{third_key}"]')).to_have_count(1)
        dialog.get_by_role("switch", name="Show synced and removed items").check()
        third_group = dialog.locator(f'fieldset[data-agreement="{third["id"]}"]')
        expect(third_group.locator("legend .state")).to_have_text("synced")
        expect(third_group.get_by_role("checkbox")).to_have_count(0)
        shots.take(page, "auto-sync-on")
        dialog.get_by_role("button", name="Close the Sync from PSA dialog").click()
        new_amount = Decimal("777.70")
        pipeline.control.update_agreement(first["id"], billAmount=float(new_amount))
        expect(page.locator(f'tr[data-contract="{first_key}"] [data-field="billing_cost"]')).to_contain_text(
            str(new_amount)
        )
        assert page.evaluate("() => window.stillTheSamePage") is True
        shots.take(page, "psa-change-arrived")

        # 7. Last synced shows the time at the bottom of the dialog
        page.get_by_role("button", name="Sync from PSA").click()
        last = dialog.locator("#last-synced")
        expect(last).to_have_text(LAST_SYNCED_RE)
        shown = datetime.strptime(LAST_SYNCED_RE.search(last.inner_text()).group(1), "%Y-%m-%d %H:%M:%S")  # type: ignore[union-attr]
        assert abs((datetime.now(UTC).replace(tzinfo=None) - shown).total_seconds()) < 600
        shots.take(page, "last-synced")

        # Activity: this tenant's live events, never another tenant's
        expect(
            activity.locator('#activity-rows tr[data-type="sync.contracts.applied"]').first
        ).to_be_visible()
        tenants = activity.locator("#activity-rows tr").evaluate_all(
            "rows => rows.map(r => r.dataset.tenant)"
        )
        assert tenants and set(tenants) == {e2e.tenant}
        shots.take(activity, "activity")
        assert_accessible(activity, "activity page")
        for shown_page in (page, activity):
            assert f"cw:{other_tenant}:" not in shown_page.content()
    finally:
        context.close()


def assert_not_shown(page: Page, tenant: str) -> None:
    html = page.content()
    at = html.find(tenant)
    assert at < 0, f"tenant {tenant} shown on {page.url}: ...{html[max(0, at - 300) : at + 100]}..."


def test_another_tenants_console_never_shows_this_tenants_data(
    e2e: E2E, browser: Browser, company: dict[str, object]
) -> None:
    pipeline = e2e.pipeline
    url = pipeline.gateway_url or ""
    other_tenant = pipeline.options.extra_tenants[0]
    client = str(company["id"])
    first = company["agreements"][0]  # type: ignore[index]
    ours = f"cw:{e2e.tenant}:"
    # this tenant has (or gets) contracts of the company
    if not e2e.contracts(client):
        e2e.select(client, [int(first["id"])], [])
    e2e.wait_for("a contract of this tenant", lambda: e2e.contracts(client))
    context, page = signed_in(browser, url, pipeline.gateway_token(tenant_id=other_tenant))
    try:
        expect(page.locator("[data-tenant]")).to_have_text(other_tenant)
        wait_for_client_listed(page, client)
        assert_not_shown(page, e2e.tenant)
        page.get_by_role("link", name=f"Client {client}", exact=True).click()
        expect(page.locator("#contracts-table")).to_contain_text("No contracts yet")
        page.get_by_role("button", name="Sync from PSA").click()
        expect(page.get_by_role("dialog", name="Sync from PSA")).to_be_visible()
        expect(page.locator(f'fieldset[data-agreement="{first["id"]}"] legend .state')).to_have_text("new")
        assert_not_shown(page, e2e.tenant)
        response = page.goto(f"/ui/contracts/{ours}agreement:{first['id']}")
        assert response is not None and response.status == 404
        assert_not_shown(page, e2e.tenant)
    finally:
        context.close()
