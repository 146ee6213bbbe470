"""studylib.stats: intervals against hand-computed answers, rules that can give all three
verdicts, floor/ceiling exclusion, the power line and the Claim record."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from studylib.stats import (
    Claim,
    PaperValue,
    Rule,
    Verdict,
    at_floor_or_ceiling,
    clopper_pearson_interval,
    decide_condition,
    fisher_z_interval,
    hierarchical_bootstrap,
    in_every_condition,
    log_ratio_interval,
    logit_interval,
    make_claim,
    paired_difference,
    seeds_needed,
    small_sample_factor,
    t_interval,
    wilson_interval,
)

T2 = 4.302652729911275  # t_{0.975, 2 df}


# ----------------------------------------------------------------------------- intervals


def test_t_interval_by_hand():
    iv = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, se 1/sqrt(3)
    assert iv.estimate == 2.0 and iv.n == 3 and iv.spread == pytest.approx(1.0)
    assert iv.ci95 == pytest.approx((2 - T2 / math.sqrt(3), 2 + T2 / math.sqrt(3)))
    one = t_interval([5.0])
    assert one.estimate == 5.0 and not one.defined
    with pytest.raises(ValueError, match="finite"):
        t_interval([1.0, math.nan])


def test_log_ratio_interval_matches_the_issue_numbers():
    """Sharpness factors 26, 92, 35: raw t gives [-38, 140]; on the log scale [8.5, 226]."""
    raw = t_interval([26.0, 92.0, 35.0])
    assert raw.lo == pytest.approx(-38, abs=1) and raw.hi == pytest.approx(140, abs=1)
    iv = log_ratio_interval([26.0, 92.0, 35.0])
    assert iv.estimate == pytest.approx((26 * 92 * 35) ** (1 / 3))  # geometric mean 43.7
    assert iv.lo == pytest.approx(8.5, abs=0.05) and iv.hi == pytest.approx(226, abs=1)
    assert iv.lo > 0
    with pytest.raises(ValueError, match="positive"):
        log_ratio_interval([1.0, -2.0])


def test_fisher_z_interval_stays_inside_minus_one_one():
    iv = fisher_z_interval([0.95, 0.99, 0.97])
    z = np.arctanh([0.95, 0.99, 0.97])
    half = T2 * z.std(ddof=1) / math.sqrt(3)
    assert iv.estimate == pytest.approx(np.tanh(z.mean()))
    assert iv.ci95 == pytest.approx((np.tanh(z.mean() - half), np.tanh(z.mean() + half)))
    assert -1 < iv.lo < iv.hi < 1
    # the raw-scale t-interval of the same values passes 1 (06 LeNet: up to 1.019)
    assert t_interval([0.95, 0.99, 0.97]).hi > 1
    # seeds that agree exactly: no interval from 3 (see the sign-test test below), a point from 6
    assert all(math.isnan(v) for v in fisher_z_interval([0.9, 0.9, 0.9]).ci95)
    assert fisher_z_interval([0.9] * 6).ci95 == pytest.approx((0.9, 0.9))
    assert fisher_z_interval([1.0] * 6).ci95 == pytest.approx((1.0, 1.0))
    # 01's Kendall taus 0.956, 1, 1: atanh(1) is infinite, so the raw t-interval clipped to
    # [-1, 1] is used (clipping 1 to 1 - 1e-9 instead gave [-0.9999, 1], decided by the 1e-9)
    mixed = fisher_z_interval([0.9556, 1.0, 1.0])
    raw = t_interval([0.9556, 1.0, 1.0])
    assert mixed.lo == pytest.approx(raw.lo) and mixed.hi == 1.0 and mixed.lo > 0.9
    assert "clipped to [-1, 1]" in mixed.method
    noisy = fisher_z_interval([0.9556, 0.9999999999999998, 1.0000000000000002])  # float noise
    assert noisy.ci95 == pytest.approx(mixed.ci95)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        fisher_z_interval([1.2])


def test_logit_interval_for_accuracies():
    iv = logit_interval([0.97, 0.99, 0.995])
    assert iv.estimate == pytest.approx(np.mean([0.97, 0.99, 0.995]))
    assert 0 < iv.lo < iv.estimate < iv.hi < 1
    assert t_interval([0.97, 0.99, 0.995]).hi > 1  # what the raw scale would report
    floor = logit_interval([0.0, 0.0, 0.0])
    assert floor.ci95 == (0.0, 0.0)


def test_wilson_and_clopper_pearson_known_values():
    w = wilson_interval(8, 10)
    assert w.ci95 == pytest.approx((0.4902, 0.9433), abs=1e-4)  # Wilson (1927) formula
    cp = clopper_pearson_interval(0, 10)
    assert cp.lo == 0.0 and cp.hi == pytest.approx(1 - 0.025 ** (1 / 10))  # exact: 0.3085
    cp2 = clopper_pearson_interval(3, 20)
    assert cp2.ci95 == pytest.approx((sps.beta.ppf(0.025, 3, 18), sps.beta.ppf(0.975, 4, 17)))
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_paired_difference_removes_the_shared_seed_effect():
    a, b = [0.80, 0.60, 0.70], [0.70, 0.50, 0.60]  # each seed: a is 0.1 above b
    d = paired_difference(a, b)
    assert d.estimate == pytest.approx(0.1) and d.ci95 == pytest.approx((0.1, 0.1))
    unpaired = t_interval(a)
    assert unpaired.hi - unpaired.lo > 0.3
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0], [1.0, 2.0])


def test_hierarchical_bootstrap_covers_both_levels():
    rng = np.random.default_rng(0)
    same = [rng.normal(0.0, 1.0, 200) for _ in range(3)]
    shifted = [rng.normal(mu, 1.0, 200) for mu in (-2.0, 0.0, 2.0)]
    a = hierarchical_bootstrap(same, n_boot=500, seed=1)
    b = hierarchical_bootstrap(shifted, n_boot=500, seed=1)
    assert a.lo < 0.0 < a.hi and (a.hi - a.lo) < 0.8  # only item noise: narrow
    assert (b.hi - b.lo) > 2.0  # the between-seed spread enters the interval
    again = hierarchical_bootstrap(same, n_boot=500, seed=1)
    assert again.ci95 == a.ci95  # seeded


def test_small_sample_factor_by_hand():
    # n = 3: t_2(0.975) = 4.3027, z = 1.95996, sqrt(3/2) = 1.22474 -> 2.6887
    assert small_sample_factor(3) == pytest.approx(4.302653 / 1.959964 * math.sqrt(1.5), rel=1e-5)
    assert small_sample_factor(1) == 1.0
    assert small_sample_factor(10) == pytest.approx(2.262157 / 1.959964 * math.sqrt(10 / 9),
                                                    rel=1e-5)
    assert 1.0 < small_sample_factor(200) < 1.01


def test_hierarchical_bootstrap_covers_with_three_seeds():
    # Three seeds whose true means scatter with sd 1 around 0, little item noise: a plain
    # percentile bootstrap over 3 seeds covers 0 far less often than 95%; the widened one does.
    rng = np.random.default_rng(7)
    covered, n_sims = 0, 200
    for _ in range(n_sims):
        groups = [rng.normal(mu, 0.1, 30) for mu in rng.normal(0.0, 1.0, 3)]
        iv = hierarchical_bootstrap(groups, n_boot=200, seed=int(rng.integers(1 << 30)))
        covered += iv.lo <= 0.0 <= iv.hi
        assert "widened x2.69 for 3 seeds" in iv.method
    assert covered / n_sims >= 0.9


def test_hierarchical_bootstrap_power_line_and_bounds():
    groups = [np.full(50, v) + np.linspace(-0.01, 0.01, 50) for v in (0.90, 0.95, 0.99)]
    iv = hierarchical_bootstrap(groups, n_boot=300, seed=0, bounds=(0.0, 1.0))
    assert iv.hi <= 1.0 and iv.lo >= 0.0  # clipped to the natural range
    assert iv.spread > 0 and seeds_needed(iv, 0.5) is not None


def test_seeds_needed_by_hand():
    # values 0.5, 0.6, 0.7 vs threshold 0.4: gap 0.2, sd 0.1: n with t_{n-1} * 0.1 / sqrt(n) < 0.2
    iv = t_interval([0.5, 0.6, 0.7])
    n = seeds_needed(iv, 0.4)
    assert n == 4  # n = 3: 4.303 * 0.1 / 1.732 = 0.248 > 0.2; n = 4: 3.182 * 0.1 / 2 = 0.159
    assert sps.t.ppf(0.975, n - 1) * 0.1 / math.sqrt(n) < 0.2
    assert sps.t.ppf(0.975, n - 2) * 0.1 / math.sqrt(n - 1) >= 0.2
    close = t_interval([0.41, 0.45, 0.52])  # gap 0.06 at sd 0.056: more seeds
    m = seeds_needed(close, 0.4)
    assert m == 6 and sps.t.ppf(0.975, 5) * close.spread / math.sqrt(6) < 0.06
    assert seeds_needed(t_interval([0.5]), 0.4) is None


# ----------------------------------------------------------------------------- rules


@pytest.mark.parametrize("rule, yes, no, undecided", [
    (Rule("at_least", 0.9), (0.91, 0.95), (0.5, 0.89), (0.85, 0.95)),
    (Rule("greater", 1.0), (1.01, 2.0), (0.5, 1.0), (0.9, 1.5)),
    (Rule("at_most", -0.8), (-0.95, -0.85), (-0.7, -0.1), (-0.9, -0.7)),
    (Rule("less", 0.0), (-0.5, -0.01), (0.0, 0.4), (-0.1, 0.1)),
    (Rule("equivalent", 0.0, margin=0.05), (-0.03, 0.04), (0.06, 0.2), (-0.02, 0.09)),
    (Rule("non_inferior", 0.0, margin=0.02), (-0.01, 0.05), (-0.2, -0.03), (-0.05, 0.01)),
])
def test_every_rule_can_give_every_verdict(rule, yes, no, undecided):
    assert rule.decide(*yes) == Verdict.REPRODUCED
    assert rule.decide(*no) == Verdict.NOT_REPRODUCED
    assert rule.decide(*undecided) == Verdict.INCONCLUSIVE
    assert rule.decide(math.nan, math.nan) == Verdict.INCONCLUSIVE


def test_margin_widens_the_undecided_zone():
    strict, lenient = Rule("at_least", 0.9), Rule("at_least", 0.9, margin=0.05)
    assert strict.decide(0.80, 0.88) == Verdict.NOT_REPRODUCED
    assert lenient.decide(0.80, 0.88) == Verdict.INCONCLUSIVE
    assert lenient.decide(0.70, 0.84) == Verdict.NOT_REPRODUCED
    with pytest.raises(ValueError, match="not one of"):
        Rule("roughly", 1.0)
    with pytest.raises(ValueError, match="margin"):
        Rule("equivalent", 0.0)
    with pytest.raises(ValueError, match="out of order"):
        strict.decide(0.9, 0.8)


def test_verdict_is_a_string():
    assert Verdict.REPRODUCED == "reproduced" and f"{Verdict.NOT_REPRODUCED}" == "not reproduced"
    assert json.dumps(Verdict.INCONCLUSIVE) == '"inconclusive"'


# ----------------------------------------------------------------------------- conditions


def _cond(name, values, rule, floor_check=False):
    iv = t_interval(values)
    reason = None
    if floor_check:
        where = at_floor_or_ceiling(values)
        reason = f"{where}: every model at {values[0]:g} in every seed" if where else None
    return decide_condition(name, iv, rule, uninformative=reason)


def test_a_floor_condition_is_left_out_not_decisive():
    """03's failure mode: eps 0.3 with every model at 0.000 gave [0, 0] and decided the claim."""
    rule = Rule("greater", 0.0)
    decisions = [_cond("eps 0.1", [0.20, 0.25, 0.22], rule, True),
                 _cond("eps 0.3", [0.0, 0.0, 0.0], rule, True)]
    verdict, excluded = in_every_condition(decisions)
    assert verdict == Verdict.REPRODUCED
    assert excluded == [{"condition": "eps 0.3", "reason": "floor: every model at 0 in every seed"}]
    # without the exclusion the floor cell alone would have made it "not reproduced" (with six
    # seeds at 0, where even the distribution-free interval is the point [0, 0])
    naive = [_cond("eps 0.1", [0.20, 0.25, 0.22, 0.21, 0.24, 0.23], rule),
             _cond("eps 0.3", [0.0] * 6, rule)]
    assert in_every_condition(naive)[0] == Verdict.NOT_REPRODUCED


