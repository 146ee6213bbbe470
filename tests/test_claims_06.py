"""Study 06's claims on hand-built records: each can come out reproduced, not reproduced and
inconclusive (tests/test_claims_registry.py requires the three)."""

from __future__ import annotations

import pytest

from studylib.stats import Verdict
from studylib.studies import taylor_pruning as S


def _rec(fo=0.95, so=0.96, mag=0.5, rnd=0.0, fo_bn=None, bn=None, gap_fo=1.0, gap_mag=3.0,
         base=0.97, pruned=0.965, reduction=0.35, ratio=0.8):
    corr = {"taylor_fo": fo, "taylor_so": so, "weight_magnitude": mag, "random": rnd}
    if fo_bn is not None:
        corr.update({"taylor_fo@bn": fo_bn, "bn_scale": bn})
    return {"correlations": {k: {"spearman": v} for k, v in corr.items()},
            "curve_gap": {"taylor_fo": gap_fo, "weight_magnitude": gap_mag},
            "base_accuracy": base,
            "claim": {"accuracy": pruned, "param_reduction": reduction},
            "pruning": {"taylor_fo": [{"max_abs_diff_pruned_vs_gated": 3e-6}]},
            "timing": {"ratio_b_over_a": ratio}}


def _seeds(**per_seed):
    """Three seeds; each keyword is a list of three values."""
    n = len(next(iter(per_seed.values())))
    return [_rec(**{k: v[i] for k, v in per_seed.items()}) for i in range(n)]


def test_taylor_fo_correlates_with_oracle_reproduced():
    c = S.claim_taylor_fo_correlates_with_oracle({"lenet": _seeds(fo=[0.95, 0.96, 0.955])})
    assert c.verdict == Verdict.REPRODUCED and c.ci95[1] < 1 and c.paper_value


def test_taylor_fo_correlates_with_oracle_not_reproduced():
    c = S.claim_taylor_fo_correlates_with_oracle({"lenet": _seeds(fo=[0.95, 0.96, 0.955]),
                                                  "resnet": _seeds(fo=[0.70, 0.72, 0.71])})
    assert c.verdict == Verdict.NOT_REPRODUCED and "resnet" in c.interval_method


def test_taylor_fo_correlates_with_oracle_inconclusive():
    c = S.claim_taylor_fo_correlates_with_oracle({"resnet": _seeds(fo=[0.85, 0.93, 0.89])})
    assert c.verdict == Verdict.INCONCLUSIVE and c.power


def test_taylor_beats_magnitude_and_random_reproduced():
    c = S.claim_taylor_beats_magnitude_and_random(
        {"resnet": _seeds(fo=[0.9, 0.8, 0.85], mag=[0.5, 0.45, 0.5], rnd=[0.0, 0.05, -0.05],
                          fo_bn=[0.7, 0.72, 0.69], bn=[0.2, 0.3, 0.25])})
    assert c.verdict == Verdict.REPRODUCED
    assert len(c.details["conditions"]) == 3  # FO - magnitude, FO - random, FO@bn - BN scale


def test_taylor_beats_magnitude_and_random_not_reproduced():
    c = S.claim_taylor_beats_magnitude_and_random(
        {"lenet": _seeds(fo=[0.5, 0.55, 0.52], mag=[0.8, 0.85, 0.82], rnd=[0.0, 0.0, 0.0])})
    assert c.verdict == Verdict.NOT_REPRODUCED and "weight_magnitude" in c.interval_method


def test_taylor_beats_magnitude_and_random_inconclusive():
    # overlapping seed CIs that the old rule called inconclusive, and a paired difference that
    # changes sign between seeds: still undecided
    c = S.claim_taylor_beats_magnitude_and_random(
        {"lenet": _seeds(fo=[0.8, 0.6, 0.7], mag=[0.7, 0.65, 0.72], rnd=[0.0, 0.0, 0.0])})
    assert c.verdict == Verdict.INCONCLUSIVE


def test_paired_differences_decide_where_seed_cis_overlap():
    """FO beats magnitude by 0.05 in every seed while both vary a lot between seeds: the old
    non-overlapping-CI rule could not tell; the paired difference can."""
    c = S.claim_taylor_beats_magnitude_and_random(
        {"lenet": _seeds(fo=[0.9, 0.7, 0.8], mag=[0.85, 0.65, 0.75], rnd=[0.0, 0.1, -0.1])})
    assert c.verdict == Verdict.REPRODUCED


