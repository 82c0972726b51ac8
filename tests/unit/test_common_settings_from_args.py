"""`settings_from_args`: command-line flags override the environment only when given."""

from __future__ import annotations

import argparse

import pytest

from services.common.settings import settings_from_args
from services.writer.settings import WriterSettings


def test_a_flag_left_unset_keeps_the_environment_and_a_given_flag_overrides_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WRITER_BATCH_MAX_RECORDS", "123")
    monkeypatch.setenv("WRITER_GROUP_ID", "from-env")
    args = argparse.Namespace(batch_max_records=None, group_id="from-flag", batch_max_ms=None)
    settings = settings_from_args(WriterSettings, args, ("batch_max_records", "group_id", "batch_max_ms"))
    assert settings.batch_max_records == 123
    assert settings.group_id == "from-flag"
    assert settings.batch_max_ms == WriterSettings().batch_max_ms


def test_explicit_values_win_over_flags_and_invalid_flags_are_refused() -> None:
    args = argparse.Namespace(group_id="from-flag", batch_max_records="not a number")
    assert settings_from_args(WriterSettings, args, ("group_id",), group_id="computed").group_id == "computed"
    with pytest.raises(ValueError, match="batch_max_records"):
        settings_from_args(WriterSettings, args, ("batch_max_records",))
