"""The shared tenant registry (`services.common.tenants`): the tenant ids of the poller's tenants
file, read without its secrets, and refused when it cannot be trusted."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from services.common.tenants import TenantRegistryError, load_tenant_ids, tenant_registry
from services.poller.tenants import load_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [REPO / "deploy" / "compose" / "tenants.toml", REPO / "deploy" / "local" / "tenants.example.toml"]

TWO_TENANTS = """
[defaults]
poll_interval = "5m"

[[tenants]]
id = "acme"
site = "api-na.myconnectwise.net"
company_id = "acme"
[tenants.credentials]
public_key = { env = "UNSET_VARIABLE_FOR_THE_TEST_1" }
private_key = { file = "/nonexistent/secret" }
client_id = { env = "UNSET_VARIABLE_FOR_THE_TEST_2" }

[[tenants]]
id = "beta-2"
site = "eu.myconnectwise.net"
company_id = "beta"
[tenants.credentials]
public_key = { env = "UNSET_VARIABLE_FOR_THE_TEST_3" }
private_key = { env = "UNSET_VARIABLE_FOR_THE_TEST_4" }
client_id = { env = "UNSET_VARIABLE_FOR_THE_TEST_5" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_every_tenant_id_without_resolving_any_secret(tmp_path: Path) -> None:
    # the referenced variables and the secret file do not exist: reading ids must not need them
    assert load_tenant_ids(write(tmp_path, TWO_TENANTS)) == frozenset({"acme", "beta-2"})


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
def test_agrees_with_the_poller_on_the_shipped_tenants_files(example: Path) -> None:
    assert load_tenant_ids(example) == frozenset(t.id for t in load_config(example).tenants)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[tenants]]\nid = 'acme'\n[[tenants]]\nid = 'acme'\n", "appears twice"),
        ("[[tenants]]\nid = 'ACME'\n", "slug"),
        ("[[tenants]]\nsite = 'x'\n", "slug"),
        ("tenants = 'acme'\n", "array of tables"),
        ("[defaults]\npoll_interval = '5m'\n", "no [[tenants]]"),
        ("[[tenants]\nid = 'acme'\n", "not valid TOML"),
    ],
)
def test_refuses_a_file_that_gives_no_trustworthy_ids(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TenantRegistryError, match=re.escape(problem)) as raised:
        load_tenant_ids(path)
    assert str(path) in str(raised.value)


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TenantRegistryError, match=r"cannot read tenants file .*absent\.toml"):
        load_tenant_ids(tmp_path / "absent.toml")


def test_no_file_turns_the_checks_off_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="services.common.tenants"):
        assert tenant_registry(None, "writer") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "WRITER_TENANTS_FILE" in warnings[0].getMessage()


def test_a_named_file_turns_the_checks_on(tmp_path: Path) -> None:
    assert tenant_registry(write(tmp_path, TWO_TENANTS), "mapper") == frozenset({"acme", "beta-2"})
