"""Generate the AsyncAPI 3.0 document of every topic from the models (never hand-written).

`python -m schemas.asyncapi` writes `docs/asyncapi.json`; `--check` exits 1 when the committed
document differs from the models (a unit test asserts the same).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from schemas.topics import DLQ_REASONS, TOPICS

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"

_PRODUCERS = {
    "psa.agreements.v1": ("poller", ["mapper", "writer"]),
    "sync.commands.v1": ("UIs and the CLI", ["poller", "mapper", "writer"]),
    "contracts.records.v1": ("mapper", ["writer"]),
    "sync.events.v1": ("all services", ["dashboards", "UIs"]),
    "sync.deadletter.v1": ("all services", ["operators"]),
}


def _message_name(type_name: str) -> str:
    return type_name.replace(".", "_")


def build_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a dict (pure)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for topic in TOPICS:
        channel_id = topic.name.replace(".", "_")
        channel_messages: dict[str, Any] = {}
        for message_type in topic.message_types:
            type_name = message_type.model_fields["type"].default
            name = _message_name(type_name)
            schema = message_type.model_json_schema(
                mode="validation", ref_template="#/components/schemas/{model}"
            )
            for def_name, definition in schema.pop("$defs", {}).items():
                schemas[def_name] = definition
            schemas[message_type.__name__] = schema
            messages[name] = {
                "name": type_name,
                "title": type_name,
                "summary": (message_type.model_fields["data"].annotation.__doc__ or "")
                .strip()
                .split("\n")[0],
                "contentType": "application/cloudevents+json",
                "payload": {"$ref": f"#/components/schemas/{message_type.__name__}"},
                "correlationId": {"location": "$message.payload#/correlationid"},
                "bindings": {"kafka": {"key": {"type": "string", "description": "{tenant_id}:{client_id}"}}},
            }
            channel_messages[name] = {"$ref": f"#/components/messages/{name}"}
        if not topic.message_types:
            messages["deadletter"] = {
                "name": "deadletter",
                "contentType": "application/octet-stream",
                "summary": "The original bytes of a message that could not be processed",
                "headers": {
                    "type": "object",
                    "properties": {
                        "cs-dlq-reason": {
                            "type": "string",
                            "enum": list(DLQ_REASONS),
                            "description": "Why the message was dead-lettered: "
                            + "; ".join(f"`{reason}`: {meaning}" for reason, meaning in DLQ_REASONS.items()),
                        }
                    }
                    | {
                        h: {"type": "string"}
                        for h in (
                            "cs-dlq-error",
                            "cs-dlq-stage",
                            "cs-dlq-source-topic",
                            "cs-dlq-source-partition",
                            "cs-dlq-source-offset",
                        )
                    },
                },
                "payload": {"type": "string", "format": "binary"},
            }
            channel_messages["deadletter"] = {"$ref": "#/components/messages/deadletter"}
        producer, consumers = _PRODUCERS[topic.name]
        channels[channel_id] = {
            "address": topic.name,
            "description": f"{topic.description}. Produced by {producer}; consumed by {', '.join(consumers)}.",
            "messages": channel_messages,
            "bindings": {
                "kafka": {
                    "topic": topic.name,
                    "partitions": topic.partitions,
                    "replicas": topic.replication_factor,
                    "topicConfiguration": {
                        "cleanup.policy": [topic.config.get("cleanup.policy", "delete")],
                        "retention.ms": int(topic.config.get("retention.ms", "604800000")),
                    },
                }
            },
        }
        action = "receive" if topic.name == "sync.commands.v1" else "send"
        operations[f"{action}_{channel_id}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{m}"} for m in channel_messages],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "contract-sync events",
            "version": "1.0.0",
            "description": (
                "Wire contract of contract-sync: CloudEvents 1.0 JSON (structured mode) on Kafka. Every message "
                "about a client is keyed by `{tenant_id}:{client_id}`; consumers de-duplicate on the event `id`."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def render() -> str:
    return json.dumps(build_document(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    if "--check" in argv:
        current = DOCUMENT.read_text() if DOCUMENT.exists() else ""
        if current != render():
            print(f"out of date: {DOCUMENT} (run: python -m schemas.asyncapi)")
            return 1
        return 0
    DOCUMENT.parent.mkdir(parents=True, exist_ok=True)
    DOCUMENT.write_text(render())
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
