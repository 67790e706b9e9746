"""Blessing rules on hand-made metrics: quality alone, and the optional cost rule."""

from __future__ import annotations

import pytest

from recsys.blessing import CostRule, bless

CHAMPION = {"ndcg_at_10": 0.100, "train_cpu_s": 10.0, "serve_cpu_us_per_user": 50.0}
RULE = CostRule(max_factor=2.0, min_gain=0.05)


def test_quality_rule_without_costs() -> None:
    assert bless({"ndcg_at_10": 0.100}, CHAMPION, None).blessed  # not worse is enough
    assert bless({"ndcg_at_10": 0.100}, CHAMPION, None).threshold == 0.100  # the champion's value is the line to reach
    refused = bless({"ndcg_at_10": 0.099}, CHAMPION, None)
    assert not refused.blessed and refused.rule == "quality" and "worse than champion's" in refused.reasons[0]
    with pytest.raises(ValueError, match="baseline"):
        bless({"ndcg_at_10": 0.2}, None, None)


def test_cost_rule_refuses_a_much_dearer_candidate_with_a_small_gain() -> None:
    candidate = {"ndcg_at_10": 0.102, "train_cpu_s": 100.0, "serve_cpu_us_per_user": 50.0}  # 10x to train, +2%
    assert bless(candidate, CHAMPION, None).blessed  # the rule is off by default: today's blessing
    verdict = bless(candidate, CHAMPION, None, cost_rule=RULE)
    assert not verdict.blessed and verdict.rule == "cost"
    assert "train_cpu_s is 10.00x" in verdict.reasons[1] and "0.1050" in verdict.reasons[1] and "does not pay" in verdict.reasons[1]
    assert verdict.costs == {
        "candidate": {"train_cpu_s": 100.0, "serve_cpu_us_per_user": 50.0},
        "champion": {"train_cpu_s": 10.0, "serve_cpu_us_per_user": 50.0},
    }


def test_cost_rule_accepts_a_large_gain_and_a_cheap_candidate() -> None:
    dear_but_better = {"ndcg_at_10": 0.110, "train_cpu_s": 10.0, "serve_cpu_us_per_user": 500.0}  # 10x to serve, +10%
    verdict = bless(dear_but_better, CHAMPION, None, cost_rule=RULE)
    assert verdict.blessed and verdict.rule == "quality" and "serve_cpu_us_per_user is 10.00x" in verdict.reasons[1]
    cheap = {"ndcg_at_10": 0.100, "train_cpu_s": 15.0, "serve_cpu_us_per_user": 60.0}  # 1.5x: within the factor
    verdict = bless(cheap, CHAMPION, None, cost_rule=RULE)
    assert verdict.blessed and "within 2x" in verdict.reasons[1]


def test_cost_rule_never_rescues_a_worse_candidate_and_skips_unknown_costs() -> None:
    worse_and_cheap = {"ndcg_at_10": 0.090, "train_cpu_s": 1.0, "serve_cpu_us_per_user": 5.0}
    assert not bless(worse_and_cheap, CHAMPION, None, cost_rule=RULE).blessed
    unknown = bless({"ndcg_at_10": 0.101}, {"ndcg_at_10": 0.100}, None, cost_rule=RULE)
    assert unknown.blessed and "no cost recorded" in unknown.reasons[1]
