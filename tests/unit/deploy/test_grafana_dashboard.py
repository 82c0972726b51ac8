"""The Grafana dashboard: generated, current, and built only on metric names the services expose."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from deploy_helpers import ROOT, load_script
from prometheus_client.metrics import MetricWrapperBase

from services.common import metrics

DASHBOARD = ROOT / "deploy" / "grafana" / "contract-sync.json"
SERIES = re.compile(r"\bcontract_sync_[a-z_]+\b")
GROUP_BY = re.compile(r"\bby \(([^)]*)\)")


def _exposed() -> dict[str, MetricWrapperBase]:
    return {m._name: m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}


def _series_of(metric: MetricWrapperBase) -> set[str]:
    """The sample names Prometheus stores for a metric."""
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"]}
    return {metric._name + suffix for suffix in suffixes[metric._type]}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_the_committed_dashboard_is_what_the_generator_builds() -> None:
    builder = load_script("deploy/grafana/build_dashboard.py")

    assert DASHBOARD.read_text(encoding="utf-8") == builder.render()


def test_every_series_the_dashboard_queries_is_exposed_by_the_services(dashboard: dict[str, Any]) -> None:
    known = set().union(*(_series_of(m) for m in _exposed().values()))

    used = {name for expr in _expressions(dashboard) for name in SERIES.findall(expr)}
    assert used
    assert used <= known, used - known


def test_every_metric_of_the_services_has_a_panel(dashboard: dict[str, Any]) -> None:
    used = {name for expr in _expressions(dashboard) for name in SERIES.findall(expr)}

    for name, metric in _exposed().items():
        assert _series_of(metric) & used, f"{name} is on no panel"


def test_panels_group_only_by_labels_their_metric_has(dashboard: dict[str, Any]) -> None:
    exposed = {series: metric for metric in _exposed().values() for series in _series_of(metric)}
    for expr in _expressions(dashboard):
        labels = {"le"}
        for name in SERIES.findall(expr):
            labels |= set(exposed[name]._labelnames)
        for group in GROUP_BY.findall(expr):
            grouped = {label.strip() for label in group.split(",")}
            assert grouped <= labels, (expr, grouped - labels)


def test_panels_have_unique_ids_and_do_not_overlap_on_the_24_column_grid(dashboard: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    ids = [panel["id"] for panel in dashboard["panels"]]

    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))


def test_every_query_uses_the_dashboard_data_source_variable(dashboard: dict[str, Any]) -> None:
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}

    assert {"datasource", "service", "tenant"} <= variables
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
