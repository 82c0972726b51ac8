"""The ConnectWise `conditions` grammar: tokenizer, parser (AST), compiler (predicate) — pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from devtools.cwsim.conditions import (
    And,
    Comparison,
    ConditionError,
    FieldTable,
    Kind,
    Not,
    Or,
    build_predicate,
    like_regex,
    parse,
    tokenize,
)

FIELDS: dict[str, Kind] = {
    "id": "int",
    "name": "string",
    "billAmount": "number",
    "cancelledFlag": "bool",
    "startDate": "datetime",
    "company": "ref",
    "company/id": "int",
    "company/name": "string",
    "type/name": "string",
    "_info/lastUpdated": "datetime",
    "customerPO": "string",
}
TABLE = FieldTable(FIELDS, {"lastUpdated": "_info/lastUpdated"})

ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "Acme - Managed Services",
        "billAmount": 1500.0,
        "cancelledFlag": False,
        "startDate": "2024-01-01T00:00:00Z",
        "company": {"id": 250, "name": "Acme Corporation"},
        "type": {"name": "Managed Services"},
        "_info": {"lastUpdated": "2025-03-14T16:02:11Z"},
        "customerPO": "PO-1",
    },
    {
        "id": 2,
        "name": "Globex - Backup & DR",
        "billAmount": 99.5,
        "cancelledFlag": True,
        "startDate": "2025-06-01T00:00:00Z",
        "company": {"id": 251, "name": "Globex"},
        "type": {"name": "Backup & DR"},
        "_info": {"lastUpdated": "2025-03-14T16:02:12Z"},
    },
    {
        "id": 3,
        "name": 'Initech "Gold" [2025]',
        "billAmount": 0.0,
        "cancelledFlag": False,
        "company": {"id": 252, "name": "O'Brien & Sons"},
        "type": {"name": "Block Time"},
        "_info": {"lastUpdated": "2024-12-31T23:59:59Z"},
    },
]


def matching(condition: str) -> list[int]:
    _, predicate = build_predicate(condition, TABLE)
    return [row["id"] for row in ROWS if predicate(row)]


class TestTokenizer:
    def test_splits_operators_names_and_literals(self) -> None:
        kinds = [t.kind for t in tokenize('company/id >= 10 and name != "x"')]
        assert kinds == ["name", "op", "number", "name", "name", "op", "string", "end"]

    def test_reads_datetime_literal_as_aware_utc(self) -> None:
        (token, _) = tokenize("[2016-08-20T18:04:26Z]")
        assert token.kind == "datetime"
        assert token.value == datetime(2016, 8, 20, 18, 4, 26, tzinfo=UTC)

    def test_reads_decimal_and_negative_numbers(self) -> None:
        values = [t.value for t in tokenize("1.25 -3 42")[:-1]]
        assert values == [1.25, -3, 42]

    def test_doubled_quote_inside_a_string_is_one_quote(self) -> None:
        assert tokenize('"say ""hi"""')[0].value == 'say "hi"'

    def test_backslash_escapes_a_quote_and_a_backslash(self) -> None:
        assert tokenize(r'"a\"b\\c"')[0].value == 'a"b\\c'

    def test_single_quoted_string_may_hold_double_quotes(self) -> None:
        assert tokenize("""'He said "no"'""")[0].value == 'He said "no"'

    def test_rejects_unterminated_string_with_its_position(self) -> None:
        with pytest.raises(ConditionError) as info:
            tokenize('name = "abc')
        assert info.value.position == 7

    def test_rejects_unterminated_datetime(self) -> None:
        with pytest.raises(ConditionError, match="unterminated datetime"):
            tokenize("lastUpdated > [2025-01-01")

    def test_rejects_stray_characters(self) -> None:
        with pytest.raises(ConditionError, match="unexpected character"):
            tokenize("id = 1 ; drop")


class TestParser:
    def test_and_binds_tighter_than_or(self) -> None:
        node = parse("id = 1 or id = 2 and name = 'x'")
        assert isinstance(node, Or)
        assert isinstance(node.items[1], And)

    def test_parentheses_override_precedence(self) -> None:
        node = parse("(id = 1 or id = 2) and name = 'x'")
        assert isinstance(node, And)
        assert isinstance(node.items[0], Or)

    def test_keywords_are_case_insensitive(self) -> None:
        node = parse("id = 1 AND name Like 'a*' Or cancelledFlag = TRUE")
        assert isinstance(node, Or)
        first = node.items[0]
        assert isinstance(first, And)
        assert isinstance(first.items[1], Comparison) and first.items[1].op == "like"

    def test_not_before_an_operator_negates_it(self) -> None:
        node = parse('name not contains "Low"')
        assert node == Comparison("name", "contains", "Low", negated=True, position=0)

    def test_not_before_a_group_is_a_logical_not(self) -> None:
        assert isinstance(parse("not (id = 1)"), Not)

    def test_in_takes_a_parenthesised_list(self) -> None:
        node = parse("company/id in (3, 2, 4)")
        assert isinstance(node, Comparison) and node.value == (3, 2, 4)

    def test_null_true_false_literals(self) -> None:
        values = [n.value for n in parse("a = null and b = True and c = false").items]  # type: ignore[union-attr]
        assert values == [None, True, False]

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "   ",
            "id =",
            "id 1",
            "= 1",
            "id = 1 and",
            "(id = 1",
            "id = 1)",
            "id in 1, 2",
            "id in (1, 2",
            "id <> 1",
            "name contains 3",
            "name not = 'x'",
            "id = 1 id = 2",
            "and = 1",
            "lastUpdated > [not a date]",
        ],
    )
    def test_rejects_malformed_condition(self, text: str) -> None:
        with pytest.raises(ConditionError):
            parse(text)


