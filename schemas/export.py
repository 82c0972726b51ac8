"""Export the wire contract as JSON Schema files for teams in other languages.

`python -m schemas.export` (re)writes `schemas/json/`: one file per message type
(`<type>.json`, the full CloudEvents envelope with its `data`) and one per topic
(`topic.<topic>.json`, the union of its types). `python -m schemas.export --check` exits 1
when any committed file differs from the models, which the unit tests also assert.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from schemas.topics import TOPICS

JSON_DIR = Path(__file__).parent / "json"
_ID_BASE = "https://contract-sync.dev/schemas/v1/"


def _render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def expected_files() -> dict[str, str]:
    """File name -> content, derived from the models (pure)."""
    files: dict[str, str] = {}
    for topic in TOPICS:
        for message_type in topic.message_types:
            type_name = message_type.model_fields["type"].default
            schema = message_type.model_json_schema(mode="validation")
            schema["$id"] = f"{_ID_BASE}{type_name}.json"
            schema["title"] = type_name
            schema["x-topic"] = topic.name
            files[f"{type_name}.json"] = _render(schema)
        if topic.adapter is not None:
            union = topic.adapter.json_schema(mode="validation")
            union["$id"] = f"{_ID_BASE}topic.{topic.name}.json"
            union["title"] = topic.name
            union["description"] = topic.description
            files[f"topic.{topic.name}.json"] = _render(union)
    return files


def differences(directory: Path = JSON_DIR) -> list[str]:
    """Names of files that are missing, stale or unexpected in `directory`."""
    wanted = expected_files()
    present = {p.name for p in directory.glob("*.json")} if directory.exists() else set()
    stale = [n for n, text in wanted.items() if n not in present or (directory / n).read_text() != text]
    extra = sorted(present - set(wanted))
    return sorted(stale) + extra


def write(directory: Path = JSON_DIR) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    wanted = expected_files()
    for path in directory.glob("*.json"):
        if path.name not in wanted:
            path.unlink()
    for name, text in wanted.items():
        (directory / name).write_text(text)
    return sorted(wanted)


def main(argv: list[str]) -> int:
    if "--check" in argv:
        diff = differences()
        for name in diff:
            print(f"out of date: schemas/json/{name}")
        return 1 if diff else 0
    names = write()
    print(f"wrote {len(names)} JSON Schema files to {JSON_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
