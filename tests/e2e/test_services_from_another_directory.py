"""The services as an operator starts them: from another working directory, with LOG_FORMAT=json.

Real processes on the real stack: the ConnectWise simulator, then `contract-sync run` (writer,
mapper, poller with every default: no MAPPER_DATADIR, no --log-dir), both started with an empty,
unrelated working directory, HOME-independent state under XDG_STATE_HOME. The services must become
ready and import the simulator's agreements, leave the working directory untouched, and write
nothing but JSON lines - also when uvicorn has something to say (an invalid HTTP request).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from devtools.demo.pipeline import LocalPipeline, PipelineOptions, tenants_toml
from services.launcher.group import contract_sync_command, wait_until

SERVICES = ("writer", "mapper", "poller")


@dataclass
class ForeignRun:
    cwd: Path
    state_dir: Path
    ready: bool
    catalog_rows: int
    exit_code: int | None
    outputs: dict[str, Path]
    """Every output file: each service's log (stdout+stderr), the simulator's, the launcher's own."""


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive ports on 127.0.0.1 that are free now (30000-32767)."""
    for _ in range(200):
        base = random.randint(30000, 32767 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no consecutive free ports")


def send_garbage(port: int) -> None:
    """An invalid HTTP request: uvicorn logs a warning about it."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as connection:
            connection.sendall(b"THIS IS NOT HTTP\r\n\r\n")
            connection.recv(1024)
    except OSError:
        pass


def readyz(port: int) -> bool:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200


@pytest.fixture(scope="module")
def foreign_run(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ForeignRun]:
    cwd = tmp_path_factory.mktemp("unrelated-cwd")
    state_home = tmp_path_factory.mktemp("xdg-state")
    work = tmp_path_factory.mktemp("foreign-run")
    tenant = f"cwd-{secrets.token_hex(4)}"
    options = PipelineOptions(
        tenant_id=tenant,
        work_dir=work,
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        companies=2,
        agreements_per_company=2,
        additions_per_agreement=1,
        poll_interval="2s",
        unique_groups=True,
        topic_prefix=f"{tenant}.",
        cwd=cwd,
    )
    pipeline = LocalPipeline(options)
    pipeline.create_topics()
    env = {k: v for k, v in {**os.environ, **pipeline.env}.items() if not k.startswith("CONTRACT_SYNC_STATE")}
    env.pop("MAPPER_DATADIR")  # the default is under test
    env |= {"XDG_STATE_HOME": str(state_home), "LOG_FORMAT": "json"}
    base = consecutive_free_ports(5)  # health of writer, mapper, poller, gateway; the gateway's API
    launcher_out, launcher_err = work / "run.stdout", work / "run.stderr"
    run: subprocess.Popen[bytes] | None = None
    try:
        pipeline.start_simulator()
        pipeline.config_path.write_text(tenants_toml(options, pipeline.sim_site))
        with launcher_out.open("wb") as out, launcher_err.open("wb") as err:
            run = subprocess.Popen(
                contract_sync_command(
                    "run",
                    "--config",
                    str(pipeline.config_path),
                    "--health-port-base",
                    str(base),
                    "--gateway-port",
                    str(base + 4),
                ),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        ports = range(base, base + 4)
        ready = wait_until(lambda: all(readyz(p) for p in ports), timeout_s=120, interval_s=0.5)
        engine = sa.create_engine(database_url)
        count_sql = sa.text("SELECT count(*) FROM catalog_items WHERE tenant_id = :t")

        def catalog_rows() -> int:
            with engine.connect() as connection:
                return int(connection.execute(count_sql, {"t": tenant}).scalar_one())

        wait_until(lambda: catalog_rows() > 0, timeout_s=60 if ready else 1, interval_s=0.5)
        rows = catalog_rows()
        with engine.begin() as connection:
            for table in ("catalog_items", "poller_snapshots", "poller_cursors"):
                connection.execute(sa.text(f"DELETE FROM {table} WHERE tenant_id = :t"), {"t": tenant})
        engine.dispose()
        for port in [*ports, pipeline.sim_port]:
            send_garbage(port)
        run.send_signal(signal.SIGTERM)
        exit_code = run.wait(timeout=60)
        logs = state_home / "contract-sync" / "logs"
        outputs = {name: logs / f"{name}.log" for name in SERVICES} | {
            "cw-sim": work / "logs" / "cw-sim.log",
            "run (stdout)": launcher_out,
            "run (stderr)": launcher_err,
        }
        pipeline.stop()  # the simulator: its log is complete only after it stopped
        yield ForeignRun(cwd, state_home / "contract-sync", ready, rows, exit_code, outputs)
    finally:
        if run is not None and run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        pipeline.stop()
        pipeline.delete_topics()


def test_writer_mapper_and_poller_run_and_sync_from_an_unrelated_working_directory(
    foreign_run: ForeignRun,
) -> None:
    tails = {
        name: path.read_text(errors="replace")[-3000:]
        for name, path in foreign_run.outputs.items()
        if path.exists()
    }

    assert foreign_run.ready, f"not ready within 120 s: {tails}"
    assert foreign_run.catalog_rows > 0, f"nothing imported: {tails}"
    assert foreign_run.exit_code == 0, tails


def test_the_services_leave_the_working_directory_untouched_and_keep_state_in_the_state_directory(
    foreign_run: ForeignRun,
) -> None:
    assert list(foreign_run.cwd.iterdir()) == []
    assert (foreign_run.state_dir / "mapper").is_dir()
    assert sorted(p.name for p in (foreign_run.state_dir / "logs").iterdir()) == [
        "gateway.log",
        "mapper.log",
        "poller.log",
        "writer.log",
    ]


@pytest.mark.parametrize("output", [*SERVICES, "cw-sim", "run (stdout)", "run (stderr)"])
def test_every_line_every_service_writes_is_one_json_object_with_log_format_json(
    foreign_run: ForeignRun, output: str
) -> None:
    lines = foreign_run.outputs[output].read_text(encoding="utf-8", errors="replace").splitlines()

    not_json = []
    for number, line in enumerate(lines, 1):
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            not_json.append((number, line[:200]))
    assert not not_json, f"{output}: lines that are not one JSON object: {not_json[:10]}"
    if output in SERVICES:
        assert len(lines) > 0, f"{output} logged nothing"
