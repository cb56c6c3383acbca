"""Change filter: only changes pass; a forget re-sends everything. Batches split per reader."""

from __future__ import annotations

from actors.messages import LinkChanged, Quality, Sample
from edge.plc.delivery import ChangeFilter, per_reader

GOOD, BAD = Quality.GOOD, Quality.BAD


def test_only_changes_pass() -> None:
    f = ChangeFilter()
    assert f.changed("M1", "total_count", 10, GOOD)
    assert not f.changed("M1", "total_count", 10, GOOD)
    assert f.changed("M1", "total_count", 11, GOOD)
    # same signal name on another machine is independent
    assert f.changed("M2", "total_count", 11, GOOD)


def test_quality_and_type_changes_count_as_changes() -> None:
    f = ChangeFilter()
    assert f.changed("M1", "x", 1, GOOD)
    assert f.changed("M1", "x", True, GOOD)  # True == 1, but another type
    assert f.changed("M1", "x", None, BAD)
    assert not f.changed("M1", "x", None, BAD)
    assert f.changed("M1", "x", 1.0, GOOD)


def test_a_deadband_holds_back_small_moves_of_good_numbers_only() -> None:
    f = ChangeFilter()
    assert f.changed("M1", "t", 20.0, GOOD, deadband=0.5)
    assert not f.changed("M1", "t", 20.4, GOOD, deadband=0.5)
    # measured from the last *delivered* value, so a slow drift still gets through
    assert not f.changed("M1", "t", 20.3, GOOD, deadband=0.5)
    assert f.changed("M1", "t", 20.5, GOOD, deadband=0.5)
    assert f.changed("M1", "t", None, BAD, deadband=0.5)  # a quality change always passes
    assert f.changed("M1", "t", 20.5, GOOD, deadband=0.5)


def test_forget_one_machine_or_all() -> None:
    f = ChangeFilter()
    f.changed("M1", "a", 1, GOOD)
    f.changed("M2", "a", 1, GOOD)
    f.forget("M1")
    assert f.changed("M1", "a", 1, GOOD)
    assert not f.changed("M2", "a", 1, GOOD)
    f.forget()
    assert f.changed("M2", "a", 1, GOOD)


def test_per_reader_keeps_each_readers_samples_and_link_changes_in_order() -> None:
    a1, a2 = Sample("A", "x", 1, 1.0), Sample("A", "x", 2, 3.0)
    b1 = Sample("B", "y", 5, 1.0)
    lost = LinkChanged("A", False, 2.0)
    assert list(per_reader([a1, b1, lost, a2])) == [
        ("A", (a1,)),  # A's samples before its link change
        ("A", lost),
        ("B", (b1,)),
        ("A", (a2,)),
    ]
    assert list(per_reader([])) == []
