"""The `contract-sync cw-sim` command line: documented defaults in --help, ctl argument parsing."""

from __future__ import annotations

import argparse

import pytest

from devtools.cwsim.cli import DEFAULTS, _value
from services.cli import build_parser


def serve_help() -> str:
    parser = build_parser("cw-sim")
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cw_sim = subparsers.choices["cw-sim"]
    nested = next(a for a in cw_sim._actions if isinstance(a, argparse._SubParsersAction))
    return " ".join(nested.choices["serve"].format_help().split())


@pytest.mark.parametrize("option", ["host", "port", "company_id", "public_key", "private_key", "client_id"])
def test_serve_help_prints_each_documented_default(option: str) -> None:
    text = serve_help()
    flag = "--" + option.replace("_", "-")
    assert flag in text
    assert f"(default: {DEFAULTS[option]})" in text


def test_serve_parses_tls_and_data_options() -> None:
    args = build_parser("cw-sim").parse_args(
        ["cw-sim", "serve", "--port", "0", "--seed", "9", "--tls-cert", "c.pem", "--tls-key", "k.pem",
         "--anchor-date", "2026-01-31"]
    )  # fmt: skip
    assert (args.port, args.seed, args.tls_cert, args.tls_key) == (0, 9, "c.pem", "k.pem")
    assert args.anchor_date.isoformat() == "2026-01-31"


def test_ctl_values_are_json_when_they_parse_else_strings() -> None:
    assert _value("5") == 5
    assert _value("0.25") == 0.25
    assert _value("true") is True
    assert _value("[1, 2]") == [1, 2]
    assert _value("Quarterly") == "Quarterly"
    assert _value("2026-01-01T00:00:00Z") == "2026-01-01T00:00:00Z"
