"""Every reference in code and docs points at something inside the repository.

A newcomer who clones the repository must be able to follow every reference: no `§n` citations of
documents (cite `docs/<file>.md#<section>` instead), no paths that leave the repository, and every
cited repository file and markdown section exists.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {
    ".git",
    ".venv",
    ".stack",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".import_linter_cache",
    "__pycache__",
    "build",
    "dist",
    "node_modules",
    "out",
}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".json", ".txt", ".ini", ".cfg", ".sh", ".mako"}
TEXT_NAMES = {"Makefile", "Dockerfile", "run"}

SECTION_CITATION = re.compile(r"§\s*\d")
OUTSIDE_REPO = re.compile(r"(?:\.\./)+shared\b|\bshared/reference\b|/work/shared\b")
DOCS_PATH = re.compile(r"(?<![\w/.-])(docs/[\w./-]+\.md)(?:#([\w-]+))?")
BARE_MD_NAME = re.compile(r"(?<![\w/.\-#\[(])([\w-]+\.md)\b")
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _text_files() -> list[Path]:
    files = []
    for directory, subdirs, names in os.walk(ROOT):
        subdirs[:] = [d for d in subdirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in names:
            path = Path(directory, name)
            if path.suffix in TEXT_SUFFIXES or name in TEXT_NAMES:
                files.append(path)
    return sorted(files)


FILES = _text_files()
ALL_NAMES = {p.name for p in FILES}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def markdown_anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence and (match := re.match(r"^#{1,6}\s+(.*)$", line)):
            anchors.add(github_anchor(match.group(1)))
    return anchors


def _problems_in(path: Path) -> list[str]:
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    if rel == "tests/unit/test_doc_references.py":
        return []  # this file names the patterns it forbids
    text = path.read_text(encoding="utf-8", errors="replace")
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{rel}:{number}"
        if SECTION_CITATION.search(line):
            problems.append(f"{where}: '§' section citation; cite docs/<file>.md#<section> instead")
        if OUTSIDE_REPO.search(line):
            problems.append(f"{where}: path outside the repository")
        for match in DOCS_PATH.finditer(line):
            problems += _check_target(where, ROOT / match.group(1), match.group(2))
        for match in BARE_MD_NAME.finditer(line):
            if match.group(1) not in ALL_NAMES:
                problems.append(f"{where}: {match.group(1)} is not a file of the repository")
        if path.suffix == ".md":
            for match in MD_LINK.finditer(line):
                target = match.group(1)
                if re.match(r"^[a-z]+:", target) or target.startswith("<"):
                    continue  # a URL
                file_part, _, anchor = target.partition("#")
                resolved = (path.parent / file_part).resolve() if file_part else path
                problems += _check_target(where, resolved, anchor or None)
    return problems


def _check_target(where: str, target: Path, anchor: str | None) -> list[str]:
    try:
        target.resolve().relative_to(ROOT)
    except ValueError:
        return [f"{where}: {target} is outside the repository"]
    if not target.exists():
        return [f"{where}: {target.relative_to(ROOT)} does not exist"]
    if anchor and target.suffix == ".md" and anchor not in markdown_anchors(target):
        return [f"{where}: {target.relative_to(ROOT)} has no section #{anchor}"]
    return []


def test_no_code_or_doc_cites_a_file_or_section_that_the_repository_does_not_have() -> None:
    problems = [problem for path in FILES for problem in _problems_in(path)]
    assert not problems, "\n".join(problems)


def test_the_design_and_connectwise_documents_exist_and_the_readme_links_them() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("docs/design.md", "docs/connectwise.md"):
        assert (ROOT / name).is_file()
        assert f"]({name})" in readme


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("see DESIGN.md §5", ["'§' section citation", "DESIGN.md is not a file"]),
        ("see ../shared/reference/connectwise-api.md", ["path outside the repository"]),
        ("see docs/nowhere.md", ["docs/nowhere.md does not exist"]),
        ("see docs/design.md#no-such-section", ["has no section #no-such-section"]),
        ("see docs/design.md#ground-rules", []),
    ],
)
def test_the_checker_reports_each_kind_of_dangling_reference(
    tmp_path: Path, line: str, expected: list[str]
) -> None:
    probe = tmp_path / "probe.md"
    probe.write_text(line + "\n", encoding="utf-8")
    problems = _problems_in(probe)
    assert len(problems) == len(expected), problems
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem
