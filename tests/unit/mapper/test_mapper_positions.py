"""The mapper's own input positions (services/mapper/positions.py): what a delivered offset means."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.mapper.positions import (
    POSITION_PREFIX,
    Verdict,
    classify,
    decode_position,
    encode_position,
    position_key,
)


def test_the_first_message_of_a_partition_without_a_position_is_processed() -> None:
    assert classify(None, 1234) is Verdict.PROCESS


def test_the_expected_offset_is_processed() -> None:
    assert classify(40, 40) is Verdict.PROCESS


def test_an_offset_below_the_position_is_a_duplicate_of_handled_input() -> None:
    assert classify(40, 39) is Verdict.DUPLICATE
    assert classify(40, 0) is Verdict.DUPLICATE


def test_an_offset_beyond_the_position_is_a_gap_to_seek_back_for() -> None:
    assert classify(40, 41) is Verdict.GAP


@given(position=st.integers(0, 10**12), offset=st.integers(0, 10**12))
def test_exactly_the_expected_offset_is_processed_once_a_position_exists(position: int, offset: int) -> None:
    verdict = classify(position, offset)
    assert (verdict is Verdict.PROCESS) == (offset == position)
    assert (verdict is Verdict.DUPLICATE) == (offset < position)
    assert (verdict is Verdict.GAP) == (offset > position)


@given(offset=st.integers(0, 10**15))
def test_positions_round_trip_through_their_stored_bytes(offset: int) -> None:
    assert decode_position(encode_position(offset)) == offset


def test_no_stored_position_reads_as_none() -> None:
    assert decode_position(None) is None


def test_position_keys_never_look_like_a_client_key() -> None:
    key = position_key("psa.agreements.v1", 3)
    assert key.startswith(POSITION_PREFIX)
    assert ":" not in key.split("|")[0]  # client keys start with "{tenant}:{client}|"
    assert position_key("psa.agreements.v1", 3) != position_key("sync.commands.v1", 3)
