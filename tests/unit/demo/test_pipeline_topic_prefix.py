"""LocalPipeline.topic_prefix: every service of the pipeline reads and writes the prefixed topics."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.demo.pipeline import LocalPipeline, PipelineOptions
from schemas.topics import CONTRACT_RECORDS, DEADLETTER, PSA_AGREEMENTS, SYNC_COMMANDS, SYNC_EVENTS


def _pipeline(tmp_path: Path, prefix: str) -> LocalPipeline:
    return LocalPipeline(
        PipelineOptions(
            tenant_id="unit",
            work_dir=tmp_path,
            kafka_bootstrap="127.0.0.1:1",
            database_url="postgresql+psycopg://postgres@127.0.0.1:1/none",
            topic_prefix=prefix,
        )
    )


def test_a_topic_prefix_reaches_the_writer_mapper_and_poller_settings(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, "bench-1a2b.")
    try:
        env = pipeline.env
        assert env["MAPPER_TOPIC_PREFIX"] == "bench-1a2b."
        assert env["POLLER_TOPIC_PREFIX"] == "bench-1a2b."
        assert env["WRITER_RECORDS_TOPIC"] == f"bench-1a2b.{CONTRACT_RECORDS}"
        assert env["WRITER_PSA_TOPIC"] == f"bench-1a2b.{PSA_AGREEMENTS}"
        assert env["WRITER_COMMANDS_TOPIC"] == f"bench-1a2b.{SYNC_COMMANDS}"
        assert env["WRITER_EVENTS_TOPIC"] == f"bench-1a2b.{SYNC_EVENTS}"
        assert env["WRITER_DEADLETTER_TOPIC"] == f"bench-1a2b.{DEADLETTER}"
        assert pipeline.topic(SYNC_COMMANDS) == "bench-1a2b.sync.commands.v1"
    finally:
        pipeline.stop()


def test_without_a_prefix_the_services_use_the_registry_topics(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, "")
    try:
        assert not any(key.endswith("_TOPIC") or key.endswith("_TOPIC_PREFIX") for key in pipeline.env)
        assert pipeline.topic(SYNC_EVENTS) == SYNC_EVENTS
    finally:
        pipeline.stop()


def test_the_pipelines_cli_commands_use_its_database_not_the_environments_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:15432/contract_sync")
    pipeline = _pipeline(tmp_path, "")
    try:
        env = pipeline.cli_environment()
        assert env["DATABASE_URL"] == "postgresql+psycopg://postgres@127.0.0.1:1/none"
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:1"
    finally:
        pipeline.stop()