def test_in_every_condition_all_three_ways():
    rule = Rule("greater", 0.0)
    ok = _cond("a", [0.2, 0.3, 0.25], rule)
    bad = _cond("b", [-0.3, -0.2, -0.25], rule)
    unsure = _cond("c", [-0.1, 0.2, 0.05], rule)
    assert in_every_condition([ok, ok])[0] == Verdict.REPRODUCED
    assert in_every_condition([ok, bad, unsure])[0] == Verdict.NOT_REPRODUCED
    assert in_every_condition([ok, unsure])[0] == Verdict.INCONCLUSIVE
    only_floor = [_cond("z", [0.0, 0.0], rule, True)]
    assert in_every_condition(only_floor)[0] == Verdict.INCONCLUSIVE
    assert at_floor_or_ceiling([1.0, 1.0]) == "ceiling" and at_floor_or_ceiling([0.0, 0.1]) is None


# ----------------------------------------------------------------------------- claims


def test_make_claim_counts_seeds_and_writes_a_power_line():
    rule = Rule("at_least", 0.9)
    c = make_claim("fo_oracle", "FO ranks like the oracle", fisher_z_interval([0.88, 0.93, 0.95]),
                   rule, paper_value=PaperValue("> 0.93", "abstract"))
    assert c.verdict == Verdict.INCONCLUSIVE and c.k_of_n == "2 of 3 seeds"
    assert c.power and "seeds would decide it" in c.power
    assert c.interval_method == "fisher-z t over 3 seeds"
    yes = make_claim("x", "s", fisher_z_interval([0.95, 0.96, 0.97]), rule)
    assert yes.verdict == Verdict.REPRODUCED and yes.power is None and yes.k_of_n == "3 of 3 seeds"
    single = make_claim("x", "s", t_interval([0.95]), rule)
    assert single.verdict == Verdict.INCONCLUSIVE and "one seed" in single.power


