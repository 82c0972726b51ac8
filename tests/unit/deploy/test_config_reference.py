"""The configuration reference is generated from the pydantic-settings classes and kept current."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from devtools import config_reference
from services.common.settings import DatabaseSettings, KafkaSettings, ObservabilitySettings

ROOT = Path(__file__).resolve().parents[3]


def test_the_committed_configuration_reference_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")

    assert committed == config_reference.render(), "run: python -m devtools.config_reference"


def test_check_mode_fails_on_a_stale_file_and_passes_on_a_current_one(tmp_path: Path) -> None:
    output = tmp_path / "configuration.md"
    output.write_text("stale\n", encoding="utf-8")

    assert config_reference.main(["--check", "--output", str(output)]) == 1
    assert config_reference.main(["--output", str(output)]) == 0
    assert config_reference.main(["--check", "--output", str(output)]) == 0


def test_every_service_settings_module_is_discovered() -> None:
    on_disk = sorted(
        f"services.{path.parent.name}.settings"
        for path in (ROOT / "services").glob("*/settings.py")
        if path.parent.name != "common"
    )

    assert config_reference.settings_modules() == ["services.common.settings", *on_disk]


def test_every_field_of_every_settings_class_is_in_the_reference() -> None:
    text = config_reference.render()
    classes = config_reference.collect()

    assert {(c.module, c.name) for c in classes} >= {
        ("services.common.settings", cls.__name__)
        for cls in (KafkaSettings, DatabaseSettings, ObservabilitySettings)
    }
    for cls in classes:
        assert f"## `{cls.module}.{cls.name}`" in text
        for setting in cls.settings:
            for env in setting.env:
                assert f"`{env}`" in text, env


def test_shared_settings_are_documented_with_their_env_var_default_and_meaning() -> None:
    text = config_reference.render()

    assert "| `KAFKA_BOOTSTRAP_SERVERS` | str | `127.0.0.1:19092` | Comma-separated host:port" in text
    assert "| `HEALTH_PORT` | int | `0` | Port of the health server; 0 = off (>= 0, <= 65535) |" in text


class _Example(BaseSettings):
    """An example for the generator's rules."""

    model_config = SettingsConfigDict(env_prefix="EXAMPLE_")

    plain: int = Field(default=3, ge=1, description="A number")
    aliased: str = Field(default="x", validation_alias="OTHER_NAME", description="Read from OTHER_NAME")
    either: str = Field(default="y", validation_alias=AliasChoices("FIRST", "SECOND"))
    token: SecretStr | None = Field(default=None, description="A secret")
    needed: str


def test_env_names_follow_the_prefix_and_the_aliases() -> None:
    fields = _Example.model_fields

    assert config_reference.env_names(_Example, "plain", fields["plain"]) == ("EXAMPLE_PLAIN",)
    assert config_reference.env_names(_Example, "aliased", fields["aliased"]) == ("OTHER_NAME",)
    assert config_reference.env_names(_Example, "either", fields["either"]) == ("FIRST", "SECOND")


def test_types_defaults_and_constraints_are_described() -> None:
    fields = _Example.model_fields

    assert config_reference.describe_type(fields["token"].annotation) == "secret (optional)"
    assert config_reference.describe_default(fields["token"]) == "(unset)"
    assert config_reference.describe_default(fields["needed"]) == "(required)"
    assert config_reference.describe_default(fields["plain"]) == "`3`"
    assert config_reference.describe_constraints(fields["plain"]) == ">= 1"
    assert config_reference.describe_type(KafkaSettings.model_fields["security_protocol"].annotation) == (
        "`PLAINTEXT` \\| `SSL` \\| `SASL_PLAINTEXT` \\| `SASL_SSL`"
    )


def test_the_reference_never_reads_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "sentinel-password-4711")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:sentinel-4712@db/x")
    monkeypatch.setenv("HEALTH_PORT", "9999")

    text = config_reference.render()

    assert "sentinel" not in text
    assert "9999" not in text
