"""`LocalStack`: the real Kafka broker and PostgreSQL server for development, tests and demos.

Everything (jars, data, logs, pid files, `stack.env`) lives under one directory, by default
`<repo>/.stack` (env `CONTRACT_SYNC_STACK_DIR`). Ports default to Kafka 127.0.0.1:19092
(controller 19093) and PostgreSQL 127.0.0.1:15432 (env `CONTRACT_SYNC_KAFKA_PORT`,
`CONTRACT_SYNC_CONTROLLER_PORT`, `CONTRACT_SYNC_PG_PORT`).

Guarantees:
- `up()` is idempotent: a component whose pid is alive and whose port answers is left alone.
  It returns only when Kafka answers metadata and PostgreSQL accepts connections with the
  database created and migrated (migrations are skipped with a warning while no
  `migrate(database_url)` exists in `services.common.database` or `services.common.db`).
- `down()` and `stop_*()` stop only processes this stack started, by pid.
- Lifecycle calls hold an exclusive lock on `<dir>/stack.lock`, so two concurrent `up()`s
  (two terminals, two test sessions) never start two brokers.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from services.stack.errors import StackError
from services.stack.kafka import KafkaConfig, KafkaNode
from services.stack.postgres import PostgresConfig, PostgresNode

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POM = REPO_ROOT / "deploy" / "local" / "pom.xml"
DEFAULT_LOG4J = REPO_ROOT / "deploy" / "local" / "log4j2.properties"
ENV_DIR = "CONTRACT_SYNC_STACK_DIR"
ENV_KAFKA_PORT = "CONTRACT_SYNC_KAFKA_PORT"
ENV_CONTROLLER_PORT = "CONTRACT_SYNC_CONTROLLER_PORT"
ENV_PG_PORT = "CONTRACT_SYNC_PG_PORT"
DEFAULT_KAFKA_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
DEFAULT_PG_PORT = 15432
HOST = "127.0.0.1"
# where `migrate(database_url) -> None` may live (the first module defining it is used)
MIGRATION_MODULES = ("services.common.database", "services.common.db")


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    database_url: str

    def env_lines(self) -> str:
        """Shell-sourceable `NAME=value` lines (values contain no shell metacharacters)."""
        return f"KAFKA_BOOTSTRAP_SERVERS={self.kafka_bootstrap}\nDATABASE_URL={self.database_url}\n"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    endpoint: str


@dataclass(frozen=True)
class StackSettings:
    directory: Path
    kafka_port: int
    controller_port: int
    pg_port: int


def _port(value: int | str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        port = int(value)
    except ValueError:
        raise StackError(f"{name} must be a port number, got {value!r}") from None
    if not 0 < port < 65536:
        raise StackError(f"{name} must be a port number, got {port}")
    return port


def resolve_settings(
    directory: Path | str | None = None,
    kafka_port: int | None = None,
    controller_port: int | None = None,
    pg_port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> StackSettings:
    """Explicit arguments win, then the CONTRACT_SYNC_* environment variables, then the defaults."""
    env = os.environ if env is None else env
    raw_dir = directory if directory is not None else env.get(ENV_DIR) or REPO_ROOT / ".stack"
    return StackSettings(
        directory=Path(raw_dir).expanduser().resolve(),
        kafka_port=_port(kafka_port if kafka_port is not None else env.get(ENV_KAFKA_PORT), ENV_KAFKA_PORT,
                         DEFAULT_KAFKA_PORT),
        controller_port=_port(controller_port if controller_port is not None else env.get(ENV_CONTROLLER_PORT),
                              ENV_CONTROLLER_PORT, DEFAULT_CONTROLLER_PORT),
        pg_port=_port(pg_port if pg_port is not None else env.get(ENV_PG_PORT), ENV_PG_PORT, DEFAULT_PG_PORT),
    )  # fmt: skip


def find_migrate() -> Callable[[str], object] | None:
    """The project's `migrate(database_url)` function, or None when it is not importable yet."""
    for name in MIGRATION_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name and name.startswith(error.name):
                continue
            raise
        migrate: Callable[[str], object] | None = getattr(module, "migrate", None)
        if migrate is not None:
            return migrate
    return None


def apply_migrations(database_url: str, report: Callable[[str], None]) -> bool:
    """Run the project's migrations against `database_url` (idempotent: upgrade to head).

    Returns False, after reporting a warning, when no `migrate` function exists yet; raises
    StackError when the migrations themselves fail.
    """
    migrate = find_migrate()
    if migrate is None:
        report(f"warning: no migrate() in {' or '.join(MIGRATION_MODULES)}; database migrations skipped")
        return False
    try:
        migrate(database_url)
    except Exception as error:
        raise StackError(f"database migrations failed: {error}") from error
    return True


