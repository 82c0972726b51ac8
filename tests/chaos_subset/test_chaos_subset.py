"""The `make test` share of the chaos suite (docs/chaos.md): on the test session's Kafka and
PostgreSQL, with topics of its own, a smaller import survives one SIGKILL of each service and
ends exactly right; ~1,000 generated bad inputs are dead-lettered and answered while the store
stays exact and every service stays up; no credential reaches a log line or a topic; forged
callbacks are refused; the ConnectWise client verifies TLS by default.

Commands for a tenant nobody configured (docs/chaos.md, finding 2, fixed) are asserted in their own
test: every one is dead-lettered (`unknown_tenant`) and rejected, and no category is exempt. The
SIGKILL test runs without `xfail` since finding 3 (an update lost after SIGKILLs; two mapper
defects that each produce it) was fixed.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: `chaos` is not installed

from chaos.harness import ScenarioResult, Workload
from chaos.scenarios import hostile_input, sigkill
from chaos.security import tls_verification_default
from devtools.stack.local import Endpoints

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SMALL = Workload(
    companies=30,
    agreements_per_company=6,
    additions_per_agreement=3,
    manual_clients=2,
    deleted_agreements=2,
    deleted_additions=2,
    edits=5,
    psa_owned_edits=3,
    mutation_interval_s=0.5,
    settle_deadline_s=200.0,
)


@pytest.fixture(scope="module")
def results(
    kafka_bootstrap: str,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, ScenarioResult]]:
    """Run the two subset scenarios once for the module (no Kafka or PostgreSQL restarts: the
    session's stack may be shared)."""
    endpoints = Endpoints(kafka_bootstrap, database_url)
    work = tmp_path_factory.mktemp("chaos")
    kills = sigkill(kills_per_service=1, gap_s=(2.0, 4.0))
    kills.workload = SMALL
    first = kills.run(endpoints, work, cleanup=True)
    fuzz = hostile_input(fuzz_count=1_000)
    fuzz.workload = Workload(**{**SMALL.__dict__, "hostile_agreements": True, "callbacks": True})
    second = fuzz.run(endpoints, work, victims=[first.tenant], cleanup=True)
    # the figures of every run, pass or fail, past the output capture (docs/chaos.md records them)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            for r in (first, second):
                reporter.write_line(
                    f"\nchaos subset {r.name} ({r.tenant}): {r.faults}; records expected {r.expected}, "
                    f"found {r.found}, lost {r.lost}, duplicated {r.duplicated}, wrong {r.wrong}; "
                    f"{r.seconds:.0f} s"
                )
    yield {"kills": first, "fuzz": second}


def _exact(result: ScenarioResult) -> str:
    return result.check.summary(10) if result.check else "no check ran: " + "; ".join(result.problems)


def test_store_is_exact_after_one_sigkill_of_each_service_mid_import(
    results: dict[str, ScenarioResult],
) -> None:
    r = results["kills"]
    assert r.faults.startswith("SIGKILL") and all(
        f"{s} x1" in r.faults for s in ("mapper", "poller", "writer")
    )
    assert r.expected > 500, r.faults
    assert (r.lost, r.duplicated, r.wrong) == (0, 0, 0), _exact(r)
    assert r.found == r.expected
    assert not r.problems, r.problems


def test_store_is_exact_and_services_stay_up_under_hostile_input(results: dict[str, ScenarioResult]) -> None:
    r = results["fuzz"]
    assert r.fuzz_report is not None, r.problems
    assert r.fuzz_report.inputs >= 1_000
    assert (r.lost, r.duplicated, r.wrong) == (0, 0, 0), _exact(r)
    assert not r.unexpected_exits, r.unexpected_exits
    assert not [p for p in r.problems if "service stopped" in p], r.problems


def test_bad_input_is_dead_lettered_with_a_reason_and_answered(results: dict[str, ScenarioResult]) -> None:
    report = results["fuzz"].fuzz_report
    assert report is not None
    missing_dlq = {c: n for c, n in report.missing_dlq.items() if n}
    missing_rejection = {c: n for c, n in report.missing_rejection.items() if n}
    assert not missing_dlq, (missing_dlq, report.examples)
    assert not missing_rejection, (missing_rejection, report.examples)
    assert report.dlq_without_reason == 0
    assert report.dlq_inputs >= 0.8 * report.inputs  # all but psa-owned edits (answered, not dead-lettered)


def test_commands_for_unknown_tenants_are_dead_lettered_and_rejected(
    results: dict[str, ScenarioResult],
) -> None:
    report = results["fuzz"].fuzz_report
    assert report is not None and report.by_category["unknown_tenant"] > 0
    assert report.missing_dlq["unknown_tenant"] == 0, report.examples
    assert report.missing_rejection["unknown_tenant"] == 0, report.examples
    assert report.ghost_rows == 0  # the writer stored no client_sync_settings row for a ghost tenant


def test_no_contract_of_another_tenant_changes_under_hostile_input(
    results: dict[str, ScenarioResult],
) -> None:
    assert results["fuzz"].victims_unchanged is True


def test_no_credential_appears_in_any_log_line_event_or_dead_letter(
    results: dict[str, ScenarioResult],
) -> None:
    for r in results.values():
        scanned = re.match(r"(\d+) log lines, (\d+) topic records scanned", r.security)
        assert scanned is not None, r.security
        assert int(scanned[1]) > 0 and int(scanned[2]) > 0, r.security  # something was really searched
        assert r.leaks == 0, [p for p in r.problems if p.startswith("credential")]


def test_forged_callbacks_are_refused_and_a_genuine_one_accepted(results: dict[str, ScenarioResult]) -> None:
    lines = results["fuzz"].security_lines
    assert len(lines) == 10, lines  # 2 floods (forged, genuine) + 8 single cases
    assert [line for line in lines if line.startswith("flood of")] == lines[:2], lines
    assert not [p for p in results["fuzz"].problems if p.startswith("callback")], lines


@pytest.mark.skipif(
    shutil.which("openssl") is None and os.environ.get("CI", "").lower() != "true",
    reason="the TLS simulator needs the openssl CLI (under CI=true a missing openssl fails instead)",
)
def test_connectwise_client_verifies_tls_certificates_by_default() -> None:
    passed, failures = tls_verification_default()
    assert not failures, failures
    assert any(line.startswith("default client vs self-signed certificate: refused") for line in passed)