def test_refuses_absurdly_deep_nesting_without_crashing() -> None:
    with pytest.raises(ConditionError, match="nested too deeply"):
        parse("(" * 500 + "id = 1" + ")" * 500)
    assert isinstance(parse("(" * 20 + "id = 1" + ")" * 20), Comparison)


class TestSemantics:
    def test_integer_equality_on_nested_reference(self) -> None:
        assert matching("company/id = 250") == [1]

    def test_string_equality_is_case_insensitive(self) -> None:
        assert matching('name = "ACME - MANAGED SERVICES"') == [1]

    def test_field_names_are_case_insensitive(self) -> None:
        assert matching("Company/ID = 251") == [2]

    def test_not_equal_excludes_missing_values_like_sql(self) -> None:
        assert matching('customerPO != "PO-2"') == [1]

    def test_null_comparisons_test_presence(self) -> None:
        assert matching("customerPO = null") == [2, 3]
        assert matching("customerPO != null") == [1]

    def test_numeric_ranges(self) -> None:
        assert matching("billAmount > 99.5") == [1]
        assert matching("billAmount >= 99.5 and billAmount < 1500") == [2]

    def test_boolean_equality(self) -> None:
        assert matching("cancelledFlag = True") == [2]
        assert matching("cancelledFlag = false") == [1, 3]

    def test_datetime_comparison_on_last_updated_alias(self) -> None:
        assert matching("lastUpdated >= [2025-03-14T16:02:11Z]") == [1, 2]
        assert matching("lastUpdated > [2025-03-14T16:02:11Z]") == [2]

    def test_info_path_and_alias_agree(self) -> None:
        assert matching("_info/lastUpdated < [2025-01-01T00:00:00Z]") == matching(
            "LastUpdated < [2025-01-01T00:00:00Z]"
        )

    def test_datetime_accepts_offsets_and_fractions(self) -> None:
        assert matching("lastUpdated > [2025-03-14T12:02:11.5-04:00]") == [2]

    def test_naive_datetime_is_utc(self) -> None:
        assert matching("startDate = [2024-01-01T00:00:00]") == [1]

    def test_missing_datetime_never_matches_a_range(self) -> None:
        assert matching("startDate < [2100-01-01T00:00:00Z]") == [1, 2]

    def test_contains_and_not_contains(self) -> None:
        assert matching('name contains "backup"') == [2]
        assert matching('name not contains "backup"') == [1, 3]

    def test_like_accepts_star_and_percent_wildcards(self) -> None:
        assert matching('company/name like "acme*"') == [1]
        assert matching('type/name like "%SERV%"') == [1]

    def test_like_bracket_escape_matches_a_literal_bracket(self) -> None:
        assert matching('name like "*[[]2025]"') == [3]

    def test_quotes_inside_values_match(self) -> None:
        assert matching(r'name = "Initech \"Gold\" [2025]"') == [3]
        assert matching("company/name = 'O''Brien & Sons'") == [3]

    def test_in_and_not_in(self) -> None:
        assert matching("id in (1, 3)") == [1, 3]
        assert matching("id not in (1, 3)") == [2]
        assert matching('type/name in ("block time", "Managed Services")') == [1, 3]

    def test_or_and_grouping(self) -> None:
        assert matching("(company/id = 250 or company/id = 251) and cancelledFlag = False") == [1]
        assert matching("company/id = 250 or company/id = 251 and cancelledFlag = False") == [1]

    def test_logical_not(self) -> None:
        assert matching("not (company/id = 250)") == [2, 3]


class TestCompileErrors:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("nosuchfield = 1", "unknown field"),
            ("company = 250", "is a reference"),
            ('lastUpdated > "2025-01-01T00:00:00Z"', "does not match the type"),
            ("cancelledFlag = 1", "does not match the type"),
            ('billAmount = "ten"', "does not match the type"),
            ("billAmount contains 'x'", "applies to string fields"),
            ('billAmount like "1*"', "applies to string fields"),
            ("cancelledFlag > False", "does not apply to boolean"),
            ("customerPO > null", "null can only be compared"),
        ],
    )
    def test_rejects_invalid_condition_for_the_model(self, text: str, message: str) -> None:
        with pytest.raises(ConditionError, match=message):
            build_predicate(text, TABLE)


def test_like_regex_is_anchored() -> None:
    assert like_regex("ab*").fullmatch("abc")
    assert not like_regex("ab").fullmatch("xab")
