"""Pure configuration of the local stack: server.properties, cluster ids, settings, env file."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from devtools.stack import StackError, resolve_settings
from devtools.stack import local as stack_local
from devtools.stack.kafka import KafkaConfig, KafkaNode, new_cluster_id, pom_digest, render_server_properties
from devtools.stack.local import PICKED_PORT_RANGE, Endpoints, StackSettings, record_ports


@pytest.fixture
def default_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-in for `<repo>/.stack`, so the repository's own recorded ports never leak into a test."""
    directory = tmp_path / "repo" / ".stack"
    monkeypatch.setattr(stack_local, "DEFAULT_DIR", directory)
    return directory


def parse_properties(text: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), "duplicate keys in server.properties"
    return dict(pairs)


def test_server_properties_put_broker_and_controller_on_the_configured_loopback_ports(tmp_path: Path) -> None:
    props = parse_properties(render_server_properties(KafkaConfig("127.0.0.1", 29092, 29093), tmp_path / "d"))

    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["log.dirs"] == str(tmp_path / "d")


def test_server_properties_carry_the_single_node_test_knobs(tmp_path: Path) -> None:
    props = parse_properties(render_server_properties(KafkaConfig(), tmp_path))

    assert props["num.partitions"] == "6"
    assert props["auto.create.topics.enable"] == "true"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.cleaner.dedupe.buffer.size"] == "2097152"
    for key in ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic"):
        assert props[f"{key}.replication.factor"] == "1"
        assert int(props[f"{key}.num.partitions"]) <= 3


def test_cluster_ids_are_fresh_16_byte_urlsafe_base64() -> None:
    first, second = new_cluster_id(), new_cluster_id()

    assert first != second
    assert len(base64.urlsafe_b64decode(first + "==")) == 16
    assert "=" not in first


def test_jars_count_as_current_only_when_the_marker_matches_the_pom(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project>1</project>")
    node = KafkaNode(
        tmp_path / "stack", tmp_path / "logs", KafkaConfig(), pom, tmp_path / "log4j2.properties"
    )
    assert not node.libs_current()  # nothing resolved yet

    node.libs.mkdir(parents=True)
    (node.libs / "kafka_2.13-4.0.2.jar").write_bytes(b"jar")
    (node.libs / ".pom-sha256").write_text(pom_digest(pom) + "\n")
    assert node.libs_current()

    pom.write_text("<project>2</project>")  # a changed pom must trigger a new resolution
    assert not node.libs_current()


def test_explicit_settings_win_over_environment_which_wins_over_defaults(
    tmp_path: Path, default_dir: Path
) -> None:
    env = {
        "CONTRACT_SYNC_STACK_DIR": str(tmp_path / "from-env"),
        "CONTRACT_SYNC_KAFKA_PORT": "21092",
        "CONTRACT_SYNC_PG_PORT": "25432",
    }

    from_env = resolve_settings(env=env)
    explicit = resolve_settings(tmp_path / "explicit", kafka_port=31092, env=env)
    defaults = resolve_settings(env={})

    assert (from_env.directory, from_env.kafka_port, from_env.pg_port) == (
        tmp_path / "from-env",
        21092,
        25432,
    )
    assert (explicit.directory, explicit.kafka_port, explicit.pg_port) == (
        tmp_path / "explicit",
        31092,
        25432,
    )
    assert (defaults.kafka_port, defaults.controller_port, defaults.pg_port) == (19092, 19093, 15432)
    assert defaults.directory.name == ".stack"


@pytest.mark.parametrize("bad", ["kafka", "0", "70000"])
def test_rejects_a_port_that_is_not_a_port_number(bad: str) -> None:
    with pytest.raises(StackError, match="CONTRACT_SYNC_PG_PORT"):
        resolve_settings(env={"CONTRACT_SYNC_PG_PORT": bad})


def test_env_file_lines_are_sourceable_by_a_shell(tmp_path: Path) -> None:
    endpoints = Endpoints("127.0.0.1:19092", "postgresql+psycopg://postgres@127.0.0.1:15432/contract_sync")
    env_file = tmp_path / "stack.env"
    env_file.write_text(endpoints.env_lines())

    shown = subprocess.run(
        ["bash", "-c", f'set -a; . "{env_file}"; echo "$KAFKA_BOOTSTRAP_SERVERS|$DATABASE_URL"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    assert shown == f"{endpoints.kafka_bootstrap}|{endpoints.database_url}"


def test_env_file_names_a_database_url_per_service_role() -> None:
    endpoints = Endpoints("127.0.0.1:19092", "postgresql+psycopg://postgres@127.0.0.1:15432/contract_sync")
    lines = dict(line.split("=", 1) for line in endpoints.env_lines().splitlines())

    assert (
        lines["WRITER_DATABASE_URL"]
        == "postgresql+psycopg://contract_sync_writer@127.0.0.1:15432/contract_sync"
    )
    assert lines["POLLER_DATABASE_URL"].startswith("postgresql+psycopg://contract_sync_poller@")
    assert lines["GATEWAY_DATABASE_URL"].startswith("postgresql+psycopg://contract_sync_reader@")


def in_picked_range(port: int) -> bool:
    return PICKED_PORT_RANGE[0] <= port <= PICKED_PORT_RANGE[1]


def test_a_directory_other_than_the_default_gets_free_ports_of_its_own(
    tmp_path: Path, default_dir: Path
) -> None:
    settings = resolve_settings(tmp_path / "second", env={})

    ports = [settings.kafka_port, settings.controller_port, settings.pg_port]
    assert all(in_picked_range(port) for port in ports), ports
    assert len(set(ports)) == 3
    assert settings.picked == {"kafka_port", "controller_port", "pg_port"}


def test_the_default_directory_keeps_the_fixed_default_ports(default_dir: Path) -> None:
    settings = resolve_settings(env={})

    assert (settings.directory, settings.kafka_port, settings.controller_port, settings.pg_port) == (
        default_dir.resolve(),
        19092,
        19093,
        15432,
    )
    assert settings.picked == frozenset()


def test_ports_recorded_by_a_start_are_reused_and_given_ports_still_win(
    tmp_path: Path, default_dir: Path
) -> None:
    directory = tmp_path / "second"
    directory.mkdir()
    record_ports(StackSettings(directory, 31001, 31002, 31003))

    recorded = resolve_settings(directory, env={})
    given = resolve_settings(directory, pg_port=31999, env={"CONTRACT_SYNC_KAFKA_PORT": "31888"})

    assert (recorded.kafka_port, recorded.controller_port, recorded.pg_port) == (31001, 31002, 31003)
    assert (given.kafka_port, given.controller_port, given.pg_port) == (31888, 31002, 31999)
    assert given.picked == {"controller_port"}


def test_the_directory_can_come_from_the_environment_alone(tmp_path: Path, default_dir: Path) -> None:
    directory = tmp_path / "from-env"
    directory.mkdir()
    record_ports(StackSettings(directory, 31101, 31102, 31103))

    settings = resolve_settings(env={"CONTRACT_SYNC_STACK_DIR": str(directory)})

    assert (settings.kafka_port, settings.controller_port, settings.pg_port) == (31101, 31102, 31103)
