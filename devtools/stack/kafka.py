"""A single-node Apache Kafka 4.0 (KRaft, combined broker+controller) run from Maven Central jars.

Layout under the stack directory `<dir>`:

    <dir>/kafka/libs/           jars from `deploy/local/pom.xml` (+ `.pom-sha256` marker)
    <dir>/kafka/server.properties, cluster.id, kafka.pid
    <dir>/kafka/data/           the KRaft log directory (formatted once)
    <dir>/logs/kafka.log        the broker log (log4j2, deploy/local/log4j2.properties)
    <dir>/logs/kafka.out        the JVM's stdout/stderr

Guarantees: the jars are resolved once per pom content (a second start runs no Maven);
storage is formatted only when `data/meta.properties` is missing; the broker runs detached
(its own session) and is stopped by its pid only. Failures raise `StackError` carrying the
tail of the relevant log.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import logging
import os
import re
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from devtools.stack.errors import StackError
from devtools.stack.process import is_our_process, port_answers, read_pid, tail, terminate, write_pid

logger = logging.getLogger(__name__)

KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
LIBS_MARKER = ".pom-sha256"
CHECKSUMS_FILE = "kafka-jars.sha256"
"""Next to the pom: the SHA-256 of every jar it resolves (a checked list; see `checksum_problems`)."""
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
HEAP_OPTS = ("-Xms512m", "-Xmx1g")
JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)

T = TypeVar("T")


@dataclass(frozen=True)
class BrokerSecurity:
    """A secured broker (`stack up --secure`): a SASL_SSL client listener (SCRAM-SHA-512, the broker
    certificate in `keystore`), a SASL_PLAINTEXT controller listener on the loopback (PLAIN: KRaft
    controllers cannot authenticate SCRAM users before the metadata log is loaded), the
    StandardAuthorizer refusing whatever no ACL allows, and `admin` as the only super user (the
    broker's own identity on both listeners)."""

    admin_password: str
    keystore: Path  # PEM: PKCS#8 key + certificate chain
    truststore: Path  # PEM: the CA certificate


@dataclass(frozen=True)
class KafkaConfig:
    host: str = "127.0.0.1"
    port: int = 19092
    controller_port: int = 19093
    num_partitions: int = 6
    security: BrokerSecurity | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


ADMIN_USER = "admin"
SCRAM_MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def _jaas_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def listener_lines(config: KafkaConfig) -> list[str]:
    """The listener, authentication and authorization part of server.properties (pure)."""
    host, port, cport = config.host, config.port, config.controller_port
    security = config.security
    if security is None:
        return [
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        ]
    admin, password = _jaas_value(ADMIN_USER), _jaas_value(security.admin_password)
    return [
        f"listeners=SASL_SSL://{host}:{port},CONTROLLER://{host}:{cport}",
        f"advertised.listeners=SASL_SSL://{host}:{port}",
        "inter.broker.listener.name=SASL_SSL",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        "listener.name.controller.plain.sasl.jaas.config="
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f"username={admin} password={password} user_{ADMIN_USER}={password};",
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config="
        f"org.apache.kafka.common.security.scram.ScramLoginModule required username={admin} password={password};",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={security.keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={security.truststore}",
        "ssl.endpoint.identification.algorithm=https",
        "ssl.enabled.protocols=TLSv1.3,TLSv1.2",
        f"authorizer.class.name={AUTHORIZER}",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{ADMIN_USER}",
    ]


def render_server_properties(config: KafkaConfig, data_dir: Path) -> str:
    """server.properties for a combined broker+controller with a static one-voter quorum.

    Static voters (not `--standalone`) keep the controller endpoint out of the formatted
    log, so the ports can change between starts without re-formatting. With `config.security`
    the broker is secured (see `BrokerSecurity`); the file then holds the admin password (0600).
    """
    host, cport = config.host, config.controller_port
    lines = [
        "# generated by devtools.stack.kafka; edits are overwritten on every start",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{cport}",
        *listener_lines(config),
        f"log.dirs={data_dir}",
        f"num.partitions={config.num_partitions}",
        "default.replication.factor=1",
        "min.insync.replicas=1",
        "auto.create.topics.enable=true",
        "delete.topic.enable=true",
        # internal topics: replication 1 and few partitions, or the first group join is slow
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "share.coordinator.state.topic.num.partitions=1",
        # test knobs: no 3 s delay before the first rebalance; 2 MiB dedupe buffer (default OOMs small heaps)
        "group.initial.rebalance.delay.ms=0",
        "log.cleaner.dedupe.buffer.size=2097152",
        # a restarted broker waits for its previous registration's session to expire (default 9 s)
        "broker.session.timeout.ms=4000",
        "broker.heartbeat.interval.ms=1000",
        "num.network.threads=2",
        "num.io.threads=2",
        "num.recovery.threads.per.data.dir=1",
        "",
    ]
    return "\n".join(lines)


def admin_client_properties(config: KafkaConfig) -> str:
    """The admin principal's client properties for the Kafka CLIs (`--command-config`; pure)."""
    security = config.security
    if security is None:
        return "security.protocol=PLAINTEXT\n"
    return "\n".join(
        [
            "security.protocol=SASL_SSL",
            f"sasl.mechanism={SCRAM_MECHANISM}",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f"username={_jaas_value(ADMIN_USER)} password={_jaas_value(security.admin_password)};",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={security.truststore}",
            "",
        ]
    )


def admin_client_kwargs(config: KafkaConfig) -> dict[str, Any]:
    """aiokafka keyword arguments of the admin principal (bootstrap included)."""
    kwargs: dict[str, Any] = {"bootstrap_servers": config.bootstrap}
    security = config.security
    if security is not None:
        kwargs |= {
            "security_protocol": "SASL_SSL",
            "ssl_context": ssl.create_default_context(cafile=str(security.truststore)),
            "sasl_mechanism": SCRAM_MECHANISM,
            "sasl_plain_username": ADMIN_USER,
            "sasl_plain_password": security.admin_password,
        }
    return kwargs


def scram_arguments(users: dict[str, str]) -> list[str]:
    """`kafka-storage format` arguments creating a SCRAM-SHA-512 credential per user (pure)."""
    arguments: list[str] = []
    for name, password in sorted(users.items()):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not re.fullmatch(r"[A-Za-z0-9_-]+", password):
            raise StackError(f"SCRAM user {name!r}: names and passwords are limited to [A-Za-z0-9_.-]")
        arguments += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
    return arguments


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as StorageTool makes)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")


def pom_digest(pom: Path) -> str:
    """The digest the libs marker records: the pom's, and the checked list's next to it."""
    digest = hashlib.sha256(pom.read_bytes())
    checksums = pom.with_name(CHECKSUMS_FILE)
    if checksums.exists():
        digest.update(checksums.read_bytes())
    return digest.hexdigest()


def read_checksums(path: Path) -> dict[str, str]:
    """`sha256sum` lines (`<hex>  <file name>`, `#` comments) -> {file name: hex} (pure parse)."""
    expected: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            expected[name.strip().lstrip("*")] = digest.lower()
    return expected


def checksum_problems(directory: Path, expected: dict[str, str]) -> list[str]:
    """Every jar in `directory` that is not listed in `expected` or whose SHA-256 differs, and every
    listed jar that is missing; empty when the directory holds exactly the listed jars."""
    problems = []
    found = {path.name: path for path in directory.glob("*.jar")}
    for name, path in sorted(found.items()):
        if name not in expected:
            problems.append(f"{name}: not in the checked list")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != expected[name]:
            problems.append(f"{name}: SHA-256 differs from the checked list")
    problems += [f"{name}: listed but missing" for name in sorted(set(expected) - set(found))]
    return problems


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, also when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


async def broker_metadata_ok(
    bootstrap: str, timeout_s: float = 5.0, client_kwargs: dict[str, Any] | None = None
) -> bool:
    """True when the broker answers a metadata request listing at least one (unfenced) broker
    (`client_kwargs`: how to authenticate, for a secured broker)."""
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import KafkaError

    options = {"bootstrap_servers": bootstrap, **(client_kwargs or {})}
    client = AIOKafkaClient(**options, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return bool(client.cluster.brokers())
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await client.close()


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise StackError("java not found on PATH (Kafka 4.0 needs Java 17+); install a JDK or set JAVA_HOME")
    return found


class KafkaNode:
    """One local broker under `<root>/kafka`, logging to `<logs_dir>`."""

    def __init__(
        self, root: Path, logs_dir: Path, config: KafkaConfig, pom: Path, log4j_config: Path
    ) -> None:
        self.config = config
        self.home = root / "kafka"
        self.libs = self.home / "libs"
        self.data = self.home / "data"
        self.properties = self.home / "server.properties"
        self.pid_file = self.home / "kafka.pid"
        self.cluster_id_file = self.home / "cluster.id"
        self.secure_marker = self.home / "secured"
        """Written when the storage was formatted secured (with its SCRAM users): the directory's mode."""
        self.admin_properties = self.home / "admin.properties"
        self.logs_dir = logs_dir
        self.log_file = logs_dir / "kafka.log"
        self.out_file = logs_dir / "kafka.out"
        self.pom = pom
        self.log4j_config = log4j_config

    # -- state -----------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The broker's pid when the pid file names a live process of ours, else None."""
        pid = read_pid(self.pid_file)
        return pid if is_our_process(pid, (KAFKA_MAIN, str(self.properties))) else None

    def port_answers(self) -> bool:
        return port_answers(self.config.host, self.config.port)

    def is_running(self) -> bool:
        return self.pid() is not None and self.port_answers()

    def libs_current(self) -> bool:
        marker = self.libs / LIBS_MARKER
        try:
            recorded = marker.read_text(encoding="utf-8").strip()
        except OSError:
            return False
        return recorded == pom_digest(self.pom) and any(self.libs.glob("kafka_2.13-*.jar"))

    # -- lifecycle -------------------------------------------------------------------------
    def ensure_libs(self, timeout_s: float = 900.0) -> bool:
        """Resolve the broker jars with Maven (`-C`: strict checksums) unless the marker matches the pom
        and the checked list; True if Maven ran. Raises StackError when a jar is not exactly one of
        `kafka-jars.sha256` (tampered, unlisted or missing), leaving no jars in place."""
        if self.libs_current():
            return False
        mvn = shutil.which("mvn")
        if not mvn:
            raise StackError("mvn not found on PATH: it is needed once to fetch the Kafka jars")
        staging = self.home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        argv = [  # -C: fail on a checksum mismatch with the repository's instead of warning
            mvn, "-B", "-q", "-C", "-f", str(self.pom), MAVEN_DEPENDENCY_PLUGIN,
            "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
        ]  # fmt: skip
        logger.info("resolving Kafka jars with Maven into %s", self.libs)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as error:
            raise StackError(f"Maven did not finish within {timeout_s:.0f} s") from error
        if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            output = (done.stdout + done.stderr)[-4000:]
            raise StackError(f"Maven could not resolve the Kafka jars (exit {done.returncode}):\n{output}")
        checksums = self.pom.with_name(CHECKSUMS_FILE)
        problems = checksum_problems(staging, read_checksums(checksums)) if checksums.exists() else []
        if problems:
            shutil.rmtree(staging, ignore_errors=True)
            raise StackError(f"Kafka jars refused ({checksums.name}): " + "; ".join(problems[:10]))
        (staging / LIBS_MARKER).write_text(pom_digest(self.pom) + "\n", encoding="utf-8")
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.replace(self.libs)
        return True

    def _jvm(self, *extra: str) -> list[str]:
        return [
            java_executable(),
            *extra,
            *JVM_OPTS,
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            "-cp",
            f"{self.libs}/*",
        ]

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        for path, text in (
            (self.properties, render_server_properties(self.config, self.data)),
            (self.admin_properties, admin_client_properties(self.config)),
        ):
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold the admin password
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            tmp.replace(path)

    def formatted_secured(self) -> bool | None:
        """None before the storage is formatted, else whether it was formatted secured."""
        if not (self.data / "meta.properties").exists():
            return None
        return self.secure_marker.exists()

    def format_storage_if_needed(self, scram_users: dict[str, str] | None = None) -> bool:
        """Format the KRaft log directory once (with a SCRAM-SHA-512 credential per `scram_users`
        entry when secured); True when it formatted now. Raises StackError when the directory was
        formatted in the other mode (a plaintext stack's data has no users to authenticate)."""
        secured = self.config.security is not None
        formatted = self.formatted_secured()
        if formatted is not None:
            if formatted != secured:
                raise StackError(
                    f"the Kafka data in {self.data} was formatted "
                    f"{'secured' if formatted else 'without --secure'}; use another stack directory "
                    "(--dir) or stop the stack and delete that directory"
                )
            return False
        if not self.cluster_id_file.exists():
            self.cluster_id_file.write_text(new_cluster_id() + "\n", encoding="utf-8")
        cluster_id = self.cluster_id_file.read_text(encoding="utf-8").strip()
        if secured:  # before formatting: a half-formatted directory is never taken for plaintext
            self.secure_marker.write_text("SASL_SSL SCRAM-SHA-512\n", encoding="utf-8")
        else:
            self.secure_marker.unlink(missing_ok=True)
        argv = [
            *self._jvm("-Xmx256m"), STORAGE_TOOL, "format",
            "-t", cluster_id, "-c", str(self.properties), "--ignore-formatted",
            *(scram_arguments(scram_users or {}) if secured else []),
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise StackError(
                f"kafka storage format failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return True

    def spawn(self) -> int:
        """Start the broker detached (own session), record its pid; does not wait for readiness."""
        if port_answers(self.config.host, self.config.port) or port_answers(
            self.config.host, self.config.controller_port
        ):
            raise StackError(
                f"port {self.config.port} or {self.config.controller_port} on {self.config.host} is taken "
                "by a process this stack did not start; choose other ports (--kafka-port/--controller-port)"
            )
        argv = [*self._jvm(*HEAP_OPTS), KAFKA_MAIN, str(self.properties)]
        with self.out_file.open("ab") as out:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,
                close_fds=True,
            )
        write_pid(self.pid_file, process.pid)
        return process.pid

    def wait_ready(self, pid: int, timeout_s: float) -> None:
        """Wait until the broker answers metadata; raise StackError (with the log tail) otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not is_our_process(pid, (KAFKA_MAIN,)):
                raise StackError(f"Kafka exited during start-up.\n{self.log_tails()}")
            if self.port_answers() and run_coroutine(
                lambda: broker_metadata_ok(
                    self.config.bootstrap, client_kwargs=admin_client_kwargs(self.config)
                )
            ):
                return
            time.sleep(0.25)
        raise StackError(f"Kafka did not answer metadata within {timeout_s:.0f} s.\n{self.log_tails()}")

    def log_tails(self) -> str:
        return (
            f"--- {self.log_file} (tail) ---\n{tail(self.log_file)}\n"
            f"--- {self.out_file} (tail) ---\n{tail(self.out_file, 20)}"
        )

    def stop(self, timeout_s: float = 60.0) -> bool:
        """SIGTERM the broker (clean shutdown hook), SIGKILL after `timeout_s`; True if one was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        if not terminate(pid, timeout_s):
            raise StackError(f"Kafka (pid {pid}) survived SIGTERM and SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        return True
