"""`make demo`: the whole feature on the local stack, step by step, as readable tables.

1. refresh one client and print its "Sync from PSA" list;
2. select two agreements and three additions, print the resulting contracts (locked fields marked);
3. change one of them in ConnectWise: listed as *updated*, not applied (auto-sync off);
4. enable auto-sync on another client, change its data: the contract follows within seconds;
5. a local edit of billing cost (rejected, with the reason) and of notes (accepted);
6. `last_synced_at` per client and the sync events a dashboard sees.
Every wait has a deadline; a step that misses it fails the demo with the services' log tails.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from devtools.demo.pipeline import LocalPipeline, PipelineOptions
from schemas.commands import (
    EditCommand,
    EditData,
    RefreshCommand,
    RefreshData,
    SelectCommand,
    SelectData,
    SetAutoSyncCommand,
    SetAutoSyncData,
)

SOURCE = "contract-sync/demo"
T = TypeVar("T")


class DemoFailed(RuntimeError):
    pass


class Walkthrough:
    def __init__(self, pipeline: LocalPipeline, console: Console) -> None:
        self.p = pipeline
        self.console = console
        self.tenant = pipeline.options.tenant_id
        self.started = time.monotonic()

    # ------------------------------------------------------------------ helpers
    def step(self, number: int, title: str) -> None:
        elapsed = time.monotonic() - self.started
        self.console.rule(f"[bold]Step {number}/6[/] {title}  [dim](+{elapsed:.1f} s)[/]")

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout_s: float = 60.0) -> T:
        start = time.monotonic()
        last_error: Exception | None = None
        with self.console.status(f"waiting: {what}"):
            while True:
                try:
                    value = probe()
                except Exception as error:
                    value, last_error = None, error
                if value:
                    self.console.print(f"  [green]✓[/] {what} [dim]({time.monotonic() - start:.1f} s)[/]")
                    return value
                if time.monotonic() - start > timeout_s:
                    cause = f" (last error: {last_error!r})" if last_error else ""
                    raise DemoFailed(f"timed out after {timeout_s:.0f} s waiting for: {what}{cause}")
                time.sleep(0.5)

    def command(self, event: Any) -> str:
        self.p.publish(event)
        self.console.print(f"  → published [cyan]{event.type}[/] id={event.id}")
        return str(event.id)

    def show_catalog(self, client: str) -> dict[str, Any]:
        self.console.print(self.p.cli("catalog", "--tenant", self.tenant, "--client", client), end="")
        return self.p.catalog(client)

    def show_contracts(self, client: str) -> None:
        self.console.print(self.p.cli("contracts", "--tenant", self.tenant, "--client", client), end="")

    def data(self, client: str, **fields: Any) -> dict[str, Any]:
        return {"tenant_id": self.tenant, "client_id": client, "requested_by": "demo@msp.example", **fields}

    # ------------------------------------------------------------------ the six steps
    def run(self) -> None:
        companies = self.p.psa_companies()
        if len(companies) < 2:
            raise DemoFailed("the simulator needs at least two companies")
        client_a, client_b = str(companies[0]["id"]), str(companies[1]["id"])
        self.console.print(
            f"tenant [bold]{self.tenant}[/]; client A = {companies[0]['name']} ({client_a}), "
            f"client B = {companies[1]['name']} ({client_b})"
        )

        self.step(1, "Sync from PSA: refresh client A and list what it offers")
        expected = len(self.p.psa_agreements(int(client_a)))
        self.command(RefreshCommand.build(RefreshData(**self.data(client_a)), source=SOURCE))
        catalog = self.wait_for(
            f"the catalog lists all {expected} agreements of client A",
            lambda: c if len((c := self.p.catalog(client_a))["agreements"]) >= expected else None,
        )
        self.show_catalog(client_a)

        self.step(2, "Select two agreements and three additions")
        with_additions = [a for a in catalog["agreements"] if a["additions"]]
        if len(with_additions) < 2:
            raise DemoFailed("client A needs two agreements with additions")
        first, second = with_additions[0], with_additions[1]
        others = [a for a in with_additions[2:]] or [second]
        addition_ids = [x["addition_id"] for x in first["additions"][:2]] + [
            others[0]["additions"][-1]["addition_id"]
        ]
        agreement_ids = [first["agreement_id"], second["agreement_id"]]
        select_id = self.command(
            SelectCommand.build(
                SelectData(**self.data(client_a, agreement_ids=agreement_ids, addition_ids=addition_ids)),
                source=SOURCE,
            )
        )
        self.wait_for(
            "five contracts in PostgreSQL",
            lambda: len(self.p.contracts(client_a)) >= 5,
        )
        applied = self.wait_for(
            "sync.contracts.applied for the select command",
            lambda: self.p.events(
                lambda e: e["type"] == "sync.contracts.applied" and e.get("correlationid") == select_id
            ),
        )
        self.console.print(f"  applied: {applied[-1]['data']}")
        self.show_contracts(client_a)

        self.step(3, f"Change agreement {first['agreement_id']} in ConnectWise while auto-sync is off")
        key = f"cw:{self.tenant}:agreement:{first['agreement_id']}"
        before = self.p.contract(key)
        assert before is not None
        new_amount = Decimal(before["billing_amount"]) + Decimal("250")
        self.p.control.update_agreement(first["agreement_id"], billAmount=float(new_amount))
        self.console.print(f"  ConnectWise: billAmount {before['billing_amount']} → {new_amount}")
        self.wait_for(
            f"agreement {first['agreement_id']} listed as updated",
            lambda: any(
                a["agreement_id"] == first["agreement_id"] and a["state"] == "updated"
                for a in self.p.catalog(client_a)["agreements"]
            ),
        )
        time.sleep(2)
        after = self.p.contract(key)
        assert after is not None
        if Decimal(after["billing_amount"]) != Decimal(before["billing_amount"]):
            raise DemoFailed("the change was applied although auto-sync is off")
        self.console.print(
            f"  contract {key} still bills [bold]{after['billing_amount']}[/]: "
            "the change waits for the user to select it again (auto-sync off)"
        )
        self.show_catalog(client_a)

        self.step(4, "Auto-sync on for client B, then change its data in ConnectWise")
        agreements_b = self.p.psa_agreements(int(client_b))
        auto_id = self.command(
            SetAutoSyncCommand.build(SetAutoSyncData(**self.data(client_b, enabled=True)), source=SOURCE)
        )
        self.wait_for(
            f"all {len(agreements_b)} agreements of client B applied as contracts",
            lambda: (
                len([c for c in self.p.contracts(client_b) if c["kind"] == "agreement"]) >= len(agreements_b)
            ),
        )
        target = agreements_b[0]
        key_b = f"cw:{self.tenant}:agreement:{target['id']}"
        old = self.p.contract(key_b)
        assert old is not None
        changed_amount = Decimal(old["billing_amount"]) + Decimal("99.95")
        changed_at = time.monotonic()
        self.p.control.update_agreement(target["id"], billAmount=float(changed_amount))
        self.console.print(
            f"  ConnectWise: agreement {target['id']} billAmount {old['billing_amount']} → {changed_amount}"
        )
        self.wait_for(
            f"contract {key_b} bills {changed_amount}",
            lambda: (
                (c := self.p.contract(key_b)) is not None and Decimal(c["billing_amount"]) == changed_amount
            ),
        )
        self.console.print(
            f"  [bold green]change in ConnectWise → contract row in {time.monotonic() - changed_at:.1f} s[/] "
            "(the imitated product: up to 24 h)"
        )
        _ = auto_id

        self.step(5, "Local edits: billing cost (PSA-owned) and notes (local)")
        edit_cost = self.command(
            EditCommand.build(
                EditData(**self.data(client_a, contract_id=key, changes={"billing_cost": "1.00"})),
                source=SOURCE,
            )
        )
        rejected = self.wait_for(
            "sync.edit.rejected for the billing-cost edit",
            lambda: self.p.events(
                lambda e: e["type"] == "sync.edit.rejected" and e.get("correlationid") == edit_cost
            ),
        )
        self.console.print(
            f"  [red]rejected[/]: fields={rejected[-1]['data']['fields']} — {rejected[-1]['data']['message']}"
        )
        note = f"renewal call booked ({time.strftime('%Y-%m-%d')})"
        self.command(
            EditCommand.build(
                EditData(**self.data(client_a, contract_id=key, changes={"notes": note})), source=SOURCE
            )
        )
        self.wait_for(
            "the note on the contract", lambda: (c := self.p.contract(key)) is not None and c["notes"] == note
        )
        self.console.print(f"  [green]accepted[/]: notes = {note!r}")

        self.step(6, "What a dashboard sees")
        table = Table(title="Per-client sync settings")
        for column in ("client", "auto-sync", "last synced at", "status"):
            table.add_column(column)
        for row in self.p.sync_settings():
            last = row.get("last_synced_at")
            table.add_row(
                row["client_id"],
                "on" if row.get("auto_sync") else "off",
                last.isoformat(timespec="seconds") if last else "never",
                str(row.get("last_status") or ""),
            )
        self.console.print(table)
        events = self.p.events()
        counts = Counter(e["type"] for e in events)
        summary = Table(title=f"sync.events.v1 for tenant {self.tenant}")
        summary.add_column("type")
        summary.add_column("count", justify="right")
        for event_type, count in sorted(counts.items()):
            summary.add_row(event_type, str(count))
        self.console.print(summary)
        recent = Table(title="Latest events (contract-sync events --follow shows them live)")
        for column in ("time", "type", "subject", "detail"):
            recent.add_column(column, overflow="fold")
        latest = sorted((e for e in events if e["type"] != "sync.heartbeat"), key=lambda e: str(e["time"]))[
            -10:
        ]
        for event in latest:
            detail = ", ".join(
                f"{k}={v}"
                for k, v in event["data"].items()
                if k not in ("tenant_id", "client_id", "command_id")
            )
            recent.add_row(event["time"][11:19], event["type"], event["subject"], detail[:160])
        self.console.print(recent)


def show_gateway(pipeline: LocalPipeline, console: Console) -> None:
    """The same tenant through the Sync API: its clients as the HTTP API answers them, and a token."""
    import httpx

    token = pipeline.gateway_token()
    response = httpx.get(
        f"{pipeline.gateway_url}/v1/clients", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    response.raise_for_status()
    table = Table(title=f"GET {pipeline.gateway_url}/v1/clients (the Sync API, docs/gateway.md)")
    for column in ("client", "new", "updated", "synced", "removed", "contracts", "auto-sync", "last synced"):
        table.add_column(column)
    for client in response.json()["clients"]:
        counts = client["catalog"]
        table.add_row(
            client["client_id"],
            *(str(counts[state]) for state in ("new", "updated", "synced", "removed")),
            str(client["contracts"]),
            "on" if client["auto_sync"] else "off",
            str(client["last_synced_at"] or "never")[:19],
        )
    console.print(table)
    sign_in = httpx.get(f"{pipeline.gateway_url}/ui/sign-in", timeout=30)
    sign_in.raise_for_status()
    console.print(
        f"  the console (docs/console.md): {pipeline.gateway_url}/ui/  (sign-in page answered {sign_in.status_code})"
    )
    console.print(f"  a sign-in token for it (1 h, tenant {pipeline.options.tenant_id}):")
    console.print(token, soft_wrap=True, highlight=False)


def run_demo(*, keep: bool, stack_dir: Path | None = None) -> int:
    import asyncio
    import os

    from devtools.stack import LocalStack
    from services.common.kafka import ensure_topics
    from services.common.settings import KafkaSettings

    os.environ.setdefault("COLUMNS", "160")  # readable tables in logs too (the CLIs it runs inherit it)
    console = Console()
    started = time.monotonic()
    console.print(
        Panel.fit("contract-sync demo: ConnectWise agreements → contracts, on a local Kafka + PostgreSQL")
    )
    stack = LocalStack(stack_dir) if stack_dir else LocalStack()
    before = {c.name: c.running for c in stack.status()}
    endpoints = stack.up()
    console.print(f"  Kafka {endpoints.kafka_bootstrap}   PostgreSQL {endpoints.database_url}")
    created = asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=endpoints.kafka_bootstrap)))
    console.print(f"  topics ensured ({len(created)} created)")
    run_id = time.strftime("%Y%m%d-%H%M%S")
    tenant = f"demo-{secrets.token_hex(2)}"
    work_dir = stack.directory / "demo" / run_id
    pipeline = LocalPipeline(
        PipelineOptions(
            tenant_id=tenant,
            work_dir=work_dir,
            kafka_bootstrap=endpoints.kafka_bootstrap,
            database_url=endpoints.database_url,
            gateway=True,
        )
    )
    code = 0
    try:
        with console.status("starting the ConnectWise simulator, writer, mapper and poller"):
            pipeline.start()
        pids = ", ".join(f"{n} {m.pid}" for n, m in pipeline.group.members.items())
        console.print(f"  pipeline running ({pids}); logs in {work_dir / 'logs'}")
        Walkthrough(pipeline, console).run()
        show_gateway(pipeline, console)
        console.rule(f"[bold green]demo complete in {time.monotonic() - started:.1f} s")
    except Exception as error:
        code = 1
        console.print(f"[bold red]demo failed:[/] {error}")
        for name, member in pipeline.group.members.items():
            console.print(f"--- {name} (alive={member.alive()}) log tail:\n{member.log_tail(15)}")
    finally:
        if keep and code == 0:
            console.print(
                f"--keep: the pipeline keeps running. Simulator {pipeline.sim_site}; tenant {tenant}.\n"
                f"  Try: contract-sync catalog --tenant {tenant} --client <id>; contract-sync events --follow\n"
                f"  Console: {pipeline.gateway_url}/ui/ (docs/console.md); sign in with this token (8 h):\n"
                f"    {pipeline.gateway_token(ttl_s=8 * 3600)}\n"
                f"  Sync API: {pipeline.gateway_url} (docs/gateway.md), e.g.\n"
                f"    curl -H 'Authorization: Bearer {pipeline.gateway_token(ttl_s=8 * 3600)}' "
                f"{pipeline.gateway_url}/v1/clients\n"
                f"  Stop it: contract-sync demo --stop   (and contract-sync stack down)",
                soft_wrap=True,
                highlight=False,
            )
            (work_dir.parent / "kept.pids").write_text(
                "\n".join(str(m.pid) for m in pipeline.group.members.values() if m.pid) + "\n"
            )
            pipeline.group.detach()
        else:
            pipeline.stop()
            if not before.get("kafka"):
                stack.stop_kafka()
            if not before.get("postgres"):
                stack.stop_postgres()
            console.print("  stopped everything the demo started")
    return code


def stop_kept(stack_dir: Path | None = None) -> int:
    """Stop a pipeline left running by `demo --keep` (SIGTERM, then SIGKILL)."""
    import os
    import signal

    from devtools.stack.local import stack_directory

    pid_file = stack_directory(stack_dir) / "demo" / "kept.pids"
    if not pid_file.exists():
        print("no pipeline kept by a demo")
        return 0
    pids = [int(line) for line in pid_file.read_text().split() if line.strip()]
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 20
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    pid_file.unlink()
    print(f"stopped {len(pids)} processes")
    return 0
