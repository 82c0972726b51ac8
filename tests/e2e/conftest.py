"""The session's running pipeline for the end-to-end tests (see e2e_support.py for the helpers)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from e2e_support import E2E, KafkaTail, TailRecord, secured_stack

from devtools.demo.pipeline import LocalPipeline, PipelineOptions
from schemas.topics import DEADLETTER, SYNC_EVENTS


def _process_group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@pytest.fixture(scope="session")
def e2e(kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    """The session's pipeline on topics of its own (`{tenant}.psa.agreements.v1`, ...: the registry's
    specs under a prefix). Every pipeline's mapper and writer handle every tenant on the topics they
    read, so on the shared v1 topics a concurrent run (another suite, the demo) would also handle
    this session's commands and emit a second outcome event for each; and a new consumer group
    would first replay the topics' whole history."""
    secured = secured_stack()
    tenant = f"e2e-{secrets.token_hex(4)}"
    other_tenant = f"e2f-{secrets.token_hex(4)}"
    # A second tenant on the same simulator, active at the same time (the gateway isolation tests);
    # its id shares no prefix with `tenant`, so the tails below never keep its records.
    # On the secured stack every service runs as its own principal, whose ACLs name the registry's
    # topics and the default groups: the session uses those (the stack is its own, `make test`).
    topic_prefix = "" if secured else f"{tenant}."
    work_dir = Path(tmp_path_factory.mktemp("e2e-pipeline"))
    key_prefix = f"{tenant}:".encode()

    def ours(record: TailRecord) -> bool:
        return (record.key or b"").startswith(key_prefix) or tenant.encode() in record.value

    pipeline = LocalPipeline(
        PipelineOptions(
            tenant_id=tenant,
            work_dir=work_dir,
            kafka_bootstrap=kafka_bootstrap,
            database_url=database_url,
            seed=7,
            companies=3,
            agreements_per_company=4,
            additions_per_agreement=3,
            poll_interval="3s",
            auto_sync_interval="1s",
            reconcile_interval="3s",
            unique_groups=not secured,
            service_principals=secured,
            extra_env={"MAPPER_DATADIR": str(work_dir / "mapper-data")} if secured else {},
            topic_prefix=topic_prefix,
            extra_tenants=(other_tenant,),
            gateway=True,
        )
    )
    pipeline.create_topics()
    events_tail = KafkaTail(kafka_bootstrap, f"{topic_prefix}{SYNC_EVENTS}", ours)
    deadletter_tail = KafkaTail(kafka_bootstrap, f"{topic_prefix}{DEADLETTER}", ours)
    harness = E2E(pipeline, events_tail, deadletter_tail)
    try:
        pipeline.start()
        yield harness
    finally:
        pids = [m.pid for m in pipeline.group.members.values() if m.pid]
        pipeline.stop()
        events_tail.close()
        deadletter_tail.close()
        pipeline.delete_topics()
        engine = sa.create_engine(database_url)
        with engine.begin() as connection:
            for table in ("poller_snapshots", "poller_cursors"):
                for t in (tenant, other_tenant):
                    connection.execute(sa.text(f"DELETE FROM {table} WHERE tenant_id = :t"), {"t": t})
        engine.dispose()
        left = [pid for pid in pids if not _process_group_gone(pid)]
        assert not left, f"processes of the pipeline left running after stop(): {left}"
        assert not any(pipeline.alive().values()), pipeline.alive()
