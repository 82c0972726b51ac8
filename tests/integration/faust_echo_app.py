"""A minimal faust app for the worker smoke test: every value on ECHO_IN_TOPIC is re-sent to
ECHO_OUT_TOPIC as `b"echo:" + value` with the same key.

Configured entirely from the environment (the test starts it as `faust -A faust_echo_app worker`):
KAFKA_BOOTSTRAP_SERVERS, ECHO_APP_ID, ECHO_IN_TOPIC, ECHO_OUT_TOPIC.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import faust


def make_app() -> faust.App:
    brokers = [f"kafka://{server}" for server in os.environ["KAFKA_BOOTSTRAP_SERVERS"].split(",")]
    app = faust.App(
        os.environ["ECHO_APP_ID"],
        broker=brokers,
        store="memory://",
        web_enabled=False,
        topic_partitions=1,
        topic_replication_factor=1,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
    )
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    source = app.topic(os.environ["ECHO_IN_TOPIC"], **raw)
    sink = app.topic(os.environ["ECHO_OUT_TOPIC"], **raw)

    @app.agent(source)
    async def echo(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            await sink.send(key=event.key, value=b"echo:" + event.value)
            yield None

    return app


app = make_app()
