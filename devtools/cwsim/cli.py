"""`contract-sync cw-sim serve ...` runs the simulator; `contract-sync cw-sim ctl <action> --url ...` drives it.

`ctl` arguments after the action are the action's ids (positional) and `key=value` pairs (values parsed as
JSON when they parse, else taken as strings), e.g.::

    contract-sync cw-sim ctl update-agreement 1004 billAmount=99.5 --url http://127.0.0.1:8089
    contract-sync cw-sim ctl faults latency_ms=200 error_rate=0.05
    contract-sync cw-sim ctl clock advance_s=86400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import date
from typing import Any

from services.common.logging import JsonFormatter, configure_logging
from services.common.settings import ObservabilitySettings

SERVICE = "cw-sim"

DEFAULTS = {
    "host": "127.0.0.1",
    "port": 8089,
    "company_id": "simco",
    "public_key": "cwsimPublicKey01",
    "private_key": "cwsimPrivateKey01",
    "client_id": "8b9c6f6e-3f57-4d2a-9c3e-6b8d1d2f7a10",
    "codebase": "v4_6_release",
}

# action -> (number of positional ids, HTTP method, control API path template)
_ACTIONS: dict[str, tuple[int, str, str]] = {
    "info": (0, "GET", "/info"),
    "stats": (0, "GET", "/stats"),
    "reset-stats": (0, "DELETE", "/stats"),
    "deliveries": (0, "GET", "/callbacks/deliveries"),
    "reset": (0, "POST", "/reset"),
    "add-company": (0, "POST", "/companies"),
    "create-agreement": (0, "POST", "/agreements"),
    "update-agreement": (1, "PATCH", "/agreements/{0}"),
    "cancel-agreement": (1, "POST", "/agreements/{0}/cancel"),
    "delete-agreement": (1, "DELETE", "/agreements/{0}"),
    "touch": (0, "POST", "/agreements/touch"),
    "create-addition": (1, "POST", "/agreements/{0}/additions"),
    "update-addition": (2, "PATCH", "/agreements/{0}/additions/{1}"),
    "cancel-addition": (2, "POST", "/agreements/{0}/additions/{1}/cancel"),
    "delete-addition": (2, "DELETE", "/agreements/{0}/additions/{1}"),
    "clock": (0, "POST", "/clock"),
    "faults": (0, "POST", "/faults"),
    "clear-faults": (0, "DELETE", "/faults"),
    "budget": (0, "POST", "/budget"),
    "permissions": (0, "POST", "/permissions"),
}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("cw-sim", help="the ConnectWise Manage simulator")
    sub = parser.add_subparsers(dest="cw_sim_command", metavar="{serve,ctl}", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the simulator",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve a simulated ConnectWise Manage API (paths under /{codebase}/apis/3.0) "
        "and its control API under /_sim.",
    )
    serve.add_argument("--host", default=DEFAULTS["host"], help="listen address")
    serve.add_argument("--port", type=int, default=DEFAULTS["port"], help="listen port (0 = any free port)")
    serve.add_argument("--company-id", default=DEFAULTS["company_id"], help="login company id")
    serve.add_argument(
        "--public-key",
        default=os.environ.get("CWSIM_PUBLIC_KEY", DEFAULTS["public_key"]),
        help="API member public key (env CWSIM_PUBLIC_KEY)",
    )
    serve.add_argument(
        "--private-key",
        default=os.environ.get("CWSIM_PRIVATE_KEY", DEFAULTS["private_key"]),
        help="API member private key (env CWSIM_PRIVATE_KEY)",
    )
    serve.add_argument(
        "--client-id", default=DEFAULTS["client_id"], help="the clientId header value accepted"
    )
    serve.add_argument(
        "--codebase", default=DEFAULTS["codebase"], help="codebase named by /login/companyinfo"
    )
    serve.add_argument("--public-url", default=None, help="site URL clients use (default scheme://host:port)")
    serve.add_argument("--seed", type=int, default=1, help="data generator seed")
    serve.add_argument("--companies", type=int, default=20, help="number of companies")
    serve.add_argument("--agreements-per-company", type=int, default=5, help="agreements per company")
    serve.add_argument("--additions-per-agreement", type=int, default=4, help="mean additions per agreement")
    serve.add_argument(
        "--anchor-date",
        type=date.fromisoformat,
        default=None,
        help="'today' of the generated data, YYYY-MM-DD (default: the clock's date)",
    )
    serve.add_argument("--requests-per-minute", type=int, default=0, help="request budget, 0 = unlimited")
    serve.add_argument("--tls-cert", default=None, help="PEM certificate: serve HTTPS (with --tls-key)")
    serve.add_argument("--tls-key", default=None, help="PEM private key for --tls-cert")
    serve.add_argument("--log-level", default="warning", help="uvicorn log level")
    serve.set_defaults(func=_serve)

    ctl = sub.add_parser(
        "ctl",
        help="drive a running simulator through its control API",
        description="Actions: " + ", ".join(_ACTIONS) + ". Ids are positional; other arguments key=value.",
    )
    ctl.add_argument("action", choices=sorted(_ACTIONS))
    ctl.add_argument("args", nargs="*", help="ids, then key=value pairs")
    ctl.add_argument(
        "--url", default=f"http://{DEFAULTS['host']}:{DEFAULTS['port']}", help="simulator site URL"
    )
    ctl.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    ctl.set_defaults(func=_ctl)


def ready_line(public_url: str, codebase: str, counts: tuple[int, int, int], log_format: str) -> str:
    """The line `serve` prints on stdout once it answers: `cwsim ready url=... api=... companies=...`,
    as the message of one JSON log object when LOG_FORMAT=json (pure)."""
    text = (
        f"cwsim ready url={public_url} api={public_url}/{codebase}/apis/3.0 "
        f"companies={counts[0]} agreements={counts[1]} additions={counts[2]}"
    )
    if log_format != "json":
        return text
    record = logging.LogRecord("devtools.cwsim", logging.INFO, __file__, 0, text, None, None)
    record.url = public_url
    return JsonFormatter(SERVICE).format(record)


def _serve(args: argparse.Namespace) -> int:
    from devtools.cwsim.app import SimConfig
    from devtools.cwsim.server import ServeOptions, build

    observability = ObservabilitySettings()
    log_format = observability.log_format
    configure_logging(SERVICE, observability.log_level, log_format)

    config = SimConfig(
        company_id=args.company_id,
        public_key=args.public_key,
        private_key=args.private_key,
        client_id=args.client_id,
        codebase=args.codebase.strip("/"),
        seed=args.seed,
        companies=args.companies,
        agreements_per_company=args.agreements_per_company,
        additions_per_agreement=args.additions_per_agreement,
        anchor=args.anchor_date,
        requests_per_minute=args.requests_per_minute,
    )
    options = ServeOptions(
        host=args.host,
        port=args.port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        public_url=args.public_url,
        log_level=args.log_level,
    )
    simulator, server, sock = build(config, options)

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)
        if server.started:
            counts = (
                len(simulator.store.companies),
                len(simulator.store.agreements),
                len(simulator.store.addition_parent),
            )
            print(ready_line(simulator.config.public_url, config.codebase, counts, log_format), flush=True)
        await task

    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = server.config.get_loop_factory()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    return 0


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _ctl(args: argparse.Namespace) -> int:
    from devtools.cwsim.client import SimControl, SimControlError

    n_ids, method, template = _ACTIONS[args.action]
    ids, pairs = args.args[:n_ids], args.args[n_ids:]
    if len(ids) < n_ids or not all(i.isdigit() for i in ids):
        print(f"{args.action} needs {n_ids} numeric id(s)", file=sys.stderr)
        return 2
    body: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            print(f"expected key=value, got {pair!r}", file=sys.stderr)
            return 2
        body[key] = _value(raw)
    if args.action == "clock" and not body:
        method = "GET"
    if args.action in ("faults", "budget", "permissions") and not body:
        method = "GET"
    with SimControl(args.url, verify=not args.insecure) as control:
        try:
            result = control.call(
                method, template.format(*ids), body if method in ("POST", "PATCH") else None
            )
        except SimControlError as error:
            print(str(error), file=sys.stderr)
            return 1
    if result is not None:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0
