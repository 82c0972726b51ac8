"""The poller's tenants file is the mapper's and the writer's tenant registry wherever the services
are started together: the demo/e2e/chaos `LocalPipeline` and `contract-sync run --config`."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.demo.pipeline import LocalPipeline, PipelineOptions, tenants_toml
from services.common.tenants import load_tenant_ids
from services.launcher.cli import registry_env


def test_the_pipeline_gives_mapper_and_writer_the_pollers_tenants_file(tmp_path: Path) -> None:
    options = PipelineOptions(
        tenant_id="unit-reg",
        work_dir=tmp_path,
        kafka_bootstrap="127.0.0.1:1",
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none",
    )
    pipeline = LocalPipeline(options)
    try:
        env = pipeline.env
        assert env["MAPPER_TENANTS_FILE"] == env["WRITER_TENANTS_FILE"] == str(pipeline.config_path)
        assert Path(env["MAPPER_TENANTS_FILE"]).is_absolute()  # services run with another cwd
        assert pipeline.service_argv("poller")[-1] == str(pipeline.config_path)  # the poller's --config
        pipeline.config_path.write_text(tenants_toml(options, "http://127.0.0.1:1"))
        assert load_tenant_ids(env["WRITER_TENANTS_FILE"]) == frozenset({"unit-reg"})
    finally:
        pipeline.stop()


def test_contract_sync_run_passes_its_config_to_mapper_and_writer_as_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = registry_env(Path("tenants.toml"))
    assert env == {
        "MAPPER_TENANTS_FILE": str(tmp_path.resolve() / "tenants.toml"),
        "WRITER_TENANTS_FILE": str(tmp_path.resolve() / "tenants.toml"),
    }