def test_claim_round_trips_through_json_and_checks_itself():
    c = make_claim("ratio", "ratio >= 3", log_ratio_interval([26.0, 92.0, 35.0]),
                   Rule("at_least", 3.0), excluded=[{"condition": "c", "reason": "floor"}],
                   details={"per_arch": {"mlp": 4.1}})
    obj = json.loads(json.dumps(c.to_json()))
    assert obj["estimate"] == pytest.approx(43.7, abs=0.1) and obj["verdict"] == "reproduced"
    assert obj["ci95"][0] > 0 and obj["rule"] == {"kind": "at_least", "threshold": 3.0, "margin": 0.0}
    back = Claim.from_json(obj)
    assert back.to_json() == obj
    nan_claim = make_claim("one", "s", t_interval([2.0]), Rule("greater", 1.0))
    assert nan_claim.to_json()["ci95"] == [None, None]
    assert Claim.from_json(json.loads(json.dumps(nan_claim.to_json()))).verdict == "inconclusive"
    with pytest.raises(ValueError, match="schema"):
        Claim.from_json({**obj, "schema": 99})
    with pytest.raises(ValueError, match="outside its interval"):
        Claim(id="bad", statement="s", verdict=Verdict.REPRODUCED, estimate=5.0,
              ci95=(0.0, 1.0), rule=Rule("greater", 0.0), interval_method="t over 3 seeds",
              n_seeds=3, seeds_on_claimed_side=3)


