"""Kafka and database credentials are registered for log redaction when settings are built, and a
SASL protocol never falls back to a mechanism nobody chose (issue 18, item 5)."""

from __future__ import annotations

import io
import logging

import pytest
from pydantic import SecretStr, ValidationError

from services.common.logging import configure_logging, redact
from services.common.settings import DatabaseSettings, KafkaSettings


def logged(message: str) -> str:
    """What a configured service logger prints for `message` (JSON format)."""
    configure_logging("test", "INFO", "json")
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logging.getLogger("secrets-test").warning(message)
    return stream.getvalue()


def test_the_kafka_sasl_password_never_reaches_a_log_line() -> None:
    KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="writer",
        sasl_password=SecretStr("kafka-pass-0xA11CE"),
    )
    line = logged("connect failed with kafka-pass-0xA11CE in the message")
    assert "kafka-pass-0xA11CE" not in line
    assert "***" in line


def test_the_database_password_of_the_url_never_reaches_a_log_line() -> None:
    DatabaseSettings(database_url=SecretStr("postgresql://writer:db-pass-0xB0B@db:5432/contract_sync"))
    assert redact("could not connect: postgresql://writer:db-pass-0xB0B@db") == (
        "could not connect: postgresql://writer:***@db"
    )
    assert "db-pass-0xB0B" not in logged("auth failed for db-pass-0xB0B")


def test_the_libpq_pgpassword_never_reaches_a_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "pg-env-pass-0xC0DE")
    DatabaseSettings(database_url=SecretStr("postgresql://writer@db/contract_sync"))
    assert "pg-env-pass-0xC0DE" not in logged("password pg-env-pass-0xC0DE rejected")


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_a_sasl_protocol_without_a_mechanism_is_refused_instead_of_defaulting(protocol: str) -> None:
    with pytest.raises(ValidationError, match="KAFKA_SASL_MECHANISM"):
        KafkaSettings(security_protocol=protocol, sasl_username="u", sasl_password=SecretStr("secret-1"))


def test_a_sasl_protocol_without_user_or_password_is_refused() -> None:
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512")


def test_the_chosen_sasl_mechanism_reaches_the_client_options() -> None:
    kwargs = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="u",
        sasl_password=SecretStr("secret-2"),
    ).client_kwargs()
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-256"
    assert kwargs["sasl_plain_username"] == "u"
