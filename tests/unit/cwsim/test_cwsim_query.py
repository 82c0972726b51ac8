"""Pure query helpers: paging parameters, Link header maths, orderBy and partial responses (`fields`)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from devtools.cwsim.query import (
    QueryError,
    forward_only_links,
    last_page,
    link_header,
    navigable_links,
    page_slice,
    parse_fields,
    parse_order_by,
    parse_paging,
    project,
    sort_records,
)
from devtools.cwsim.schema import TABLES

BASE = "https://cw.example/v4_6_release/apis/3.0/finance/agreements"


def rels(links: list[tuple[str, str]]) -> dict[str, int]:
    return {rel: int(parse_qs(urlsplit(url).query)["page"][0]) for rel, url in links}


class TestPaging:
    def test_defaults_to_page_one_of_25(self) -> None:
        paging = parse_paging({}, forward_only=False)
        assert (paging.page, paging.page_size, paging.page_id) == (1, 25, None)

    def test_page_size_is_clamped_to_1000(self) -> None:
        assert parse_paging({"pageSize": "5000"}, False).page_size == 1000
        assert parse_paging({"pageSize": "0"}, False).page_size == 1

    def test_rejects_non_integer_page(self) -> None:
        with pytest.raises(QueryError) as info:
            parse_paging({"page": "two"}, False)
        assert info.value.param == "page"

    @pytest.mark.parametrize(
        ("total", "size", "expected"), [(0, 25, 1), (1, 25, 1), (25, 25, 1), (26, 25, 2), (2001, 1000, 3)]
    )
    def test_last_page(self, total: int, size: int, expected: int) -> None:
        assert last_page(total, size) == expected

    def test_page_slice_is_one_based(self) -> None:
        assert list(range(10))[page_slice(2, 3)] == [3, 4, 5]


class TestNavigableLinks:
    def test_first_page_has_next_and_last_only(self) -> None:
        assert rels(navigable_links(BASE, {"pageSize": "50"}, 1, 50, 200)) == {"next": 2, "last": 4}

    def test_middle_page_has_all_four(self) -> None:
        assert rels(navigable_links(BASE, {}, 3, 50, 200)) == {"first": 1, "prev": 2, "next": 4, "last": 4}

    def test_last_page_has_first_and_prev_only(self) -> None:
        assert rels(navigable_links(BASE, {}, 4, 50, 200)) == {"first": 1, "prev": 3}

    def test_no_links_when_everything_fits_on_one_page(self) -> None:
        assert navigable_links(BASE, {}, 1, 25, 25) == []

    def test_page_past_the_end_points_back_to_the_last_page(self) -> None:
        assert rels(navigable_links(BASE, {}, 9, 50, 200)) == {"first": 1, "prev": 4}

    def test_links_repeat_the_original_query(self) -> None:
        params = {"conditions": 'company/id = 250 and name like "a*"', "orderBy": "id asc", "page": "1"}
        (_, url), _ = navigable_links(BASE, params, 1, 10, 30)
        query = parse_qs(urlsplit(url).query)
        assert query["conditions"] == [params["conditions"]]
        assert query["orderBy"] == ["id asc"]
        assert query["pageSize"] == ["10"]
        assert url.startswith(BASE + "?")

    def test_link_header_format(self) -> None:
        header = link_header([("next", f"{BASE}?page=2"), ("last", f"{BASE}?page=4")])
        assert header == f'<{BASE}?page=2>; rel="next", <{BASE}?page=4>; rel="last"'


class TestForwardOnlyLinks:
    def test_next_link_carries_the_last_id_and_drops_page(self) -> None:
        ((rel, url),) = forward_only_links(BASE, {"page": "3", "pageSize": "2", "pageId": "10"}, 42)
        query = parse_qs(urlsplit(url).query)
        assert rel == "next"
        assert query["pageId"] == ["42"]
        assert "page" not in query
        assert query["pageSize"] == ["2"]

    def test_empty_page_has_no_link(self) -> None:
        assert forward_only_links(BASE, {}, None) == []


class TestOrderBy:
    ROWS = [
        {"id": 1, "name": "beta", "_info": {"lastUpdated": "2025-01-02T00:00:00Z"}},
        {"id": 2, "name": "Alpha", "_info": {"lastUpdated": "2025-01-01T00:00:00Z"}},
        {"id": 3, "_info": {"lastUpdated": "2025-01-02T00:00:00Z"}},
    ]

    def order(self, text: str) -> list[int]:
        return [r["id"] for r in sort_records(list(self.ROWS), parse_order_by(text, TABLES["agreement"]))]

    def test_string_order_is_case_insensitive_with_nulls_first(self) -> None:
        assert self.order("name asc") == [3, 2, 1]
        assert self.order("name desc") == [1, 2, 3]

    def test_ties_break_by_id_and_multiple_keys_apply_in_order(self) -> None:
        assert self.order("_info/lastUpdated desc") == [1, 3, 2]
        assert self.order("lastUpdated desc, id desc") == [3, 1, 2]

    @pytest.mark.parametrize("text", ["name sideways", "nosuch asc", "company asc", "name asc extra", ","])
    def test_rejects_invalid_order_by(self, text: str) -> None:
        with pytest.raises(QueryError):
            parse_order_by(text, TABLES["agreement"])


class TestFields:
    RECORD = {
        "id": 7,
        "name": "X",
        "company": {"id": 250, "identifier": "Acme", "name": "Acme", "_info": {"company_href": "h"}},
        "_info": {"lastUpdated": "2025-01-01T00:00:00Z", "updatedBy": "me"},
    }

    def test_keeps_only_requested_fields_nested(self) -> None:
        paths = parse_fields("id, company/id,_info/lastUpdated")
        assert project(self.RECORD, paths) == {
            "id": 7,
            "company": {"id": 250},
            "_info": {"lastUpdated": "2025-01-01T00:00:00Z"},
        }

    def test_whole_reference_and_case_insensitive_names(self) -> None:
        assert project(self.RECORD, parse_fields("NAME,company")) == {
            "name": "X",
            "company": self.RECORD["company"],
        }

    def test_unknown_fields_are_ignored(self) -> None:
        assert project(self.RECORD, parse_fields("id,nosuch,company/nosuch")) == {"id": 7}

    def test_last_updated_alias(self) -> None:
        assert project(self.RECORD, parse_fields("lastUpdated")) == {
            "_info": {"lastUpdated": "2025-01-01T00:00:00Z"}
        }
