"""Process and port helpers for the local stack: pid files, liveness, ownership, graceful stop.

Everything here works on one pid at a time; nothing matches processes by name, so
stopping the stack can never touch a process it did not start. Linux only (reads /proc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterable
from pathlib import Path


def read_pid(pid_file: Path) -> int | None:
    """The pid stored in `pid_file` (first line), or None when missing or unreadable."""
    try:
        first = pid_file.read_text(encoding="utf-8").split()[0]
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


def write_pid(pid_file: Path, pid: int) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_suffix(pid_file.suffix + ".tmp")
    tmp.write_text(f"{pid}\n", encoding="utf-8")
    tmp.replace(pid_file)


def process_cmdline(pid: int) -> list[str] | None:
    """argv of a live (non-zombie) process, or None when it does not exist or has exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # the state letter follows the parenthesised command name, which may itself contain ')'
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    if state in {"Z", "X"}:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def is_alive(pid: int) -> bool:
    return process_cmdline(pid) is not None


def is_our_process(pid: int | None, markers: Iterable[str]) -> bool:
    """True when `pid` is alive and its command line contains every marker.

    The markers (e.g. the main class and our config path) protect against a stale pid
    file whose number was recycled by an unrelated process.
    """
    if pid is None or pid <= 0:
        return False
    argv = process_cmdline(pid)
    if argv is None:
        return False
    joined = " ".join(argv)
    return all(marker in joined for marker in markers)


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to host:port succeeds within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until `pid` has exited (reaping it if it is our child); True when gone in time."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        if not is_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def terminate(pid: int, timeout: float = 30.0, first_signal: int = signal.SIGTERM) -> bool:
    """Send `first_signal` to `pid`, wait up to `timeout` s, then SIGKILL and wait again.

    Returns True when the process is gone afterwards. A pid that is already gone is a no-op
    (True). Only ever signals this one pid, never a group.
    """
    if not is_alive(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first_signal)
    if wait_gone(pid, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return wait_gone(pid, 10.0)


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file ('' when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
