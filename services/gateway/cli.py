"""`contract-sync gateway`: serve the Sync API; `gateway token`: mint a local token; `gateway openapi`:
write (or `--check`) docs/openapi.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _serve(args: argparse.Namespace) -> int:
    from services.common.settings import settings_from_args
    from services.gateway.service import main
    from services.gateway.settings import GatewaySettings

    local_keys: dict[str, Any] = {}
    if args.jwks_file is None and not _env_has_keys():
        from services.gateway.local_issuer import default_keys_dir, ensure_keys

        local_keys["jwks_file"] = ensure_keys(default_keys_dir()).jwks_path
        print(
            f"gateway: no GATEWAY_JWKS_FILE/GATEWAY_JWKS_URL: verifying tokens of the local key pair "
            f"{local_keys['jwks_file']} (mint one with `contract-sync gateway token`); set one for production",
            file=sys.stderr,
        )
    main(settings_from_args(GatewaySettings, args, ("port", "host", "jwks_file"), **local_keys))
    return 0


def _env_has_keys() -> bool:
    import os

    return bool(os.environ.get("GATEWAY_JWKS_FILE") or os.environ.get("GATEWAY_JWKS_URL"))


def _token(args: argparse.Namespace) -> int:
    from services.gateway.local_issuer import default_keys_dir, ensure_keys, mint_token
    from services.gateway.settings import SCOPES, GatewaySettings

    settings = GatewaySettings()
    scopes = [s for part in args.scopes for s in part.replace(",", " ").split() if s]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        print(f"unknown scope(s): {', '.join(unknown)} (known: {', '.join(SCOPES)})", file=sys.stderr)
        return 2
    clients = [c for part in args.client_scope or [] for c in part.replace(",", " ").split() if c]
    keys = ensure_keys(Path(args.keys_dir) if args.keys_dir else default_keys_dir())
    token = mint_token(
        keys,
        tenant_id=args.tenant,
        subject=args.subject,
        scopes=scopes,
        issuer=settings.issuer,
        audience=settings.audience,
        ttl_seconds=args.ttl,
        tenant_claim=settings.tenant_claim,
        client_scope=clients or None,
    )
    print(token)
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from services.gateway.openapi import main

    return main(["--check"] if args.check else [])


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "gateway",
        help="serve the Sync API (HTTP front door); `gateway token` mints a local token",
        description="Serve the Sync API until SIGTERM/SIGINT. Settings: GATEWAY_* env vars, "
        "KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL (see docs/gateway.md). Without GATEWAY_JWKS_FILE/URL the "
        "local key pair under .stack/gateway/ is used (created when missing).",
    )
    parser.add_argument("--port", type=int, default=None, help="HTTP port (GATEWAY_PORT)")
    parser.add_argument("--host", default=None, help="interface (GATEWAY_HOST)")
    parser.add_argument("--jwks-file", type=Path, default=None, help="JWKS file (GATEWAY_JWKS_FILE)")
    parser.set_defaults(func=_serve)
    actions = parser.add_subparsers(dest="gateway_action")
    token = actions.add_parser("token", help="mint a token signed with the local stack's key (development)")
    token.add_argument("--tenant", required=True, help="tenant id (the token's tenant claim)")
    token.add_argument(
        "--scopes",
        nargs="+",
        default=["catalog:read", "contracts:read", "sync:write", "contracts:write", "events:read"],
        help="granted scopes (space- or comma-separated; default: all)",
    )
    token.add_argument(
        "--client-scope", nargs="*", default=None, help="limit the token to these client ids (default: all)"
    )
    token.add_argument("--subject", default="local-user", help="the token's subject (requested_by)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.add_argument("--keys-dir", default=None, help="key directory (default .stack/gateway)")
    token.set_defaults(func=_token)
    openapi = actions.add_parser("openapi", help="write docs/openapi.json (--check: exit 1 when stale)")
    openapi.add_argument("--check", action="store_true")
    openapi.set_defaults(func=_openapi)
