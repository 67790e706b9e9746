"""The blessing chart from hand-made metrics: its data, and the bars, intervals and line it draws."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.patches import Rectangle

from recsys.blessing import CostRule, bless
from recsys.blessing_chart import chart_of, plot

CANDIDATE = {"ndcg_at_10": 0.120, "ndcg_at_10_lo": 0.100, "ndcg_at_10_hi": 0.140}
CHAMPION = {"ndcg_at_10": 0.110, "ndcg_at_10_lo": 0.095, "ndcg_at_10_hi": 0.128}
BASELINE = {"ndcg_at_10": 0.050, "ndcg_at_10_lo": 0.041, "ndcg_at_10_hi": 0.060}


def test_a_first_champion_is_drawn_against_popularity_with_its_threshold() -> None:
    chart = chart_of(bless(CANDIDATE, None, BASELINE), {"candidate": "two_tower", "baseline": "popularity"})
    assert chart.blessed and chart.threshold == 0.050  # it had to beat popularity
    assert [(b.role, b.family, b.value, b.lo, b.hi) for b in chart.bars] == [
        ("candidate", "two_tower", 0.120, 0.100, 0.140),
        ("baseline", "popularity", 0.050, 0.041, 0.060),
    ]
    fig = plot(chart)
    (ax,) = fig.axes
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [round(b.get_height(), 6) for b in bars] == [0.12, 0.05]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["two_tower\ncandidate", "popularity\nbaseline"]
    (whiskers,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    ends = sorted((round(seg[0][1], 6), round(seg[1][1], 6)) for seg in whiskers.get_segments())
    assert ends == [(0.041, 0.06), (0.1, 0.14)]  # each interval, lo to hi
    (threshold,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert np.allclose(threshold.get_ydata(), 0.050)
    assert "threshold to bless: 0.0500" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_ylabel() == "ndcg_at_10" and "candidate blessed" in ax.get_title()


def test_against_a_champion_the_cost_margin_moves_the_threshold_and_the_title_says_refused() -> None:
    dear = CANDIDATE | {"train_cpu_s": 100.0}
    held = CHAMPION | {"train_cpu_s": 10.0}
    blessing = bless(dear, held, None, cost_rule=CostRule(max_factor=2.0, min_gain=0.2))
    chart = chart_of(blessing, {"candidate": "ials", "champion": "two_tower", "baseline": "popularity"})
    assert not chart.blessed and chart.rule == "cost"
    assert chart.threshold == pytest.approx(0.110 * 1.2)  # the champion's plus the margin, not the champion's alone
    assert [(b.role, b.family) for b in chart.bars] == [("candidate", "ials"), ("champion", "two_tower")]
    (ax,) = plot(chart).axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ials\ncandidate", "two_tower\nchampion"]
    assert "not blessed (cost rule)" in ax.get_title()


def test_a_model_without_an_interval_is_drawn_without_whiskers() -> None:
    chart = chart_of(bless({"ndcg_at_10": 0.12}, None, BASELINE), {"candidate": "ease", "baseline": "popularity"})
    assert (chart.bars[0].lo, chart.bars[0].hi) == (None, None)
    (ax,) = plot(chart).axes
    (whiskers,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert [(round(seg[0][0], 6), round(seg[0][1], 6), round(seg[1][1], 6)) for seg in whiskers.get_segments()] == [(1, 0.041, 0.06)]
