"""The AsyncAPI document is generated from the models and kept current."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from schemas import TOPICS
from schemas.asyncapi import DOCUMENT, build_document, render


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_committed_asyncapi_document_matches_the_models() -> None:
    assert DOCUMENT.read_text() == render(), "run: python -m schemas.asyncapi"


def test_every_topic_is_a_channel_and_every_message_type_a_message() -> None:
    document = build_document()
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {topic.name for topic in TOPICS}
    names = {message["name"] for message in document["components"]["messages"].values()}
    for topic in TOPICS:
        for message_type in topic.message_types:
            assert message_type.model_fields["type"].default in names


def test_every_reference_resolves_and_every_schema_is_valid_json_schema() -> None:
    document = json.loads(render())
    for ref in _refs(document):
        assert _resolve(document, ref) is not None, ref
    definitions = json.loads(
        json.dumps(document["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/")
    )
    jsonschema.Draft202012Validator.check_schema({"$defs": definitions})
    for schema in definitions.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_a_published_command_validates_against_its_asyncapi_payload_schema() -> None:
    from schemas import RefreshCommand, RefreshData

    document = json.loads(render())
    definitions = json.loads(
        json.dumps(document["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/")
    )
    command = RefreshCommand.build(
        RefreshData(tenant_id="acme", client_id="250", requested_by="ui"), source="ui"
    )
    schema = {**definitions["RefreshCommand"], "$defs": definitions}
    jsonschema.validate(json.loads(command.to_bytes()), schema)
    broken = {**json.loads(command.to_bytes()), "data": {"tenant_id": "acme"}}
    try:
        jsonschema.validate(broken, schema)
    except jsonschema.ValidationError:
        return
    raise AssertionError("a refresh command without client_id validated")
