"""Lot scans: idempotent by scan id, conflicts refused, genealogy in scan order."""

from __future__ import annotations

import pytest

from actors.traceability import LotLedger, LotScan
from edge.errors import CommandError


def scan(
    scan_id: str, lot: str = "L1", order: str = "WO1", machine: str = "M1", **kw: object
) -> LotScan:
    return LotScan(scan_id, lot, order, machine, 100.0, **kw)  # type: ignore[arg-type]


def test_the_same_scan_twice_is_one_scan() -> None:
    ledger = LotLedger()
    assert ledger.record(scan("S1", material="resin", quantity=25.0)) is True
    # A resend: same content, later time, another front end.
    resend = LotScan("S1", "L1", "WO1", "M1", 160.0, "resin", 25.0, source="mqtt", user="x")
    assert ledger.record(resend) is False
    assert ledger.scans("WO1") == (scan("S1", material="resin", quantity=25.0),)


def test_a_scan_id_reused_for_other_content_is_refused() -> None:
    ledger = LotLedger()
    ledger.record(scan("S1"))
    with pytest.raises(CommandError, match="scan_id 'S1' was already used for lot 'L1'"):
        ledger.record(scan("S1", lot="L2"))
    assert len(ledger) == 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (LotScan("", "L1", "WO1", "M1", 1.0), "scan_id must be a non-empty string"),
        (LotScan("S", " ", "WO1", "M1", 1.0), "lot_id must be a non-empty string"),
        (LotScan("S", "L1", "WO1", "M1", float("nan")), "ts must be a finite epoch time"),
        (LotScan("S", "L1", "WO1", "M1", 1.0, quantity=-1), "quantity must be a non-negative"),
    ],
)
def test_bad_scans_name_the_field(bad: LotScan, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        LotLedger().record(bad)


def test_genealogy_lists_each_lot_and_machine_once_in_scan_order() -> None:
    ledger = LotLedger()
    for item in [
        scan("S1", lot="L-B"),
        scan("S2", lot="L-A", machine="M2"),
        scan("S3", lot="L-B"),  # the same lot loaded again on the same machine
        scan("S4", lot="L-B", machine="M2"),
        scan("S5", lot="L-Z", order="WO2"),
    ]:
        ledger.record(item)
    genealogy = ledger.genealogy("WO1", "OUT-1")
    assert [s.scan_id for s in genealogy.consumed] == ["S1", "S2", "S4"]
    assert genealogy.consumed_lot_ids == ("L-B", "L-A")
    assert genealogy.as_dict()["produced_lot_id"] == "OUT-1"


def test_finished_orders_keep_their_scan_ids_for_duplicates_only() -> None:
    ledger = LotLedger(max_finished_scans=2)
    for n in range(3):
        ledger.record(scan(f"S{n}"))
    ledger.finish("WO1")
    assert ledger.scans("WO1") == ()
    assert ledger.record(scan("S2")) is False  # still recognised
    with pytest.raises(CommandError):
        ledger.record(scan("S1", lot="other"))
    # S0 fell out of the bounded memory of finished scans.
    assert ledger.record(scan("S0")) is True


def test_snapshot_round_trip() -> None:
    ledger = LotLedger()
    ledger.record(scan("S1"))
    ledger.record(scan("S2", order="WO2"))
    ledger.finish("WO2")
    twin = LotLedger.restore(ledger.snapshot())
    assert twin.snapshot() == ledger.snapshot()
    assert twin.record(scan("S2", order="WO2")) is False