def test_second_order_matches_first_reproduced():
    c = S.claim_second_order_matches_first(
        {"lenet": _seeds(fo=[0.90, 0.92, 0.91], so=[0.91, 0.925, 0.915])})
    assert c.verdict == Verdict.REPRODUCED and c.rule.kind == "equivalent"


def test_second_order_matches_first_not_reproduced():
    c = S.claim_second_order_matches_first(
        {"lenet": _seeds(fo=[0.80, 0.82, 0.81], so=[0.95, 0.96, 0.955])})
    assert c.verdict == Verdict.NOT_REPRODUCED and c.ci95[0] > 0.05


def test_second_order_matches_first_inconclusive():
    c = S.claim_second_order_matches_first(
        {"lenet": _seeds(fo=[0.80, 0.85, 0.90], so=[0.86, 0.87, 0.92])})
    assert c.verdict == Verdict.INCONCLUSIVE


def test_pruning_curve_tracks_oracle_reproduced():
    c = S.claim_pruning_curve_tracks_oracle(
        {"lenet": _seeds(gap_fo=[1.0, 1.2, 0.9], gap_mag=[3.0, 3.5, 2.8])})
    assert c.verdict == Verdict.REPRODUCED and c.estimate == pytest.approx(-2.0667, abs=1e-3)


def test_pruning_curve_tracks_oracle_not_reproduced():
    c = S.claim_pruning_curve_tracks_oracle(
        {"lenet": _seeds(gap_fo=[2.0, 2.2, 1.9], gap_mag=[1.0, 1.1, 0.8])})
    assert c.verdict == Verdict.NOT_REPRODUCED


def test_pruning_curve_tracks_oracle_inconclusive():
    c = S.claim_pruning_curve_tracks_oracle(
        {"lenet": _seeds(gap_fo=[1.0, 2.0, 1.5], gap_mag=[1.5, 1.4, 1.6])})
    assert c.verdict == Verdict.INCONCLUSIVE


def test_prune_30pct_params_small_accuracy_loss_reproduced():
    c = S.claim_prune_30pct_params_small_accuracy_loss(
        {"lenet": _seeds(base=[0.97, 0.975, 0.972], pruned=[0.968, 0.973, 0.971],
                         reduction=[0.35, 0.36, 0.34])})
    assert c.verdict == Verdict.REPRODUCED and c.rule.kind in ("non_inferior", "at_least")


def test_prune_30pct_params_small_accuracy_loss_not_reproduced():
    c = S.claim_prune_30pct_params_small_accuracy_loss(
        {"lenet": _seeds(base=[0.97, 0.975, 0.972], pruned=[0.90, 0.91, 0.905],
                         reduction=[0.35, 0.36, 0.34])})
    assert c.verdict == Verdict.NOT_REPRODUCED and "accuracy" in c.interval_method
    short = S.claim_prune_30pct_params_small_accuracy_loss(  # the target was never reached
        {"lenet": _seeds(base=[0.97, 0.975, 0.972], pruned=[0.968, 0.973, 0.971],
                         reduction=[0.10, 0.11, 0.12])})
    assert short.verdict == Verdict.NOT_REPRODUCED and "parameters removed" in short.interval_method


def test_prune_30pct_params_small_accuracy_loss_inconclusive():
    c = S.claim_prune_30pct_params_small_accuracy_loss(
        {"lenet": _seeds(base=[0.97, 0.975, 0.972], pruned=[0.955, 0.975, 0.96],
                         reduction=[0.35, 0.36, 0.34])})
    assert c.verdict == Verdict.INCONCLUSIVE and c.power


def test_pruned_model_is_faster_reproduced():
    c = S.claim_pruned_model_is_faster({"lenet": _seeds(ratio=[0.6, 0.62, 0.58])})
    assert c.verdict == Verdict.REPRODUCED and 0 < c.ci95[0] < c.ci95[1] < 1


def test_pruned_model_is_faster_not_reproduced():
    c = S.claim_pruned_model_is_faster({"lenet": _seeds(ratio=[1.2, 1.25, 1.22])})
    assert c.verdict == Verdict.NOT_REPRODUCED


def test_pruned_model_is_faster_inconclusive():
    c = S.claim_pruned_model_is_faster({"lenet": _seeds(ratio=[0.9, 1.1, 0.99])})
    assert c.verdict == Verdict.INCONCLUSIVE