class LocalStack:
    """The local Kafka + PostgreSQL pair under one directory (see the module docstring)."""

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        kafka_port: int | None = None,
        controller_port: int | None = None,
        pg_port: int | None = None,
        pom: Path = DEFAULT_POM,
        log4j_config: Path = DEFAULT_LOG4J,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = resolve_settings(directory, kafka_port, controller_port, pg_port)
        self.directory = self.settings.directory
        self.logs_dir = self.directory / "logs"
        self.env_file = self.directory / "stack.env"
        self.kafka = KafkaNode(
            self.directory,
            self.logs_dir,
            KafkaConfig(HOST, self.settings.kafka_port, self.settings.controller_port),
            pom,
            log4j_config,
        )
        self.postgres = PostgresNode(
            self.directory, self.logs_dir, PostgresConfig(HOST, self.settings.pg_port)
        )
        self._report = report or (lambda line: logger.info("%s", line))

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(self.kafka.config.bootstrap, self.postgres.config.url)

    # -- locking ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "stack.lock").open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- whole stack -----------------------------------------------------------------------
    def up(self, timeout_s: float = 180.0) -> Endpoints:
        """Start whatever is not running, wait until both are ready, write `stack.env`."""
        with self._locked():
            kafka_running = self.kafka.is_running()
            pg_running = self.postgres.is_running()
            if kafka_running and pg_running:
                self._report("stack already running; nothing to do")
            else:
                kafka_pid = None if kafka_running else self._spawn_kafka(timeout_s)
                if not pg_running:  # overlaps with the JVM's start-up
                    self._start_postgres(timeout_s)
                if kafka_pid is not None:
                    self._wait_kafka(kafka_pid, timeout_s)
            endpoints = self.endpoints
            self.env_file.write_text(endpoints.env_lines(), encoding="utf-8")
        self._report(f"kafka     {endpoints.kafka_bootstrap}")
        self._report(f"postgres  {endpoints.database_url}")
        self._report(f"env file  {self.env_file}")
        return endpoints

    def down(self) -> None:
        """Stop both components (the ones this stack started; others are left alone)."""
        with self._locked():
            self._stop_kafka()
            self._stop_postgres()

    def status(self) -> list[ComponentStatus]:
        return [
            ComponentStatus(
                "kafka", self.kafka.is_running(), self.kafka.pid(), self.endpoints.kafka_bootstrap
            ),
            ComponentStatus(
                "postgres", self.postgres.is_running(), self.postgres.pid(), self.endpoints.database_url
            ),
        ]

    def is_up(self) -> bool:
        return all(component.running for component in self.status())

    # -- per component (the chaos suite restarts these mid-stream) -------------------------
    def start_kafka(self, timeout_s: float = 180.0) -> None:
        """Start the broker if it is not running and wait until it answers metadata."""
        with self._locked():
            if not self.kafka.is_running():
                self._wait_kafka(self._spawn_kafka(timeout_s), timeout_s)

    def stop_kafka(self) -> None:
        with self._locked():
            self._stop_kafka()

    def start_postgres(self, timeout_s: float = 60.0) -> None:
        """Start PostgreSQL if it is not running (database created and migrated)."""
        with self._locked():
            if not self.postgres.is_running():
                self._start_postgres(timeout_s)

    def stop_postgres(self) -> None:
        with self._locked():
            self._stop_postgres()

    # -- internals (caller holds the lock) -------------------------------------------------
    def _spawn_kafka(self, timeout_s: float) -> int:
        started = time.monotonic()
        if self.kafka.ensure_libs():
            self._report(f"kafka jars resolved with Maven in {time.monotonic() - started:.1f} s")
        stale = self.kafka.pid()
        if stale is not None:  # alive but not answering: a hung or half-started broker of ours
            self._report(f"kafka pid {stale} is not answering; restarting it")
            self.kafka.stop()
        self.kafka.write_config()
        if self.kafka.format_storage_if_needed():
            self._report(f"kafka storage formatted in {self.kafka.data}")
        pid = self.kafka.spawn()
        self._report(f"kafka starting (pid {pid}), log {self.kafka.log_file}")
        return pid

    def _wait_kafka(self, pid: int, timeout_s: float) -> None:
        started = time.monotonic()
        self.kafka.wait_ready(pid, timeout_s)
        self._report(f"kafka ready (pid {pid}) after {time.monotonic() - started:.1f} s more")

    def _start_postgres(self, timeout_s: float) -> None:
        started = time.monotonic()
        stale = self.postgres.pid()
        if stale is not None:
            self._report(f"postgres pid {stale} is not answering; restarting it")
            self.postgres.stop()
        if self.postgres.initdb_if_needed():
            self._report(f"postgres cluster initialised in {self.postgres.data}")
        pid = self.postgres.start(timeout_s)
        self._migrate()
        self._report(
            f"postgres ready (pid {pid}) in {time.monotonic() - started:.1f} s, log {self.postgres.log_file}"
        )

    def _migrate(self) -> None:
        if apply_migrations(self.endpoints.database_url, self._report):
            self._report("postgres migrations applied")

    def _stop_kafka(self) -> None:
        pid = self.kafka.pid()
        if self.kafka.stop():
            self._report(f"kafka stopped (pid {pid})")
        else:
            self._report("kafka was not running")

    def _stop_postgres(self) -> None:
        pid = self.postgres.pid()
        if self.postgres.stop():
            self._report(f"postgres stopped (pid {pid})")
        else:
            self._report("postgres was not running")
