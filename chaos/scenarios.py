"""The fault schedules of `make chaos`, each run during a large import (see `chaos.harness`).

Every schedule runs in its own thread, injects its faults at random moments of the import and
returns a one-line description of what it injected. The harness restores everything afterwards.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import sqlalchemy as sa

from chaos.fuzz import Target, ghost_settings_rows, run_fuzz, tenants_digest
from chaos.harness import HOSTILE_NAMES, ChaosRun, Scenario, Workload
from chaos.security import callback_checks, capture_genuine_callback

KILLS_PER_SERVICE = 5


def sigkill(kills_per_service: int = KILLS_PER_SERVICE, gap_s: tuple[float, float] = (3.0, 7.0)) -> Scenario:
    """SIGKILL poller, mapper and writer in a random order at random moments; restart each after 0-3 s."""

    def schedule(run: ChaosRun, stop: threading.Event) -> str:
        rng = random.Random()
        order = [name for name in ("poller", "mapper", "writer") for _ in range(kills_per_service)]
        rng.shuffle(order)
        done: Counter[str] = Counter()
        stop.wait(rng.uniform(2, 5))
        for name in order:
            run.kill(name)
            done[name] += 1
            time.sleep(rng.uniform(0.0, 3.0))
            run.restart(name)
            stop.wait(rng.uniform(*gap_s))
        return "SIGKILL " + ", ".join(f"{name} x{count}" for name, count in sorted(done.items()))

    return Scenario("sigkill", schedule)


def kafka_restart(outages: int = 2, down_s: float = 10.0) -> Scenario:
    """Stop the (private) broker mid-stream for `down_s`, start it again; `outages` times."""

    def schedule(run: ChaosRun, stop: threading.Event) -> str:
        rng = random.Random()
        took = []
        for _ in range(outages):
            stop.wait(rng.uniform(5, 12))
            run.stack.stop_kafka()
            time.sleep(down_s)
            began = time.monotonic()
            run.stack.start_kafka()
            took.append(time.monotonic() - began)
        return f"Kafka broker stopped {outages}x for {down_s:.0f} s (restart {max(took):.0f} s)"

    return Scenario("kafka-restart", schedule)


def postgres_restart(outages: int = 2, down_s: float = 10.0) -> Scenario:
    """Stop the (private) PostgreSQL mid-stream for `down_s`, start it again; `outages` times."""

    def schedule(run: ChaosRun, stop: threading.Event) -> str:
        rng = random.Random()
        for _ in range(outages):
            stop.wait(rng.uniform(5, 12))
            run.stack.stop_postgres()
            time.sleep(down_s)
            run.stack.start_postgres()
        return f"PostgreSQL stopped {outages}x for {down_s:.0f} s"

    return Scenario("postgres-restart", schedule)


def connectwise_faults(period_s: float = 120.0, max_s: float = 300.0) -> Scenario:
    """From the import's first request (set before the services start) for `period_s`: 20 % 5xx,
    ~10 % 429 with Retry-After (a 1-second request budget steered to that share), latency and
    spikes, timeouts (hang then drop); one 401 period and one 403 period inside it."""
    began: dict[str, float] = {}

    def pre_start(run: ChaosRun) -> None:
        control = run.pipeline.control
        control.call("DELETE", "/stats")
        control.call(
            "POST",
            "/faults",
            {
                "error_rate": 0.2,
                "latency_ms": 5,
                "spike_rate": 0.05,
                "spike_ms": 1500,
                "timeout_rate": 0.01,
                "timeout_hang_s": 5,
            },
        )
        control.call("POST", "/budget", {"requests_per_minute": 40, "window_s": 1})
        began["t"] = time.monotonic()

    def schedule(run: ChaosRun, stop: threading.Event) -> str:
        control = run.pipeline.control
        start = began.get("t", time.monotonic())
        budget = 40
        forced: dict[str, float] = {}
        ok_after_401: int | None = None
        # 401 after 20 s; 403 once the poller works again after its 401 pause (it pauses >= 1 min)
        while not stop.is_set():
            stop.wait(3)
            elapsed = time.monotonic() - start
            stats = control.call("GET", "/stats")
            ok = int(stats.get("by_status", {}).get("200", 0))
            if elapsed > 20 and "401" not in forced:
                control.call("POST", "/faults", {"force_401_s": 8})
                forced["401"] = elapsed
            elif "401" in forced and ok_after_401 is None and elapsed > forced["401"] + 10:
                ok_after_401 = ok
            elif ok_after_401 is not None and "403" not in forced and ok > ok_after_401 + 20:
                control.call("POST", "/faults", {"force_403_s": 8})
                forced["403"] = elapsed
            if elapsed > max_s or (elapsed > period_s and "403" in forced and elapsed > forced["403"] + 15):
                break
            share = stats["throttled"] / max(1, stats["requests"])
            budget = max(5, int(budget * (1.15 if share > 0.12 else 0.87 if share < 0.08 else 1.0)))
            control.call("POST", "/budget", {"requests_per_minute": budget, "window_s": 1})
        stats = control.call("GET", "/stats")
        control.call("DELETE", "/faults")
        control.call("POST", "/budget", {"requests_per_minute": 0})
        by_status = stats.get("by_status", {})
        requests = max(1, int(stats["requests"]))

        def pct(*codes: str) -> str:
            return f"{100 * sum(int(by_status.get(c, 0)) for c in codes) / requests:.0f}%"

        return (
            f"{requests} ConnectWise requests in {time.monotonic() - start:.0f} s from the first: 5xx {pct('500', '502', '503', '504')}, "
            f"429 {pct('429')}, timeouts {by_status.get('0', 0)}, 401 {by_status.get('401', 0)}, "
            f"403 {by_status.get('403', 0)}, 5 % spikes of 1.5 s"
        )

    return Scenario("connectwise-faults", schedule, Workload(settle_deadline_s=480.0), pre_start=pre_start)


def mapper_rebalance(rounds: int = 2) -> Scenario:
    """Scale the mapper to two workers (same app id) mid-stream and back, `rounds` times."""

    def schedule(run: ChaosRun, stop: threading.Event) -> str:
        rng = random.Random()
        for index in range(rounds):
            stop.wait(rng.uniform(4, 10))
            member = f"mapper-{index + 2}"
            run.start_extra_mapper(member)
            stop.wait(rng.uniform(15, 25))
            run.stop_extra_mapper(member)
        return f"mapper scaled 1 -> 2 -> 1 workers {rounds}x (SIGTERM on scale-in)"

    return Scenario("mapper-rebalance", schedule)


def hostile_input(fuzz_count: int = 10_000) -> Scenario:
    """During the import: hostile-named agreements in ConnectWise (the workload), `fuzz_count`
    generated bad inputs on the topics, forged callbacks; other tenants' contracts must not change
    and every service must stay up (no restart by the supervisor)."""

    def schedule(run: ChaosRun, stop: threading.Event) -> str:
        engine = run.engine
        deadline = time.monotonic() + 180
        while len(run.existing_keys()) < 100 and time.monotonic() < deadline:
            stop.wait(1)
        with engine.connect() as connection:
            own = [
                (str(r[0]), str(r[1]))
                for r in connection.execute(
                    sa.text("SELECT client_id, contract_key FROM contracts WHERE tenant_id = :t LIMIT 500"),
                    {"t": run.tenant},
                )
            ]
            victims = [
                (str(r[0]), str(r[1]), str(r[2]))
                for r in connection.execute(
                    sa.text(
                        "SELECT tenant_id, client_id, contract_key FROM contracts WHERE tenant_id = ANY(:v) "
                        "ORDER BY contract_key LIMIT 500"
                    ),
                    {"v": run.victims},
                )
            ]
        if not victims:
            victims = [("victim-none", "1", "cw:victim-none:agreement:1")]
            run.notes.append("no victim tenant given: cross-tenant inputs aimed at a non-existent one")
        if not own:
            run.problems.append("no contract of the tenant existed after 180 s: fuzz not run")
            return "fuzz not run"
        clients = sorted({client for client, _ in own})
        before = tenants_digest(engine, run.victims)
        exits_before = sum(run.unexpected_exits.values())
        report, cases = run_fuzz(
            run.kafka, Target(run.tenant, clients, own, victims), fuzz_count, prefix=run.prefix
        )
        after = tenants_digest(engine, run.victims)
        report.ghost_rows = ghost_settings_rows(engine, cases)
        run.fuzz_report = report
        run.victims_unchanged = before == after
        if before != after:
            run.problems.append(
                f"other tenants' contracts changed during the fuzz ({before[0]} rows before, {after[0]} after)"
            )
        run.problems += report.problems()
        run.notes += report.examples[:6]
        alive = all(
            run.pipeline.alive().get(name, False) for name in ("poller", "mapper", "writer", "cw-sim")
        )
        exits = sum(run.unexpected_exits.values()) - exits_before
        if not alive or exits:
            run.problems.append(
                f"a service stopped during the fuzz (alive={run.pipeline.alive()}, exits={exits})"
            )
        run.fuzz_summary = (
            f"{report.inputs} hostile inputs ({dict(report.by_category)}): {report.dlq_inputs} reached the "
            f"dead-letter topic ({report.dlq_records} records), {report.rejections} answered by a rejection "
            f"event; other tenants' {before[0]} contracts unchanged: {before == after}; "
            f"settings rows stored for unknown tenants: {report.ghost_rows}; "
            f"all services alive at the end: {alive and not exits}"
        )
        security = _callbacks(run)
        return f"{report.inputs} fuzzed inputs, {len(HOSTILE_NAMES)} hostile-named agreements, {security}"

    return Scenario(
        "hostile-input", schedule, Workload(hostile_agreements=True, callbacks=True, settle_deadline_s=420.0)
    )


def _callbacks(run: ChaosRun) -> str:
    pipeline = run.pipeline
    if pipeline.callbacks_port is None:
        return "callbacks off"
    company = int(pipeline.psa_companies()[-1]["id"])
    with pipeline.connectwise() as api:
        body, signature = capture_genuine_callback(api, pipeline.control, company)
    passed, failures = callback_checks(
        f"http://127.0.0.1:{pipeline.callbacks_port}/callbacks/{run.tenant}", body, signature
    )
    run.security_lines += passed + failures
    run.problems += [f"callback: {f}" for f in failures]
    return f"{len(passed) + len(failures)} forged/genuine callbacks ({len(failures)} wrong answers)"


def all_scenarios(fuzz_count: int = 10_000) -> list[Scenario]:
    return [
        sigkill(),
        kafka_restart(),
        postgres_restart(),
        connectwise_faults(),
        mapper_rebalance(),
        hostile_input(fuzz_count),
    ]
