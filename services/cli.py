"""The `contract-sync` command: one entry point, one sub-command per operator task.

Each sub-command lives in the module that owns it and is imported only when that
sub-command runs, so `contract-sync stack up` never imports faust and
`contract-sync writer` never imports the simulator. The development tools' sub-commands
(`DEV_COMMANDS`: the local stack, the simulator, the demo) live in the `devtools` package, which
only the development install has (`make venv`); without it they are simply not offered. A module
listed here exposes
`add_parser(subparsers) -> None`, which registers its parser and sets `func`
(a callable taking the parsed `argparse.Namespace` and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

# sub-command name -> module that registers it (and its own nested sub-commands)
COMMANDS: dict[str, str] = {
    "topics": "services.common.topics_cli",
    "db": "services.common.db_cli",
    "kafka": "services.common.kafka_acls_cli",
    "poller": "services.poller.cli",
    "callbacks": "services.poller.callbacks_cli",
    "mapper": "services.mapper.cli",
    "writer": "services.writer.cli",
    "catalog": "services.writer.cli_catalog",
    "contracts": "services.writer.cli_contracts",
    "command": "services.common.command_cli",
    "events": "services.common.events_cli",
    "run": "services.launcher.cli",
    "gateway": "services.gateway.cli",
}
# development tools' sub-commands (package `devtools`, not in the production wheel or image)
DEV_COMMANDS: dict[str, str] = {
    "stack": "devtools.stack.cli",
    "cw-sim": "devtools.cwsim.cli",
    "demo": "devtools.demo",
}


def available_commands() -> dict[str, str]:
    """Sub-command name -> module: the production ones, plus the development tools' when installed."""
    if importlib.util.find_spec("devtools") is None:
        return dict(COMMANDS)
    return {**DEV_COMMANDS, **COMMANDS}


def _load(
    name: str, module_name: str, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]
) -> bool:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            return False  # sub-command not built yet
        raise
    module.add_parser(subparsers)
    return True


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; with `only`, import just that sub-command's module."""
    parser = argparse.ArgumentParser(
        prog="contract-sync",
        description="Import ConnectWise Manage agreements into contract records.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = available_commands()
    names = [only] if only in commands else list(commands)
    for name in names:
        _load(name, commands[name], subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(first)
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        build_parser().print_help()
        return 2
    code = func(args)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
