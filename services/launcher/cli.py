"""`contract-sync run --config tenants.toml`: writer, mapper, poller and the gateway as one process group.

For small installs: each service still runs as its own process (and can run alone); this
command starts all three, forwards SIGTERM/SIGINT to them, and exits when any of them exits
(non-zero), stopping the others, so a supervisor sees one unit. The same tenants file is the
mapper's and the writer's tenant registry (`MAPPER_TENANTS_FILE`, `WRITER_TENANTS_FILE`): input for
a tenant it does not name is dead-lettered and rejected, never applied.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from pathlib import Path
from types import FrameType

from services.common.logging import configure_logging
from services.common.settings import ObservabilitySettings
from services.common.state_dir import run_log_dir
from services.launcher.group import ProcessGroup, contract_sync_command

log = logging.getLogger("services.launcher")


def registry_env(config: Path) -> dict[str, str]:
    """The environment that gives the mapper and the writer the poller's tenants file (pure)."""
    path = str(config.resolve())
    return {"MAPPER_TENANTS_FILE": path, "WRITER_TENANTS_FILE": path}


def _run(args: argparse.Namespace) -> int:
    observability = ObservabilitySettings()
    configure_logging("run", observability.log_level, observability.log_format)
    log_dir = (args.log_dir or run_log_dir()).resolve()
    group = ProcessGroup(log_dir, registry_env(Path(args.config)))
    stopping = False

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    base = args.health_port_base
    group.start("writer", contract_sync_command("writer"), health_port=base or None)
    group.start("mapper", contract_sync_command("mapper"), health_port=(base + 1) if base else None)
    group.start(
        "poller",
        contract_sync_command("poller", "--config", str(args.config)),
        health_port=(base + 2) if base else None,
    )
    names = "writer, mapper, poller"
    if not args.no_gateway:
        gateway_argv = contract_sync_command("gateway", "--port", str(args.gateway_port))
        group.start("gateway", gateway_argv, health_port=(base + 3) if base else None)
        names += f", gateway (http://127.0.0.1:{args.gateway_port})"
    log.info("running %s; logs in %s", names, log_dir, extra={"log_dir": str(log_dir)})
    exit_code = 0
    try:
        while not stopping:
            dead = group.dead()
            if dead:
                for member in dead:
                    code = member.process.returncode if member.process else None
                    log.error(
                        "%s exited with %s:\n%s",
                        member.name,
                        code,
                        member.log_tail(),
                        extra={"member": member.name, "exit_code": code},
                    )
                exit_code = 1
                break
            time.sleep(0.5)
    finally:
        group.stop()
    return exit_code


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="run writer, mapper, poller and gateway as one process group")
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        help="tenants TOML file (the poller's tenants; the mapper's and writer's registry)",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="one log file per service, created if missing (default <state dir>/logs: CONTRACT_SYNC_STATE_DIR, "
        "else $XDG_STATE_HOME/contract-sync, else ~/.local/state/contract-sync)",
    )
    parser.add_argument(
        "--health-port-base",
        type=int,
        default=0,
        help="writer/mapper/poller/gateway health servers on this port and the next three (0 = off)",
    )
    parser.add_argument(
        "--gateway-port", type=int, default=8080, help="port of the Sync API (gateway; default 8080)"
    )
    parser.add_argument("--no-gateway", action="store_true", help="do not start the gateway")
    parser.set_defaults(func=_run)
