"""A real faust worker subprocess round-trips messages through the real broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

HERE = Path(__file__).resolve().parent
ROUND_TRIP_DEADLINE_S = 90.0  # includes the worker's start-up and first group join on 2 cores


class EchoWorker:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, in_topic: str, out_topic: str) -> None:
        self.process = process
        self.log = log
        self.in_topic = in_topic
        self.out_topic = out_topic

    async def wait_ready(self, timeout_s: float = ROUND_TRIP_DEADLINE_S) -> None:
        """Wait for faust's `[^Worker]: Ready` line (agents started, partitions assigned)."""
        async with asyncio.timeout(timeout_s):
            while "[^Worker]: Ready" not in self.log.read_text(encoding="utf-8", errors="replace"):
                assert self.process.poll() is None, f"worker exited:\n{self.log_tail()}"
                await asyncio.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
async def echo_worker(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    make_topic: Callable[..., Awaitable[str]],
    tmp_path: Path,
) -> AsyncIterator[EchoWorker]:
    in_topic, out_topic = await make_topic("echo-in"), await make_topic("echo-out")
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ECHO_APP_ID": unique_name("echo-app"),
        "ECHO_IN_TOPIC": in_topic,
        "ECHO_OUT_TOPIC": out_topic,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [
        sys.executable, "-m", "faust", "-A", "faust_echo_app", "--datadir", str(tmp_path / "data"),
        "worker", "--without-web", "-l", "info",
    ]  # fmt: skip
    with log.open("wb") as out:
        # Popen only forks (no waiting here); every wait runs in a thread
        process = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    worker = EchoWorker(process, log, in_topic, out_topic)
    try:
        yield worker
    finally:
        await asyncio.to_thread(stop, process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait; SIGKILL only if the worker ignores it for 30 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


async def test_faust_worker_echoes_each_message_to_its_output_topic(
    kafka_bootstrap: str, echo_worker: EchoWorker
) -> None:
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(5)}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in sent.items():
            await producer.send_and_wait(echo_worker.in_topic, key=key, value=value)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        echo_worker.out_topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    received: dict[bytes, bytes] = {}
    try:
        async with asyncio.timeout(ROUND_TRIP_DEADLINE_S):
            while len(received) < len(sent):
                assert echo_worker.process.poll() is None, f"worker exited:\n{echo_worker.log_tail()}"
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    received.update((record.key, record.value) for record in records)
    except TimeoutError:
        pytest.fail(f"no echo within {ROUND_TRIP_DEADLINE_S} s; worker log:\n{echo_worker.log_tail()}")
    finally:
        await consumer.stop()

    assert received == {key: b"echo:" + value for key, value in sent.items()}


async def test_faust_worker_stops_cleanly_on_sigterm(echo_worker: EchoWorker) -> None:
    """SIGTERM is the documented graceful stop; a running worker must exit 0 by itself."""
    await echo_worker.wait_ready()
    echo_worker.process.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.to_thread(echo_worker.process.wait, 30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker ignored SIGTERM for 30 s:\n{echo_worker.log_tail()}")
    assert code == 0, f"exit code {code}:\n{echo_worker.log_tail()}"
    assert "[^Worker]: Stopping..." in echo_worker.log_tail(200)