def test_claim_block_reads_as_text():
    c = make_claim("fo_oracle", "FO ranks like the oracle", fisher_z_interval([0.88, 0.93, 0.95]),
                   Rule("at_least", 0.9), paper_value=PaperValue("> 0.93", "abstract"))
    block = c.block()
    assert block.splitlines()[0] == "[inconclusive] fo_oracle"
    assert "rule: >= 0.9" in block and "2 of 3 seeds" in block and "paper: > 0.93 (abstract)" in block
    assert "0.92" in block  # the estimate, at 3 significant digits


def test_claim_over_conditions_reports_the_decisive_condition():
    from studylib.stats import claim_over_conditions

    rule = Rule("at_least", 3.0)
    d = [decide_condition("mlp", log_ratio_interval([4.0, 4.5, 5.0]), rule),
         decide_condition("cnn", log_ratio_interval([3.3, 3.4, 3.5]), rule),
         decide_condition("wide", log_ratio_interval([9.0, 10.0, 11.0]), rule)]
    c = claim_over_conditions("crossing", "ratio >= 3 in every architecture", d)
    assert c.verdict == Verdict.REPRODUCED
    assert c.interval_method.endswith("decisive condition: cnn")  # the tightest one
    assert c.estimate == pytest.approx((3.3 * 3.4 * 3.5) ** (1 / 3)) and c.k_of_n == "3 of 3 seeds"
    assert [row["condition"] for row in c.details["conditions"]] == ["mlp", "cnn", "wide"]
    # one seed below 3 in one condition: that seed is not on the claimed side
    d2 = d[:2] + [decide_condition("narrow", log_ratio_interval([2.5, 3.6, 4.2]), rule)]
    c2 = claim_over_conditions("crossing", "s", d2)
    assert c2.verdict == Verdict.INCONCLUSIVE and c2.k_of_n == "2 of 3 seeds"
    assert c2.interval_method.endswith("narrow") and "seeds would decide it" in c2.power
    d3 = d[:2] + [decide_condition("bad", log_ratio_interval([1.5, 1.8, 2.0]), rule)]
    assert claim_over_conditions("crossing", "s", d3).verdict == Verdict.NOT_REPRODUCED


