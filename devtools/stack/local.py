"""`LocalStack`: the real Kafka broker and PostgreSQL server for development, tests and demos.

Everything (jars, data, logs, pid files, `stack.env`, `ports.json`) lives under one directory, by
default `<repo>/.stack` (env `CONTRACT_SYNC_STACK_DIR`). Each port (Kafka, KRaft controller,
PostgreSQL) is, in this order: the explicit argument, the env var (`CONTRACT_SYNC_KAFKA_PORT`,
`CONTRACT_SYNC_CONTROLLER_PORT`, `CONTRACT_SYNC_PG_PORT`), the port recorded in `<dir>/ports.json`
by an earlier `up()`, else the default: 19092 / 19093 / 15432 for the default directory, a free
port picked by the stack for any other directory (so the directory alone is enough for a second
stack).

Guarantees:
- `up()` is idempotent: a component whose pid is alive and whose port answers is left alone.
  It returns only when Kafka answers metadata and PostgreSQL accepts connections with the
  database created, the roles of `services.common.db.roles` set up (trust authentication: no
  passwords locally) and the schema migrated as the owner role (migrations are skipped with a warning while no
  `migrate(database_url)` exists in `services.common.database` or `services.common.db`).
- `down()` and `stop_*()` stop only processes this stack started, by pid.
- `up()` records the ports it uses in `ports.json` and the endpoints in `stack.env`; a port the
  stack picked itself is picked again when, at start, another process holds it.
- Lifecycle calls hold an exclusive lock on `<dir>/stack.lock`, so two concurrent `up()`s
  (two terminals, two test sessions) never start two brokers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import logging
import os
import random
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devtools.stack.errors import StackError
from devtools.stack.kafka import ADMIN_USER, BrokerSecurity, KafkaConfig, KafkaNode, java_executable
from devtools.stack.postgres import PostgresConfig, PostgresNode
from devtools.stack.secure import CREDENTIALS_FILE, client_env, ensure_credentials
from devtools.stack.tls import TlsFiles, ensure_tls

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
DEFAULT_DIR = REPO_ROOT / ".stack"
PORTS_FILE = "ports.json"
ENV_FILE = "stack.env"
# Ports the stack picks for a non-default directory: below the kernel's ephemeral range (32768-60999),
# so a client that keeps reconnecting to a stopped broker is never handed the broker's port as its
# own source port; above the fixed defaults.
PICKED_PORT_RANGE = (30000, 32767)
HOST = "127.0.0.1"
# where `migrate(database_url) -> None` may live (the first module defining it is used)
MIGRATION_MODULES = ("services.common.database", "services.common.db")


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    database_url: str
    kafka_env: Mapping[str, str] = field(default_factory=dict)
    """A secured stack's Kafka client settings (`devtools.stack.secure.client_env`); empty for PLAINTEXT."""

    def env_lines(self) -> str:
        """Shell-sourceable `NAME=value` lines (values contain no shell metacharacters):
        `DATABASE_URL` is the administrator's (migrations, tests, tools); `WRITER_DATABASE_URL`,
        `POLLER_DATABASE_URL` and `GATEWAY_DATABASE_URL` connect as those services' own roles.
        A secured stack adds `KAFKA_SECURITY_PROTOCOL`, the admin's `KAFKA_SASL_*` and each service's
        `<SERVICE>_KAFKA_SASL_USERNAME` / `_PASSWORD`."""
        from services.common.db.roles import SERVICE_ROLES, role_url

        lines = [f"KAFKA_BOOTSTRAP_SERVERS={self.kafka_bootstrap}", f"DATABASE_URL={self.database_url}"]
        lines += [
            f"{service.upper()}_DATABASE_URL={role_url(self.database_url, SERVICE_ROLES[service])}"
            for service in ("writer", "poller", "gateway")
        ]
        lines += [f"{name}={value}" for name, value in self.kafka_env.items()]
        return "\n".join(lines) + "\n"


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
    picked: frozenset[str] = frozenset()
    """Names of the ports (`kafka_port`, ...) the stack chose itself: nothing asked for a port."""

    def ports(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in PORT_NAMES}


PORT_NAMES = ("kafka_port", "controller_port", "pg_port")
_PORT_ENV = {"kafka_port": ENV_KAFKA_PORT, "controller_port": ENV_CONTROLLER_PORT, "pg_port": ENV_PG_PORT}
_PORT_DEFAULT = {
    "kafka_port": DEFAULT_KAFKA_PORT,
    "controller_port": DEFAULT_CONTROLLER_PORT,
    "pg_port": DEFAULT_PG_PORT,
}


