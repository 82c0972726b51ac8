"""The default state directory: never the working directory."""

from __future__ import annotations

from pathlib import Path

from services.common.state_dir import state_dir


def test_the_state_directory_is_the_explicit_one_when_set(tmp_path: Path) -> None:
    chosen = tmp_path / "state"

    assert state_dir({"CONTRACT_SYNC_STATE_DIR": str(chosen), "XDG_STATE_HOME": "/elsewhere"}) == chosen


def test_the_state_directory_follows_xdg_state_home_then_the_home_directory(tmp_path: Path) -> None:
    assert state_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "contract-sync"
    assert state_dir({}) == Path.home().resolve() / ".local" / "state" / "contract-sync"


def test_a_relative_setting_is_made_absolute_so_the_working_directory_never_matters() -> None:
    assert state_dir({"CONTRACT_SYNC_STATE_DIR": "relative/state"}).is_absolute()
