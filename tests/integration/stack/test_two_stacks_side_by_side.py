"""Two local stacks at once, each named by its directory alone (real Kafka and PostgreSQL processes).

The CLI runs as an operator runs it: `contract-sync stack up|env|status|down` with only
CONTRACT_SYNC_STACK_DIR set, none of the CONTRACT_SYNC_*_PORT variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from alembic import command
from alembic.config import Config
from sqlalchemy.pool import NullPool

from devtools.stack.kafka import LIBS_MARKER, KafkaConfig, KafkaNode
from devtools.stack.local import DEFAULT_DIR, DEFAULT_LOG4J, DEFAULT_POM, ENV_DIR, PORTS_FILE
from services.common.db import MIGRATIONS_DIR, make_engine
from services.launcher.group import contract_sync_command

STACKS = ("first", "second")


def operator_env(directory: Path) -> dict[str, str]:
    """The test process's environment with no stack port variable, and the stack directory set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTRACT_SYNC_")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("DATABASE_URL", None)
    return env | {ENV_DIR: str(directory)}


def cli(directory: Path, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        contract_sync_command("stack", *args),
        env=operator_env(directory),
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def reuse_resolved_jars(directory: Path) -> None:
    """Copy the repository stack's Kafka jars when current (only saves the Maven run)."""
    source = KafkaNode(DEFAULT_DIR, DEFAULT_DIR / "logs", KafkaConfig(), DEFAULT_POM, DEFAULT_LOG4J)
    if source.libs_current():
        shutil.copytree(source.libs, directory / "kafka" / "libs")
        assert (directory / "kafka" / "libs" / LIBS_MARKER).is_file()


@pytest.fixture(scope="module")
def two_stacks() -> Iterator[dict[str, Path]]:
    base = Path(tempfile.mkdtemp(prefix="cs-two-stacks-", dir="/tmp"))
    base.chmod(0o755)  # PostgreSQL's run user must enter it (see deploy/local/README.md)
    dirs = {name: base / name for name in STACKS}
    for directory in dirs.values():
        directory.mkdir()
        directory.chmod(0o755)
        reuse_resolved_jars(directory)
    try:
        ups = {
            name: subprocess.Popen(
                contract_sync_command("stack", "up"),
                env=operator_env(directory),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name, directory in dirs.items()
        }
        outputs = {name: up.communicate(timeout=600)[0] for name, up in ups.items()}
        for name, up in ups.items():
            assert up.returncode == 0, f"stack up in {dirs[name]} failed:\n{outputs[name]}"
        yield dirs
    finally:
        for directory in dirs.values():
            down = cli(directory, "down")
            assert down.returncode == 0, down.stderr
        shutil.rmtree(base, ignore_errors=True)


def exported(directory: Path) -> dict[str, str]:
    shown = cli(directory, "env")
    assert shown.returncode == 0, shown.stderr
    pairs = [line.removeprefix("export ").split("=", 1) for line in shown.stdout.splitlines()]
    return dict(pairs)


def test_each_stack_picks_free_ports_of_its_own_and_records_them(two_stacks: dict[str, Path]) -> None:
    recorded = {name: json.loads((d / PORTS_FILE).read_text()) for name, d in two_stacks.items()}

    ports = [port for name in STACKS for port in recorded[name].values()]
    assert len(set(ports)) == 6, recorded  # Kafka, controller and PostgreSQL: nothing shared
    assert not {19092, 19093, 15432} & set(ports)
    for name, directory in two_stacks.items():
        assert cli(directory, "status").returncode == 0, f"{name} not running"


def test_stack_env_prints_the_endpoints_of_the_stack_in_the_named_directory(
    two_stacks: dict[str, Path],
) -> None:
    for directory in two_stacks.values():
        ports = json.loads((directory / PORTS_FILE).read_text())
        env = exported(directory)

        assert env["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{ports['kafka_port']}"
        assert (
            env["DATABASE_URL"] == f"postgresql+psycopg://postgres@127.0.0.1:{ports['pg_port']}/contract_sync"
        )
        with psycopg.connect(env["DATABASE_URL"].replace("+psycopg", "")) as connection:
            served = connection.execute("SELECT inet_server_port()").fetchone()
        assert served == (ports["pg_port"],)


def test_the_two_brokers_are_separate_clusters(two_stacks: dict[str, Path]) -> None:
    first, second = (exported(two_stacks[name])["KAFKA_BOOTSTRAP_SERVERS"] for name in STACKS)

    async def topics_after_creating_one_on_the_first() -> tuple[set[str], set[str]]:
        admins = [AIOKafkaAdminClient(bootstrap_servers=b) for b in (first, second)]
        for admin in admins:
            await admin.start()
        try:
            await admins[0].create_topics([NewTopic("only.on.first", num_partitions=1, replication_factor=1)])
            return set(await admins[0].list_topics()), set(await admins[1].list_topics())
        finally:
            for admin in admins:
                await admin.close()

    on_first, on_second = asyncio.run(topics_after_creating_one_on_the_first())
    assert "only.on.first" in on_first
    assert "only.on.first" not in on_second


def schema_revision(database_url: str) -> str:
    with psycopg.connect(database_url.replace("+psycopg", "")) as connection:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row is not None
    return str(row[0])


def test_stack_up_on_a_running_stack_brings_its_schema_up_to_the_newest_migration(
    two_stacks: dict[str, Path],
) -> None:
    directory = two_stacks["second"]
    database_url = exported(directory)["DATABASE_URL"]
    newest = schema_revision(database_url)
    engine = make_engine(database_url, poolclass=NullPool)
    try:  # as if the stack had been started before the newest migration landed
        with engine.connect() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            config.attributes["connection"] = connection
            command.downgrade(config, "-1")
            connection.commit()
    finally:
        engine.dispose()
    assert schema_revision(database_url) != newest

    up = cli(directory, "up")

    assert up.returncode == 0, up.stdout + up.stderr
    assert schema_revision(database_url) == newest
