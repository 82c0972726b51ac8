"""Helpers for the console's browser tests: a real Chromium driven by Playwright, screenshots as
artefacts, and the vendored axe-core accessibility check.

- `chromium_path()`: `CONTRACT_SYNC_CHROMIUM`, else `chromium` / `chromium-browser` on PATH (Debian's
  `chromium` package; `make test` installs it when missing and the machine allows it). Playwright's own
  browser download is never used.
- `Shots`: writes `NN-name.png` full-page screenshots to `CONTRACT_SYNC_ARTIFACTS_DIR/console`, default
  `<repo>/.artifacts/console` (docs/console.md shows committed copies).
- `axe_violations(page)`: injects tests/e2e/vendor/axe-4.14.1.min.js through the DevTools protocol (so
  the page's Content-Security-Policy stays on) and returns the serious and critical violations.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
from playwright.sync_api import Page

REPO = Path(__file__).resolve().parents[2]
AXE_SOURCE = Path(__file__).resolve().parent / "vendor" / "axe-4.14.1.min.js"
BLOCKING_IMPACTS = ("serious", "critical")


def no_browser(reason: str) -> NoReturn:
    """Fail under CI=true (a missing browser must never pass silently), skip otherwise."""
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI=true: a missing browser fails the run)", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str | None:
    configured = os.environ.get("CONTRACT_SYNC_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def artifacts_dir() -> Path:
    base = Path(os.environ.get("CONTRACT_SYNC_ARTIFACTS_DIR") or REPO / ".artifacts")
    directory = base / "console"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@dataclass
class Shots:
    """Numbered full-page screenshots of one test run."""

    directory: Path = field(default_factory=artifacts_dir)
    taken: list[Path] = field(default_factory=list)

    def take(self, page: Page, name: str) -> Path:
        path = self.directory / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations of the page as it is now (WCAG 2.x A/AA rules)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SOURCE.read_text(encoding="utf-8") + "\n;true")
    violations: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await window.axe.run(document, {
                runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
                resultTypes: ['violations'],
            });
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ')),
            }));
        }"""
    )
    return [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
