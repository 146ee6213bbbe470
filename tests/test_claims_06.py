"""Study 06's claims on hand-built records: each can come out reproduced, not reproduced and
inconclusive (tests/test_claims_registry.py requires the three); and its Settings against the
notebook's parameters cell."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import notebook_parameters

from studylib.core import paths
from studylib.stats import Verdict
from studylib.studies import taylor_pruning as S

NOTEBOOK = paths.NOTEBOOKS_DIR / "06_taylor_pruning.ipynb"
# parameters the notebook hands to StudyContext rather than to the study's Settings
CONTEXT_PARAMETERS = {"profile", "output_dir", "device", "seeds"}


def _settings(**overrides) -> S.Settings:
    base = dict(setups={"lenet": {"model": "lenet", "dataset": "digits", "epochs": 1, "lr": 1e-3}},
                batch_size=64, score_batches=2, score_batch_size=64, oracle_batches=2,
                score_momentum=0.0, curve_points=10,
                curve_max_fraction=0.6, curve_examples=256,
                prune_criteria=("taylor_fo", "weight_magnitude", "random"), frequency=5,
                neurons_per_step=8, momentum=0.9, snapshot_fractions=(0.2, 0.4, 0.6),
                finetune_epochs=1, finetune_lr=1e-3, timing_repeats=25, timing_batch=128,
                rho_threshold=0.9, so_tolerance=0.05, target_param_reduction=0.3,
                max_accuracy_drop_points=1.0, target_flops_reduction=0.4,
                prune_optimizer="adam", snapshot_eval_examples=0, seed_workers=1)
    return S.Settings(**{**base, **overrides})


SETTINGS = _settings()


def _corr(rho: float) -> S.Correlation:
    return S.Correlation(spearman=rho, kendall=rho, n=100, per_layer={})


def _row(accuracy: float, reduction: float) -> S.PruningRow:
    return S.PruningRow(fraction=0.4, removed=90, accuracy_before_finetune=accuracy - 0.05,
                        accuracy=accuracy, flops=1000, params=int(1e4 * (1 - reduction)),
                        flops_reduction=reduction / 2, param_reduction=reduction,
                        max_abs_diff_pruned_vs_gated=3e-6, kept={"conv": 4, "fc": 6})


N_TEST = 2000


def _correct(accuracy: float) -> np.ndarray:
    """A test split of N_TEST images, the first round(accuracy * N_TEST) correct: two such
    arrays differ on exactly the images between their two accuracies (paired by image)."""
    return np.arange(N_TEST) < round(accuracy * N_TEST)


def _matched(match: str, pruned: float, control: float, base: float, reduction: float,
             reached: bool = True) -> S.MatchedComparison:
    return S.MatchedComparison(
        match=match, target=0.3 if match == "parameters" else 0.4, reached=reached,
        fraction=0.4, reduction=reduction, minibatches=120, pruned_correct=_correct(pruned),
        control_correct=_correct(control), dense_correct=_correct(base))


def _rec(fo=0.95, so=0.96, mag=0.5, rnd=0.0, fo_bn=None, bn=None, gap_fo=1.0, gap_mag=3.0,
         base=0.97, pruned=0.965, reduction=0.35, ratio=0.8, seed=0, control=None,
         flops_reduction=0.45, flops_reached=True) -> S.SeedRecord:
    corr = {"taylor_fo": fo, "taylor_so": so, "taylor_fo_weight": 0.8, "weight_magnitude": mag,
            "bn_scale": math.nan if bn is None else bn, "random": rnd}
    if fo_bn is not None:  # a network with BatchNorms
        corr[S.FO_AT_BN] = fo_bn
    row = _row(pruned, reduction)
    ctrl = base if control is None else control
    return S.SeedRecord(
        setup="hand-built", seed=seed, base_accuracy=base, base_loss=0.1, layers=("conv", "fc"),
        layer_widths=(8, 12), n_shared=(1, 1), scores={},
        correlations={k: _corr(v) for k, v in corr.items()},
        tp_taylor_vs_fo=_corr(0.9), tp_taylor_vs_oracle=_corr(0.85), curve_counts=(0, 10),
        curves={}, curve_gaps={"taylor_fo": gap_fo, "weight_magnitude": gap_mag},
        dense_flops=2000, dense_params=10000, pruning={"taylor_fo": (row,)}, claim_row=row,
        timing=S.Timing(dense_s=1e-3, pruned_s=ratio * 1e-3, repeats=25),
        phase_seconds={}, phase_cpu_seconds={},
        matched={"parameters": _matched("parameters", pruned, ctrl, base, reduction),
                 "flops": _matched("flops", pruned, ctrl, base, flops_reduction, flops_reached)})


def _seeds(**per_seed) -> tuple[S.SeedRecord, ...]:
    """One record per seed; each keyword is a list with one value per seed."""
    n = len(next(iter(per_seed.values())))
    return tuple(_rec(seed=i, **{k: v[i] for k, v in per_seed.items()}) for i in range(n))


def _records(**setups) -> S.Records:
    return S.Records(setups)


# ------------------------------------------------------------------ settings



def _parameters_cell() -> dict:
    return notebook_parameters("06_taylor_pruning")


def test_settings_from_the_notebooks_parameters_cell():
    params = _parameters_cell()
    settings = S.Settings.from_params(params)
    fields = {f.name for f in dataclasses.fields(S.Settings)}
    # every parameter is either the context's or a setting: a renamed one fails here
    assert set(params) == fields | CONTEXT_PARAMETERS
    assert isinstance(settings.prune_criteria, tuple)
    assert all(isinstance(s, S.Setup) for s in settings.setups.values())


def test_settings_reject_a_missing_parameter_and_a_bad_setup():
    params = _parameters_cell()
    with pytest.raises(KeyError, match="so_tolerance"):
        S.Settings.from_params({k: v for k, v in params.items() if k != "so_tolerance"})
    with pytest.raises(ValueError, match="epoch"):
        _settings(setups={"x": {"model": "lenet", "dataset": "digits", "epoch": 1, "lr": 1e-3}})
    with pytest.raises(ValueError, match="taylor_fo"):
        _settings(prune_criteria=("weight_magnitude",))


# ------------------------------------------------------------------ claims


def test_taylor_fo_correlates_with_oracle_reproduced():
    c = S.claim_taylor_fo_correlates_with_oracle(
        _records(lenet=_seeds(fo=[0.95, 0.96, 0.955])), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED and c.ci95[1] < 1 and c.paper_value


def test_taylor_fo_correlates_with_oracle_not_reproduced():
    c = S.claim_taylor_fo_correlates_with_oracle(
        _records(lenet=_seeds(fo=[0.95, 0.96, 0.955]), resnet=_seeds(fo=[0.70, 0.72, 0.71])),
        SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED and "resnet" in c.interval_method


def test_taylor_fo_correlates_with_oracle_inconclusive():
    c = S.claim_taylor_fo_correlates_with_oracle(
        _records(resnet=_seeds(fo=[0.85, 0.93, 0.89])), SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and c.power


def test_taylor_fo_threshold_comes_from_settings():
    recs = _records(lenet=_seeds(fo=[0.85, 0.86, 0.855]))
    assert S.claim_taylor_fo_correlates_with_oracle(recs, SETTINGS).verdict \
        == Verdict.NOT_REPRODUCED
    lower = S.claim_taylor_fo_correlates_with_oracle(recs, _settings(rho_threshold=0.8))
    assert lower.verdict == Verdict.REPRODUCED and lower.rule.threshold == 0.8


def test_taylor_beats_magnitude_and_random_reproduced():
    c = S.claim_taylor_beats_magnitude_and_random(
        _records(resnet=_seeds(fo=[0.9, 0.8, 0.85], mag=[0.5, 0.45, 0.5], rnd=[0.0, 0.05, -0.05],
                               fo_bn=[0.7, 0.72, 0.69], bn=[0.2, 0.3, 0.25])), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED
    assert len(c.details["conditions"]) == 3  # FO - magnitude, FO - random, FO@bn - BN scale


def test_taylor_beats_magnitude_and_random_not_reproduced():
    c = S.claim_taylor_beats_magnitude_and_random(
        _records(lenet=_seeds(fo=[0.5, 0.55, 0.52], mag=[0.8, 0.85, 0.82], rnd=[0.0, 0.0, 0.0])),
        SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED and "weight_magnitude" in c.interval_method


def test_taylor_beats_magnitude_and_random_inconclusive():
    # a paired difference that changes sign between seeds: undecided
    c = S.claim_taylor_beats_magnitude_and_random(
        _records(lenet=_seeds(fo=[0.8, 0.6, 0.7], mag=[0.7, 0.65, 0.72], rnd=[0.0, 0.0, 0.0])),
        SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE


def test_paired_differences_decide_where_seed_cis_overlap():
    """FO beats magnitude by 0.05 in every seed while both vary a lot between seeds: the old
    non-overlapping-CI rule could not tell; the paired difference can."""
    c = S.claim_taylor_beats_magnitude_and_random(
        _records(lenet=_seeds(fo=[0.9, 0.7, 0.8], mag=[0.85, 0.65, 0.75], rnd=[0.0, 0.1, -0.1])),
        SETTINGS)
    assert c.verdict == Verdict.REPRODUCED


def test_second_order_matches_first_reproduced():
    c = S.claim_second_order_matches_first(
        _records(lenet=_seeds(fo=[0.90, 0.92, 0.91], so=[0.91, 0.925, 0.915])), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED and c.rule.kind == "equivalent"
    assert c.rule.margin == SETTINGS.so_tolerance


def test_second_order_matches_first_not_reproduced():
    c = S.claim_second_order_matches_first(
        _records(lenet=_seeds(fo=[0.80, 0.82, 0.81], so=[0.95, 0.96, 0.955])), SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED and c.ci95[0] > 0.05


def test_second_order_matches_first_inconclusive():
    c = S.claim_second_order_matches_first(
        _records(lenet=_seeds(fo=[0.80, 0.85, 0.90], so=[0.86, 0.87, 0.92])), SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE


def test_pruning_curve_tracks_oracle_reproduced():
    c = S.claim_pruning_curve_tracks_oracle(
        _records(lenet=_seeds(gap_fo=[1.0, 1.2, 0.9], gap_mag=[3.0, 3.5, 2.8])), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED and c.estimate == pytest.approx(-2.0667, abs=1e-3)


def test_pruning_curve_tracks_oracle_not_reproduced():
    c = S.claim_pruning_curve_tracks_oracle(
        _records(lenet=_seeds(gap_fo=[2.0, 2.2, 1.9], gap_mag=[1.0, 1.1, 0.8])), SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED and c.ci95[0] > 0


def test_pruning_curve_tracks_oracle_inconclusive():
    c = S.claim_pruning_curve_tracks_oracle(
        _records(lenet=_seeds(gap_fo=[1.0, 2.0, 1.5], gap_mag=[1.5, 1.4, 1.6])), SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and c.ci95[0] < 0 < c.ci95[1]


def test_prune_30pct_params_small_accuracy_loss_reproduced():
    c = S.claim_prune_30pct_params_small_accuracy_loss(
        _records(lenet=_seeds(base=[0.97, 0.975, 0.972], pruned=[0.968, 0.973, 0.971],
                              reduction=[0.35, 0.36, 0.34])), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED and c.rule.kind in ("non_inferior", "at_least")
    assert c.details["max_abs_diff_pruned_vs_gated"]["lenet"] == pytest.approx(3e-6)


def test_prune_30pct_params_small_accuracy_loss_not_reproduced():
    c = S.claim_prune_30pct_params_small_accuracy_loss(
        _records(lenet=_seeds(base=[0.97, 0.975, 0.972], pruned=[0.90, 0.91, 0.905],
                              reduction=[0.35, 0.36, 0.34])), SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED and "accuracy" in c.interval_method
    short = S.claim_prune_30pct_params_small_accuracy_loss(  # the target was never reached
        _records(lenet=_seeds(base=[0.97, 0.975, 0.972], pruned=[0.968, 0.973, 0.971],
                              reduction=[0.10, 0.11, 0.12])), SETTINGS)
    assert short.verdict == Verdict.NOT_REPRODUCED and "parameters removed" in short.interval_method
    assert 0 <= short.ci95[0] <= short.ci95[1] <= 1  # a proportion's interval


def test_prune_accuracy_is_judged_against_the_dense_control_not_the_untouched_model():
    # the untouched dense model (0.99) is better than the control trained on the pruning
    # schedule (0.97): against the control the pruned model (0.968) is within the margin
    recs = _records(lenet=_seeds(base=[0.99, 0.99, 0.99], control=[0.97, 0.975, 0.972],
                                 pruned=[0.968, 0.973, 0.971], reduction=[0.35, 0.36, 0.34]))
    c = S.claim_prune_30pct_params_small_accuracy_loss(recs, SETTINGS)
    assert c.verdict == Verdict.REPRODUCED
    d = c.details["lenet/parameters"]
    assert d["pruned_minus_control_points_per_seed"] == pytest.approx([-0.2, -0.2, -0.1], abs=1e-9)
    assert d["pruned_minus_untouched_dense_points_per_seed"] == pytest.approx([-2.2, -1.7, -1.9],
                                                                              abs=1e-9)
    # the interval is paired by image: 4 of 2000 images differ in seed 0, so within a seed the
    # bootstrap spread is a fraction of a point, far below an unpaired accuracy's +-0.8; even
    # widened for 3 seeds the whole interval spans well under a point
    cond = [x for x in c.details["conditions"] if "parameters matched" in x["condition"]][0]
    assert cond["ci95"][0] > -1.0 and cond["ci95"][1] - cond["ci95"][0] < 0.8


def test_prune_flops_condition_left_out_when_no_snapshot_reaches_it():
    recs = _records(lenet=_seeds(base=[0.97, 0.975, 0.972], pruned=[0.968, 0.973, 0.971],
                                 reduction=[0.35, 0.36, 0.34], flops_reduction=[0.2, 0.25, 0.22],
                                 flops_reached=[True, False, True]))
    c = S.claim_prune_30pct_params_small_accuracy_loss(recs, SETTINGS)
    assert c.verdict == Verdict.REPRODUCED  # decided on the other two conditions
    out = [e for e in c.excluded if "flops" in e["condition"]]
    assert len(out) == 1 and "seed(s) [1]" in out[0]["reason"] and "40%" in out[0]["reason"]


def test_prune_30pct_params_small_accuracy_loss_inconclusive():
    recs = _records(lenet=_seeds(base=[0.97, 0.975, 0.972], pruned=[0.955, 0.975, 0.96],
                                 reduction=[0.35, 0.36, 0.34]))
    c = S.claim_prune_30pct_params_small_accuracy_loss(recs, SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and c.power
    # the margin comes from the settings: a wider one decides the same numbers
    wide = S.claim_prune_30pct_params_small_accuracy_loss(
        recs, _settings(max_accuracy_drop_points=5.0))
    assert wide.verdict == Verdict.REPRODUCED


def test_tables_are_means_over_seeds():
    recs = _records(lenet=_seeds(fo=[0.9, 0.8, 0.85], base=[0.96, 0.98, 0.97]))
    corr = S.correlation_table(recs)
    assert corr.loc[("lenet", "spearman"), "taylor_fo"] == pytest.approx(0.85)
    over = S.overview_table(recs)
    assert over.loc["lenet", "clean accuracy (%)"] == pytest.approx(97.0)
    assert over.loc["lenet", "95% CI low"] < 97 < over.loc["lenet", "95% CI high"] <= 100
    pr = S.pruning_table(recs)
    assert np.isclose(pr["params removed (%)"].iloc[0], 35.0)
    assert list(S.gate_table(recs).index.get_level_values("gate")) == ["conv", "fc"]
