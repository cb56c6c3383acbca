"""The reference consumer's continuity check: gaps, resends, duplicates, a new epoch."""

from __future__ import annotations

from edge.tail import SequenceChecker
from edge.wire import Batch, WireEvent


def batch(first: int, last: int, *, batch_id: str = "", epoch: str = "e1") -> Batch:
    return Batch(
        v=1,
        edge_id="edge-A",
        epoch=epoch,
        batch_id=batch_id or f"{epoch}-{first}-{last}",
        seq_first=first,
        seq_last=last,
        historical=False,
        sent_at=0.0,
        events=tuple(WireEvent(s, "X", {}) for s in range(first, last + 1)),
    )


def test_a_continuous_stream_has_no_findings() -> None:
    checker = SequenceChecker()
    for first in (1, 4, 10):
        deliver, findings = checker.check(batch(first, {1: 3, 4: 9, 10: 10}[first]))
        assert deliver and findings == []
    assert checker.last_seq("edge-A") == 10


def test_a_batch_sent_again_is_a_harmless_resend() -> None:
    checker = SequenceChecker()
    checker.check(batch(1, 3))
    deliver, findings = checker.check(batch(1, 3))
    assert not deliver
    assert [(f.kind, f.harmful) for f in findings] == [("resend", False)]
    assert checker.resends == 1


def test_missing_numbers_are_a_gap_with_their_count() -> None:
    checker = SequenceChecker()
    checker.check(batch(1, 3))
    deliver, findings = checker.check(batch(8, 9))
    assert deliver
    ((finding,),) = [findings]
    assert finding.kind == "gap" and finding.harmful
    assert "expected seq 4, got 8: 4 events missing" in finding.detail
    assert (checker.gaps, checker.missing) == (1, 4)


def test_numbers_seen_again_under_a_new_batch_id_are_a_harmful_duplicate() -> None:
    checker = SequenceChecker()
    checker.check(batch(1, 5))
    deliver, findings = checker.check(batch(4, 7, batch_id="other"))
    assert deliver
    assert [f.kind for f in findings] == ["duplicate"]
    assert "seq 4..5 already delivered" in findings[0].detail
    assert checker.last_seq("edge-A") == 7


def test_a_new_epoch_restarts_the_count() -> None:
    checker = SequenceChecker()
    checker.check(batch(1, 50))
    deliver, findings = checker.check(batch(1, 2, epoch="e2"))
    assert deliver and [f.kind for f in findings] == ["new_epoch"]
    assert checker.last_seq("edge-A") == 2


def holding(first: int, last: int, seqs: list[int]) -> Batch:
    whole = batch(first, last)
    return Batch(
        v=1,
        edge_id=whole.edge_id,
        epoch=whole.epoch,
        batch_id=whole.batch_id,
        seq_first=first,
        seq_last=last,
        historical=False,
        sent_at=0.0,
        events=tuple(WireEvent(s, "X", {}) for s in seqs),
    )


def test_a_batch_whose_events_do_not_cover_its_range_is_harmful() -> None:
    """The batches' ranges join up (no gap between them), but one lacks 98 and 99 inside."""
    checker = SequenceChecker()
    assert checker.check(batch(1, 95)) == (True, [])
    deliver, findings = checker.check(holding(96, 101, [96, 97, 100, 101]))
    assert deliver
    ((finding,),) = [findings]
    assert finding.kind == "incomplete" and finding.harmful
    assert finding.detail == "seq 96..101 (6 events) holds 4 events: 2 missing [98, 99]"
    assert (checker.incomplete, checker.holes) == (1, 2)
    assert checker.check(batch(102, 110)) == (True, []), "the next batch continues the range"


def test_repeated_outside_or_reordered_events_in_a_batch_are_harmful() -> None:
    checker = SequenceChecker()
    (repeated,) = checker.check(holding(1, 3, [1, 2, 2, 3]))[1]
    assert repeated.detail == (
        "seq 1..3 (3 events) holds 4 events: 0 missing [], 1 repeated or outside the range [2]"
    )
    (outside,) = checker.check(holding(4, 5, [4, 5, 6]))[1]
    assert "1 repeated or outside the range [6]" in outside.detail
    (reordered,) = checker.check(holding(6, 7, [7, 6]))[1]
    assert reordered.detail.endswith("0 missing [], out of order")
    assert all(f.harmful for f in (repeated, outside, reordered))
    assert (checker.incomplete, checker.holes) == (3, 0)
