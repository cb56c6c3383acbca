"""SPC against limits computed by hand from the printed constant tables.

Constants used (ASTM E2587 Table 1; Montgomery, Introduction to SQC, App. VI):
n=2: d2 = 1.128, D3 = 0, D4 = 3.267 (moving range of two)
n=4: d2 = 2.059, A2 = 0.729, D3 = 0, D4 = 2.282
n=7: d2 = 2.704, A2 = 0.419, D3 = 0.076, D4 = 1.924
"""

from __future__ import annotations

import math

import pytest

from actors import spc
from actors.quality import params
from actors.spc import (
    CONSTANTS,
    Chart,
    capability,
    capability_of,
    imr_limits,
    moving_ranges,
    rule_hits,
    xbar_r_limits,
    xbar_r_limits_from_baseline,
)

SERIES = [10.0, 12.0, 11.0, 13.0, 14.0]
# mean = 60 / 5 = 12; moving ranges 2, 1, 2, 1 -> MRbar = 6 / 4 = 1.5
# sigma = MRbar / d2 = 1.5 / 1.128 = 1.3297872...
# X:  UCL = 12 + 3 * 1.5 / 1.128 = 12 + 3.9893617 = 15.9893617, LCL = 8.0106383
# MR: UCL = D4 * MRbar = 3.267 * 1.5 = 4.9005, LCL = D3 * MRbar = 0
IMR_UCL = 12 + 4.5 / 1.128
IMR_LCL = 12 - 4.5 / 1.128

SUBGROUPS = [[10.0, 11.0, 12.0, 13.0], [9.0, 12.0, 11.0, 12.0], [11.0, 11.0, 13.0, 13.0]]
# means 11.5, 11.0, 12.0 -> grand mean 34.5 / 3 = 11.5; ranges 3, 3, 2 -> Rbar = 8 / 3
# X-bar: UCL = 11.5 + A2 * Rbar = 11.5 + 0.729 * 8 / 3 = 11.5 + 1.944 = 13.444, LCL = 9.556
# R:     UCL = D4 * Rbar = 2.282 * 8 / 3 = 6.085333..., LCL = 0
# sigma within = Rbar / d2 = (8 / 3) / 2.059 = 1.295127...


def test_constants_are_the_printed_table_values() -> None:
    assert (CONSTANTS[2].d2, CONSTANTS[2].D3, CONSTANTS[2].D4) == (1.128, 0.0, 3.267)
    assert (CONSTANTS[4].d2, CONSTANTS[4].A2, CONSTANTS[4].D4) == (2.059, 0.729, 2.282)
    assert (CONSTANTS[7].A2, CONSTANTS[7].D3, CONSTANTS[7].D4) == (0.419, 0.076, 1.924)
    # A2 = 3 / (d2 sqrt(n)) to the table's three decimals, for every n.
    for n, c in CONSTANTS.items():
        assert abs(c.A2 - 3 / (c.d2 * math.sqrt(n))) < 1e-3, n


def test_moving_ranges() -> None:
    assert list(moving_ranges(SERIES)) == [2.0, 1.0, 2.0, 1.0]


def test_imr_limits_by_hand() -> None:
    limits = imr_limits(SERIES)
    assert limits.subgroup_size == 1
    assert limits.center == pytest.approx(12.0)
    assert limits.ucl == pytest.approx(15.9893617, abs=1e-6)
    assert limits.lcl == pytest.approx(8.0106383, abs=1e-6)
    assert limits.sigma == pytest.approx(1.5 / 1.128)
    assert limits.range_center == pytest.approx(1.5)
    assert limits.range_ucl == pytest.approx(4.9005)
    assert limits.range_lcl == 0.0
    assert limits.source == "warmup"


def test_xbar_r_limits_by_hand() -> None:
    limits = xbar_r_limits(SUBGROUPS)
    assert limits.subgroup_size == 4
    assert limits.center == pytest.approx(11.5)
    assert limits.ucl == pytest.approx(13.444)
    assert limits.lcl == pytest.approx(9.556)
    assert limits.range_center == pytest.approx(8 / 3)
    assert limits.range_ucl == pytest.approx(6.0853333, abs=1e-6)
    assert limits.range_lcl == 0.0
    assert limits.sigma_within == pytest.approx(1.2951271, abs=1e-6)
    # The rules' sigma is that of a subgroup mean: A2 * Rbar / 3 = 0.648.
    assert limits.sigma == pytest.approx(0.648)


