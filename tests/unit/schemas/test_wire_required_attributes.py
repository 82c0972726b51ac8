"""The exported wire contract requires every CloudEvents attribute a producer must send, and the
models refuse a message lacking one (the README's example command is the worked case)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from schemas.asyncapi import build_document
from schemas.export import JSON_DIR
from schemas.topics import SYNC_COMMANDS, TOPICS, parse

ROOT = Path(__file__).resolve().parents[3]
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "subject", "tenantid", "data")
"""The wire contract, spelled out here rather than imported: CloudEvents' required attributes, plus
`time`, `subject` and the `tenantid` extension that this contract requires too."""
OPTIONAL_ATTRIBUTES = ("datacontenttype", "correlationid")


def readme_example_command() -> dict[str, Any]:
    """The JSON block under the README's "Commands a UI publishes" heading."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Commands a UI publishes") :]
    match = re.search(r"```json\n(.*?)\n```", section, re.DOTALL)
    assert match is not None, "the README shows an example command"
    document: dict[str, Any] = json.loads(match.group(1))
    return document


def validator(file_name: str) -> Draft202012Validator:
    schema = json.loads((JSON_DIR / file_name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


SCHEMA_FILES = ("sync.command.select.json", f"topic.{SYNC_COMMANDS}.json")


@pytest.mark.parametrize("file_name", SCHEMA_FILES)
def test_the_readme_example_command_is_valid_against_the_exported_schema(file_name: str) -> None:
    errors = list(validator(file_name).iter_errors(readme_example_command()))
    assert errors == []
    assert parse(SYNC_COMMANDS, json.dumps(readme_example_command())).type == "sync.command.select"


@pytest.mark.parametrize("file_name", SCHEMA_FILES)
@pytest.mark.parametrize("attribute", REQUIRED_ATTRIBUTES)
def test_the_readme_example_without_a_required_attribute_is_rejected_by_the_schema_and_the_models(
    file_name: str, attribute: str
) -> None:
    command = readme_example_command()
    del command[attribute]
    assert not validator(file_name).is_valid(command)
    with pytest.raises(ValidationError):
        parse(SYNC_COMMANDS, json.dumps(command))


@pytest.mark.parametrize("attribute", OPTIONAL_ATTRIBUTES)
def test_only_datacontenttype_and_correlationid_may_be_omitted(attribute: str) -> None:
    command = readme_example_command()
    command.pop(attribute, None)
    for file_name in SCHEMA_FILES:
        assert validator(file_name).is_valid(command)
    assert parse(SYNC_COMMANDS, json.dumps(command)).id is not None


def test_the_models_name_the_same_required_attributes() -> None:
    from schemas import envelope

    assert getattr(envelope, "REQUIRED_ATTRIBUTES", None) == REQUIRED_ATTRIBUTES


def test_every_exported_message_schema_requires_the_envelope_attributes() -> None:
    for topic in TOPICS:
        for message_type in topic.message_types:
            type_name = message_type.model_fields["type"].default
            schema = json.loads((JSON_DIR / f"{type_name}.json").read_text())
            assert set(REQUIRED_ATTRIBUTES) <= set(schema["required"]), type_name
            assert not set(OPTIONAL_ATTRIBUTES) & set(schema["required"]), type_name
            for attribute in ("specversion", "id", "time"):
                assert "default" not in schema["properties"][attribute], (type_name, attribute)


def test_every_asyncapi_message_payload_requires_the_envelope_attributes() -> None:
    document = build_document()
    schemas = document["components"]["schemas"]
    for message in document["components"]["messages"].values():
        ref = message["payload"].get("$ref")
        if ref is None:  # the dead-letter topic carries raw bytes
            continue
        payload = schemas[ref.rsplit("/", 1)[1]]
        assert set(REQUIRED_ATTRIBUTES) <= set(payload["required"]), message["name"]