# ----------------------------------------------------------------------- natural ranges


def test_each_interval_carries_its_natural_range():
    from studylib.stats import (
        clopper_pearson_interval,
        log_ratio_interval,
        logit_interval,
        t_interval,
    )

    assert fisher_z_interval([0.9, 0.95, 0.97]).bounds == (-1.0, 1.0)
    assert log_ratio_interval([26, 92, 35]).bounds == (0.0, math.inf)
    assert logit_interval([0.9, 0.95, 0.97]).bounds == (0.0, 1.0)
    assert clopper_pearson_interval(3, 10).bounds == (0.0, 1.0)
    assert t_interval([1.0, 2.0, 3.0]).bounds == (-math.inf, math.inf)


def test_a_paired_difference_of_proportions_is_clipped_to_minus_one_one():
    # differences 0.9, 0.95, 0.2: the raw t-interval over 3 seeds reaches past 1
    iv = paired_difference([0.95, 1.0, 0.3], [0.05, 0.05, 0.1], bounds=(-1, 1))
    raw = paired_difference([0.95, 1.0, 0.3], [0.05, 0.05, 0.1])
    assert raw.hi > 1 and iv.hi == 1.0 and iv.lo == raw.lo and "clipped" in iv.method
    assert iv.bounds == (-1.0, 1.0)


def test_an_interval_or_claim_outside_its_range_is_an_error():
    from studylib.stats import Claim, Interval

    with pytest.raises(ValueError, match="natural range"):
        Interval(0.9, 0.8, 1.02, "made up", 3, bounds=(-1.0, 1.0))
    with pytest.raises(ValueError, match="natural range"):
        Claim(id="c", statement="s", verdict=Verdict.INCONCLUSIVE, estimate=0.9,
              ci95=(0.8, 1.02), rule=Rule("at_least", 0.9), interval_method="t",
              n_seeds=3, seeds_on_claimed_side=1, natural_range=(-1.0, 1.0))


def test_the_range_survives_json():
    c = make_claim("c", "s", fisher_z_interval([0.9, 0.95, 0.97]), Rule("at_least", 0.5))
    obj = json.loads(json.dumps(c.to_json()))
    assert obj["range"] == [-1.0, 1.0]
    assert Claim.from_json(obj).natural_range == (-1.0, 1.0)
    r = make_claim("r", "s", t_interval([1.0, 2.0, 3.0]), Rule("greater", 0.0))
    assert r.to_json()["range"] == [None, None]
    assert Claim.from_json(json.loads(json.dumps(r.to_json()))).natural_range == (-math.inf,
                                                                                   math.inf)


# ----------------------------------------------------------------------- ranking and AUC


def test_rank_correlations_by_hand():
    from studylib.stats import kendall_tau, mean_pairwise_kendall_tau, spearman_rho, spearman_rows

    # one discordant pair of three: tau = (2 - 1) / 3
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    # d = (0, 1, -1): rho = 1 - 6 * 2 / (3 * 8) = 0.5
    assert spearman_rho([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert kendall_tau([1, 1, 1], [1, 2, 3]) == 0.0  # no spread ranks nothing
    rows = spearman_rows(np.array([[1, 2, 3], [3, 2, 1], [1, 1, 1]]),
                         np.array([[1, 3, 2], [1, 2, 3], [1, 2, 3]]))
    assert rows[:2] == pytest.approx([0.5, -1.0]) and math.isnan(rows[2])
    assert mean_pairwise_kendall_tau([[1, 2, 3], [1, 2, 3], [3, 2, 1]]) == pytest.approx(-1 / 3)
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1, 2, 3])


