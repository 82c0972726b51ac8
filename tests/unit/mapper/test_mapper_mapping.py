"""Table-driven tests of the pure mapping rules (docs/design.md#mapping-rules), one row per rule and edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from mapper_factories import cw_addition, cw_agreement, observed_data

from services.mapper.mapping import MappingError, map_addition, map_agreement, map_items
from services.mapper.mapping_rules import billing_cycle_of, calendar_date, round_money


@dataclass(frozen=True)
class Case:
    name: str
    agreement: dict[str, Any] = field(default_factory=dict)
    addition: dict[str, Any] | None = None  # None: map the agreement itself
    observed: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)


def _record(case: Case) -> dict[str, Any]:
    additions = [cw_addition(**case.addition)] if case.addition is not None else []
    data = observed_data(cw_agreement(**case.agreement), additions, **case.observed)
    record = map_addition(data, data.additions[0]) if additions else map_agreement(data)
    flat = record.model_dump()
    flat["amount"] = record.billing_cost.amount
    flat["currency"] = record.billing_cost.currency
    return flat


AGREEMENT_CASES = [
    # billing cycles
    Case(
        "monthly_cycle",
        {"billingCycle": {"name": "Monthly"}},
        expect={"billing_cycle": "monthly", "category": "recurring"},
    ),
    Case("quarterly_cycle", {"billingCycle": {"name": "Quarterly"}}, expect={"billing_cycle": "quarterly"}),
    Case(
        "semiannual_cycle", {"billingCycle": {"name": "SemiAnnual"}}, expect={"billing_cycle": "semi_annual"}
    ),
    Case(
        "semi_annual_hyphen_variant",
        {"billingCycle": {"name": "Semi-Annual"}},
        expect={"billing_cycle": "semi_annual"},
    ),
    Case("yearly_cycle_is_annual", {"billingCycle": {"name": "Yearly"}}, expect={"billing_cycle": "annual"}),
    Case("weekly_cycle", {"billingCycle": {"name": "Weekly"}}, expect={"billing_cycle": "weekly"}),
    Case("biweekly_cycle", {"billingCycle": {"name": "BiWeekly"}}, expect={"billing_cycle": "bi_weekly"}),
    Case(
        "bi_weekly_spaced_lowercase",
        {"billingCycle": {"name": "bi weekly"}},
        expect={"billing_cycle": "bi_weekly"},
    ),
    Case("bimonthly_cycle", {"billingCycle": {"name": "BiMonthly"}}, expect={"billing_cycle": "bi_monthly"}),
    Case(
        "upper_case_quarterly", {"billingCycle": {"name": "QUARTERLY"}}, expect={"billing_cycle": "quarterly"}
    ),
    Case(
        "not_recurring_is_one_time_fixed_cost",
        {"billingCycle": {"name": "NotRecurring"}},
        expect={"billing_cycle": "one_time", "category": "fixed_cost"},
    ),
    Case(
        "not_recurring_spaced_variant",
        {"billingCycle": {"name": "Not Recurring"}},
        expect={"billing_cycle": "one_time", "category": "fixed_cost"},
    ),
    Case(
        "bill_one_time_flag_makes_fixed_cost",
        {"billOneTimeFlag": True},
        expect={"billing_cycle": "monthly", "category": "fixed_cost"},
    ),
    Case(
        "missing_cycle_with_bill_one_time_is_one_time",
        {"billingCycle": None, "billOneTimeFlag": True},
        expect={"billing_cycle": "one_time", "category": "fixed_cost"},
    ),
    # status precedence
    Case("active_agreement", expect={"status": "active"}),
    Case(
        "cancelled_flag_wins",
        {"cancelledFlag": True, "agreementStatus": "Active"},
        expect={"status": "cancelled"},
    ),
    Case("cancelled_status", {"agreementStatus": "Cancelled"}, expect={"status": "cancelled"}),
    Case(
        "cancelled_beats_expired",
        {"cancelledFlag": True, "agreementStatus": "Expired"},
        expect={"status": "cancelled"},
    ),
    Case("expired_status", {"agreementStatus": "Expired"}, expect={"status": "expired"}),
    Case(
        "end_date_passed_is_expired",
        {"endDate": "2025-05-31T00:00:00Z"},
        None,
        {"observed_at": "2025-06-01T12:00:00Z"},
        {"status": "expired"},
    ),
    Case(
        "end_date_today_is_still_active",
        {"endDate": "2025-06-01T00:00:00Z"},
        None,
        {"observed_at": "2025-06-01T12:00:00Z"},
        {"status": "active"},
    ),
    Case(
        "no_ending_date_flag_ignores_past_end",
        {"endDate": "2020-01-01T00:00:00Z", "noEndingDateFlag": True},
        expect={"status": "active", "end_date": None},
    ),
    Case(
        "expired_beats_inactive",
        {"agreementStatus": "Inactive", "endDate": "2025-01-01T00:00:00Z"},
        expect={"status": "expired"},
    ),
    Case("inactive_status", {"agreementStatus": "Inactive"}, expect={"status": "inactive"}),
    Case(
        "inactive_beats_pending",
        {"agreementStatus": "Inactive", "startDate": "2025-09-01T00:00:00Z"},
        expect={"status": "inactive"},
    ),
    Case("future_start_is_pending", {"startDate": "2025-09-01T00:00:00Z"}, expect={"status": "pending"}),
    Case(
        "today_in_tenant_zone_not_utc_for_pending",
        # 2025-06-01T02:00Z is still May 31 in New York, so a June 1 start is in the future there
        {"startDate": "2025-06-01T00:00:00Z"},
        None,
        {"observed_at": "2025-06-01T02:00:00Z", "time_zone": "America/New_York"},
        {"status": "pending"},
    ),
    Case(
        "same_instant_in_utc_tenant_is_active",
        {"startDate": "2025-06-01T00:00:00Z"},
        None,
        {"observed_at": "2025-06-01T02:00:00Z", "time_zone": "UTC"},
        {"status": "active"},
    ),
    Case(
        "today_in_tenant_zone_for_expiry",
        # 2025-06-01T23:30Z is already June 2 in Tokyo: a June 1 end date has passed there
        {"endDate": "2025-06-01T00:00:00Z"},
        None,
        {"observed_at": "2025-06-01T23:30:00Z", "time_zone": "Asia/Tokyo"},
        {"status": "expired"},
    ),
    Case("missing_status_field_is_active", {"agreementStatus": None}, expect={"status": "active"}),
    # money and currency
    Case(
        "bill_amount_in_usd", {"billAmount": 1500.0}, expect={"amount": Decimal("1500.00"), "currency": "USD"}
    ),
    Case("missing_bill_amount_is_zero", {"billAmount": None}, expect={"amount": Decimal("0.00")}),
    Case("half_up_rounding", {"billAmount": 10.125}, expect={"amount": Decimal("10.13")}),
    Case("half_up_rounding_not_banker", {"billAmount": 0.005}, expect={"amount": Decimal("0.01")}),
    Case(
        "jpy_has_no_decimals",
        {"billAmount": 1234.5, "currency": {"currencyCode": "JPY"}},
        expect={"amount": Decimal("1235"), "currency": "JPY"},
    ),
    Case(
        "kwd_has_three_decimals",
        {"billAmount": 12.3456, "currency": {"currencyCode": "KWD"}},
        expect={"amount": Decimal("12.346"), "currency": "KWD"},
    ),
    Case(
        "bhd_has_three_decimals",
        {"billAmount": 1, "currency": {"currencyCode": "BHD"}},
        expect={"amount": Decimal("1.000"), "currency": "BHD"},
    ),
    Case(
        "number_of_decimals_overrides_iso",
        {"billAmount": 99.999, "currency": {"currencyCode": "USD", "numberOfDecimals": 0}},
        expect={"amount": Decimal("100")},
    ),
    Case(
        "missing_currency_uses_tenant_default",
        {"currency": None},
        None,
        {"default_currency": "EUR"},
        {"currency": "EUR", "amount": Decimal("1500.00")},
    ),
    Case(
        "lowercase_currency_code_normalised",
        {"currency": {"currencyCode": "gbp"}},
        expect={"currency": "GBP"},
    ),
    # dates, names, parents
    Case(
        "midnight_utc_is_that_calendar_date",
        {"startDate": "2024-01-01T00:00:00Z"},
        None,
        {"time_zone": "America/Los_Angeles"},
        {"start_date": date(2024, 1, 1)},
    ),
    Case(
        "non_midnight_instant_is_tenant_local_date",
        {"startDate": "2023-12-31T23:00:00Z"},
        None,
        {"time_zone": "Europe/Berlin"},
        {"start_date": date(2024, 1, 1)},
    ),
    Case(
        "end_date_is_calendar_date",
        {"endDate": "2026-12-31T00:00:00Z"},
        expect={"end_date": date(2026, 12, 31)},
    ),
    Case("no_dates", {"startDate": None, "endDate": None}, expect={"start_date": None, "end_date": None}),
    Case(
        "child_agreement_names_parent",
        {"parentAgreement": {"id": 1200, "name": "Acme - Master", "type": "Managed Services"}},
        expect={"parent_contract_key": "cw:acme:agreement:1200"},
    ),
    Case(
        "empty_parent_reference_is_no_parent", {"parentAgreement": {}}, expect={"parent_contract_key": None}
    ),
    Case("agreement_contract_key", {"id": 777}, expect={"contract_key": "cw:acme:agreement:777"}),
    Case("name_and_type", expect={"name": "Acme - Managed Services", "contract_type": "Managed Services"}),
    Case("nul_characters_stripped_from_name", {"name": "Acme\x00 MS"}, expect={"name": "Acme MS"}),
    Case("missing_type_defaults", {"type": None}, expect={"contract_type": "Agreement"}),
    Case("description_from_invoice_description", expect={"description": "Managed services for Acme"}),
]

ADDITION_CASES = [
    Case(
        "billable_cost",
        addition={"quantity": 5, "lessIncluded": 2, "unitPrice": 25.0},
        expect={"amount": Decimal("75.00"), "currency": "USD"},
    ),
    Case(
        "do_not_bill_costs_zero", addition={"billCustomer": "DoNotBill"}, expect={"amount": Decimal("0.00")}
    ),
    Case("no_charge_costs_zero", addition={"billCustomer": "NoCharge"}, expect={"amount": Decimal("0.00")}),
    Case(
        "quantity_below_included_bills_nothing",
        addition={"quantity": 1, "lessIncluded": 3, "unitPrice": 10.0},
        expect={"amount": Decimal("0.00")},
    ),
    Case(
        "fractional_quantity_rounded_half_up",
        addition={"quantity": 1.5, "lessIncluded": 0, "unitPrice": 0.35},
        expect={"amount": Decimal("0.53")},  # 0.525 -> 0.53
    ),
    Case(
        "missing_less_included_is_zero",
        addition={"lessIncluded": None, "quantity": 2, "unitPrice": 3.5},
        expect={"amount": Decimal("7.00")},
    ),
    Case(
        "addition_takes_agreement_currency",
        {"currency": {"currencyCode": "JPY"}},
        {"quantity": 3, "unitPrice": 333.3},
        expect={"amount": Decimal("1000"), "currency": "JPY"},
    ),
    Case(
        "addition_takes_agreement_cycle",
        {"billingCycle": {"name": "Yearly"}},
        {},
        expect={"billing_cycle": "annual", "category": "recurring"},
    ),
    Case(
        "addition_parent_and_key",
        addition={"id": 91},
        expect={"contract_key": "cw:acme:addition:91", "parent_contract_key": "cw:acme:agreement:1234"},
    ),
    Case("addition_active_with_agreement", addition={}, expect={"status": "active"}),
    Case(
        "addition_pending_before_effective_date",
        addition={"effectiveDate": "2025-07-01T00:00:00Z"},
        expect={"status": "pending", "start_date": date(2025, 7, 1)},
    ),
    Case(
        "addition_cancelled_once_cancelled_date_reached",
        addition={"cancelledDate": "2025-06-01T00:00:00Z"},
        expect={"status": "cancelled", "end_date": date(2025, 6, 1)},
    ),
    Case(
        "addition_with_future_cancelled_date_is_active",
        addition={"cancelledDate": "2025-08-01T00:00:00Z"},
        expect={"status": "active", "end_date": date(2025, 8, 1)},
    ),
    Case(
        "addition_of_cancelled_agreement_is_cancelled",
        {"cancelledFlag": True},
        {"effectiveDate": "2025-07-01T00:00:00Z"},
        expect={"status": "cancelled"},
    ),
    Case(
        "addition_of_inactive_agreement_is_inactive",
        {"agreementStatus": "Inactive"},
        {},
        expect={"status": "inactive"},
    ),
    Case(
        "addition_ignores_its_own_agreement_status_field",
        addition={"agreementStatus": "Cancelled"},
        expect={"status": "active"},
    ),
    Case(
        "addition_name_from_description",
        addition={"description": "Backup seat"},
        expect={"name": "Backup seat"},
    ),
    Case("addition_name_falls_back_to_product", addition={"description": None}, expect={"name": "M365-BP"}),
    Case(
        "addition_without_cancelled_date_ends_with_agreement",
        addition={},
        expect={"end_date": date(2026, 12, 31)},
    ),
]


@pytest.mark.parametrize("case", AGREEMENT_CASES + ADDITION_CASES, ids=lambda c: c.name)
def test_maps_field_per_rule(case: Case) -> None:
    record = _record(case)
    for field_name, expected in case.expect.items():
        assert record[field_name] == expected, f"{field_name}: {record[field_name]!r} != {expected!r}"


ERROR_CASES = [
    Case("agreement_id_zero", {"id": 0}, expect={"code": "invalid_id"}),
    Case("negative_parent_agreement_id", {"parentAgreement": {"id": -5}}, expect={"code": "invalid_id"}),
    Case("addition_id_out_of_int32", addition={"id": 2**31}, expect={"code": "invalid_id"}),
    Case(
        "unknown_billing_cycle",
        {"billingCycle": {"name": "Fortnightly-ish"}},
        expect={"code": "unknown_billing_cycle"},
    ),
    Case("missing_billing_cycle", {"billingCycle": None}, expect={"code": "missing_billing_cycle"}),
    Case("blank_billing_cycle_name", {"billingCycle": {"id": 3}}, expect={"code": "missing_billing_cycle"}),
    Case("invalid_currency_code", {"currency": {"currencyCode": "US$"}}, expect={"code": "invalid_currency"}),
    Case(
        "invalid_default_time_zone",
        observed={"time_zone": "Mars/Olympus"},
        expect={"code": "invalid_time_zone"},
    ),
    Case(
        "absurd_currency_decimals",
        {"currency": {"currencyCode": "USD", "numberOfDecimals": 9}},
        expect={"code": "unsupported_currency_decimals"},
    ),
    Case("amount_out_of_range", {"billAmount": 1e16}, expect={"code": "amount_out_of_range"}),
    Case(
        "addition_without_bill_customer",
        addition={"billCustomer": None},
        expect={"code": "missing_bill_customer"},
    ),
    Case(
        "addition_of_other_agreement",
        addition={"agreementId": 999},
        expect={"code": "addition_agreement_mismatch"},
    ),
    Case(
        "addition_of_unmappable_agreement",
        {"billingCycle": {"name": "Daily"}},
        {},
        expect={"code": "unknown_billing_cycle", "kind": "addition"},
    ),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.name)
def test_unmappable_input_raises_one_mapping_error_with_reason_code(case: Case) -> None:
    with pytest.raises(MappingError) as caught:
        _record(case)
    assert caught.value.code == case.expect["code"]
    assert caught.value.kind == case.expect.get(
        "kind", "addition" if case.addition is not None else "agreement"
    )
    assert caught.value.message


def test_explains_billable_addition_cost_with_its_inputs() -> None:
    data = observed_data(additions=[cw_addition(quantity=5, lessIncluded=2, unitPrice=25.0)])
    record = map_addition(data, data.additions[0])
    assert record.explanation["billing_cost"].startswith(
        "Billable: (quantity 5 − lessIncluded 2) × unitPrice 25.0 = 75.00 USD"  # noqa: RUF001
    )


def test_every_record_field_is_explained() -> None:
    data = observed_data(
        cw_agreement(parentAgreement={"id": 1200}), [cw_addition(cancelledDate="2025-05-01T00:00:00Z")]
    )
    explained = {
        "contract_key", "name", "contract_type", "category", "status", "billing_cost",
        "billing_cycle", "start_date", "end_date", "description", "parent_contract_key",
    }  # fmt: skip
    for record in (map_agreement(data), map_addition(data, data.additions[0])):
        assert explained <= set(record.explanation), explained - set(record.explanation)
        assert all(record.explanation[name] for name in explained)


def test_status_explanation_names_today_in_tenant_zone() -> None:
    data = observed_data(
        cw_agreement(endDate="2025-05-31T00:00:00Z"),
        observed_at="2025-06-01T03:00:00Z",
        time_zone="Asia/Tokyo",
    )
    assert map_agreement(data).explanation["status"] == (
        "endDate 2025-05-31 before today 2025-06-01 (noEndingDateFlag false) -> expired"
    )


def test_records_carry_the_snapshot_version_and_source_ids() -> None:
    data = observed_data(additions=[cw_addition(id=42)], psa_last_updated="2025-04-01T10:00:00Z")
    agreement, addition = map_items(data, agreement=True, addition_ids=[42])
    assert not isinstance(agreement, MappingError) and not isinstance(addition, MappingError)
    assert agreement.source.kind == "agreement" and agreement.source.addition_id is None
    assert addition.source.kind == "addition" and addition.source.addition_id == 42
    assert addition.source.agreement_id == 1234
    assert agreement.source.psa_last_updated == addition.source.psa_last_updated == data.psa_last_updated


def test_map_items_keeps_mapping_other_items_after_one_fails() -> None:
    data = observed_data(
        additions=[cw_addition(id=1), cw_addition(id=2, billCustomer=None), cw_addition(id=3)]
    )
    results = map_items(data, agreement=True, addition_ids=[1, 2, 3, 4])
    kinds = [r.code if isinstance(r, MappingError) else r.contract_key for r in results]
    assert kinds == [
        "cw:acme:agreement:1234",
        "cw:acme:addition:1",
        "missing_bill_customer",
        "cw:acme:addition:3",
        "addition_not_in_snapshot",
    ]


def test_map_items_reports_agreement_failure_for_every_requested_item() -> None:
    data = observed_data(cw_agreement(billingCycle={"name": "Hourly"}), [cw_addition(id=1)])
    results = map_items(data, agreement=True, addition_ids=[1])
    assert [(r.kind, r.code) for r in results if isinstance(r, MappingError)] == [
        ("agreement", "unknown_billing_cycle"),
        ("addition", "unknown_billing_cycle"),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Monthly", "monthly"),
        ("semi annual", "semi_annual"),
        ("SEMI_ANNUAL", "semi_annual"),
        ("Annual", None),
        ("", None),
    ],
)
def test_billing_cycle_names_match_case_and_punctuation_insensitively(
    name: str, expected: str | None
) -> None:
    assert billing_cycle_of(name) == expected


@pytest.mark.parametrize(
    ("amount", "decimals", "expected"),
    [("2.5", 0, "3"), ("-2.5", 0, "-3"), ("0.125", 2, "0.13"), ("-0.001", 2, "0.00"), ("7", 3, "7.000")],
)
def test_round_money_is_half_up_and_never_negative_zero(amount: str, decimals: int, expected: str) -> None:
    assert str(round_money(Decimal(amount), decimals)) == expected


def test_naive_timestamp_is_taken_as_utc() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    naive = datetime(2024, 3, 1, 15, 0)
    assert calendar_date(naive, ZoneInfo("Asia/Tokyo")) == date(2024, 3, 2)
