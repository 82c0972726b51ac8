"""The one directory where services keep local state by default, independent of the working directory.

`CONTRACT_SYNC_STATE_DIR` when set, else `$XDG_STATE_HOME/contract-sync`, else
`~/.local/state/contract-sync` (always made absolute). Services create the parts they need below it
(the mapper's faust data in `mapper/`, `contract-sync run`'s logs in `logs/`), so a service started
from `/`, from a container's working directory or from systemd never depends on its working directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_STATE_DIR = "CONTRACT_SYNC_STATE_DIR"


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The state directory (not created here: each user creates its own subdirectory when it starts)."""
    env = os.environ if env is None else env
    if explicit := env.get(ENV_STATE_DIR):
        return Path(explicit).expanduser().resolve()
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser().resolve() / "contract-sync"


def mapper_datadir() -> str:
    """Default of MAPPER_DATADIR: `<state dir>/mapper`."""
    return str(state_dir() / "mapper")


def run_log_dir() -> Path:
    """Default of `contract-sync run --log-dir`: `<state dir>/logs`."""
    return state_dir() / "logs"
