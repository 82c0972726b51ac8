"""`contract-sync poller --config tenants.toml [--shard i/n] [--check]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from services.common.logging import configure_logging
from services.common.settings import ObservabilitySettings, settings_from_args
from services.poller.settings import PollerSettings
from services.poller.tenants import (
    TenantConfigError,
    connection_for,
    load_config,
    parse_shard,
    tenants_for_shard,
)

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "poller",
        help="poll ConnectWise and publish psa.agreement.* events",
        description="Poll the tenants of a TOML config (secrets from env/files) and publish to Kafka.",
    )
    configure_parser(parser)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="tenants TOML file (env POLLER_CONFIG)")
    parser.add_argument("--shard", help="i/n: poll only the tenants this instance owns (env POLLER_SHARD)")
    parser.add_argument(
        "--check", action="store_true", help="validate the config and that every secret resolves, then exit"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    observability = ObservabilitySettings()
    configure_logging("poller", observability.log_level, observability.log_format)
    settings = settings_from_args(PollerSettings, args, ("config", "shard"))
    if settings.config is None:
        log.error("no tenants config: pass --config or set POLLER_CONFIG")
        return 2
    try:
        config = load_config(settings.config)
        index, count = parse_shard(settings.shard)
        mine = tenants_for_shard(config, index, count)
        for tenant in mine:
            connection_for(tenant, base_dir=config.base_dir)
    except (TenantConfigError, ValueError) as error:
        log.error("invalid poller configuration: %s", error)
        return 2
    if args.check:
        print(
            f"ok: {len(config.tenants)} tenant(s), {len(mine)} on shard {settings.shard}: {[t.id for t in mine]}"
        )
        return 0
    from services.poller.app import run_poller

    return asyncio.run(run_poller(config, settings, observability=observability))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.poller")
    configure_parser(parser)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
