"""The conditions builder: rendering, validation, and that no value can change a condition's meaning."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.poller.connectwise import conditions as cond
from services.poller.connectwise.conditions import ConditionError

# --- a reference tokenizer of the documented grammar, in two readings of string literals -----------
# "plain": a literal runs from its opening quote to the next quote of the same kind (no escapes);
# "escaping": backslash escapes and doubled quotes are honoured (what some parsers do). A safely
# rendered literal must read as the same single token under both.

_TOKEN = re.compile(
    r"\s*(?:(?P<op><=|>=|!=|=|<|>)|(?P<lp>\()|(?P<rp>\))|(?P<comma>,)|(?P<dt>\[[^\]]*\])"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_/]*)|(?P<quote>[\"']))"
)


def tokenize(text: str, *, escaping: bool) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        assert m is not None, f"untokenizable at {i}: {text[i:]!r}"
        kind = m.lastgroup
        assert kind is not None
        if kind == "quote":
            quote = m.group("quote")
            j = m.end()
            out = []
            while True:
                assert j < len(text), "unterminated string"
                ch = text[j]
                if escaping and ch == "\\" and j + 1 < len(text) and text[j + 1] in ("\\", quote):
                    out.append(text[j + 1])
                    j += 2
                elif ch == quote:
                    if escaping and j + 1 < len(text) and text[j + 1] == quote:
                        out.append(quote)
                        j += 2
                        continue
                    j += 1
                    break
                else:
                    out.append(ch)
                    j += 1
            tokens.append(("string", "".join(out)))
            i = j
        else:
            tokens.append((kind, m.group(kind)))
            i = m.end()
    return tokens


def test_renders_the_documented_example() -> None:
    query = cond.eq("company/id", 42) & cond.ge("lastUpdated", datetime(2026, 1, 1, tzinfo=UTC))
    assert str(query) == "company/id = 42 and lastUpdated >= [2026-01-01T00:00:00Z]"


def test_datetimes_are_converted_to_utc_whole_seconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    value = datetime(2026, 3, 1, 12, 30, 15, 999_999, tzinfo=plus_two)
    assert str(cond.gt("_info/lastUpdated", value)) == "_info/lastUpdated > [2026-03-01T10:30:15Z]"


def test_dates_render_as_midnight_utc() -> None:
    assert str(cond.lt("endDate", date(2026, 12, 31))) == "endDate < [2026-12-31T00:00:00Z]"


def test_rejects_naive_datetimes() -> None:
    with pytest.raises(ConditionError, match="timezone-aware"):
        cond.ge("lastUpdated", datetime(2026, 1, 1))


def test_booleans_render_bare_and_are_not_integers() -> None:
    assert str(cond.eq("cancelledFlag", True)) == "cancelledFlag = True"
    assert str(cond.eq("cancelledFlag", False)) == "cancelledFlag = False"
    with pytest.raises(ConditionError):
        cond.in_("id", [True, 2])  # type: ignore[list-item]


def test_rejects_integers_outside_64_bit_range() -> None:
    with pytest.raises(ConditionError, match="out of range"):
        cond.eq("id", 2**63)


def test_decimals_render_in_plain_notation_and_must_be_finite() -> None:
    assert str(cond.gt("billAmount", Decimal("1E+3"))) == "billAmount > 1000"
    assert str(cond.le("billAmount", 12.5)) == "billAmount <= 12.5"
    with pytest.raises(ConditionError):
        cond.gt("billAmount", Decimal("NaN"))
    with pytest.raises(ConditionError):
        cond.gt("billAmount", float("inf"))


def test_null_only_with_equality() -> None:
    assert str(cond.eq("parentAgreement/id", None)) == "parentAgreement/id = null"
    assert str(cond.ne("parentAgreement/id", None)) == "parentAgreement/id != null"
    with pytest.raises(ConditionError):
        cond.gt("endDate", None)


def test_and_or_nest_with_parentheses_only_where_needed() -> None:
    a, b, c = cond.eq("id", 1), cond.eq("id", 2), cond.eq("company/id", 3)
    assert str((a | b) & c) == "(id = 1 or id = 2) and company/id = 3"
    assert str(a & b & c) == "id = 1 and id = 2 and company/id = 3"
    assert str(cond.any_of(a, b, c)) == "id = 1 or id = 2 or company/id = 3"
    assert str(a | (b & c)) == "id = 1 or (id = 2 and company/id = 3)"


def test_in_renders_a_parenthesised_list_and_refuses_empty() -> None:
    assert str(cond.in_("company/id", [3, 2, 4])) == "company/id in (3, 2, 4)"
    assert str(cond.in_("type/name", ["MSP", "Block"])) == 'type/name in ("MSP", "Block")'
    with pytest.raises(ConditionError):
        cond.in_("id", [])


def test_string_operators_quote_their_text() -> None:
    assert str(cond.contains("name", "Low Priority")) == 'name contains "Low Priority"'
    assert str(cond.not_contains("name", "x")) == 'name not contains "x"'
    assert str(cond.like("name", "Acme*")) == 'name like "Acme*"'


@pytest.mark.parametrize(
    "field",
    ["", "company id", "id;drop", "company//id", "/id", "id/", "1abc", "name or 1=1", "a-b", "x" * 201, "é"],
)
def test_rejects_invalid_field_paths(field: str) -> None:
    with pytest.raises(ConditionError, match="invalid field path"):
        cond.eq(field, 1)


@pytest.mark.parametrize(
    "field", ["id", "company/id", "_info/lastUpdated", "lastUpdated", "parentAgreement/id"]
)
def test_accepts_field_paths(field: str) -> None:
    assert str(cond.eq(field, 1)) == f"{field} = 1"


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ('x" or 1=1 or name="', "'x\" or 1=1 or name=\"'"),
        ("O'Brien", '"O\'Brien"'),
        ("[2026-01-01T00:00:00Z] or id > 0", '"[2026-01-01T00:00:00Z] or id > 0"'),
        ("a) or (1=1", '"a) or (1=1"'),
    ],
)
def test_hostile_strings_become_one_literal(value: str, literal: str) -> None:
    rendered = str(cond.eq("name", value))
    assert rendered == f"name = {literal}"
    for escaping in (False, True):
        assert tokenize(rendered, escaping=escaping) == [("name", "name"), ("op", "="), ("string", value)]


@pytest.mark.parametrize("value", ["both ' and \"", "back\\slash", "tail\\", "nul\x00", "new\nline"])
def test_rejects_strings_that_cannot_be_quoted_safely(value: str) -> None:
    with pytest.raises(ConditionError):
        cond.eq("name", value)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_any_string_is_either_rejected_or_exactly_one_literal(value: str) -> None:
    try:
        query = cond.eq("name", value) & cond.eq("company/id", 7)
    except ConditionError:
        assert ("'" in value and '"' in value) or re.search(r"[\x00-\x1f\x7f\\]", value)
        return
    for escaping in (False, True):
        assert tokenize(str(query), escaping=escaping) == [
            ("name", "name"),
            ("op", "="),
            ("string", value),
            ("name", "and"),
            ("name", "company/id"),
            ("op", "="),
            ("num", "7"),
        ]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20)), min_size=1, max_size=8))
def test_in_lists_keep_every_value_a_single_token(values: list[int | str]) -> None:
    try:
        rendered = str(cond.in_("id", values))
    except ConditionError:
        assert any(
            isinstance(v, str) and (("'" in v and '"' in v) or re.search(r"[\x00-\x1f\x7f\\]", v))
            for v in values
        )
        return
    tokens = tokenize(rendered, escaping=False)
    assert tokens[:3] == [("name", "id"), ("name", "in"), ("lp", "(")]
    literals = [t for t in tokens[3:-1] if t[0] != "comma"]
    assert [text if kind == "string" else int(text) for kind, text in literals] == values
    assert tokens[-1] == ("rp", ")")


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(timezones=st.timezones(), min_value=datetime(1900, 1, 2), max_value=datetime(9998, 12, 30))
)
def test_any_aware_datetime_renders_as_one_bracketed_utc_literal(value: datetime) -> None:
    rendered = str(cond.ge("lastUpdated", value))
    match = re.fullmatch(r"lastUpdated >= \[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\]", rendered)
    assert match is not None
    parsed = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert parsed == value.astimezone(UTC).replace(microsecond=0)


def test_conditions_cannot_be_combined_with_plain_strings() -> None:
    with pytest.raises(TypeError):
        _ = cond.eq("id", 1) & "id > 0"  # type: ignore[operator]
