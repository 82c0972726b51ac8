"""The fuzz's poison cases (`chaos.fuzz.poison_cases`): values up to each topic's maximum message size,
and a rejection expected for every poison command whose tenant, client and id can be read, which is
what the mapper answers (`services.mapper.state.decide`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root: `chaos` is not installed

from chaos.fuzz import (
    BROKER_MAX_MESSAGE_BYTES,
    FuzzCase,
    Target,
    generate,
    judge,
    max_message_bytes,
    poison_cases,
)
from schemas.events import CommandRejected
from schemas.topics import PSA_AGREEMENTS, SYNC_COMMANDS
from services.mapper.messages import DeadLetter, Emit, Incoming
from services.mapper.state import decide

TARGET = Target("acme", ["250"], [("250", "cw:acme:agreement:1")], [("other", "1", "cw:other:agreement:1")])


def cases() -> dict[tuple[str, str], FuzzCase]:
    """The poison cases as a fuzz run sends them: each with its unique marker filled in."""
    poison = generate(TARGET, 1, huge=0)[1:]  # one generated case first, then the poison cases
    assert len(poison) == len(poison_cases(TARGET))
    return {(c.category, c.topic): c for c in poison}


def test_values_reach_each_topics_maximum_message_size_and_stay_within_it() -> None:
    assert max_message_bytes(PSA_AGREEMENTS) == 4 * 1024 * 1024
    assert max_message_bytes(SYNC_COMMANDS) == BROKER_MAX_MESSAGE_BYTES
    for (category, topic), case in cases().items():
        if category.startswith("max_size"):
            limit = max_message_bytes(topic)
            assert limit - 2048 < len(case.value) <= limit, (category, topic, len(case.value))
    big = cases()[("max_size_snapshot", PSA_AGREEMENTS)]
    assert len(big.value) > 4 * 1024 * 1024 - 2048
    # a valid snapshot: the mapper stores it (nothing dead-lettered by the decision itself), and
    # its copy in the state is over the changelog's (broker default) limit: refused as too_large
    incoming = Incoming(topic=PSA_AGREEMENTS, partition=0, offset=0, key=big.key, value=big.value)
    assert decide({}, incoming, frozenset({"acme"})).outputs == []
    assert big.expect_dlq and big.expect_rejection


def test_every_readable_poison_command_expects_a_rejection_and_the_mapper_sends_it() -> None:
    readable = {"huge_number", "duplicate_keys", "null_key", "mismatched_key", "max_size"}
    for (category, topic), case in cases().items():
        if topic != SYNC_COMMANDS:
            continue
        assert case.expect_dlq
        assert case.expect_rejection == (category in readable), category
        outputs = decide(
            {},
            Incoming(topic=SYNC_COMMANDS, partition=0, offset=0, key=case.key, value=case.value),
            frozenset({"acme"}),
        )
        assert any(isinstance(o, DeadLetter) for o in outputs.outputs), category
        rejected = [
            o.event for o in outputs.outputs if isinstance(o, Emit) and isinstance(o.event, CommandRejected)
        ]
        if category in readable:
            assert [r.data.command_id for r in rejected] == [case.event_id], category
            assert rejected[0].data.tenant_id == "acme" and rejected[0].data.client_id == "250"
        else:  # nested beyond any parser, or invalid UTF-8: no tenant can be read
            assert rejected == [], category


def test_the_judge_reports_a_readable_poison_command_that_got_no_rejection() -> None:
    case = cases()[("null_key", SYNC_COMMANDS)]
    assert case.marker.encode() in case.value and case.value.endswith(b"}")  # in place, still JSON
    dead = [type("R", (), {"value": case.marker.encode(), "headers": [("cs-dlq-reason", b"key_mismatch"),
                                                                       ("cs-dlq-stage", b"mapper.parse")]})()]  # fmt: skip
    silent = judge([case], dead, [])
    assert silent.missing_rejection == {"null_key": 1} and not silent.missing_dlq
    answered = judge([case], dead, [{"type": "sync.command.rejected", "data": {"command_id": case.event_id}}])
    assert answered.problems() == []
