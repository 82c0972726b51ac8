"""The deterministic data generator: same settings -> byte-identical data, with a realistic mix."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import date, datetime
from decimal import Decimal

import orjson
import pytest

from devtools.cwsim.generator import DataSet, GeneratorSettings, generate

ANCHOR = date(2026, 6, 15)
SETTINGS = GeneratorSettings(
    seed=7, companies=40, agreements_per_company=10, additions_per_agreement=4, anchor=ANCHOR
)


@pytest.fixture(scope="module")
def data() -> DataSet:
    return generate(SETTINGS)


def dump(data: DataSet) -> bytes:
    return orjson.dumps(
        [data.billing_cycles, data.agreement_types, data.companies, data.agreements, data.additions]
    )


def test_same_seed_gives_byte_identical_data(data: DataSet) -> None:
    assert dump(generate(SETTINGS)) == dump(data)


def test_another_seed_gives_other_data(data: DataSet) -> None:
    other = dataclasses.replace(SETTINGS, seed=8)
    assert dump(generate(other)) != dump(data)


def test_counts_follow_the_settings(data: DataSet) -> None:
    assert len(data.companies) == 40
    assert len(data.agreements) == 400
    per_company = Counter(a["company"]["id"] for a in data.agreements)
    assert set(per_company.values()) == {10}
    assert 0.8 * 1600 <= len(data.additions) <= 1.2 * 1600


def test_ids_are_unique_and_ascending(data: DataSet) -> None:
    for records in (data.companies, data.agreements, data.additions):
        ids = [r["id"] for r in records]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)


def test_agreement_mix_covers_every_status_and_child_agreements(data: DataSet) -> None:
    statuses = Counter(a["agreementStatus"] for a in data.agreements)
    assert set(statuses) == {"Active", "Cancelled", "Expired", "Inactive"}
    assert statuses["Active"] > len(data.agreements) / 2
    future = [a for a in data.agreements if a["startDate"] > f"{ANCHOR.isoformat()}T00:00:00Z"]
    assert future, "some agreements start in the future"
    children = [a for a in data.agreements if "parentAgreement" in a]
    assert children
    by_id = {a["id"]: a for a in data.agreements}
    for child in children:
        parent = by_id[child["parentAgreement"]["id"]]
        assert parent["company"]["id"] == child["company"]["id"]
        assert child["parentAgreement"]["type"] == parent["type"]["name"]  # a string in AgreementReference


def test_cancelled_agreements_carry_flag_date_and_reason(data: DataSet) -> None:
    for a in data.agreements:
        if a["agreementStatus"] == "Cancelled":
            assert a["cancelledFlag"] is True
            assert a["dateCancelled"] and a["reasonCancelled"]
        else:
            assert a["cancelledFlag"] is False
            assert "dateCancelled" not in a


def test_expired_agreements_ended_before_the_anchor(data: DataSet) -> None:
    for a in data.agreements:
        if a["agreementStatus"] == "Expired":
            assert a["endDate"] < f"{ANCHOR.isoformat()}T00:00:00Z"


def test_currencies_are_mostly_usd_with_cad_eur_gbp(data: DataSet) -> None:
    codes = Counter(a["currency"]["currencyCode"] for a in data.agreements)
    assert codes["USD"] > len(data.agreements) / 2
    assert set(codes) <= {"USD", "CAD", "EUR", "GBP"}
    assert len(set(codes)) >= 3


def test_billing_cycles_include_not_recurring_for_one_time_agreements(data: DataSet) -> None:
    cycles = Counter(a["billingCycle"]["name"] for a in data.agreements)
    assert "NotRecurring" in cycles and "Monthly" in cycles
    assert {c["billingOptions"] for c in data.billing_cycles} == {
        "BiMonthly",
        "BiWeekly",
        "Monthly",
        "NotRecurring",
        "Quarterly",
        "SemiAnnual",
        "Weekly",
        "Yearly",
    }
    for a in data.agreements:
        if a["oneTimeFlag"]:
            assert a["billingCycle"]["name"] == "NotRecurring"


def test_additions_mix_billing_kinds_future_and_cancelled(data: DataSet) -> None:
    kinds = Counter(x["billCustomer"] for x in data.additions)
    assert set(kinds) == {"Billable", "DoNotBill", "NoCharge"}
    assert any(x["effectiveDate"] > f"{ANCHOR.isoformat()}T00:00:00Z" for x in data.additions)
    assert any("cancelledDate" in x for x in data.additions)
    assert any(x["lessIncluded"] > 0 for x in data.additions)
    agreement_ids = {a["id"] for a in data.agreements}
    assert all(x["agreementId"] in agreement_ids for x in data.additions)


def test_money_has_at_most_two_decimals_and_extended_amounts_add_up(data: DataSet) -> None:
    for x in data.additions:
        for key in ("unitPrice", "unitCost", "extPrice", "extCost", "margin"):
            assert Decimal(str(x[key])).as_tuple().exponent >= -2, (key, x[key])
        billed = Decimal(str(x["quantity"])) - Decimal(str(x["lessIncluded"]))
        assert Decimal(str(x["billedQuantity"])) == billed
        assert Decimal(str(x["extPrice"])) == billed * Decimal(str(x["unitPrice"]))
    for a in data.agreements:
        assert Decimal(str(a["billAmount"])).as_tuple().exponent >= -2


def test_dates_use_connectwise_format(data: DataSet) -> None:
    for a in data.agreements:
        for key in ("startDate", "endDate", "billStartDate", "dateCancelled"):
            if key in a:
                assert datetime.strptime(a[key], "%Y-%m-%dT%H:%M:%SZ")
        stamp = a["_info"]["lastUpdated"]
        assert datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
        assert stamp < f"{ANCHOR.isoformat()}T00:00:00Z"


def test_nulls_are_omitted(data: DataSet) -> None:
    def walk(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                assert item is not None
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for records in (data.companies, data.agreements, data.additions):
        walk(records)
