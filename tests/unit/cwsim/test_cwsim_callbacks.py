"""Callback registration rules, matching, payload shape and the `x-content-signature` (docs/connectwise.md#callbacks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson
import pytest

from devtools.cwsim.callbacks import CallbackError, build_payload, delivery_url, matches, sign, validate_entry
from devtools.cwsim.store import Change

AGREEMENT = {
    "id": 1234,
    "name": "A",
    "type": {"id": 5},
    "company": {"id": 250},
    "_info": {"lastUpdated": "x"},
}


def entry(**overrides: Any) -> dict[str, Any]:
    return {"id": 1, "url": "https://hook.example/cw?recordId=", "objectId": 1, "type": "agreement",
            "level": "owner", "inactiveFlag": False, **overrides}  # fmt: skip


class TestSignature:
    def test_signature_is_base64_hmac_sha256_keyed_with_sha256_of_the_signing_key(self) -> None:
        body = b'{"Action":"updated"}'
        key = hashlib.sha256(b"secret-key").digest()
        expected = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()
        assert sign(body, "secret-key") == expected

    def test_signature_changes_with_any_byte_of_the_body(self) -> None:
        assert sign(b"{}", "k") != sign(b"{ }", "k")


class TestValidation:
    def test_accepts_the_documented_agreement_owner_registration(self) -> None:
        result = validate_entry(
            {"url": "https://h.example/cb?id=", "objectId": 1, "type": "Agreement", "level": "Owner"}, []
        )
        assert result["type"] == "agreement" and result["level"] == "owner"
        assert result["payloadVersion"] == "3.0.0"

    @pytest.mark.parametrize(
        ("body", "code", "field"),
        [
            ({"objectId": 1, "type": "agreement", "level": "owner"}, "MissingRequiredField", "url"),
            ({"url": "not a url", "objectId": 1, "type": "agreement", "level": "owner"}, "InvalidField", "url"),
            ({"url": "https://h/x", "objectId": 1, "type": "agreement", "level": "board"}, "InvalidField", "level"),
            ({"url": "https://h/x", "objectId": "x", "type": "agreement", "level": "owner"}, "InvalidField",
             "objectId"),
        ],
    )  # fmt: skip
    def test_rejects_invalid_registration(self, body: dict[str, Any], code: str, field: str) -> None:
        with pytest.raises(CallbackError) as info:
            validate_entry(body, [])
        assert info.value.errors[0]["code"] == code
        assert info.value.errors[0]["field"] == field

    def test_rejects_a_duplicate_with_object_exists(self) -> None:
        with pytest.raises(CallbackError) as info:
            validate_entry(
                {"url": entry()["url"], "objectId": 1, "type": "agreement", "level": "owner"}, [entry()]
            )
        assert info.value.errors[0]["code"] == "ObjectExists"


class TestMatching:
    change = Change("agreement", "updated", 1234, AGREEMENT, "me")

    def test_owner_level_matches_every_agreement(self) -> None:
        assert matches(entry(), self.change)

    @pytest.mark.parametrize(("level", "object_id", "expected"), [
        ("type", 5, True), ("type", 6, False), ("company", 250, True), ("company", 1, False),
        ("agreement", 1234, True), ("agreement", 1, False),
    ])  # fmt: skip
    def test_levels_filter_by_their_object(self, level: str, object_id: int, expected: bool) -> None:
        assert matches(entry(level=level, objectId=object_id), self.change) is expected

    def test_inactive_and_other_types_never_match(self) -> None:
        assert not matches(entry(inactiveFlag=True), self.change)
        assert not matches(entry(type="company"), self.change)

    def test_deletes_match_type_and_company_levels_on_the_last_state(self) -> None:
        deleted = Change("agreement", "deleted", 1234, None, "me", agreement=AGREEMENT)
        assert matches(entry(level="company", objectId=250), deleted)
        assert matches(entry(level="type", objectId=5), deleted)

    def test_deletes_match_agreement_level_by_id(self) -> None:
        assert matches(
            entry(level="agreement", objectId=1234), Change("agreement", "deleted", 1234, None, "me")
        )


class TestPayload:
    def test_payload_has_pascal_case_keys_and_entity_as_a_json_string(self) -> None:
        body = build_payload(entry=entry(id=9), change=Change("agreement", "updated", 1234, AGREEMENT, "jsmith"),
                             company_id="acme", from_host="cw.example", key_url="https://cw.example/k")  # fmt: skip
        payload = orjson.loads(body)
        assert list(payload) == ["Action", "CallbackObjectRecId", "CompanyId", "Entity", "FromUrl", "ID",
                                 "MemberId", "MessageId", "Metadata", "PartnerId", "ProductInstanceId", "Type"]  # fmt: skip
        assert payload["Action"] == "updated" and payload["Type"] == "agreement"
        assert payload["ID"] == 1234 and payload["CallbackObjectRecId"] == 9
        assert orjson.loads(payload["Entity"]) == AGREEMENT
        assert payload["Metadata"] == {"key_url": "https://cw.example/k"}

    def test_entity_is_null_on_delete(self) -> None:
        body = build_payload(entry=entry(), change=Change("agreement", "deleted", 1, None, "m"),
                             company_id="c", from_host="h", key_url="k")  # fmt: skip
        assert orjson.loads(body)["Entity"] is None

    def test_record_id_is_appended_to_urls_ending_in_equals(self) -> None:
        assert delivery_url("https://h/cb?recordId=", 12) == "https://h/cb?recordId=12"
        assert delivery_url("https://h/cb", 12) == "https://h/cb"
