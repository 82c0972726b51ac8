"""Paging maths and both paging modes, against a MockTransport that pages like ConnectWise."""

from __future__ import annotations

import httpx
import pytest
from test_connectwise_support import API, json_response, make_client, rows

from services.poller.connectwise import ConnectWiseProtocolError, Paging
from services.poller.connectwise import conditions as cond
from services.poller.connectwise.paging import (
    forward_only_next_page_id,
    navigable_has_more,
    parse_link_header,
    query_int,
    validate_page_size,
)


def test_parses_link_headers_with_several_rels_and_commas_in_urls() -> None:
    header = (
        f'<{API}/company/companies?conditions=id+in+(1,2)&pageSize=50&page=2>; rel="next", '
        f'<{API}/company/companies?pageSize=50&page=4>; rel="last"'
    )
    links = parse_link_header(header)
    assert set(links) == {"next", "last"}
    assert query_int(links["next"], "page") == 2
    assert query_int(links["last"], "PAGE") == 4
    assert parse_link_header(None) == {}


@pytest.mark.parametrize("size", [0, -1, 1001, True])
def test_page_size_is_limited_to_1_through_1000(size: int) -> None:
    with pytest.raises(ValueError):
        validate_page_size(size)
    assert validate_page_size(1000) == 1000


def test_navigable_stops_on_short_page_or_link_without_next() -> None:
    full = [{}] * 10
    assert navigable_has_more(full, 10, {"next": "x"}, True)
    assert not navigable_has_more(full, 10, {"last": "x"}, True)
    assert navigable_has_more(full, 10, {}, False)  # no Link header: a full page is not trusted as last
    assert not navigable_has_more(full[:9], 10, {"next": "x"}, True)


def test_forward_only_cursor_comes_from_the_link_else_the_last_id() -> None:
    page = [{"id": 5}, {"id": 9}]
    assert forward_only_next_page_id(page, 2, {"next": "https://h/x?pageSize=2&pageId=9"}) == 9
    assert forward_only_next_page_id(page, 2, {"next": "https://h/x?pageSize=2"}) == 9
    assert forward_only_next_page_id(page, 2, {}) is None
    assert forward_only_next_page_id(page, 3, {"next": "https://h/x?pageId=9"}) is None
    assert forward_only_next_page_id([], 2, {"next": "https://h/x?pageId=9"}) is None


