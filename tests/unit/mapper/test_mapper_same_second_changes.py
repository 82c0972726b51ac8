"""Changes within one ConnectWise `lastUpdated` second: what was mapped is identified by its content
(`{version}#{digest}`), never by the version alone."""

from __future__ import annotations

from typing import Any

from mapper_factories import CLIENT, TENANT, cw_addition, cw_agreement, observed, select, set_auto_sync

from schemas.psa import AgreementObserved
from schemas.records import ContractRecordMapped
from schemas.topics import PSA_AGREEMENTS, SYNC_COMMANDS
from services.mapper.client_state import ItemState
from services.mapper.messages import Emit, Incoming, Output
from services.mapper.state import handle

VERSION = "2025-03-14T16:02:11Z"


class Mapper:
    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}
        self.offset = 0

    def send(self, event: Any) -> list[ContractRecordMapped]:
        topic = SYNC_COMMANDS if event.type.startswith("sync.command") else PSA_AGREEMENTS
        self.offset += 1
        outputs: list[Output] = handle(
            self.store,
            Incoming(topic=topic, partition=0, offset=self.offset, key=event.key, value=event.to_bytes()),
        )
        return [o.event for o in outputs if isinstance(o, Emit) and isinstance(o.event, ContractRecordMapped)]  # type: ignore[misc]


def snapshot(
    observed_at: str,
    *,
    bill_amount: float = 115.0,
    quantity: float = 2.0,
    name: str = "Managed",
    **extra: Any,
) -> AgreementObserved:
    """Agreement 1 with addition 11, always at the same version (one ConnectWise second)."""
    return observed(
        cw_agreement(id=1, billAmount=bill_amount, name=name, **extra),
        [cw_addition(id=11, agreementId=1, quantity=quantity)],
        psa_last_updated=VERSION,
        observed_at=observed_at,
    )


def amounts(records: list[ContractRecordMapped]) -> dict[str, str]:
    return {r.data.contract_key: str(r.data.billing_cost.amount) for r in records}


def test_with_auto_sync_on_a_second_agreement_change_in_the_same_second_is_mapped() -> None:
    mapper = Mapper()
    mapper.send(set_auto_sync(True))
    first = mapper.send(snapshot("2025-06-01T12:00:00Z", bill_amount=115.0))
    assert amounts(first) == {"cw:acme:agreement:1": "115.00", "cw:acme:addition:11": "44.00"}
    second = mapper.send(snapshot("2025-06-01T12:00:01Z", bill_amount=115.5))
    assert amounts(second) == {"cw:acme:agreement:1": "115.50"}, "only the changed item maps again"
    assert second[0].data.source.psa_digest != first[0].data.source.psa_digest
    assert second[0].data.source.psa_last_updated == first[0].data.source.psa_last_updated


def test_with_auto_sync_on_a_second_addition_change_in_the_same_second_is_mapped() -> None:
    mapper = Mapper()
    mapper.send(set_auto_sync(True))
    mapper.send(snapshot("2025-06-01T12:00:00Z", quantity=2.0))
    second = mapper.send(snapshot("2025-06-01T12:00:01Z", quantity=3.0))
    assert amounts(second) == {"cw:acme:addition:11": "66.00"}


def test_an_agreement_change_that_addition_records_depend_on_maps_the_additions_again() -> None:
    mapper = Mapper()
    mapper.send(set_auto_sync(True))
    mapper.send(snapshot("2025-06-01T12:00:00Z"))
    second = mapper.send(snapshot("2025-06-01T12:00:01Z", agreementStatus="Inactive"))
    assert {r.data.contract_key: r.data.status for r in second} == {
        "cw:acme:agreement:1": "inactive",
        "cw:acme:addition:11": "inactive",
    }


def test_a_same_second_reobservation_with_the_same_content_maps_nothing() -> None:
    mapper = Mapper()
    mapper.send(set_auto_sync(True))
    mapper.send(snapshot("2025-06-01T12:00:00Z"))
    assert mapper.send(snapshot("2025-06-01T12:00:05Z")) == []
    # a change to a field no mapping rule reads (an unknown ConnectWise field) is no content change
    assert mapper.send(snapshot("2025-06-01T12:00:06Z", customFields=[{"id": 1, "value": "x"}])) == []


def test_of_two_same_second_snapshots_the_one_read_later_wins_whatever_the_arrival_order() -> None:
    mapper = Mapper()
    mapper.send(snapshot("2025-06-01T12:00:01Z", bill_amount=115.5))
    assert mapper.send(snapshot("2025-06-01T12:00:00Z", bill_amount=115.0)) == [], "read earlier: stale"
    assert amounts(mapper.send(select([1]))) == {"cw:acme:agreement:1": "115.50"}


def test_with_auto_sync_off_a_same_second_change_after_a_select_is_pending_when_auto_sync_turns_on() -> None:
    mapper = Mapper()
    mapper.send(snapshot("2025-06-01T12:00:00Z", bill_amount=115.0))
    assert amounts(mapper.send(select([1], [11]))) == {
        "cw:acme:agreement:1": "115.00",
        "cw:acme:addition:11": "44.00",
    }
    assert mapper.send(snapshot("2025-06-01T12:00:01Z", bill_amount=115.5)) == []
    assert amounts(mapper.send(set_auto_sync(True))) == {"cw:acme:agreement:1": "115.50"}


def test_state_written_before_digests_existed_counts_as_not_mapped() -> None:
    mapper = Mapper()
    mapper.send(snapshot("2025-06-01T12:00:00Z"))
    key = f"{TENANT}:{CLIENT}|i|1"
    item = ItemState.decode(mapper.store[key])
    _, _, raw = mapper.store[key].partition(b"\n")
    legacy = b'{"v":"%s","add":[11],"ma":"%s","mx":{"11":"%s"},"gone":false,"gx":[]}\n' % (
        item.version.encode(),
        item.version.encode(),
        item.version.encode(),
    )
    mapper.store[key] = legacy + raw
    assert ItemState.decode(mapper.store[key]).pending() == (True, [11])
