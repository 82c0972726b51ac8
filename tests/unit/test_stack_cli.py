"""The stack CLI and LocalStack on a stack directory where nothing runs (no services started)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack import LocalStack
from services.cli import main


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def ports() -> list[str]:
    return [
        "--kafka-port",
        str(free_port()),
        "--controller-port",
        str(free_port()),
        "--pg-port",
        str(free_port()),
    ]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A stack dir others can enter (pytest's tmp_path is below a mode-700 dir, which would make
    a root run keep PostgreSQL's files in the /var/tmp fallback instead)."""
    base = Path(tempfile.mkdtemp(prefix="cs-stack-test-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


@pytest.fixture
def unrelated_process() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_status_reports_both_stopped_and_exits_3(
    tmp_path: Path, ports: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["stack", "status", "--dir", str(tmp_path), *ports])

    lines = capsys.readouterr().out.splitlines()
    assert code == 3
    assert [line.split()[:2] for line in lines] == [["kafka", "stopped"], ["postgres", "stopped"]]


def test_env_prints_the_endpoints_recorded_in_the_chosen_directory_not_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "stack.env").write_text(
        "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:31092\n"
        "DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:31432/contract_sync\n"
    )
    monkeypatch.setenv("CONTRACT_SYNC_STACK_DIR", str(tmp_path))
    monkeypatch.setenv("CONTRACT_SYNC_KAFKA_PORT", "29092")  # someone else's stack
    monkeypatch.setenv("CONTRACT_SYNC_PG_PORT", "25432")

    code = main(["stack", "env"])

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:31092",
        "export DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:31432/contract_sync",
    ]


def test_env_fails_and_says_so_for_a_directory_where_no_stack_was_started(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["stack", "env", "--dir", str(tmp_path)])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert "stack.env" in captured.err and "stack up" in captured.err


def test_down_with_nothing_running_succeeds_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["stack", "down", "--dir", str(tmp_path), "--kafka-port", str(free_port())])

    out = capsys.readouterr().out
    assert code == 0
    assert "kafka was not running" in out
    assert "postgres was not running" in out


def test_stale_pid_files_never_make_the_stack_stop_an_unrelated_process(
    open_dir: Path, ports: list[str], unrelated_process: subprocess.Popen[bytes]
) -> None:
    stack = LocalStack(
        open_dir, kafka_port=int(ports[1]), controller_port=int(ports[3]), pg_port=int(ports[5])
    )
    stack.kafka.home.mkdir(parents=True)
    stack.kafka.pid_file.write_text(f"{unrelated_process.pid}\n")
    stack.postgres.data.mkdir(parents=True)
    (stack.postgres.data / "postmaster.pid").write_text(f"{unrelated_process.pid}\n{stack.postgres.data}\n")

    assert [component.running for component in stack.status()] == [False, False]
    stack.down()

    assert unrelated_process.poll() is None  # still alive
    assert not stack.postgres.relocated
