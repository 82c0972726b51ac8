"""The `cs-dlq-reason` vocabulary: documented in the README and the AsyncAPI document exactly as the
services use it (read from their source: every reason literal they dead-letter with)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from schemas.asyncapi import DOCUMENT
from schemas.topics import DLQ_REASONS
from services.common.kafka import classify_parse_error
from services.common.poison import REASONS as FAILURE_REASONS

ROOT = Path(__file__).resolve().parents[3]
DEAD_LETTER_CALLS = {"DeadLetter", "_malformed", "_isolate", "deadletter_headers", "dead_letter"}
"""Calls that dead-letter: their `reason=` keyword, or second positional argument, is a reason."""


def _name(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _text(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def reasons_in_source(tree: ast.AST) -> set[str]:
    """Reason literals passed to the dead-letter calls, returned by `classify_parse_error`, given as
    `MappingError` codes (as `mapping.<code>`) or tested as `<x>.reason in (...)` before dead-lettering."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _name(node.func) in DEAD_LETTER_CALLS:
            keyword = next((k.value for k in node.keywords if k.arg == "reason"), None)
            positional = (
                node.args[1]
                if _name(node.func) in {"DeadLetter", "_malformed", "_isolate"} and len(node.args) > 1
                else None
            )
            found |= {t for t in (_text(keyword), _text(positional)) if t is not None}
        elif isinstance(node, ast.Call) and _name(node.func) == "MappingError" and node.args:
            code = _text(node.args[0])
            if code is not None:
                found.add(f"mapping.{code}")
        elif isinstance(node, ast.FunctionDef) and node.name == "classify_parse_error":
            found |= {t for r in ast.walk(node) if isinstance(r, ast.Return) for t in [_text(r.value)] if t}
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Attribute)
            and node.left.attr == "reason"
            and isinstance(node.ops[0], ast.In)
            and isinstance(node.comparators[0], ast.Tuple)
        ):
            found |= {t for e in node.comparators[0].elts if (t := _text(e)) is not None}
    return found


def reasons_the_services_use() -> set[str]:
    found: set[str] = set()
    for path in sorted((ROOT / "services").rglob("*.py")):
        if "gateway" in path.parts:  # HTTP problem reasons, not dead letters
            continue
        found |= reasons_in_source(ast.parse(path.read_text(), str(path)))
    return found | set(FAILURE_REASONS)  # any exception of one message (services/common/poison.py)


def readme_reasons() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Dead-letter reasons (`cs-dlq-reason`)", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z_.]+)` \|", section, flags=re.MULTILINE))


def test_the_vocabulary_is_exactly_the_reasons_the_services_dead_letter_with() -> None:
    assert reasons_the_services_use() == set(DLQ_REASONS)


def test_the_readme_documents_every_reason_and_no_other() -> None:
    assert readme_reasons() == set(DLQ_REASONS)


def test_the_asyncapi_document_lists_the_vocabulary_as_the_header_values() -> None:
    document = json.loads(DOCUMENT.read_text())
    header = document["components"]["messages"]["deadletter"]["headers"]["properties"]["cs-dlq-reason"]

    assert header["enum"] == list(DLQ_REASONS)
    assert all(f"`{reason}`" in header["description"] for reason in DLQ_REASONS)


def test_an_unclassifiable_parse_failure_still_gets_a_reason_of_the_vocabulary() -> None:
    assert classify_parse_error(RuntimeError("surprise")) in DLQ_REASONS
