"""Conformance: every model the simulator serves has only the field names, with the JSON types, that
docs/connectwise.md#models and docs/connectwise.md#errors-and-retries lists (Agreement, Addition, Company, BillingCycle, AgreementType, Count, error bodies).

The tables below are transcribed from the spec document, not from the simulator's code. Served through the
real ASGI app in process (httpx.ASGITransport); tests/integration/cwsim covers the same app over sockets.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pytest

from devtools.cwsim.app import SimConfig, Simulator

DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

# -- type vocabulary -------------------------------------------------------------------------------------
INT, NUMBER, STRING, BOOL, DATETIME_T, INFO = "int", "number", "string", "bool", "datetime", "info"
REF = ("ref", frozenset({"id", "name", "_info"}))
COMPANY_REF = ("ref", frozenset({"id", "identifier", "name", "_info"}))
DEPARTMENT_REF = COMPANY_REF
AGREEMENT_REF = ("ref", frozenset({"id", "name", "type", "chargeFirmFlag", "_info"}))
IV_ITEM_REF = ("ref", frozenset({"id", "identifier", "serializedFlag", "_info"}))
CURRENCY_REF = ("ref", frozenset({
    "id", "symbol", "currencyCode", "decimalSeparator", "numberOfDecimals", "thousandsSeparator",
    "negativeParenthesesFlag", "displaySymbolFlag", "currencyIdentifier", "displayIdFlag", "rightAlign", "name",
    "_info",
}))  # fmt: skip
INVOICE_GROUPING_REF = ("ref", frozenset({
    "id", "name", "description", "showPriceFlag", "showSubItemsFlag", "groupParentChildAdditionsFlag", "_info",
}))  # fmt: skip
CUSTOM_FIELDS = "customFields"
REF_LIST = "ref_list"
INT_LIST = "int_list"
STRING_LIST = "string_list"


def enum(*values: str) -> tuple[str, frozenset[str]]:
    return ("enum", frozenset(values))


BILLING = enum("Billable", "DoNotBill", "NoCharge", "NoDefault")
STATUS = enum("Active", "Cancelled", "Expired", "Inactive")
APP_UNITS = enum("Amount", "Hours", "Incidents")
APP_CYCLE = enum("Contract2Weeks", "Contract4Weeks", "ContractYear", "CalendarMonth", "CalendarQuarter",
                 "CalendarWeek", "ContractQuarter", "CalendarYear")  # fmt: skip
COMP_RATE = enum("Actual", "Hourly")
COMP_NOT_EXCEED = enum("Billing", "Amount", "Percent")
INVOICING_CYCLE = enum("ContractYear", "CalendarYear")

# -- Agreement ---------------------------------------------------------------------------------------
AGREEMENT: dict[str, Any] = {
    "id": INT, "name": STRING, "type": REF, "company": COMPANY_REF, "contact": REF, "site": REF,
    "subContractCompany": COMPANY_REF, "subContractContact": REF, "parentAgreement": AGREEMENT_REF,
    "customerPO": STRING, "location": REF, "department": DEPARTMENT_REF, "restrictLocationFlag": BOOL,
    "restrictDepartmentFlag": BOOL, "startDate": DATETIME_T, "endDate": DATETIME_T, "noEndingDateFlag": BOOL,
    "opportunity": REF, "cancelledFlag": BOOL, "dateCancelled": DATETIME_T, "reasonCancelled": STRING,
    "sla": REF, "workOrder": STRING, "internalNotes": STRING, "applicationUnits": APP_UNITS,
    "applicationLimit": NUMBER, "applicationCycle": APP_CYCLE, "applicationUnlimitedFlag": BOOL,
    "oneTimeFlag": BOOL, "coverAgreementTime": BOOL, "coverAgreementProduct": BOOL,
    "coverAgreementExpense": BOOL, "coverSalesTax": BOOL, "carryOverUnused": BOOL, "allowOverruns": BOOL,
    "expiredDays": INT, "limit": INT, "expireWhenZero": BOOL, "chargeToFirm": BOOL,
    "employeeCompRate": COMP_RATE, "employeeCompNotExceed": COMP_NOT_EXCEED, "compHourlyRate": NUMBER,
    "compLimitAmount": NUMBER, "billingCycle": REF, "billOneTimeFlag": BOOL, "billingTerms": REF,
    "invoicingCycle": INVOICING_CYCLE, "billToCompany": COMPANY_REF, "billToContact": REF, "billToSite": REF,
    "billAmount": NUMBER, "taxable": BOOL, "prorateFirstBill": NUMBER, "billStartDate": DATETIME_T,
    "taxCode": REF, "restrictDownPayment": BOOL, "prorateFlag": BOOL, "invoiceProratedAdditionsFlag": BOOL,
    "invoiceDescription": STRING, "topComment": BOOL, "bottomComment": BOOL, "workRole": REF, "workType": REF,
    "projectType": REF, "invoiceTemplate": REF, "billTime": BILLING, "billExpenses": BILLING,
    "billProducts": BILLING, "billableTimeInvoice": BOOL, "billableExpenseInvoice": BOOL,
    "billableProductInvoice": BOOL, "currency": CURRENCY_REF, "periodType": enum("Current", "Future", "Both",
    "Undefined"), "autoInvoiceFlag": BOOL, "nextInvoiceDate": STRING, "companyLocation": REF,
    "shipToCompany": COMPANY_REF, "shipToContact": REF, "shipToSite": REF, "agreementStatus": STATUS,
    "_info": INFO, "customFields": CUSTOM_FIELDS,
}  # fmt: skip

# -- Addition ----------------------------------------------------------------------------------------
ADDITION: dict[str, Any] = {
    "id": INT, "product": IV_ITEM_REF, "quantity": NUMBER, "lessIncluded": NUMBER, "unitPrice": NUMBER,
    "unitCost": NUMBER, "billCustomer": enum("Billable", "DoNotBill", "NoCharge"), "effectiveDate": DATETIME_T,
    "cancelledDate": DATETIME_T, "taxableFlag": BOOL, "serialNumber": STRING, "invoiceDescription": STRING,
    "purchaseItemFlag": BOOL, "specialOrderFlag": BOOL, "agreementId": INT, "description": STRING,
    "billedQuantity": NUMBER, "uom": STRING, "extPrice": NUMBER, "extCost": NUMBER, "sequenceNumber": NUMBER,
    "margin": NUMBER, "prorateCost": NUMBER, "proratePrice": NUMBER, "extendedProrateCost": NUMBER,
    "extendedProratePrice": NUMBER, "prorateCurrentPeriodFlag": BOOL, "opportunity": REF,
    "agreementStatus": STATUS, "invoiceGrouping": INVOICE_GROUPING_REF, "_info": INFO,
    "customFields": CUSTOM_FIELDS,
}  # fmt: skip

# -- AgreementType (field list from the doc; types as the doc's names/Agreement equivalents imply) ------
AGREEMENT_TYPE: dict[str, Any] = {
    "id": INT, "name": STRING, "prefixSuffixOption": enum("Prefix", "Suffix"), "defaultFlag": BOOL,
    "inactiveFlag": BOOL, "prePaymentFlag": BOOL, "invoicePreSuffix": STRING, "location": REF,
    "department": DEPARTMENT_REF, "restrictLocationFlag": BOOL, "restrictDepartmentFlag": BOOL, "sla": REF,
    "applicationUnits": APP_UNITS, "applicationLimit": NUMBER, "applicationCycle": APP_CYCLE,
    "applicationUnlimitedFlag": BOOL, "oneTimeFlag": BOOL, "coverAgreementTimeFlag": BOOL,
    "coverAgreementProductFlag": BOOL, "coverAgreementExpenseFlag": BOOL, "coverSalesTaxFlag": BOOL,
    "carryOverUnusedFlag": BOOL, "allowOverrunsFlag": BOOL, "expiredDays": INT, "limit": INT,
    "expireWhenZero": BOOL, "chargeToFirmFlag": BOOL, "employeeCompRate": COMP_RATE,
    "employeeCompNotExceed": COMP_NOT_EXCEED, "compHourlyRate": NUMBER, "compLimitAmount": NUMBER,
    "billingCycle": REF, "billOneTimeFlag": BOOL, "billingTerms": REF, "invoicingCycle": INVOICING_CYCLE,
    "billAmount": NUMBER, "taxableFlag": BOOL, "restrictDownPaymentFlag": BOOL, "invoiceDescription": STRING,
    "topCommentFlag": BOOL, "bottomCommentFlag": BOOL, "workRole": REF, "workType": REF, "projectType": REF,
    "invoiceTemplate": REF, "billTime": BILLING, "billExpenses": BILLING, "billProducts": BILLING,
    "billableTimeInvoiceFlag": BOOL, "billableExpenseInvoiceFlag": BOOL, "billableProductInvoiceFlag": BOOL,
    "copyWorkRolesFlag": BOOL, "copyWorkTypesFlag": BOOL, "exclusionWorkRoleIds": INT_LIST,
    "addAllWorkRoleExclusions": BOOL, "removeAllWorkRoleExclusions": BOOL, "exclusionWorkTypeIds": INT_LIST,
    "addAllWorkTypeExclusions": BOOL, "removeAllWorkTypeExclusions": BOOL, "integrationXRef": STRING,
    "prorateFlag": BOOL, "emailTemplate": REF, "autoInvoiceFlag": BOOL, "invoiceProratedAdditionsFlag": BOOL,
    "_info": INFO, "connectWiseId": STRING,
}  # fmt: skip

# -- BillingCycle ------------------------------------------------------------------------------------
BILLING_CYCLE: dict[str, Any] = {
    "id": INT, "identifier": STRING, "name": STRING, "defaultFlag": BOOL,
    "billingOptions": enum("BiMonthly", "BiWeekly", "Monthly", "NotRecurring", "Quarterly", "SemiAnnual",
                           "Weekly", "Yearly"),
    "_info": INFO,
}  # fmt: skip

# -- Company -----------------------------------------------------------------------------------------
COMPANY: dict[str, Any] = {
    "id": INT, "identifier": STRING, "name": STRING, "status": REF, "addressLine1": STRING,
    "addressLine2": STRING, "city": STRING, "state": STRING, "zip": STRING, "country": REF,
    "phoneNumber": STRING, "faxNumber": STRING, "website": STRING, "territory": REF, "market": REF,
    "accountNumber": STRING, "defaultContact": REF, "dateAcquired": DATETIME_T, "sicCode": REF,
    "parentCompany": COMPANY_REF, "annualRevenue": NUMBER, "creditLimit": NUMBER, "additionalDebt": NUMBER,
    "numberOfEmployees": INT, "yearEstablished": INT, "revenueYear": INT, "ownershipType": REF,
    "timeZoneSetup": REF, "leadSource": STRING, "leadFlag": BOOL, "unsubscribeFlag": BOOL, "calendar": REF,
    **{f"userDefinedField{i}": STRING for i in range(1, 11)}, "vendorIdentifier": STRING,
    "taxIdentifier": STRING, "taxCode": REF, "billingTerms": REF, "invoiceTemplate": REF,
    "pricingSchedule": REF, "companyEntityType": REF, "billToCompany": COMPANY_REF, "billingSite": REF,
    "billingContact": REF, "invoiceDeliveryMethod": REF, "invoiceToEmailAddress": STRING,
    "invoiceCCEmailAddress": STRING, "deletedFlag": BOOL, "dateDeleted": DATETIME_T, "deletedBy": STRING,
    "mobileGuid": STRING, "facebookUrl": STRING, "twitterUrl": STRING, "linkedInUrl": STRING,
    "currency": CURRENCY_REF, "territoryManager": REF, "resellerIdentifier": STRING, "isVendorFlag": BOOL,
    "types": REF_LIST, "site": REF, "integratorTags": STRING_LIST, "_info": INFO, "customFields": CUSTOM_FIELDS,
}  # fmt: skip

# -- small schemas ------------------------------------------------------------------------------
COUNT: dict[str, Any] = {"count": INT}
ERROR: dict[str, Any] = {"code": STRING, "message": STRING, "errors": "validation_errors"}
VALIDATION_ERROR = {"code", "message", "resource", "field", "details"}
THROTTLED: dict[str, Any] = {"error": STRING, "message": STRING}
CUSTOM_FIELD_KEYS = {"id", "caption", "type", "entryMethod", "numberOfDecimals", "value", "connectWiseId"}


def problems(record: Any, spec: dict[str, Any], where: str) -> list[str]:
    """Every field of `record` that is not in `spec` or has the wrong JSON type (empty = conformant)."""
    if not isinstance(record, dict):
        return [f"{where}: not an object"]
    out: list[str] = []
    for key, value in record.items():
        if key not in spec:
            out.append(f"{where}.{key}: not in the spec")
            continue
        out += type_problems(value, spec[key], f"{where}.{key}")
    return out


def type_problems(value: Any, kind: Any, where: str) -> list[str]:
    ok: bool
    if value is None:
        return [f"{where}: null must be omitted"]
    if kind == INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == NUMBER:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == STRING:
        ok = isinstance(value, str)
    elif kind == BOOL:
        ok = isinstance(value, bool)
    elif kind == DATETIME_T:
        ok = isinstance(value, str) and bool(DATETIME.match(value))
    elif kind == INFO:
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    elif kind == CUSTOM_FIELDS:
        ok = isinstance(value, list) and all(
            isinstance(v, dict) and set(v) <= CUSTOM_FIELD_KEYS for v in value
        )
    elif kind == REF_LIST:
        return [p for i, v in enumerate(value) for p in type_problems(v, REF, f"{where}[{i}]")]
    elif kind in (INT_LIST, STRING_LIST):
        item = INT if kind == INT_LIST else STRING
        return [p for i, v in enumerate(value) for p in type_problems(v, item, f"{where}[{i}]")]
    elif kind == "validation_errors":
        ok = isinstance(value, list) and all(
            isinstance(e, dict) and set(e) <= VALIDATION_ERROR and all(isinstance(v, str) for v in e.values())
            for e in value
        )
    elif kind[0] == "enum":
        ok = value in kind[1]
    elif kind[0] == "ref":
        if not isinstance(value, dict):
            return [f"{where}: reference is not an object"]
        extra = set(value) - kind[1]
        if extra:
            return [f"{where}: reference keys {sorted(extra)} not in the spec"]
        sub = {"id": INT, "name": STRING, "identifier": STRING, "type": STRING, "_info": INFO,
               "serializedFlag": BOOL, "chargeFirmFlag": BOOL, "symbol": STRING, "currencyCode": STRING,
               "decimalSeparator": STRING, "numberOfDecimals": INT, "thousandsSeparator": STRING,
               "negativeParenthesesFlag": BOOL, "displaySymbolFlag": BOOL, "currencyIdentifier": STRING,
               "displayIdFlag": BOOL, "rightAlign": BOOL, "description": STRING, "showPriceFlag": BOOL,
               "showSubItemsFlag": BOOL, "groupParentChildAdditionsFlag": BOOL}  # fmt: skip
        return [p for k, v in value.items() for p in type_problems(v, sub[k], f"{where}.{k}")]
    else:  # pragma: no cover - a typo in the tables above
        raise AssertionError(f"unknown kind {kind!r}")
    return [] if ok else [f"{where}: {value!r} is not {kind if isinstance(kind, str) else kind[0]}"]


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    return Simulator(SimConfig(companies=12, agreements_per_company=15, additions_per_agreement=5,
                               anchor=date(2026, 5, 1)))  # fmt: skip


@pytest.fixture
async def api(simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    cfg = simulator.config
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=simulator),
        base_url=f"{cfg.public_url}/{cfg.codebase}/apis/3.0",
        auth=httpx.BasicAuth(f"{cfg.company_id}+{cfg.public_key}", cfg.private_key),
        headers={"clientId": cfg.client_id},
    ) as client:
        yield client


async def all_rows(api: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    response = await api.get(path, params={"pageSize": 1000})
    assert response.status_code == 200
    rows = response.json()
    assert isinstance(rows, list)
    return rows


# -- tests ------------------------------------------------------------------------------------------------


async def test_every_agreement_conforms_to_the_agreement_model(api: httpx.AsyncClient) -> None:
    rows = await all_rows(api, "/finance/agreements")
    assert len(rows) == 180
    assert [p for row in rows for p in problems(row, AGREEMENT, f"agreement {row.get('id')}")] == []
    single = (await api.get(f"/finance/agreements/{rows[0]['id']}")).json()
    assert problems(single, AGREEMENT, "agreement") == []


async def test_every_addition_conforms_to_the_addition_model(api: httpx.AsyncClient) -> None:
    agreements = await all_rows(api, "/finance/agreements")
    found = []
    for agreement in agreements[:60]:
        found += await all_rows(api, f"/finance/agreements/{agreement['id']}/additions")
    assert found
    assert [p for row in found for p in problems(row, ADDITION, f"addition {row.get('id')}")] == []


async def test_companies_conform_to_the_company_model(api: httpx.AsyncClient) -> None:
    rows = await all_rows(api, "/company/companies")
    assert len(rows) == 12
    assert [p for row in rows for p in problems(row, COMPANY, f"company {row.get('id')}")] == []


async def test_billing_cycles_and_agreement_types_conform(api: httpx.AsyncClient) -> None:
    cycles = await all_rows(api, "/finance/billingCycles")
    types = await all_rows(api, "/finance/agreements/types")
    assert cycles and types
    assert [p for row in cycles for p in problems(row, BILLING_CYCLE, "billingCycle")] == []
    assert [p for row in types for p in problems(row, AGREEMENT_TYPE, "agreementType")] == []


async def test_count_bodies_conform(api: httpx.AsyncClient) -> None:
    for path in ("/finance/agreements/count", "/company/companies/count", "/finance/billingCycles/count"):
        body = (await api.get(path)).json()
        assert problems(body, COUNT, path) == []
        assert set(body) == {"count"}


async def test_error_bodies_conform_to_error_response_message(
    api: httpx.AsyncClient, simulator: Simulator
) -> None:
    answers = [
        await api.get("/finance/agreements", params={"conditions": "id = = 1"}),  # 400
        await api.get("/finance/agreements/999999999"),  # 404 record
        await api.get("/finance/nothing-here"),  # 404 endpoint
        await api.get("/finance/agreements", auth=httpx.BasicAuth("x+y", "z")),  # 401
    ]
    simulator.permissions.update({"finance_agreements": False})
    try:
        answers.append(await api.get("/finance/agreements"))  # 403
    finally:
        simulator.permissions.update({"finance_agreements": True})
    assert [a.status_code for a in answers] == [400, 404, 404, 401, 403]
    for answer in answers:
        body = answer.json()
        assert problems(body, ERROR, f"{answer.status_code}") == []
        assert {"code", "message"} <= set(body)


async def test_throttled_body_uses_error_not_code(api: httpx.AsyncClient, simulator: Simulator) -> None:
    simulator.budget.set(1)
    try:
        await api.get("/system/info")
        answer = await api.get("/system/info")
    finally:
        simulator.budget.set(0)
    assert answer.status_code == 429
    assert problems(answer.json(), THROTTLED, "429") == []
    assert set(answer.json()) == {"error", "message"}


def test_the_checker_catches_unknown_fields_and_wrong_types() -> None:
    assert problems({"id": "7", "bogus": 1, "cancelledFlag": None}, AGREEMENT, "a") == [
        "a.id: '7' is not int",
        "a.bogus: not in the spec",
        "a.cancelledFlag: null must be omitted",
    ]
