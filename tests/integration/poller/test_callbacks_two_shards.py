"""Two poller processes as two shards (`POLLER_SHARD=0/2` and `1/2`) with their callback endpoints
on: a genuine ConnectWise callback that reaches the replica not polling its tenant is forwarded
through `sync.commands.v1` and re-read by the owning shard."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from poller_support import KafkaTap, start_poller_process, unique_tenant, write_tenants_toml_for

from devtools.cwsim.testing import SimHandle
from schemas.commands import RefreshCommand
from schemas.envelope import CloudEvent
from schemas.topics import SYNC_COMMANDS
from services.launcher.group import free_port
from services.poller.tenants import shard_of


def tenant_of_shard(shard: int) -> str:
    """A fresh tenant id that `shard_of(_, 2)` puts on `shard`."""
    while True:
        tenant_id = unique_tenant("proc")
        if shard_of(tenant_id, 2) == shard:
            return tenant_id


async def wait_listening(port: int, process: subprocess.Popen[bytes], deadline_s: float = 30.0) -> None:
    async with asyncio.timeout(deadline_s):
        while True:
            assert process.poll() is None, "the poller process exited"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                await asyncio.sleep(0.2)


def completed(events: list[CloudEvent], count: int = 1) -> bool:
    return sum(e.type == "sync.poll.completed" for e in events) >= count


def observed(agreement_id: int) -> Callable[[list[CloudEvent]], bool]:
    return lambda events: any(
        e.type == "psa.agreement.observed" and e.data.agreement.id == agreement_id  # type: ignore[attr-defined]
        for e in events
    )


@pytest.fixture
async def commands_tap(kafka_bootstrap: str) -> AsyncIterator[KafkaTap]:
    t = KafkaTap(kafka_bootstrap, topics=(SYNC_COMMANDS,))
    await t.start()
    yield t
    await t.stop()


async def test_a_callback_reaching_the_replica_of_the_other_shard_is_forwarded_and_reread_by_the_owner(
    sim: SimHandle,
    tap: KafkaTap,
    commands_tap: KafkaTap,
    kafka_bootstrap: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    on_shard = [tenant_of_shard(0), tenant_of_shard(1)]
    config = tmp_path / "tenants.toml"
    secrets = write_tenants_toml_for(config, sim, on_shard, poll_interval="1h", reconcile_interval="1d")
    group = f"it-poller-{uuid.uuid4().hex[:8]}"  # the shards read commands in {group}-0of2 and -1of2
    ports = [free_port(), free_port()]
    processes = [
        start_poller_process(
            config,
            secrets,
            kafka_bootstrap,
            database_url,
            POLLER_SHARD=f"{index}/2",
            POLLER_CALLBACKS_PORT=str(ports[index]),
            POLLER_CALLBACKS_HOST="127.0.0.1",
            POLLER_COMMANDS_GROUP=group,
        )
        for index in (0, 1)
    ]
    try:
        for tenant_id in on_shard:
            await tap.wait_for(tenant_id, completed, deadline_s=60)
        for port, process in zip(ports, processes, strict=True):
            await wait_listening(port, process)
        with sim.client() as http:
            company_id = http.get("/finance/agreements", params={"pageSize": 1}).json()[0]["company"]["id"]
            for index, tenant_id in enumerate(on_shard):  # each tenant's callback goes to the OTHER replica
                wrong_replica = ports[1 - index]
                registration = {
                    "url": f"http://127.0.0.1:{wrong_replica}/callbacks/{tenant_id}",
                    "objectId": company_id,
                    "type": "agreement",
                    "level": "company",
                }
                assert http.post("/system/callbacks", json=registration).status_code == 201
        created = sim.control.create_agreement(company_id, name="callback across shards", billAmount=1)
        new_id = int(created["id"])

        for tenant_id in on_shard:  # only the callback can bring it: the next poll is an hour away
            await tap.wait_for(tenant_id, observed(new_id), deadline_s=60)
        await commands_tap.wait_for(
            on_shard[0], lambda ev: any(isinstance(e, RefreshCommand) for e in ev), deadline_s=10
        )
        await commands_tap.wait_for(
            on_shard[1], lambda ev: any(isinstance(e, RefreshCommand) for e in ev), deadline_s=10
        )
        await tap.settle(1.0)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [await asyncio.to_thread(process.wait, 30) for process in processes]
    assert codes == [0, 0]
    for tenant_id in on_shard:
        hints = [e for e in commands_tap.of(tenant_id) if isinstance(e, RefreshCommand)]
        assert hints and {(h.data.agreement_id, h.data.client_id) for h in hints} == {(new_id, "*")}
        assert [e.data.agreement.id for e in tap.of(tenant_id, "psa.agreement.observed")].count(new_id) == 1  # type: ignore[attr-defined]
