from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.common.logging import redact
from services.poller.tenants import (
    TenantConfigError,
    connection_for,
    load_config,
    parse_config,
    parse_duration,
    parse_shard,
    shard_of,
    tenants_for_shard,
)

CREDS = {
    "public_key": {"env": "T_PUB"},
    "private_key": {"file": "private.key"},
    "client_id": {"env": "T_CLIENT"},
}


def tenant(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "acme",
        "site": "api-na.myconnectwise.net",
        "company_id": "acme",
        "credentials": CREDS,
    }
    base.update(overrides)
    return base


def test_defaults_fill_keys_a_tenant_leaves_out_and_tenant_values_win() -> None:
    config = parse_config(
        {
            "defaults": {"poll_interval": "10m", "time_zone": "Europe/Berlin"},
            "tenants": [tenant(), tenant(id="beta", time_zone="UTC")],
        }
    )
    acme, beta = config.tenants
    assert acme.poll_interval == timedelta(minutes=10)
    assert acme.time_zone == "Europe/Berlin"
    assert beta.time_zone == "UTC"
    assert acme.auto_sync_interval == timedelta(seconds=30)
    assert acme.additions_sweep_period == timedelta(hours=24)
    assert acme.removal_guard_ratio == 0.2


def test_refuses_a_secret_written_inline() -> None:
    with pytest.raises(TenantConfigError, match="inline"):
        parse_config({"tenants": [tenant(credentials={**CREDS, "private_key": "s3cr3t-value"})]})


def test_refuses_a_secret_naming_both_env_and_file() -> None:
    with pytest.raises(TenantConfigError, match="exactly one"):
        parse_config({"tenants": [tenant(credentials={**CREDS, "public_key": {"env": "X", "file": "y"}})]})


def test_refuses_duplicate_tenant_ids_unknown_zones_and_empty_client_lists() -> None:
    with pytest.raises(TenantConfigError, match="twice"):
        parse_config({"tenants": [tenant(), tenant()]})
    with pytest.raises(TenantConfigError, match="time zone"):
        parse_config({"tenants": [tenant(time_zone="Mars/Olympus")]})
    with pytest.raises(TenantConfigError, match="non-empty"):
        parse_config({"tenants": [tenant(clients=[])]})


def test_client_list_limits_companies_and_client_map_renames_them() -> None:
    config = parse_config({"tenants": [tenant(clients=[251, 250, 251], client_map={"250": "hq"})]})
    t = config.tenants[0]
    assert t.company_ids == (250, 251)
    assert t.includes_company(250) and not t.includes_company(999)
    assert t.client_id_for(250) == "hq" and t.client_id_for(251) == "251"
    assert t.company_for("hq") == 250 and t.company_for("251") == 251 and t.company_for("x") is None


def test_all_clients_means_no_company_filter() -> None:
    t = parse_config({"tenants": [tenant()]}).tenants[0]
    assert t.company_ids is None
    assert t.includes_company(123456)


def test_connection_reads_secrets_from_env_and_files_and_registers_them_for_redaction(tmp_path: Path) -> None:
    (tmp_path / "private.key").write_text("file-private-key-123\n")
    toml = tmp_path / "tenants.toml"
    toml.write_text(
        '[[tenants]]\nid = "acme"\nsite = "api-na.myconnectwise.net"\ncompany_id = "acme"\n'
        '[tenants.credentials]\npublic_key = { env = "T_PUB" }\nprivate_key = { file = "private.key" }\n'
        'client_id = { env = "T_CLIENT" }\n'
    )
    config = load_config(toml)
    connection = connection_for(
        config.tenants[0],
        environ={"T_PUB": "env-public-key-456", "T_CLIENT": "client-guid-789"},
        base_dir=config.base_dir,
    )
    assert connection.private_key.get_secret_value() == "file-private-key-123"
    assert connection.public_key.get_secret_value() == "env-public-key-456"
    assert "file-private-key-123" not in repr(connection)
    assert redact("key=file-private-key-123 pub=env-public-key-456") == "key=*** pub=***"


def test_missing_secret_names_the_variable_not_a_value(tmp_path: Path) -> None:
    config = parse_config({"tenants": [tenant()]}, base_dir=tmp_path)
    with pytest.raises(TenantConfigError, match="T_PUB"):
        connection_for(config.tenants[0], environ={}, base_dir=tmp_path)


def test_invalid_toml_is_reported_as_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[tenants]\nid=")
    with pytest.raises(TenantConfigError, match="not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("text", "seconds"), [(30, 30), ("30s", 30), ("5m", 300), ("24h", 86400), ("1d", 86400), ("250ms", 0.25)]
)
def test_durations_accept_seconds_and_suffixes(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_duration_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_shards_partition_tenants_stably_and_completely() -> None:
    config = parse_config({"tenants": [tenant(id=f"t{i}") for i in range(40)]})
    owners = [tenants_for_shard(config, i, 3) for i in range(3)]
    ids = sorted(t.id for shard in owners for t in shard)
    assert ids == sorted(t.id for t in config.tenants)
    assert all(shard for shard in owners)
    assert shard_of("t7", 3) == shard_of("t7", 3)
    assert shard_of("acme", 1) == 0


@pytest.mark.parametrize("text", ["3/3", "a/b", "1", "-1/2", "0/0"])
def test_parse_shard_rejects_invalid_specs(text: str) -> None:
    with pytest.raises(ValueError):
        parse_shard(text)


def test_parse_shard_reads_index_and_count() -> None:
    assert parse_shard("1/4") == (1, 4)