def _port(value: int | str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        port = int(value)
    except ValueError:
        raise StackError(f"{name} must be a port number, got {value!r}") from None
    if not 0 < port < 65536:
        raise StackError(f"{name} must be a port number, got {port}")
    return port


def is_default_directory(directory: Path) -> bool:
    return directory.resolve() == DEFAULT_DIR.resolve()


def recorded_ports(directory: Path) -> dict[str, int]:
    """The ports an earlier `up()` recorded in `<directory>/ports.json` (empty when none or unreadable)."""
    try:
        document = json.loads((directory / PORTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {
        name: value
        for name, value in document.items()
        if name in PORT_NAMES and isinstance(value, int) and 0 < value < 65536
    }


def record_ports(settings: StackSettings) -> None:
    """Write `<dir>/ports.json` atomically."""
    path = settings.directory / PORTS_FILE
    tmp = path.with_name(PORTS_FILE + ".tmp")
    tmp.write_text(json.dumps(settings.ports(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when a socket can bind `host:port` now (nothing listens on it or holds it)."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def pick_free_port(avoid: set[int], host: str = HOST) -> int:
    """A free port in PICKED_PORT_RANGE, not in `avoid`. Free now, not reserved: `up()` starts the
    component right after, under the stack lock."""
    low, high = PICKED_PORT_RANGE
    for _ in range(500):
        port = random.randint(low, high)
        if port not in avoid and port_is_free(port, host):
            return port
    raise StackError(f"no free port found in {low}-{high}; give the ports explicitly")


def stack_directory(directory: Path | str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The explicit directory, else CONTRACT_SYNC_STACK_DIR, else `<repo>/.stack` (absolute)."""
    env = os.environ if env is None else env
    raw_dir = directory if directory is not None else env.get(ENV_DIR) or DEFAULT_DIR
    return Path(raw_dir).expanduser().resolve()


def resolve_settings(
    directory: Path | str | None = None,
    kafka_port: int | None = None,
    controller_port: int | None = None,
    pg_port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> StackSettings:
    """Per port: the explicit argument, then the CONTRACT_SYNC_* env var, then the port recorded in
    `<dir>/ports.json`, then the default (fixed for the default directory, picked free for any other).
    """
    env = os.environ if env is None else env
    resolved_dir = stack_directory(directory, env)
    default_dir = is_default_directory(resolved_dir)
    explicit = {"kafka_port": kafka_port, "controller_port": controller_port, "pg_port": pg_port}
    recorded = recorded_ports(resolved_dir)
    ports: dict[str, int] = {}
    picked: set[str] = set()
    for name in PORT_NAMES:
        requested = explicit[name]
        port = _port(requested if requested is not None else env.get(_PORT_ENV[name]), _PORT_ENV[name])
        if port is None and name in recorded:
            port = recorded[name]
            if not default_dir:
                picked.add(name)
        if port is None:
            if default_dir:
                port = _PORT_DEFAULT[name]
            else:
                port = pick_free_port(set(ports.values()))
                picked.add(name)
        ports[name] = port
    return StackSettings(
        resolved_dir, ports["kafka_port"], ports["controller_port"], ports["pg_port"], frozenset(picked)
    )


def write_private(path: Path, text: str) -> None:
    """Write `path` atomically, readable by its owner only (it may hold passwords)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.replace(path)


def read_env_file(directory: Path) -> dict[str, str]:
    """The `NAME=value` lines of `<directory>/stack.env`, as `up()` wrote them.

    Raises StackError when the file is missing: no stack was ever started in that directory.
    """
    path = directory / ENV_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StackError(f"no {path}: start that stack first (contract-sync stack up)") from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            values[name] = value
    return values


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
        secure: bool = False,
    ) -> None:
        self._requested = (directory, kafka_port, controller_port, pg_port)
        self._pom, self._log4j_config = pom, log4j_config
        self.settings = resolve_settings(*self._requested)
        self.directory = self.settings.directory
        self.logs_dir = self.directory / "logs"
        self.env_file = self.directory / ENV_FILE
        self.tls_dir = self.directory / "tls"
        self.credentials_file = self.directory / "kafka" / CREDENTIALS_FILE
        self.secure = secure or (self.directory / "kafka" / "secured").exists()
        """`--secure` asked for it, or the directory's Kafka storage was formatted secured."""
        self._build_nodes()
        self._report = report or (lambda line: logger.info("%s", line))

    def _build_nodes(self) -> None:
        security = None
        if self.secure:
            tls = TlsFiles(self.tls_dir)
            security = BrokerSecurity(
                ensure_credentials(self.credentials_file)[ADMIN_USER], tls.broker_pem, tls.ca_cert
            )
        self.kafka = KafkaNode(
            self.directory,
            self.logs_dir,
            KafkaConfig(HOST, self.settings.kafka_port, self.settings.controller_port, security=security),
            self._pom,
            self._log4j_config,
        )
        self.postgres = PostgresNode(
            self.directory, self.logs_dir, PostgresConfig(HOST, self.settings.pg_port)
        )

    def _settle_ports(self, kafka_running: bool, pg_running: bool) -> None:
        """Adopt the ports recorded meanwhile (a concurrent `up()`), re-pick a picked port that another
        process took while this stack was stopped, and record the result (caller holds the lock)."""
        settings = resolve_settings(*self._requested)
        ports = settings.ports()
        owners = {"kafka_port": kafka_running, "controller_port": kafka_running, "pg_port": pg_running}
        for name in sorted(settings.picked):
            if not owners[name] and not port_is_free(ports[name]):
                ports[name] = pick_free_port(set(ports.values()))
                self._report(
                    f"{name.replace('_', ' ')} {settings.ports()[name]} is taken; using {ports[name]}"
                )
        settings = StackSettings(
            settings.directory,
            ports["kafka_port"],
            ports["controller_port"],
            ports["pg_port"],
            settings.picked,
        )
        if settings != self.settings:
            self.settings = settings
            self._build_nodes()
        record_ports(settings)

    @property
    def endpoints(self) -> Endpoints:
        kafka_env = (
            client_env(ensure_credentials(self.credentials_file), TlsFiles(self.tls_dir).ca_cert)
            if self.secure
            else {}
        )
        return Endpoints(self.kafka.config.bootstrap, self.postgres.config.url, kafka_env)

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
        """Start whatever is not running, wait until both are ready, bring the database's roles and
        schema up to date (also on a running stack; idempotent), write `stack.env`."""
        with self._locked():
            self._settle_ports(self.kafka.is_running(), self.postgres.is_running())
            kafka_running = self.kafka.is_running()
            pg_running = self.postgres.is_running()
            if kafka_running and pg_running:
                self._report("stack already running")
                self._migrate()  # a stack started before the latest migration gets it now
            else:
                kafka_pid = None if kafka_running else self._spawn_kafka(timeout_s)
                if not pg_running:  # overlaps with the JVM's start-up
                    self._start_postgres(timeout_s)
                if kafka_pid is not None:
                    self._wait_kafka(kafka_pid, timeout_s)
            if self.secure:
                self._ensure_acls()
            endpoints = self.endpoints
            write_private(self.env_file, endpoints.env_lines())
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
        users = None
        if self.secure:
            ensure_tls(self.tls_dir, HOST)
            users = ensure_credentials(self.credentials_file)
        self.kafka.write_config()
        if self.kafka.format_storage_if_needed(users):
            secured = f" with {len(users)} SCRAM-SHA-512 users" if users else ""
            self._report(f"kafka storage formatted in {self.kafka.data}{secured}")
        pid = self.kafka.spawn()
        self._report(f"kafka starting (pid {pid}), log {self.kafka.log_file}")
        return pid

    def _ensure_acls(self) -> None:
        """Add the services' ACLs (`services.common.kafka_acls`) as the admin unless the ones recorded
        in `<dir>/kafka/acls.sha256` are already these (ACLs live in the metadata log)."""
        from services.common.kafka_acls import acl_bindings, apply_with_cli

        bindings = acl_bindings()
        digest = hashlib.sha256(repr(bindings).encode()).hexdigest()
        marker = self.kafka.home / "acls.sha256"
        if marker.exists() and marker.read_text(encoding="utf-8").strip() == digest:
            return
        started = time.monotonic()
        try:
            apply_with_cli(
                bindings,
                bootstrap=self.kafka.config.bootstrap,
                command_config=self.kafka.admin_properties,
                libs=self.kafka.libs,
                java=java_executable(),
            )
        except subprocess.CalledProcessError as error:
            raise StackError(f"applying the Kafka ACLs failed: {error.stderr.strip()[-2000:]}") from error
        marker.write_text(digest + "\n", encoding="utf-8")
        self._report(f"kafka ACLs applied ({len(bindings)} bindings) in {time.monotonic() - started:.1f} s")

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
        from services.common.db.roles import apply_roles

        try:
            apply_roles(self.endpoints.database_url)
        except Exception as error:
            raise StackError(f"database roles failed: {error}") from error
        self._report("postgres roles and grants applied (services.common.db.roles)")
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