def test_xbar_r_baseline_with_a_positive_lower_range_limit() -> None:
    # n = 7, grand mean 50, Rbar 2:
    # X-bar 50 +/- 0.419 * 2 = 50.838 / 49.162; R: UCL 1.924 * 2 = 3.848, LCL 0.076 * 2 = 0.152
    limits = xbar_r_limits_from_baseline(50.0, 2.0, 7)
    assert (limits.ucl, limits.lcl) == (pytest.approx(50.838), pytest.approx(49.162))
    assert (limits.range_ucl, limits.range_lcl) == (pytest.approx(3.848), pytest.approx(0.152))
    assert limits.source == "baseline"


def test_capability_by_hand() -> None:
    # mean 12, sigma = 1.5 / 1.128; LSL 6, USL 20
    # Cp  = (20 - 6) / (6 sigma) = 14 * 1.128 / 9 = 1.754666...
    # Cpk = min(20 - 12, 12 - 6) / (3 sigma) = 6 * 1.128 / 4.5 = 1.504
    cap = capability_of(SERIES, 1, 6.0, 20.0)
    assert cap.n == 5
    assert cap.mean == pytest.approx(12.0)
    assert cap.cp == pytest.approx(1.7546667, abs=1e-6)
    assert cap.cpk == pytest.approx(1.504)
    # One-sided: no Cp, Cpk from the side given.
    assert capability(12.0, 1.5 / 1.128, None, 20.0) == (None, pytest.approx(8 * 1.128 / 4.5))
    assert capability(12.0, 0.0, 6.0, 20.0) == (None, None)


def test_capability_of_subgroups_by_hand() -> None:
    values = [v for group in SUBGROUPS for v in group]
    # sigma within = (8/3) / 2.059; mean = 138 / 12 = 11.5; LSL 8, USL 16
    # Cp  = (16 - 8) / (6 sigma) = 8 * 2.059 / (6 * 8 / 3) = 8 * 2.059 / 16 = 1.0295
    # Cpk = min(16 - 11.5, 11.5 - 8) / (3 sigma) = 3.5 * 2.059 / 8 = 0.9008125
    cap = capability_of(values, 4, 8.0, 16.0)
    assert cap.mean == pytest.approx(11.5)
    assert cap.cp == pytest.approx(1.0295)
    assert cap.cpk == pytest.approx(0.9008125)


# ----------------------------------------------------------------------------- rules
# Centre 0, sigma 1 so every value is its own z.


def hits(points: list[float], rule: int) -> list[int]:
    return rule_hits(points, 0.0, 1.0, [rule])[rule]


def test_rule1_beyond_three_sigma_strictly() -> None:
    assert hits([0.0, 0.5, 3.5, -0.2, -3.1, 3.0], 1) == [2, 4]


def test_rule2_nine_on_one_side() -> None:
    assert hits([0.1] * 8, 2) == []
    assert hits([0.1] * 9, 2) == [8]
    assert hits([-0.2] * 10, 2) == [8, 9]
    # A point on the centre line breaks the run.
    assert hits([0.1] * 4 + [0.0] + [0.1] * 8, 2) == []
    assert hits([0.1] * 5 + [-0.1] * 9, 2) == [13]


def test_rule3_six_trending() -> None:
    rising = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert hits(rising, 3) == [5]
    assert hits(rising[:5], 3) == []
    assert hits([0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0], 3) == [5, 6]
    # Equal neighbours break a trend.
    assert hits([0.1, 0.2, 0.3, 0.3, 0.4, 0.5, 0.6], 3) == []


def test_rule4_fourteen_alternating() -> None:
    zigzag = [0.1 if i % 2 == 0 else -0.1 for i in range(14)]
    assert hits(zigzag, 4) == [13]
    assert hits(zigzag[:13], 4) == []
    assert hits([*zigzag, 0.2], 4) == [13, 14]
    broken = [*zigzag[:7], zigzag[6], *zigzag[7:]]
    assert hits(broken, 4) == []


def test_rule5_two_of_three_beyond_two_sigma() -> None:
    assert hits([2.5, 0.0, 2.5], 5) == [2]
    assert hits([2.5, 0.0, -2.5], 5) == []  # not on the same side
    assert hits([2.5, 2.5, 0.0], 5) == [1]  # completed by the second one


