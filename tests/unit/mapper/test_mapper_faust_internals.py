"""Only public APIs of faust-streaming and aiokafka in services/, except one isolated module whose
start-up self-check fails readiness and sets a metric when faust lacks what it needs."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.common.metrics import FAUST_INTERNALS_MISSING
from services.common.settings import KafkaSettings
from services.mapper import faust_internals
from services.mapper.app import MapperApp
from services.mapper.settings import MapperSettings

ROOT = Path(__file__).resolve().parents[3]
ISOLATED = ROOT / "services" / "mapper" / "faust_internals.py"
KAFKA_OBJECTS = re.compile(
    r"\b(app|consumer|producer|table|tables|changelog|changelog_topic|recovery|fetcher|admin|client|"
    r"stream|agent|batch|worker|faust|aiokafka)\b"
)
"""Receivers that name (or hold) a faust or aiokafka object."""
FAUST_INTERNAL_TEXT = re.compile(
    r"\btable\.data\b|prepare_key|tables\.recovery|\.rebalancing|_committed_offset|_commit_offsets"
)


def _private_uses(path: Path) -> list[str]:
    """`x._name` (x not self/cls) and getattr/hasattr/setattr(x, "_name") whose receiver names a
    faust or aiokafka object."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        receiver: ast.expr | None = None
        name = ""
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            receiver, name = node.value, node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "hasattr", "setattr"}
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and node.args[1].value.startswith("_")
            and not node.args[1].value.startswith("__")
        ):
            receiver, name = node.args[0], node.args[1].value
        if receiver is None or (isinstance(receiver, ast.Name) and receiver.id in {"self", "cls"}):
            continue
        text = ast.unparse(receiver)
        if KAFKA_OBJECTS.search(text):
            found.append(f"{path}:{node.lineno}: {text}.{name}")
    return found


def test_services_use_no_private_attribute_of_faust_or_aiokafka_objects_outside_the_isolated_module() -> None:
    offenders = [
        use
        for path in sorted((ROOT / "services").rglob("*.py"))
        if path != ISOLATED
        for use in _private_uses(path)
    ]
    assert offenders == []


def test_the_faust_internals_the_issue_names_are_used_only_in_the_isolated_module() -> None:
    mapper = ROOT / "services" / "mapper"
    offenders = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(mapper.glob("*.py"))
        if path != ISOLATED
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FAUST_INTERNAL_TEXT.search(line) and not line.lstrip().startswith(("#", '"', "`"))
    ]
    assert offenders == []


def test_the_private_attribute_check_finds_such_a_use(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        'x = consumer._client\ny = getattr(app.consumer, "_committed_offset", None)\nz = self._ok\n'
    )
    assert len(_private_uses(sample)) == 2


@pytest.fixture
def mapper(tmp_path: Path) -> MapperApp:
    return MapperApp(
        MapperSettings(app_id="unit-mapper-internals", datadir=str(tmp_path), partitions=2),
        KafkaSettings(bootstrap_servers="127.0.0.1:1"),
    )


def test_this_faust_release_provides_every_internal_the_mapper_needs(mapper: MapperApp) -> None:
    assert faust_internals.missing(mapper.app) == []


def test_a_faust_without_one_of_them_makes_the_worker_unready_and_sets_the_metric(mapper: MapperApp) -> None:
    consumer = SimpleNamespace(_commit_offsets=None, assignment=set)  # no _committed_offset
    mapper.app.consumer = consumer  # type: ignore[assignment]
    mapper._self_check()
    mapper.ready = True
    try:
        assert mapper._missing_internals == ["app.consumer._committed_offset"]
        assert FAUST_INTERNALS_MISSING._value.get() == 1
        assert mapper.is_ready() is False
        assert mapper._recovered() is False
    finally:
        FAUST_INTERNALS_MISSING.set(0)
