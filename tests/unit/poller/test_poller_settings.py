"""The poller's topic names: the registry's, or prefixed for isolated runs (POLLER_TOPIC_PREFIX)."""

from __future__ import annotations

import pytest

from schemas.topics import PSA_AGREEMENTS, SYNC_COMMANDS, SYNC_EVENTS
from services.poller.settings import PollerSettings


def test_topics_are_the_registry_names_without_a_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLLER_TOPIC_PREFIX", raising=False)
    settings = PollerSettings()

    assert [settings.topic(t) for t in (PSA_AGREEMENTS, SYNC_EVENTS, SYNC_COMMANDS)] == [
        "psa.agreements.v1",
        "sync.events.v1",
        "sync.commands.v1",
    ]


def test_poller_topic_prefix_from_the_environment_prefixes_every_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLLER_TOPIC_PREFIX", "bench-1a2b.")
    settings = PollerSettings()

    assert settings.topic(PSA_AGREEMENTS) == "bench-1a2b.psa.agreements.v1"
    assert settings.topic(SYNC_EVENTS) == "bench-1a2b.sync.events.v1"
    assert settings.topic(SYNC_COMMANDS) == "bench-1a2b.sync.commands.v1"
