"""Process helpers: liveness, ownership by command-line markers, graceful then forced stop."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack.process import is_alive, is_our_process, port_answers, read_pid, terminate, write_pid

IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "marker-abc"])
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_pid_file_round_trips_and_garbage_reads_as_none(tmp_path: Path) -> None:
    pid_file = tmp_path / "x" / "svc.pid"
    assert read_pid(pid_file) is None

    write_pid(pid_file, 4242)
    assert read_pid(pid_file) == 4242

    pid_file.write_text("not a pid\n")
    assert read_pid(pid_file) is None


def test_a_live_process_is_ours_only_when_its_command_line_has_every_marker(
    sleeper: subprocess.Popen[bytes],
) -> None:
    assert is_our_process(sleeper.pid, ("marker-abc",))
    assert is_our_process(sleeper.pid, ("marker-abc", "time.sleep"))
    assert not is_our_process(sleeper.pid, ("marker-abc", "kafka.Kafka"))
    assert not is_our_process(None, ())


def test_an_exited_unreaped_process_counts_as_dead(sleeper: subprocess.Popen[bytes]) -> None:
    sleeper.kill()
    time.sleep(0.3)  # now a zombie: /proc entry exists, but it is not running

    assert not is_alive(sleeper.pid)
    assert not is_our_process(sleeper.pid, ("marker-abc",))


def test_terminate_stops_a_process_with_sigterm_first(tmp_path: Path) -> None:
    note = tmp_path / "note"
    code = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (open({str(note)!r}, 'w').write('term'), sys.exit(0)))\n"
        "print('ready', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"

    assert terminate(process.pid, timeout=10)

    assert not is_alive(process.pid)
    assert note.read_text() == "term"


def test_terminate_escalates_to_sigkill_when_sigterm_is_ignored() -> None:
    process = subprocess.Popen([sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"  # the handler is installed

    started = time.monotonic()
    assert terminate(process.pid, timeout=0.5)
    elapsed = time.monotonic() - started

    assert not is_alive(process.pid)
    assert 0.5 <= elapsed < 10  # waited out the SIGTERM grace period, then killed


def test_port_answers_only_while_something_listens() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    assert port_answers("127.0.0.1", port)

    server.close()
    assert not port_answers("127.0.0.1", port)
