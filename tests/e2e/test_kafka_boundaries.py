"""On the secured stack (`stack up --secure`, the end-to-end run of `make test`) the broker enforces the
ACLs derived from the topic registry: each boundary below is refused by the broker itself (its
authorization or authentication error), while the pipeline of this session runs on the same broker
with one principal per service.

Credentials come from the environment `contract-sync stack env` prints: `<SERVICE>_KAFKA_SASL_*` per
service principal, `KAFKA_SSL_CAFILE` for the stack's CA.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from e2e_support import E2E, secured_stack

from schemas.topics import CONTRACT_RECORDS, DEADLETTER, PSA_AGREEMENTS, SYNC_COMMANDS, SYNC_EVENTS, TOPICS

T = TypeVar("T")
TIMEOUT_S = 30.0


@pytest.fixture(autouse=True)
def _needs_the_secured_stack(e2e: E2E) -> None:
    if not secured_stack():
        reason = (
            "the Kafka boundary tests need the secured stack (make test runs tests/e2e on one; "
            "locally: contract-sync stack up --secure --dir DIR and eval its stack env)"
        )
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason} (CI=true: never skipped)", pytrace=False)
        pytest.skip(reason)


def principal(service: str, password: str | None = None) -> dict[str, Any]:
    """aiokafka keyword arguments authenticating as `service`'s own principal."""
    prefix = f"{service.upper()}_KAFKA_SASL_"
    return {
        "bootstrap_servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        "security_protocol": "SASL_SSL",
        "ssl_context": ssl.create_default_context(cafile=os.environ["KAFKA_SSL_CAFILE"]),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": os.environ[f"{prefix}USERNAME"],
        "sasl_plain_password": os.environ[f"{prefix}PASSWORD"] if password is None else password,
    }


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), TIMEOUT_S)

    return asyncio.run(bounded())


async def produce(service: str, topic: str, idempotent: bool = True) -> None:
    producer = AIOKafkaProducer(**principal(service), acks="all", enable_idempotence=idempotent)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"probe": "acl"}', key=b"acl-probe")
    finally:
        await producer.stop()


async def consume(service: str, topic: str, group: str) -> list[bytes]:
    """Join `group`, read `topic` from the beginning for a moment, commit; the values read."""
    consumer = AIOKafkaConsumer(
        topic,
        **principal(service),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=500)
            values += [record.value or b"" for records in batch.values() for record in records]
            if values:
                break
        await consumer.commit()
        return values
    finally:
        await consumer.stop()


@pytest.mark.parametrize("topic", [CONTRACT_RECORDS, PSA_AGREEMENTS])
def test_the_gateway_principal_cannot_produce_to_the_pipelines_internal_topics(topic: str) -> None:
    with pytest.raises(TopicAuthorizationFailedError, match=topic.replace(".", r"\.")):
        run(lambda: produce("gateway", topic))


def test_the_gateway_principal_produces_commands(e2e: E2E) -> None:
    """The allowed path next to the refused ones: the same principal writes sync.commands.v1."""
    run(lambda: produce("gateway", SYNC_COMMANDS))


def test_the_mapper_principal_cannot_write_commands() -> None:
    with pytest.raises(TopicAuthorizationFailedError, match=r"sync\.commands\.v1"):
        run(lambda: produce("mapper", SYNC_COMMANDS))


def test_the_dashboard_principal_reads_the_sync_events_the_pipeline_emitted(e2e: E2E) -> None:
    client = str(e2e.pipeline.psa_companies()[0]["id"])
    command_id = e2e.refresh(client)
    e2e.wait_for("an event of the refresh", lambda: e2e.events(correlationid=command_id))
    group = f"contract-sync-dashboard-{secrets.token_hex(4)}"

    values = run(lambda: consume("dashboard", SYNC_EVENTS, group))

    assert values, "the dashboard read nothing from sync.events.v1"
    assert any(e2e.tenant.encode() in value for value in values)


@pytest.mark.parametrize(
    "topic", [spec.name for spec in TOPICS if spec.name != SYNC_EVENTS], ids=lambda name: str(name)
)
def test_the_dashboard_principal_reads_no_other_topic(topic: str) -> None:
    group = f"contract-sync-dashboard-{secrets.token_hex(4)}"
    with pytest.raises(TopicAuthorizationFailedError):
        run(lambda: consume("dashboard", topic, group))


@pytest.mark.parametrize("topic", [spec.name for spec in TOPICS], ids=lambda name: str(name))
def test_the_dashboard_principal_writes_no_topic(topic: str) -> None:
    with pytest.raises(TopicAuthorizationFailedError, match=topic.replace(".", r"\.")):
        run(lambda: produce("dashboard", topic, idempotent=False))


def test_the_dashboard_principal_cannot_even_start_an_idempotent_producer() -> None:
    """WRITE on no topic: the broker refuses it a producer id (KIP-679)."""
    with pytest.raises(ClusterAuthorizationFailedError):
        run(lambda: produce("dashboard", SYNC_EVENTS))


def test_the_dashboard_principal_cannot_use_another_services_consumer_group() -> None:
    with pytest.raises(GroupAuthorizationFailedError):
        run(lambda: consume("dashboard", SYNC_EVENTS, "contract-sync-writer"))


def test_the_dashboard_principal_cannot_create_topics() -> None:
    async def create() -> None:
        admin = AIOKafkaAdminClient(**principal("dashboard"))
        await admin.start()
        try:
            response = await admin.create_topics([NewTopic(f"acl-probe-{secrets.token_hex(4)}", 1, 1)])
        finally:
            await admin.close()
        errors = {name: code for name, code, *_ in response.topic_errors}
        assert set(errors.values()) == {TopicAuthorizationFailedError.errno}, errors

    run(create)


async def connect(**options: Any) -> None:
    producer = AIOKafkaProducer(**options)
    try:
        await producer.start()
    finally:
        await producer.stop()


def test_a_client_without_credentials_cannot_connect(caplog: pytest.LogCaptureFixture) -> None:
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        run(lambda: connect(bootstrap_servers=bootstrap))  # PLAINTEXT on the SASL_SSL listener
    ca = ssl.create_default_context(cafile=os.environ["KAFKA_SSL_CAFILE"])
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        run(lambda: connect(bootstrap_servers=bootstrap, security_protocol="SSL", ssl_context=ca))


def test_a_client_with_a_wrong_password_is_refused_by_the_broker(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="aiokafka"),
        pytest.raises(KafkaConnectionError, match="Unable to bootstrap"),
    ):
        run(lambda: connect(**principal("dashboard", password="not-the-password")))
    assert "SaslAuthenticationFailed" in caplog.text
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in caplog.text


def test_no_service_principal_may_read_another_services_group_or_topic_it_does_not_consume() -> None:
    """The writer reads contract records; the poller does not (its ACLs: commands only)."""
    with pytest.raises(TopicAuthorizationFailedError, match=r"contracts\.records\.v1"):
        run(lambda: consume("poller", CONTRACT_RECORDS, "contract-sync-poller-probe"))
    with pytest.raises(TopicAuthorizationFailedError, match=r"sync\.deadletter\.v1"):
        run(lambda: consume("gateway", DEADLETTER, "contract-sync-gateway"))