def test_roc_auc_and_its_bootstrap_agree_with_scikit_learn():
    from sklearn.metrics import roc_auc_score

    from studylib.stats import bootstrap_auc, roc_auc

    # pairs (pos, neg): (1,0) win, (1,1) tie, (2,0) win, (2,1) win -> (3 + 0.5) / 4
    assert roc_auc([0.0, 1.0], [1.0, 2.0]) == pytest.approx(0.875)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = y + rng.normal(0, 1.5, 200)
    ref = roc_auc_score(y, s)
    assert roc_auc(s[y == 0], s[y == 1]) == pytest.approx(ref)
    auc, reps = bootstrap_auc(y, np.stack([s, -s]), n_boot=200, seed=1)
    assert auc == pytest.approx([ref, 1 - ref])
    assert reps.shape == (200, 2) and np.allclose(reps[:, 0] + reps[:, 1], 1)
    assert np.all((reps >= 0) & (reps <= 1))


def test_seeds_that_agree_exactly_need_the_sign_test_not_a_zero_width_t_interval():
    from studylib.stats import sign_test_seeds

    # 2 * 0.5**5 = 0.0625 > 0.05 >= 2 * 0.5**6 = 0.03125
    assert sign_test_seeds(0.95) == 6 and sign_test_seeds(0.99) == 8
    few = fisher_z_interval([0.295, 0.295])
    assert math.isnan(few.lo) and math.isnan(few.hi) and few.estimate == pytest.approx(0.295)
    c = make_claim("c", "s", few, Rule("less", 0.8))
    assert c.verdict == Verdict.INCONCLUSIVE and "6" in c.power
    many = t_interval([0.3] * 6)
    assert (many.lo, many.hi) == (0.3, 0.3)
    assert make_claim("c", "s", many, Rule("less", 0.8)).verdict == Verdict.REPRODUCED
    # a little spread: the t-interval as usual
    assert math.isfinite(t_interval([0.3, 0.3, 0.31]).lo)


def test_bootstrap_interval_of_items_is_seeded_and_paired():
    from studylib.stats import bootstrap_interval

    x = np.random.default_rng(0).normal(1.0, 1.0, 200)
    lo, hi = bootstrap_interval(x, seed=0)
    # the percentile interval of the mean is close to mean +- 1.96 sd / sqrt(n)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - half, abs=0.05) and hi == pytest.approx(x.mean() + half,
                                                                                  abs=0.05)
    assert bootstrap_interval(x, seed=0) == (lo, hi) and bootstrap_interval(x, seed=1) != (lo, hi)
    rows = np.column_stack([x, x + 0.5])  # paired rows: the difference is exactly 0.5
    d = bootstrap_interval(rows, statistic=lambda r: float(np.mean(r[:, 1] - r[:, 0])))
    assert d == pytest.approx((0.5, 0.5))
    assert all(math.isnan(v) for v in bootstrap_interval([1.0]))


def test_in_some_group_holds_if_one_group_holds_fails_only_if_all_fail():
    from studylib.stats import in_some_group

    rule = Rule("greater", 0.0)
    yes = _cond("yes", [0.2, 0.25, 0.22], rule)
    no = _cond("no", [-0.2, -0.25, -0.22], rule)
    maybe = _cond("maybe", [-0.2, 0.3, 0.05], rule)
    assert in_some_group([[no], [yes, yes]]) == (Verdict.REPRODUCED, 1)
    assert in_some_group([[no], [yes, no]])[0] == Verdict.NOT_REPRODUCED  # each group fails
    assert in_some_group([[no], [maybe]]) == (Verdict.INCONCLUSIVE, 1)
    with pytest.raises(ValueError):
        in_some_group([])


def test_bonferroni_ci_gives_family_coverage_and_rejects_bad_counts():
    from studylib.stats import bonferroni_ci
    assert bonferroni_ci(1) == pytest.approx(0.95)
    assert bonferroni_ci(4) == pytest.approx(1 - 0.05 / 4)
    # a wider interval: the t quantile at the corrected level exceeds the 95% one
    from scipy import stats as st
    assert st.t.ppf(0.5 + bonferroni_ci(4) / 2, 4) > st.t.ppf(0.975, 4)
    # family-wise coverage by simulation: 4 independent 95%-corrected normal intervals
    rng = np.random.default_rng(0)
    z = st.norm.ppf(0.5 + bonferroni_ci(4) / 2)
    misses = (np.abs(rng.standard_normal((20000, 4))) > z).any(axis=1).mean()
    assert misses <= 0.05 + 0.005
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError):
            bonferroni_ci(bad)
    with pytest.raises(ValueError):
        bonferroni_ci(3, ci=1.0)