def navigable_server(total: int, *, link: bool = True) -> tuple[list[httpx.Request], object]:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        page = int(request.url.params.get("page", "1"))
        size = int(request.url.params.get("pageSize", "25"))
        start = (page - 1) * size + 1
        ids = list(range(start, min(total, page * size) + 1))
        headers = {}
        last = max(1, -(-total // size))
        if link:
            parts = []
            if page < last:
                parts.append(f'<{API}/finance/agreements?pageSize={size}&page={page + 1}>; rel="next"')
            parts.append(f'<{API}/finance/agreements?pageSize={size}&page={last}>; rel="last"')
            headers["Link"] = ", ".join(parts)
        return json_response(200, rows(ids), headers)

    return seen, api


@pytest.mark.parametrize(
    ("total", "size", "expected_requests"),
    [(0, 100, 1), (250, 100, 3), (300, 100, 3), (2500, 1000, 3), (1, 1000, 1)],
)
async def test_navigable_paging_reads_every_row_once_with_minimal_requests(
    total: int, size: int, expected_requests: int
) -> None:
    seen, api = navigable_server(total)
    client, _, _ = make_client(api)  # type: ignore[arg-type]
    async with client:
        ids = [a.id async for a in client.list_agreements(page_size=size)]
    assert ids == list(range(1, total + 1))
    assert len(seen) == expected_requests
    assert [int(r.url.params["page"]) for r in seen] == list(range(1, expected_requests + 1))


async def test_navigable_without_link_header_reads_one_empty_page_after_an_exact_fit() -> None:
    seen, api = navigable_server(300, link=False)
    client, _, _ = make_client(api)  # type: ignore[arg-type]
    async with client:
        ids = [a.id async for a in client.list_agreements(page_size=100)]
    assert ids == list(range(1, 301))
    assert len(seen) == 4  # pages 1-3 full, page 4 empty


async def test_sends_conditions_fields_and_order_by() -> None:
    seen, api = navigable_server(3)
    client, _, _ = make_client(api)  # type: ignore[arg-type]
    query = cond.eq("company/id", 250) & cond.ne("agreementStatus", "Cancelled")
    async with client:
        _ = [
            a async for a in client.list_agreements(query, fields=["id", "_info/lastUpdated"], order_by="id")
        ]
    params = seen[0].url.params
    assert params["conditions"] == 'company/id = 250 and agreementStatus != "Cancelled"'
    assert params["fields"] == "id,_info/lastUpdated"
    assert params["orderBy"] == "id asc"
    assert params["pageSize"] == "1000"


async def test_server_that_ignores_page_is_detected_instead_of_looping() -> None:
    client, _, _ = make_client(lambda r: json_response(200, rows(range(1, 11))))
    async with client:
        with pytest.raises(ConnectWiseProtocolError, match="repeated"):
            _ = [a async for a in client.list_agreements(page_size=10)]


def forward_only_server(ids: list[int], *, link_on_last: bool = False) -> tuple[list[httpx.Request], object]:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert request.headers.get("pagination-type") == "forward-only"
        assert "page" not in request.url.params and "orderBy" not in request.url.params
        after = int(request.url.params.get("pageId", "0"))
        size = int(request.url.params["pageSize"])
        page = [i for i in ids if i > after][:size]
        more = bool(page) and any(i > page[-1] for i in ids)
        headers = {}
        if page and (more or link_on_last):
            headers["Link"] = f'<{API}/finance/agreements?pageSize={size}&pageId={page[-1]}>; rel="next"'
        return json_response(200, rows(page), headers)

    return seen, api


async def test_forward_only_follows_page_id_until_no_next_link() -> None:
    ids = list(range(3, 2600, 2))  # sparse ids, 1299 rows
    seen, api = forward_only_server(ids)
    client, _, _ = make_client(api)  # type: ignore[arg-type]
    async with client:
        got = [a.id async for a in client.list_agreements(page_size=500, paging=Paging.FORWARD_ONLY)]
    assert got == ids
    assert [r.url.params.get("pageId") for r in seen] == [None, str(ids[499]), str(ids[999])]


async def test_forward_only_stops_on_a_short_page_even_if_a_next_link_is_always_sent() -> None:
    ids = list(range(1, 1001))
    seen, api = forward_only_server(ids, link_on_last=True)
    client, _, _ = make_client(api)  # type: ignore[arg-type]
    async with client:
        got = [a.id async for a in client.list_agreements(page_size=1000, paging="forward-only")]
    assert got == ids
    assert len(seen) == 2  # the exact-fit page, then an empty one


async def test_forward_only_refuses_order_by() -> None:
    client, _, _ = make_client(lambda r: json_response(200, []))
    async with client:
        with pytest.raises(ValueError, match="orderBy"):
            _ = [a async for a in client.list_agreements(order_by="id", paging=Paging.FORWARD_ONLY)]


async def test_forward_only_that_does_not_advance_is_a_protocol_error() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return json_response(200, rows([1, 2]), {"Link": f'<{API}/finance/agreements?pageId=2>; rel="next"'})

    client, _, _ = make_client(api)
    async with client:
        with pytest.raises(ConnectWiseProtocolError, match="did not advance"):
            _ = [a async for a in client.list_agreements(page_size=2, paging=Paging.FORWARD_ONLY)]


async def test_additions_are_listed_under_their_agreement() -> None:
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return json_response(200, [{"id": 5678, "agreementId": 1234, "quantity": 25.0, "unitPrice": 22.0}])

    client, _, _ = make_client(api)
    async with client:
        additions = [a async for a in client.list_additions(1234)]
    assert seen == ["/v2025_1/apis/3.0/finance/agreements/1234/additions"]
    assert additions[0].agreementId == 1234 and str(additions[0].unitPrice) == "22.0"


async def test_list_endpoint_answering_an_object_is_a_protocol_error() -> None:
    client, _, _ = make_client(lambda r: json_response(200, {"not": "a list"}))
    async with client:
        with pytest.raises(ConnectWiseProtocolError, match="array"):
            _ = [c async for c in client.list_companies()]
