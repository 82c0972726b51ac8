"""A group of child processes started together and stopped together.

Guarantees:
- every child runs in its own session with stdout/stderr in a log file under `log_dir`;
- `stop()` sends SIGTERM to each child still running, waits up to `grace_s`, then SIGKILLs, and
  reaps them all: after `stop()` returns no child of the group is left;
- `stop()` is idempotent and also runs from the context manager's exit and on `atexit`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.25) -> bool:
    """Poll `predicate` until it is true (returns True) or the deadline passes (returns False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def contract_sync_command(*args: str) -> list[str]:
    """The command line that runs `contract-sync ARGS` with this interpreter."""
    return [sys.executable, "-m", "services.cli", *args]


@dataclass
class ServiceProcess:
    name: str
    argv: list[str]
    log_path: Path
    health_port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        """Alive, and `/readyz` answers 200 when the process has a health port."""
        if not self.alive():
            return False
        if self.health_port is None:
            return True
        try:
            return httpx.get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ProcessGroup:
    """Start named child processes; stop them all (SIGTERM, then SIGKILL) exactly once."""

    def __init__(
        self,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        grace_s: float = 20.0,
        cwd: Path | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.cwd = cwd
        """Working directory of the children (None: this process's)."""
        self.env = {**os.environ, **(env or {})}
        self.grace_s = grace_s
        self.members: dict[str, ServiceProcess] = {}
        log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        health_port: int | None = None,
    ) -> ServiceProcess:
        member = ServiceProcess(name, list(argv), self.log_dir / f"{name}.log", health_port)
        member._log = member.log_path.open("ab")
        child_env = {**self.env, **(env or {})}
        if health_port is not None:
            child_env["HEALTH_PORT"] = str(health_port)
        member.process = subprocess.Popen(
            member.argv,
            stdin=subprocess.DEVNULL,
            stdout=member._log,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=self.cwd,
            start_new_session=True,
        )
        self.members[name] = member
        return member

    def stop_member(self, name: str, *, kill: bool = False) -> None:
        """Stop one member (SIGKILL at once with `kill`), wait for it and close its log."""
        member = self.members.get(name)
        if member is None or member.process is None:
            return
        if member.alive():
            member.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                member.process.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait(timeout=10)
        if member._log is not None:
            member._log.close()
            member._log = None

    def stop(self) -> None:
        for member in self.members.values():
            if member.alive() and member.process is not None:
                member.process.send_signal(signal.SIGTERM)
        for name in list(self.members):
            self.stop_member(name)

    def detach(self) -> None:
        """Leave the members running (they are in their own sessions) and forget them."""
        atexit.unregister(self.stop)
        for member in self.members.values():
            if member._log is not None:
                member._log.close()
                member._log = None
        self.members.clear()

    def dead(self) -> list[ServiceProcess]:
        return [m for m in self.members.values() if not m.alive()]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
