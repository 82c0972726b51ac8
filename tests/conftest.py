"""Shared fixtures: where the real Kafka and PostgreSQL are, unique names, automatic markers.

`kafka_bootstrap` / `database_url` resolve, in order:
  1. the environment (`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`), as `make test` and `.ci/run` export;
  2. testcontainers, only when a Docker engine answers (cheap check, no Docker on the dev machines);
  3. the local stack (`devtools.stack.LocalStack`, `.stack/` by default), started if needed and
     stopped at session end only for the components this session started.
`make_topic` creates per-test topics and deletes them afterwards; `unique_name` makes names.
When none works: under `CI=true` the test fails (a missing service must never pass silently),
otherwise it is skipped with the reason.

Tests under tests/integration get the `integration` marker and tests under tests/e2e the `e2e`
marker automatically.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy.engine import make_url

from devtools.stack import LocalStack, StackError
from devtools.stack.local import apply_migrations

TESTS_DIR = Path(__file__).resolve().parent
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"  # KafkaContainer drives cp-kafka images only
POSTGRES_IMAGE = "postgres:17"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs a real Kafka broker and PostgreSQL")
    config.addinivalue_line("markers", "e2e: drives the whole running pipeline")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            relative = Path(str(item.path)).resolve().relative_to(TESTS_DIR)
        except ValueError:
            continue
        if relative.parts[:1] == ("integration",):
            item.add_marker(pytest.mark.integration)
        elif relative.parts[:1] == ("e2e",):
            item.add_marker(pytest.mark.e2e)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def service_unavailable(reason: str) -> NoReturn:
    """Fail under CI=true, skip otherwise."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing service fails the run instead of skipping)", pytrace=False)
    pytest.skip(reason)


def docker_engine_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def first_address(servers: str, default_port: int) -> tuple[str, int]:
    """`host:port` of the first entry of a comma-separated bootstrap list."""
    host, _, port = servers.split(",")[0].strip().rpartition(":")
    return (host, int(port)) if host else (port, default_port)


def require_reachable(what: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as error:
        service_unavailable(f"{what} at {host}:{port} does not answer: {error}")


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The local Kafka + PostgreSQL; started if needed, and only what this session started is stopped."""
    stack = LocalStack()
    before = {component.name: component.running for component in stack.status()}

    def stop_what_we_started() -> None:
        if not before["kafka"]:
            stack.stop_kafka()
        if not before["postgres"]:
            stack.stop_postgres()

    try:
        stack.up()
    except StackError as error:
        stop_what_we_started()  # e.g. Kafka came up but PostgreSQL did not
        service_unavailable(f"local stack could not start: {error}")
    try:
        yield stack
    finally:
        stop_what_we_started()


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """`host:port` of a real Kafka broker for this test session."""
    if from_env := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        require_reachable("Kafka (KAFKA_BOOTSTRAP_SERVERS)", *first_address(from_env, 9092))
        yield from_env
    elif docker_engine_answers():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
    else:
        stack: LocalStack = request.getfixturevalue("local_stack")
        yield stack.endpoints.kafka_bootstrap


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL (`postgresql+psycopg://...`) of a real, migrated PostgreSQL database."""
    if from_env := os.environ.get("DATABASE_URL"):
        url = make_url(from_env)
        require_reachable("PostgreSQL (DATABASE_URL)", url.host or "127.0.0.1", url.port or 5432)
        yield from_env
    elif docker_engine_answers():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE, driver="psycopg", dbname="contract_sync") as container:
            url = container.get_connection_url()
            apply_migrations(url, print)
            yield url
    else:
        stack: LocalStack = request.getfixturevalue("local_stack")
        yield stack.endpoints.database_url


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory for per-test Kafka topic / group / app names: `<prefix>.<test>.<random>`.

    Names use only `[a-z0-9._-]` (valid Kafka topic names) and stay short.
    """
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]

    def make(prefix: str = "t") -> str:
        return f"{prefix}.{test}.{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
async def make_topic(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Async factory: `await make_topic("orders", partitions=1)` creates a uniquely named topic
    (replication 1) and returns its name; every topic it made is deleted after the test."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    created: list[str] = []

    async def make(prefix: str = "t", partitions: int = 1) -> str:
        name = unique_name(prefix)
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        created.append(name)
        return name

    try:
        yield make
    finally:
        if created:
            with contextlib.suppress(KafkaError):
                await admin.delete_topics(created)
        await admin.close()
