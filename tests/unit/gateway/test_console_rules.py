"""The console's pure rules: form values, which fields an edit form changes, redirects, CSRF, origins,
timestamps and the static files it serves."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.requests import Request

from services.gateway.problems import Problem
from services.gateway.ui.actions import changed_fields, form_value
from services.gateway.ui.console import when
from services.gateway.ui.pages import safe_next
from services.gateway.ui.routes import static_files
from services.gateway.ui.session import Forbidden, check_csrf, csrf_token, same_origin


def view(**local: Any) -> dict[str, Any]:
    seeded = {
        "name": {"value": "Managed", "psa_value": "Managed", "overridden": False},
        "contract_type": {"value": None, "psa_value": None, "overridden": False},
        "start_date": {"value": "2026-01-01", "psa_value": "2026-01-01", "overridden": False},
        "end_date": {"value": None, "psa_value": None, "overridden": False},
        "description": {"value": None, "psa_value": None, "overridden": False},
    }
    values = {"notes": None, "owner": None, "impact": None, "tags": [], "reminders": []}
    values.update(local)
    return {"psa_seeded": seeded, "local": values}


def request(headers: dict[str, str], scheme: str = "http") -> Request:
    return Request(
        {
            "type": "http",
            "method": "POST",
            "scheme": scheme,
            "server": ("console.example", 443 if scheme == "https" else 80),
            "path": "/ui/x",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
    )


def test_form_values_become_contract_values() -> None:
    assert form_value("tags", " vip, renewal ,, ") == ["vip", "renewal"]
    assert form_value("reminders", "2027-01-01 call them\r\n\n2027-02-01") == [
        {"date": "2027-01-01", "note": "call them"},
        {"date": "2027-02-01"},
    ]
    assert form_value("end_date", "  ") is None
    assert form_value("notes", "   ") is None
    assert form_value("notes", "keep  spaces ") == "keep  spaces "


def test_a_reminder_line_without_a_date_is_an_invalid_value() -> None:
    with pytest.raises(Problem) as refused:
        form_value("reminders", "call them soon")
    assert refused.value.status == 422


def test_saving_the_form_unchanged_changes_nothing() -> None:
    fields = {
        "name": ["Managed"],
        "contract_type": [""],
        "start_date": ["2026-01-01"],
        "end_date": [""],
        "description": [""],
        "notes": [""],
        "owner": [""],
        "impact": [""],
        "tags": [""],
        "reminders": [""],
    }
    assert changed_fields(view(), fields) == {}


def test_only_the_fields_that_differ_are_sent() -> None:
    fields = {
        "name": ["Managed"],
        "notes": ["renewal in May"],
        "tags": ["a, b"],
        "start_date": ["2026-02-01"],
    }
    assert changed_fields(view(), fields) == {
        "notes": "renewal in May",
        "tags": ["a", "b"],
        "start_date": "2026-02-01",
    }


def test_a_psa_owned_field_in_the_form_is_passed_on_for_the_ownership_check_to_refuse() -> None:
    assert changed_fields(view(), {"status": ["cancelled"]}) == {"status": "cancelled"}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ui/clients/42", "/ui/clients/42"),
        ("https://evil.example/", "/ui/clients"),
        ("//evil.example/ui/", "/ui/clients"),
        ("/ui/\\evil", "/ui/clients"),
        ("/v1/clients", "/ui/clients"),
    ],
)
def test_sign_in_redirects_only_inside_the_console(target: str, expected: str) -> None:
    assert safe_next(target) == expected


def test_the_csrf_token_is_bound_to_the_session() -> None:
    assert csrf_token("token-a") == csrf_token("token-a")
    assert csrf_token("token-a") != csrf_token("token-b")
    assert len(csrf_token("token-a")) == 64


def test_a_post_needs_the_sessions_csrf_token_and_the_consoles_origin() -> None:
    good = csrf_token("session")
    check_csrf(request({"X-CSRF-Token": good, "Origin": "http://console.example"}), "session", {})
    check_csrf(request({}), "session", {"csrf_token": [good]})
    for headers, fields in (
        ({}, {}),
        ({"X-CSRF-Token": csrf_token("other")}, {}),
        ({"X-CSRF-Token": good, "Origin": "https://evil.example"}, {}),
        ({"X-CSRF-Token": good, "Sec-Fetch-Site": "cross-site"}, {}),
        ({"X-CSRF-Token": good, "Origin": "null"}, {}),
    ):
        with pytest.raises(Forbidden):
            check_csrf(request(headers), "session", fields)


def test_same_origin_compares_scheme_host_and_port() -> None:
    assert same_origin(request({"Origin": "https://console.example"}, scheme="https"))
    assert not same_origin(request({"Origin": "http://console.example"}, scheme="https"))
    assert same_origin(request({}))


def test_timestamps_are_shown_in_utc_with_seconds() -> None:
    assert when(datetime(2026, 12, 5, 12, 30, 1, tzinfo=UTC)) == "2026-12-05 12:30:01 UTC"
    assert when("2026-12-05T12:30:01+00:00") == "2026-12-05 12:30:01 UTC"
    assert when("2026-12-05T13:30:01+01:00") == "2026-12-05 12:30:01 UTC"
    assert when(None) == ""


def test_the_console_serves_its_own_script_styles_and_the_pinned_htmx_only() -> None:
    files = static_files()
    assert set(files) == {"console.js", "console.css", "vendor/htmx-2.0.11.min.js"}
    assert files["vendor/htmx-2.0.11.min.js"][1].startswith("text/javascript")
