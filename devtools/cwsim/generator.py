"""Deterministic, realistic ConnectWise data: companies, agreements, additions, types, billing cycles.

Pure: the same `GeneratorSettings` (seed, counts, anchor date, href base) always yields byte-identical
records. Records are plain JSON-ready dicts with nulls omitted, money as floats with at most two
decimals (computed in integer cents, so `Decimal(str(x))` is exact), dates as `YYYY-MM-DDTHH:MM:SSZ`.

Mix per agreement: ~65% active, ~7% future-dated, ~10% cancelled, ~10% expired, ~8% inactive; ~12% are
child agreements (`parentAgreement`); currencies mostly USD with some CAD/EUR/GBP (per company); billing
cycles mostly Monthly plus every other cycle incl. NotRecurring (one-time types). Additions are ~80%
Billable, ~10% DoNotBill, ~10% NoCharge; ~8% future-effective, ~8% cancelled; ~20% have `lessIncluded`.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from devtools.cwsim.clock import format_cw

Json = dict[str, Any]

MEMBERS = ("jsmith", "amiller", "kchen", "dpatel", "APIMember")

BILLING_CYCLES: tuple[tuple[int, str, str, str], ...] = (
    # id, identifier, name, billingOptions
    (1, "WK", "Weekly", "Weekly"),
    (2, "MON", "Monthly", "Monthly"),
    (3, "QTR", "Quarterly", "Quarterly"),
    (4, "SEMI", "SemiAnnual", "SemiAnnual"),
    (5, "YR", "Yearly", "Yearly"),
    (6, "BIWK", "BiWeekly", "BiWeekly"),
    (7, "BIMO", "BiMonthly", "BiMonthly"),
    (8, "ONE", "NotRecurring", "NotRecurring"),
)
_CYCLE_BY_NAME = {c[2]: c for c in BILLING_CYCLES}
# recurring cycle weights (name, weight)
_RECURRING_CYCLES = (
    ("Monthly", 70),
    ("Quarterly", 8),
    ("Yearly", 10),
    ("SemiAnnual", 3),
    ("BiMonthly", 3),
    ("Weekly", 3),
    ("BiWeekly", 3),
)

CURRENCIES: dict[str, Json] = {
    "USD": {"id": 7, "symbol": "$", "currencyCode": "USD", "name": "US Dollars"},
    "CAD": {"id": 8, "symbol": "$", "currencyCode": "CAD", "name": "Canadian Dollars"},
    "EUR": {"id": 9, "symbol": "€", "currencyCode": "EUR", "name": "Euro"},
    "GBP": {"id": 10, "symbol": "£", "currencyCode": "GBP", "name": "British Pounds"},
}
_CURRENCY_WEIGHTS = (("USD", 80), ("CAD", 8), ("EUR", 6), ("GBP", 6))


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    identifier: str
    description: str
    uom: str
    price_cents: int
    cost_cents: int


PRODUCTS: tuple[Product, ...] = (
    Product(301, "M365-BP", "Microsoft 365 Business Premium", "User", 2200, 1850),
    Product(302, "M365-BS", "Microsoft 365 Business Standard", "User", 1250, 1050),
    Product(303, "M365-E3", "Microsoft 365 E3", "User", 3600, 3100),
    Product(304, "EXO-P1", "Exchange Online (Plan 1)", "User", 400, 340),
    Product(305, "AAD-P1", "Microsoft Entra ID P1", "User", 600, 510),
    Product(310, "WS-MGMT", "Managed Workstation", "Device", 4500, 1200),
    Product(311, "SRV-MGMT", "Managed Server", "Device", 17500, 4000),
    Product(312, "NET-MGMT", "Managed Network Device", "Device", 2500, 600),
    Product(313, "FW-MGMT", "Managed Firewall", "Device", 9900, 2500),
    Product(320, "S1-CORE", "SentinelOne Singularity Core EDR", "Device", 650, 380),
    Product(321, "HUNTRESS-EDR", "Huntress Managed EDR", "Device", 450, 300),
    Product(322, "KB4-SAT", "KnowBe4 Security Awareness Training", "User", 275, 150),
    Product(323, "DUO-MFA", "Cisco Duo MFA", "User", 375, 300),
    Product(324, "PP-ESS", "Proofpoint Essentials Email Security", "User", 325, 210),
    Product(330, "DATTO-SIRIS-1TB", "Datto SIRIS 1TB BCDR Appliance", "Each", 29900, 17500),
    Product(331, "VEEAM-M365", "Veeam Backup for Microsoft 365", "User", 300, 180),
    Product(332, "BKP-CLOUD-GB", "Cloud Backup Storage (per 100 GB)", "Each", 1500, 700),
    Product(340, "VOIP-SEAT", "Hosted VoIP Seat", "User", 2495, 1400),
    Product(341, "DOMAIN-REG", "Domain Registration", "Each", 2500, 1200),
    Product(342, "SSL-CERT", "SSL Certificate (1 year)", "Each", 12900, 6500),
    Product(350, "HAAS-LAPTOP", "Hardware as a Service - Business Laptop", "Device", 8900, 5200),
    Product(351, "HAAS-DESKTOP", "Hardware as a Service - Business Desktop", "Device", 6900, 3900),
    Product(360, "BLOCK-10H", "Block Time - 10 Hours", "Each", 165000, 90000),
    Product(361, "PROJ-MIGRATE", "Project - Server Migration (fixed fee)", "Each", 850000, 420000),
)
_PRODUCT_BY_ID = {p.id: p for p in PRODUCTS}


@dataclass(frozen=True, slots=True)
class AgreementTypeDef:
    id: int
    name: str
    cycle: str  # default billing cycle name
    one_time: bool
    products: tuple[int, ...]
    weight: int
    inactive: bool = False


AGREEMENT_TYPES: tuple[AgreementTypeDef, ...] = (
    AgreementTypeDef(5, "Managed Services", "Monthly", False, (310, 311, 312, 313, 320, 321), 30),
    AgreementTypeDef(6, "Microsoft 365", "Monthly", False, (301, 302, 303, 304, 305), 20),
    AgreementTypeDef(7, "Backup & DR", "Monthly", False, (330, 331, 332), 10),
    AgreementTypeDef(8, "Security Services", "Monthly", False, (320, 321, 322, 323, 324), 12),
    AgreementTypeDef(9, "Voice Services", "Monthly", False, (340,), 5),
    AgreementTypeDef(10, "Hardware as a Service", "Quarterly", False, (350, 351), 5),
    AgreementTypeDef(11, "Annual Renewals", "Yearly", False, (341, 342), 6),
    AgreementTypeDef(12, "Block Time", "NotRecurring", True, (360,), 6),
    AgreementTypeDef(13, "Project - Fixed Fee", "NotRecurring", True, (361,), 4),
    AgreementTypeDef(14, "Legacy Break/Fix", "Monthly", False, (310,), 2, inactive=True),
)
_TYPE_BY_ID = {t.id: t for t in AGREEMENT_TYPES}

_COMPANY_WORDS = (
    "Acme",
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Wonka",
    "Gringotts",
    "Oceanic",
    "Massive",
    "Pied Piper",
    "Blue Ridge",
    "Harbor",
    "Summit",
    "Lakeside",
    "Pinecrest",
    "Redwood",
    "Silverline",
    "Keystone",
    "Riverbend",
)
_COMPANY_SUFFIXES = (
    "Corporation",
    "Dental",
    "Law Group",
    "Logistics",
    "Manufacturing",
    "Accounting",
    "Medical Center",
    "Architects",
    "Realty",
    "Foods",
    "Engineering",
    "Credit Union",
    "School District",
    "Insurance",
)
_FIRST = (
    "Jane",
    "John",
    "Maria",
    "Wei",
    "Aisha",
    "Carlos",
    "Priya",
    "Tom",
    "Olga",
    "Kenji",
    "Fatima",
    "Liam",
)
_LAST = ("Doe", "Smith", "Garcia", "Chen", "Khan", "Silva", "Patel", "Novak", "Sato", "Okafor", "Murphy")
_CITIES = (
    ("Tampa", "FL", "33602", "United States"),
    ("Chicago", "IL", "60601", "United States"),
    ("Austin", "TX", "73301", "United States"),
    ("Denver", "CO", "80202", "United States"),
    ("Toronto", "ON", "M5H 2N2", "Canada"),
    ("Dublin", "D", "D02 X285", "Ireland"),
    ("Manchester", "ENG", "M1 1AE", "United Kingdom"),
)
_COUNTRY_IDS = {"United States": 1, "Canada": 2, "Ireland": 3, "United Kingdom": 4}
_CURRENCY_FOR_COUNTRY = {"Canada": "CAD", "Ireland": "EUR", "United Kingdom": "GBP"}
_LOCATIONS = ((2, "Tampa Office"), (3, "Chicago Office"), (4, "Remote"))
_DEPARTMENTS = ((10, "Services", "Services"), (11, "Projects", "Projects"), (12, "Cloud", "Cloud"))
_BILLING_TERMS = ((1, "Net 30 days"), (2, "Net 15 days"), (3, "Due on receipt"))
_CANCEL_REASONS = (
    "Client moved to another provider",
    "Replaced by new agreement",
    "Business closed",
    "Consolidated into master agreement",
    "Non-payment",
)

STATUS_ACTIVE, STATUS_FUTURE, STATUS_CANCELLED, STATUS_EXPIRED, STATUS_INACTIVE = (
    "active",
    "future",
    "cancelled",
    "expired",
    "inactive",
)
_STATUS_WEIGHTS = (
    (STATUS_ACTIVE, 65),
    (STATUS_FUTURE, 7),
    (STATUS_CANCELLED, 10),
    (STATUS_EXPIRED, 10),
    (STATUS_INACTIVE, 8),
)


@dataclass(frozen=True, slots=True)
class GeneratorSettings:
    """Everything the generated data depends on. Same settings -> byte-identical data."""

    seed: int = 1
    companies: int = 20
    agreements_per_company: int = 5
    additions_per_agreement: int = 4  # mean; the actual count varies between half and 1.5x
    anchor: date = date(2025, 6, 1)  # "today" of the generated data; the CLI defaults it to the clock's date
    href_base: str = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0"


@dataclass
class DataSet:
    billing_cycles: list[Json] = field(default_factory=list)
    agreement_types: list[Json] = field(default_factory=list)
    companies: list[Json] = field(default_factory=list)
    agreements: list[Json] = field(default_factory=list)
    additions: list[Json] = field(default_factory=list)


def money(cents: int) -> float:
    """Integer cents -> a float whose repr has at most two decimals (Decimal-safe via str())."""
    return cents / 100


def midnight(day: date) -> str:
    return format_cw(datetime(day.year, day.month, day.day, tzinfo=UTC))


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    names = [w[0] for w in weighted]
    return rng.choices(names, weights=[w[1] for w in weighted])[0]


class Factory:
    """Builds records. Deterministic given its rng; used by `generate` and by the control API."""

    def __init__(self, rng: random.Random, anchor: date, href_base: str) -> None:
        self.rng = rng
        self.anchor = anchor
        self.href = href_base.rstrip("/")

    # -- references ---------------------------------------------------------------------------------
    def ref(self, kind: str, id_: int, name: str, path: str, **extra: Any) -> Json:
        return {"id": id_, **extra, "name": name, "_info": {f"{kind}_href": f"{self.href}/{path}/{id_}"}}

    def company_ref(self, company: Json) -> Json:
        return {
            "id": company["id"],
            "identifier": company["identifier"],
            "name": company["name"],
            "_info": {"company_href": f"{self.href}/company/companies/{company['id']}"},
        }

    def currency_ref(self, code: str) -> Json:
        cur = CURRENCIES[code]
        return {
            "id": cur["id"],
            "symbol": cur["symbol"],
            "currencyCode": code,
            "decimalSeparator": ".",
            "numberOfDecimals": 2,
            "thousandsSeparator": ",",
            "negativeParenthesesFlag": False,
            "displaySymbolFlag": True,
            "currencyIdentifier": code,
            "displayIdFlag": False,
            "rightAlign": False,
            "name": cur["name"],
            "_info": {"currency_href": f"{self.href}/finance/currencies/{cur['id']}"},
        }

    def cycle_ref(self, name: str) -> Json:
        cid = _CYCLE_BY_NAME[name][0]
        return self.ref("billingCycle", cid, name, "finance/billingCycles")

    def info(self, last_updated: str, updated_by: str | None = None) -> Json:
        return {"lastUpdated": last_updated, "updatedBy": updated_by or self.rng.choice(MEMBERS)}

    def past_stamp(self, max_days: int = 400) -> str:
        """A lastUpdated before the anchor date (whole seconds)."""
        start = datetime(self.anchor.year, self.anchor.month, self.anchor.day, tzinfo=UTC)
        return format_cw(start - timedelta(seconds=self.rng.randint(60, max_days * 86400)))

    # -- setup tables -------------------------------------------------------------------------------
    def billing_cycles(self) -> list[Json]:
        out = []
        for cid, ident, name, option in BILLING_CYCLES:
            out.append(
                {
                    "id": cid,
                    "identifier": ident,
                    "name": name,
                    "defaultFlag": name == "Monthly",
                    "billingOptions": option,
                    "_info": {"lastUpdated": "2019-01-15T14:00:00Z", "updatedBy": "admin"},
                }
            )
        return out

    def agreement_types(self) -> list[Json]:
        out = []
        for t in AGREEMENT_TYPES:
            out.append(
                {
                    "id": t.id,
                    "name": t.name,
                    "prefixSuffixOption": "Prefix",
                    "defaultFlag": t.id == 5,
                    "inactiveFlag": t.inactive,
                    "prePaymentFlag": t.one_time,
                    "applicationUnits": "Hours" if t.name == "Block Time" else "Amount",
                    "applicationLimit": 10.0 if t.name == "Block Time" else 0.0,
                    "applicationCycle": "ContractYear",
                    "applicationUnlimitedFlag": not t.one_time,
                    "oneTimeFlag": t.one_time,
                    "coverAgreementTimeFlag": t.name in ("Managed Services", "Block Time"),
                    "coverAgreementProductFlag": False,
                    "coverAgreementExpenseFlag": False,
                    "coverSalesTaxFlag": False,
                    "carryOverUnusedFlag": False,
                    "allowOverrunsFlag": t.name == "Block Time",
                    "expireWhenZero": t.name == "Block Time",
                    "chargeToFirmFlag": False,
                    "employeeCompRate": "Actual",
                    "employeeCompNotExceed": "Billing",
                    "billingCycle": self.cycle_ref(t.cycle),
                    "billOneTimeFlag": t.one_time,
                    "invoicingCycle": "ContractYear",
                    "billAmount": 0.0,
                    "taxableFlag": True,
                    "restrictDownPaymentFlag": False,
                    "topCommentFlag": False,
                    "bottomCommentFlag": False,
                    "billTime": "Billable",
                    "billExpenses": "Billable",
                    "billProducts": "Billable",
                    "billableTimeInvoiceFlag": False,
                    "billableExpenseInvoiceFlag": False,
                    "billableProductInvoiceFlag": True,
                    "copyWorkRolesFlag": False,
                    "copyWorkTypesFlag": False,
                    "prorateFlag": not t.one_time,
                    "autoInvoiceFlag": False,
                    "invoiceProratedAdditionsFlag": False,
                    "_info": {"lastUpdated": "2020-03-02T10:30:00Z", "updatedBy": "admin"},
                    "connectWiseId": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                }
            )
        return out

    # -- companies ----------------------------------------------------------------------------------
    def company(
        self, id_: int, *, name: str | None = None, identifier: str | None = None, currency: str | None = None
    ) -> Json:
        rng = self.rng
        if name is None:
            name = f"{rng.choice(_COMPANY_WORDS)} {rng.choice(_COMPANY_SUFFIXES)}"
        if identifier is None:
            identifier = "".join(ch for ch in name.title() if ch.isalnum())[:25]
        if currency is None:
            currency = _pick(rng, _CURRENCY_WEIGHTS)
        city, state, zip_, country = rng.choice(
            [c for c in _CITIES if _CURRENCY_FOR_COUNTRY.get(c[3], "USD") == currency] or list(_CITIES)
        )
        contact = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        acquired = self.anchor - timedelta(days=rng.randint(200, 4000))
        return {
            "id": id_,
            "identifier": identifier,
            "name": name,
            "status": self.ref("status", 1, "Active", "company/companies/statuses"),
            "addressLine1": f"{rng.randint(10, 9999)} {rng.choice(('Main', 'Oak', 'Market', 'Harbor'))} Street",
            "city": city,
            "state": state,
            "zip": zip_,
            "country": self.ref("country", _COUNTRY_IDS[country], country, "company/countries"),
            "phoneNumber": f"{rng.randint(200, 989)}555{rng.randint(1000, 9999)}",
            "website": f"www.{identifier.lower()}.example",
            "territory": self.ref("territory", 1, "Main", "system/locations"),
            "market": self.ref("market", 1, "Small Business", "company/marketDescriptions"),
            "defaultContact": self.ref("contact", id_ * 10 + 2, contact, "company/contacts"),
            "dateAcquired": midnight(acquired),
            "annualRevenue": money(rng.randint(5, 500) * 10_000_000),
            "numberOfEmployees": rng.randint(5, 800),
            "timeZoneSetup": self.ref("timeZoneSetup", 1, "US Eastern", "system/timeZoneSetups"),
            "leadFlag": False,
            "unsubscribeFlag": False,
            "deletedFlag": False,
            "mobileGuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "currency": self.currency_ref(currency),
            "isVendorFlag": False,
            "types": [
                {"id": 1, "name": "Client", "_info": {"type_href": f"{self.href}/company/companies/types/1"}}
            ],
            "site": self.ref("site", id_ * 10 + 1, "Main", f"company/companies/{id_}/sites"),
            "_info": self.info(self.past_stamp()),
        }

    # -- agreements ---------------------------------------------------------------------------------
    def agreement(
        self,
        id_: int,
        company: Json,
        *,
        parent: Json | None = None,
        status: str | None = None,
        type_id: int | None = None,
    ) -> Json:
        rng = self.rng
        if type_id is None:
            choices = [t for t in AGREEMENT_TYPES]
            tdef = rng.choices(choices, weights=[t.weight for t in choices])[0]
        else:
            tdef = _TYPE_BY_ID[type_id]
        status = status or _pick(rng, _STATUS_WEIGHTS)
        if tdef.inactive and status == STATUS_ACTIVE:
            status = STATUS_INACTIVE
        cycle = (
            "NotRecurring"
            if tdef.one_time
            else (tdef.cycle if rng.random() < 0.7 else _pick(rng, _RECURRING_CYCLES))
        )
        anchor = self.anchor
        if status == STATUS_FUTURE:
            start = anchor + timedelta(days=rng.randint(5, 120))
        else:
            start = anchor - timedelta(days=rng.randint(30, 1500))
        start = start.replace(day=1) if rng.random() < 0.6 and status != STATUS_FUTURE else start
        end: date | None = None
        no_end = False
        if status == STATUS_EXPIRED:
            end = anchor - timedelta(days=rng.randint(1, max(2, min(700, (anchor - start).days - 1))))
            end = max(end, start + timedelta(days=1))
        elif tdef.one_time:
            end = max(start, anchor) + timedelta(days=rng.randint(30, 365))
        elif rng.random() < 0.55:
            no_end = True
        else:
            years = rng.randint(1, 3)
            end = start + timedelta(days=365 * years - 1)
            while end <= anchor:
                end += timedelta(days=365)
        currency = company["currency"]["currencyCode"]
        if tdef.one_time:
            bill_cents = rng.randint(15, 250) * 10000
        elif rng.random() < 0.3:
            bill_cents = 0  # billed through its additions only
        else:
            bill_cents = rng.randint(2, 120) * 5000 + (rng.choice((0, 0, 0, 99, 50, 25)))
        company_name = company["name"]
        name = f"{company_name[:60]} - {tdef.name}"
        if parent is not None:
            name = f"{company_name[:50]} - {tdef.name} (add-on)"
        contact = company.get("defaultContact") or self.ref(
            "contact", company["id"] * 10 + 2, "Main Contact", "company/contacts"
        )
        loc_id, loc_name = rng.choice(_LOCATIONS)
        dep_id, dep_ident, dep_name = rng.choice(_DEPARTMENTS)
        terms_id, terms_name = rng.choice(_BILLING_TERMS)
        billing_type = "Billable"
        a: Json = {
            "id": id_,
            "name": name[:100],
            "type": self.ref("type", tdef.id, tdef.name, "finance/agreements/types"),
            "company": self.company_ref(company),
            "contact": contact,
        }
        if "site" in company:
            a["site"] = company["site"]
        if parent is not None:
            a["parentAgreement"] = {
                "id": parent["id"],
                "name": parent["name"],
                "type": parent["type"]["name"],
                "_info": {"agreement_href": f"{self.href}/finance/agreements/{parent['id']}"},
            }
        if rng.random() < 0.3:
            a["customerPO"] = f"PO-{rng.randint(10000, 99999)}"
        a["location"] = self.ref("location", loc_id, loc_name, "system/locations")
        a["department"] = self.ref("department", dep_id, dep_name, "system/departments", identifier=dep_ident)
        a["restrictLocationFlag"] = False
        a["restrictDepartmentFlag"] = False
        a["startDate"] = midnight(start)
        if end is not None:
            a["endDate"] = midnight(end)
        a["noEndingDateFlag"] = no_end
        a["cancelledFlag"] = status == STATUS_CANCELLED
        if status == STATUS_CANCELLED:
            span = max(1, (anchor - start).days)
            a["dateCancelled"] = midnight(start + timedelta(days=rng.randint(1, span)))
            a["reasonCancelled"] = rng.choice(_CANCEL_REASONS)
        a.update(
            {
                "applicationUnits": "Hours" if tdef.name == "Block Time" else "Amount",
                "applicationLimit": 10.0 if tdef.name == "Block Time" else 0.0,
                "applicationCycle": "ContractYear" if tdef.one_time else "CalendarMonth",
                "applicationUnlimitedFlag": not tdef.one_time,
                "oneTimeFlag": tdef.one_time,
                "coverAgreementTime": tdef.name in ("Managed Services", "Block Time"),
                "coverAgreementProduct": False,
                "coverAgreementExpense": False,
                "coverSalesTax": False,
                "carryOverUnused": False,
                "allowOverruns": tdef.name == "Block Time",
                "expireWhenZero": tdef.name == "Block Time",
                "chargeToFirm": False,
                "employeeCompRate": "Actual",
                "employeeCompNotExceed": "Billing",
                "billingCycle": self.cycle_ref(cycle),
                "billOneTimeFlag": tdef.one_time,
                "billingTerms": self.ref("billingTerms", terms_id, terms_name, "finance/billingTerms"),
                "invoicingCycle": "ContractYear" if rng.random() < 0.8 else "CalendarYear",
                "billAmount": money(bill_cents),
                "taxable": rng.random() < 0.6,
                "prorateFirstBill": 0.0,
                "billStartDate": midnight(start),
                "restrictDownPayment": False,
                "prorateFlag": not tdef.one_time,
                "invoiceProratedAdditionsFlag": False,
                "topComment": False,
                "bottomComment": False,
                "billTime": billing_type if tdef.name != "Managed Services" else "NoCharge",
                "billExpenses": "Billable",
                "billProducts": "Billable",
                "billableTimeInvoice": False,
                "billableExpenseInvoice": False,
                "billableProductInvoice": True,
                "currency": self.currency_ref(currency),
                "periodType": "Current",
                "autoInvoiceFlag": False,
            }
        )
        if status == STATUS_ACTIVE and not tdef.one_time:
            nxt = date(anchor.year + (anchor.month // 12), anchor.month % 12 + 1, 1)
            a["nextInvoiceDate"] = midnight(nxt)
        a["agreementStatus"] = {
            STATUS_ACTIVE: "Active",
            STATUS_FUTURE: "Active",
            STATUS_CANCELLED: "Cancelled",
            STATUS_EXPIRED: "Expired",
            STATUS_INACTIVE: "Inactive",
        }[status]
        a["_info"] = self.info(self.past_stamp())
        if rng.random() < 0.5:
            a["customFields"] = [
                {
                    "id": 12,
                    "caption": "Contract Ref",
                    "type": "Text",
                    "entryMethod": "EntryField",
                    "numberOfDecimals": 0,
                    "value": f"C-{start.year}-{rng.randint(1, 999):03d}",
                }
            ]
        return a

    # -- additions ----------------------------------------------------------------------------------
    def addition(self, id_: int, agreement: Json, sequence: int, *, product_id: int | None = None) -> Json:
        rng = self.rng
        tdef = _TYPE_BY_ID.get(agreement["type"]["id"], AGREEMENT_TYPES[0])
        product = (
            _PRODUCT_BY_ID[product_id]
            if product_id is not None
            else _PRODUCT_BY_ID[rng.choice(tdef.products)]
        )
        one_per = product.uom == "Each" and tdef.one_time
        quantity = 1 if one_per else rng.choice((1, 2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 120))
        less_included = 0
        if rng.random() < 0.2 and quantity > 1:
            less_included = rng.randint(1, max(1, quantity // 3))
        price_cents = product.price_cents
        if rng.random() < 0.3:  # negotiated discount
            price_cents = price_cents * rng.choice((85, 90, 95)) // 100
        bill_customer = rng.choices(("Billable", "DoNotBill", "NoCharge"), weights=(80, 10, 10))[0]
        start = _date_of(agreement["startDate"])
        anchor = self.anchor
        roll = rng.random()
        effective = start
        cancelled: date | None = None
        if roll < 0.08:
            effective = max(start, anchor) + timedelta(days=rng.randint(5, 60))
        elif roll < 0.16 and start < anchor:
            effective = start + timedelta(days=rng.randint(0, max(0, (anchor - start).days // 2)))
            cancelled = effective + timedelta(days=rng.randint(1, max(1, (anchor - effective).days)))
        elif roll < 0.4 and start < anchor:
            effective = start + timedelta(days=rng.randint(0, (anchor - start).days))
        return self.price_addition(
            {
                "id": id_,
                "product": {
                    "id": product.id,
                    "identifier": product.identifier,
                    "serializedFlag": False,
                    "_info": {"product_href": f"{self.href}/procurement/catalog/{product.id}"},
                },
                "quantity": float(quantity),
                "lessIncluded": float(less_included),
                "unitPrice": money(price_cents),
                "unitCost": money(product.cost_cents),
                "billCustomer": bill_customer,
                "effectiveDate": midnight(effective),
                **({"cancelledDate": midnight(cancelled)} if cancelled else {}),
                "taxableFlag": rng.random() < 0.5,
                **(
                    {"serialNumber": f"SN{rng.randint(10**7, 10**8 - 1)}"}
                    if product.uom == "Device" and rng.random() < 0.1
                    else {}
                ),
                **(
                    {"invoiceDescription": f"{product.description} ({quantity} x)"}
                    if rng.random() < 0.2
                    else {}
                ),
                "purchaseItemFlag": False,
                "specialOrderFlag": False,
                "agreementId": agreement["id"],
                "description": product.description,
                "billedQuantity": 0.0,
                "uom": product.uom,
                "extPrice": 0.0,
                "extCost": 0.0,
                "sequenceNumber": float(sequence),
                "margin": 0.0,
                "prorateCost": 0.0,
                "proratePrice": 0.0,
                "extendedProrateCost": 0.0,
                "extendedProratePrice": 0.0,
                "prorateCurrentPeriodFlag": False,
                "agreementStatus": agreement.get("agreementStatus", "Active"),
                "_info": self.info(self.past_stamp()),
            }
        )

    @staticmethod
    def price_addition(addition: Json) -> Json:
        """Recompute the server-side amounts in place and return the addition: billedQuantity =
        quantity - lessIncluded, extPrice = billedQuantity x unitPrice, extCost = billedQuantity x unitCost,
        margin = extPrice - extCost (integer cents; the simulator's choice, the real formula is UNCONFIRMED)."""
        billed = max(0.0, float(addition.get("quantity", 0.0)) - float(addition.get("lessIncluded", 0.0)))
        ext_price = round(billed * round(float(addition.get("unitPrice", 0.0)) * 100))
        ext_cost = round(billed * round(float(addition.get("unitCost", 0.0)) * 100))
        addition["billedQuantity"] = billed
        addition["extPrice"] = money(ext_price)
        addition["extCost"] = money(ext_cost)
        addition["margin"] = money(ext_price - ext_cost)
        if "_info" in addition:  # keep _info last, as the API does
            addition["_info"] = addition.pop("_info")
        return addition


def _date_of(value: str) -> date:
    return datetime.fromisoformat(value).date()


def generate(settings: GeneratorSettings) -> DataSet:
    """Generate a full data set; deterministic in `settings`."""
    rng = random.Random(settings.seed)
    f = Factory(rng, settings.anchor, settings.href_base)
    data = DataSet(billing_cycles=f.billing_cycles(), agreement_types=f.agreement_types())
    used: set[str] = set()
    company_id = 249
    for _ in range(settings.companies):
        company_id += rng.randint(1, 4)
        c = f.company(company_id)
        ident = c["identifier"]
        n = 2
        while ident.lower() in used:
            ident = f"{c['identifier'][:22]}{n}"
            n += 1
        if ident != c["identifier"]:
            c["identifier"] = ident
            c["name"] = f"{c['name']} {n - 1}"
            c["website"] = f"www.{ident.lower()}.example"
        used.add(ident.lower())
        data.companies.append(c)
    slots = [c for c in data.companies for _ in range(settings.agreements_per_company)]
    rng.shuffle(slots)
    by_company: dict[int, list[Json]] = {}
    agreement_id = 1000
    addition_id = 5000
    mean = settings.additions_per_agreement
    for company in slots:
        agreement_id += rng.randint(1, 3)
        siblings = [s for s in by_company.get(company["id"], []) if "parentAgreement" not in s]
        parent = rng.choice(siblings) if siblings and rng.random() < 0.12 else None
        agreement = f.agreement(agreement_id, company, parent=parent)
        by_company.setdefault(company["id"], []).append(agreement)
        data.agreements.append(agreement)
        count = rng.randint(mean // 2, mean + mean // 2) if mean > 0 else 0
        for seq in range(1, count + 1):
            addition_id += rng.randint(1, 2)
            data.additions.append(f.addition(addition_id, agreement, seq))
    return data