def test_rule6_four_of_five_beyond_one_sigma() -> None:
    assert hits([1.5, 1.5, 0.0, 1.5, 1.5], 6) == [4]
    assert hits([1.5, 1.5, 0.0, 1.5, -1.5], 6) == []


def test_rules7_and_8() -> None:
    hugging = [0.5 if i % 2 else -0.5 for i in range(15)]
    assert hits(hugging, 7) == [14]
    assert hits(hugging[:14], 7) == []
    mixture = [1.5 if i % 2 else -1.5 for i in range(8)]
    assert hits(mixture, 8) == [7]


# ----------------------------------------------------------------------------- chart


def test_chart_warmup_sets_limits_then_checks() -> None:
    chart = Chart(warmup=5)
    for value in SERIES[:-1]:
        _, found, limits_set = chart.add(value)
        assert (found, limits_set) == ([], False)
    point, found, limits_set = chart.add(SERIES[-1])
    assert limits_set and found == []
    assert chart.limits is not None
    assert chart.limits.ucl == pytest.approx(IMR_UCL)
    # 16.5 > UCL 15.989 (rule 1); moving range 2.5 < 4.9005
    point, found, _ = chart.add(16.5)
    assert point is not None and point.range == pytest.approx(2.5)
    assert [(h.rule, h.chart) for h in found] == [(1, "x")]
    # 10.0 is inside 8.01..15.99 but its moving range 6.5 > 4.9005
    _, found, _ = chart.add(10.0)
    assert [(h.rule, h.chart, h.value) for h in found] == [(1, "range", 6.5)]


def test_chart_reports_a_run_once_per_episode() -> None:
    chart = Chart(limits=imr_limits(SERIES), rules=(1, 2))
    # Eleven points at 12.5 (above the centre 12): rule 2 completes at the ninth
    # and keeps holding; it is reported once.
    reported = [h.rule for _ in range(11) for h in chart.add(12.5)[1]]
    assert reported == [2]
    # Rule 1 is reported at every point beyond the limits.
    reported = [h.rule for v in (17.0, 17.0) for h in chart.add(v)[1] if h.chart == "x"]
    assert reported == [1, 1]


def test_xbar_chart_plots_subgroup_means() -> None:
    chart = Chart(subgroup_size=4, warmup=3)
    flat = [v for group in SUBGROUPS for v in group]
    results = [chart.add(v) for v in flat]
    assert [r[0] is not None for r in results] == [False, False, False, True] * 3
    assert results[-1][2] is True
    assert chart.limits is not None and chart.limits.ucl == pytest.approx(13.444)
    for value in (14.0, 14.0, 14.0):
        assert chart.add(value) == (None, [], False)
    point, found, _ = chart.add(14.0)
    # mean 14 > 13.444; range 0 inside 0..6.085
    assert point is not None and (point.value, point.range) == (14.0, 0.0)
    assert [(h.rule, h.chart) for h in found] == [(1, "x")]


def test_chart_snapshot_round_trip_continues_the_episode() -> None:
    chart = Chart(warmup=5, rules=(1, 2))
    for value in [*SERIES, 12.5, 12.5, 12.5]:
        chart.add(value)
    twin = Chart(warmup=5, rules=(1, 2))
    twin.restore(chart.snapshot())
    assert twin.limits == chart.limits
    for chart_ in (chart, twin):
        reported = [h.rule for _ in range(6) for h in chart_.add(12.5)[1]]
        # 3 + 6 = 9 points above the centre: rule 2 completes at the sixth added here.
        assert reported == [2]


def test_chart_refuses_bad_setup_and_values() -> None:
    with pytest.raises(ValueError, match="subgroup size"):
        Chart(subgroup_size=11)
    with pytest.raises(ValueError, match="unknown run rules"):
        Chart(rules=(9,))
    with pytest.raises(ValueError, match="warmup"):
        Chart(warmup=1)
    with pytest.raises(ValueError, match="finite"):
        Chart().add(float("nan"))


def test_quality_params_mirror_the_spc_constants() -> None:
    assert params.ALL_RULES == spc.ALL_RULES
    assert params.DEFAULT_RULES == spc.DEFAULT_RULES
    assert params.MAX_SUBGROUP_SIZE == spc.MAX_SUBGROUP
