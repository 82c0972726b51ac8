"""`python -m chaos` (`make chaos`): every scenario on a private stack, then the results table.

Exit status 0 only when every scenario ends with lost = duplicated = wrong = 0 and no fuzz,
security or service-liveness problem was found; 1 otherwise; 2 when the stack cannot start.

    python -m chaos                         # all scenarios, >= 20,000 records each, 10,000 fuzzed inputs
    python -m chaos --only sigkill,hostile-input --companies 100 --fuzz 2000
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.table import Table

from chaos.harness import ScenarioResult
from chaos.scenarios import all_scenarios
from chaos.security import tls_verification_default
from chaos.stack import private_stack

log = logging.getLogger("chaos")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`: no service process left behind


def results_table(results: list[ScenarioResult]) -> Table:
    table = Table(title="make chaos", show_lines=True)
    for column in (
        "scenario",
        "faults injected",
        "records expected",
        "records found",
        "lost",
        "duplicated",
        "wrong",
        "time",
    ):
        table.add_column(column, overflow="fold")
    for r in results:
        exits = f"; unplanned restarts {r.unexpected_exits}" if r.unexpected_exits else ""
        table.add_row(
            r.name + ("" if r.ok else " [red]FAILED[/]"),
            f"{r.faults}{exits}",
            str(r.expected),
            str(r.found),
            str(r.lost),
            str(r.duplicated),
            str(r.wrong),
            f"{r.seconds:.0f} s",
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    parser.add_argument("--companies", type=int, default=500)
    parser.add_argument("--agreements-per-company", type=int, default=12)
    parser.add_argument("--additions-per-agreement", type=int, default=3)
    parser.add_argument("--fuzz", type=int, default=10_000, help="generated bad inputs in hostile-input")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("aiokafka", "kafka", "httpx", "hypothesis"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    console = Console(width=220)
    scenarios = all_scenarios(args.fuzz)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        unknown = wanted - {s.name for s in scenarios}
        if unknown:
            parser.error(f"unknown scenarios {sorted(unknown)}; known: {[s.name for s in scenarios]}")
        scenarios = [s for s in scenarios if s.name in wanted]
    for scenario in scenarios:
        scenario.workload = replace(
            scenario.workload,
            companies=args.companies,
            agreements_per_company=args.agreements_per_company,
            additions_per_agreement=args.additions_per_agreement,
        )
    stack = private_stack()
    was_running = {c.name: c.running for c in stack.status()}
    started = time.monotonic()
    try:
        endpoints = stack.up()
    except Exception as error:
        console.print(f"[red]the chaos stack did not start:[/] {error}")
        return 2
    console.print(
        f"chaos stack: kafka {endpoints.kafka_bootstrap}, postgres {endpoints.database_url} ({stack.directory})"
    )
    work_root = args.work_dir or stack.directory / "runs"
    results: list[ScenarioResult] = []
    try:
        for scenario in scenarios:
            console.rule(f"scenario {scenario.name}")
            try:
                result = scenario.run(
                    endpoints, work_root, stack=stack, victims=[r.tenant for r in results if r.tenant]
                )
            except Exception as error:  # a harness failure is a failed scenario, never a pass
                log.exception("scenario %s could not run", scenario.name)
                result = ScenarioResult(scenario.name, f"harness error: {error!r}", 0, 0, 0, 0, 0, 0.0, {})
                result.problems.append(f"harness error: {error!r}")
            results.append(result)
            state = "[green]ok[/]" if result.ok else "[red]FAILED[/]"
            console.print(f"{scenario.name}: {state} in {result.seconds:.0f} s — {result.faults}")
            if result.check is not None and not result.check.ok:
                console.print(result.check.summary(15))
            for problem in result.problems:
                console.print(f"  [red]problem[/] {problem}")
        console.rule("security")
        tls_passed, tls_failures = tls_verification_default()
    finally:
        if not was_running.get("kafka"):
            stack.stop_kafka()
        if not was_running.get("postgres"):
            stack.stop_postgres()
    console.print(results_table(results))
    for r in results:
        if r.fuzz_summary:
            console.print(f"[bold]bad input[/] ({r.name}): {r.fuzz_summary}")
        if r.detail:
            console.print(f"[dim]{r.name}: {r.detail}[/]")
    console.print("[bold]security[/]")
    for r in results:
        console.print(f"  credentials in logs and topics ({r.name}): {r.security}")
        for line in r.security_lines:
            console.print(f"  callback: {line}")
    for line in tls_passed + tls_failures:
        console.print(f"  TLS: {line}")
    failed = [r.name for r in results if not r.ok] + (["tls"] if tls_failures else [])
    console.print(
        f"{len(results)} scenarios in {time.monotonic() - started:.0f} s: "
        + (
            "[green]all exact, nothing lost, duplicated or wrong[/]"
            if not failed
            else f"[red]FAILED: {failed}[/]"
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
