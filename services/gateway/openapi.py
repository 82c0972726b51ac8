"""The OpenAPI 3.1 document of the Sync API: `python -m services.gateway.openapi` writes
`docs/openapi.json`; `--check` exits 1 when the committed file differs from the app (a unit test
asserts the same)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def document() -> dict[str, Any]:
    """The app's OpenAPI document, built without any service connection (pure)."""
    from unittest.mock import MagicMock

    from services.gateway.app import Gateway, build_app
    from services.gateway.settings import GatewaySettings

    gateway = Gateway(
        settings=GatewaySettings(),
        verifier=MagicMock(),
        read_model=MagicMock(),
        commands=MagicMock(),
        limiter=MagicMock(),
        new_event_consumer=MagicMock(),
        ready_checks={},
    )
    schema: dict[str, Any] = build_app(gateway).openapi()
    return schema


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"out of date: {DOCUMENT} (run: python -m services.gateway.openapi)")
            return 1
        return 0
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
