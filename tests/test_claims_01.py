"""Study 01's claims on hand-built tables: each can come out reproduced, not reproduced and
inconclusive (tests/test_claims_registry.py requires the three)."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from studylib.stats import Verdict
from studylib.studies import loss_visualization as S

SEEDS = [0, 1, 2]
MODELS = [("mlp", "natural"), ("mlp", "pgd"), ("cnn", "natural"), ("cnn", "pgd")]


def _crossing(ratios: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"arch": arch, "regime": "natural", "seed": s, "ratio_median": r,
                          "rand_censored": 0.1, "adv_median": 0.1}
                         for arch, rs in ratios.items() for s, r in zip(SEEDS, rs, strict=False)])


def test_margin_crossing_adversarial_vs_random_reproduced():
    c = S.claim_margin_crossing_adversarial_vs_random(
        _crossing({"mlp": [5.0, 5.2, 5.1], "cnn": [4.0, 4.1, 4.2]}))
    assert c.verdict == Verdict.REPRODUCED and c.k_of_n == "3 of 3 seeds"
    assert c.ci95[0] > 3 and c.interval_method.startswith("log-scale")


def test_margin_crossing_adversarial_vs_random_not_reproduced():
    c = S.claim_margin_crossing_adversarial_vs_random(
        _crossing({"mlp": [5.0, 5.2, 5.1], "cnn": [1.5, 1.6, 1.55]}))
    assert c.verdict == Verdict.NOT_REPRODUCED and "cnn" in c.interval_method


def test_margin_crossing_adversarial_vs_random_inconclusive():
    c = S.claim_margin_crossing_adversarial_vs_random(_crossing({"mlp": [2.5, 4.5, 3.5]}))
    assert c.verdict == Verdict.INCONCLUSIVE and c.ci95[0] > 0 and c.power


def _steps(natural: list[float], robust: list[float]) -> pd.DataFrame:
    rows = [{"arch": "mlp", "regime": reg, "seed": s, "adv_median": v, "ratio_median": 4.0,
             "rand_censored": 0.0}
            for reg, vals in (("natural", natural), ("pgd_large", robust))
            for s, v in zip(SEEDS, vals, strict=False)]
    return pd.DataFrame(rows)


def test_robust_training_widens_margin_reproduced():
    c = S.claim_robust_training_widens_margin(_steps([0.10, 0.11, 0.12], [0.20, 0.21, 0.23]),
                                              robust=["pgd_large"])
    geo = (0.20 / 0.10 * 0.21 / 0.11 * 0.23 / 0.12) ** (1 / 3)
    assert c.verdict == Verdict.REPRODUCED and c.estimate == pytest.approx(geo)


def test_robust_training_widens_margin_not_reproduced():
    c = S.claim_robust_training_widens_margin(_steps([0.10, 0.11, 0.12], [0.05, 0.055, 0.06]),
                                              robust=["pgd_large"])
    assert c.verdict == Verdict.NOT_REPRODUCED and c.ci95[1] < 1


def test_robust_training_widens_margin_inconclusive():
    c = S.claim_robust_training_widens_margin(_steps([0.10, 0.11, 0.12], [0.09, 0.13, 0.115]),
                                              robust=["pgd_large"])
    assert c.verdict == Verdict.INCONCLUSIVE


def _model_table(value: str, per_seed: list[list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"arch": a, "regime": r, "seed": s, value: v}
                         for s, vals in zip(SEEDS, per_seed, strict=False) for (a, r), v in zip(MODELS, vals, strict=False)])


ACC = [[0.1, 0.2, 0.3, 0.4]] * 3


def test_metric_tracks_adversarial_accuracy_reproduced():
    psi = _model_table("score", [[0.9, 0.7, 0.5, 0.1]] * 3)  # rho = -1 in every seed
    c = S.claim_metric_tracks_adversarial_accuracy(psi, _model_table("accuracy", ACC))
    assert c.verdict == Verdict.REPRODUCED and -1 <= c.ci95[0] and c.ci95[1] <= -0.8


def test_metric_tracks_adversarial_accuracy_not_reproduced():
    psi = _model_table("score", [[0.1, 0.2, 0.3, 0.4]] * 3)  # rho = +1: psi says the opposite
    c = S.claim_metric_tracks_adversarial_accuracy(psi, _model_table("accuracy", ACC))
    assert c.verdict == Verdict.NOT_REPRODUCED and c.ci95[1] <= 1


def test_metric_tracks_adversarial_accuracy_inconclusive():
    # psi ranks (4, 3, 2, 1): rho -1; (4, 1, 3, 2): sum d^2 = 14, rho -0.4; (3, 4, 2, 1): -0.8
    psi = _model_table("score", [[0.9, 0.7, 0.5, 0.1], [0.9, 0.1, 0.7, 0.5],
                                 [0.7, 0.9, 0.5, 0.1]])
    c = S.claim_metric_tracks_adversarial_accuracy(psi, _model_table("accuracy", ACC))
    assert c.verdict == Verdict.INCONCLUSIVE
    assert [round(v, 2) for v in c.details["conditions"][0]["per_seed"]] == [-1.0, -0.4, -0.8]


def _settings(value: str, cols: tuple[str, ...], settings: list[tuple], scores) -> pd.DataFrame:
    """``scores(seed, setting_index)`` -> one score per model."""
    rows = []
    for s in SEEDS:
        for i, setting in enumerate(settings):
            for (a, r), v in zip(MODELS, scores(s, i), strict=False):
                rows.append({"arch": a, "regime": r, "seed": s, value: v,
                             **dict(zip(cols, setting, strict=False))})
    return pd.DataFrame(rows)


PSI_GRID = [(0.05, 1, 100), (0.1, 1, 100), (0.1, 2, 300)]
ATTACK_GRID = [("pgd", 0.1, 5), ("pgd", 0.1, 10), ("fgsm", 0.2, 1)]
SAME = [0.1, 0.2, 0.3, 0.4]


def _acc_grid(scores):
    return _settings("accuracy", S.ATTACK_SETTINGS, ATTACK_GRID, scores)


def _psi_grid(scores):
    return _settings("score", S.PSI_SETTINGS, PSI_GRID, scores)


def test_metric_stable_across_settings_reproduced():
    psi = _psi_grid(lambda s, i: SAME)  # the same ranking in every setting: tau 1
    acc = _acc_grid(lambda s, i: SAME if i < 2 else SAME[::-1])  # the last setting reverses it
    c = S.claim_metric_stable_across_settings(psi, acc)
    assert c.verdict == Verdict.REPRODUCED and c.k_of_n == "3 of 3 seeds"


def test_metric_stable_across_settings_not_reproduced():
    psi = _psi_grid(lambda s, i: SAME if i != 1 else SAME[::-1])  # mean tau -1/3
    acc = _acc_grid(lambda s, i: SAME)
    c = S.claim_metric_stable_across_settings(psi, acc)
    assert c.verdict == Verdict.NOT_REPRODUCED


def test_metric_stable_across_settings_inconclusive():
    swapped = [0.2, 0.1, 0.3, 0.4]
    psi = _psi_grid(lambda s, i: SAME if (s != 1 or i == 0) else swapped)  # seed 1 less stable
    acc = _acc_grid(lambda s, i: SAME if i < 2 else SAME[::-1])
    c = S.claim_metric_stable_across_settings(psi, acc)
    assert c.verdict == Verdict.INCONCLUSIVE and c.power


def _psi_models(scores: list[float]) -> pd.DataFrame:
    return _model_table("score", [scores] * 3)


def test_metric_cheaper_than_adversarial_testing_reproduced():
    c = S.claim_metric_cheaper_than_adversarial_testing(
        _psi_models(SAME), _psi_models(SAME), {0: 2.0, 1: 2.5, 2: 2.2}, {0: 10.0, 1: 10.0, 2: 10.0},
        n_subset_points=100)
    assert c.verdict == Verdict.REPRODUCED and "100 points" in c.statement


def test_metric_cheaper_than_adversarial_testing_not_reproduced():
    c = S.claim_metric_cheaper_than_adversarial_testing(
        _psi_models(SAME), _psi_models(SAME[::-1]), {0: 2.0, 1: 2.5, 2: 2.2},
        {0: 10.0, 1: 10.0, 2: 10.0})
    assert c.verdict == Verdict.NOT_REPRODUCED  # the subset ranks the models the other way


def test_metric_cheaper_than_adversarial_testing_inconclusive():
    c = S.claim_metric_cheaper_than_adversarial_testing(
        _psi_models(SAME), _psi_models(SAME), {0: 5.0, 1: 15.0, 2: 10.0},
        {0: 10.0, 1: 10.0, 2: 10.0})
    assert c.verdict == Verdict.INCONCLUSIVE  # cheaper in one seed, dearer in another


def _rescaled(psi_change: list[float], factors: list[float]) -> pd.DataFrame:
    rows = [{"arch": a, "regime": r, "seed": s, "layer": 0, "psi_rel_change": p,
             "sharpness_factor": f}
            for (a, r), (s, p, f) in itertools.product(MODELS, zip(SEEDS, psi_change, factors, strict=False))]
    rows.append({"arch": "cnn", "regime": "natural", "seed": 0, "layer": 1,
                 "psi_rel_change": 1e-7, "sharpness_factor": 30.0})
    return pd.DataFrame(rows)


def test_metric_invariant_to_reparameterization_reproduced():
    c = S.claim_metric_invariant_to_reparameterization(_rescaled([1e-7, 2e-7, 0.0], [20, 30, 25]))
    assert c.verdict == Verdict.REPRODUCED and "cnn/layer1" in c.details["other_layers"]
    assert c.ci95[0] >= 0  # a nonnegative change: the interval is clipped at 0, its range


def test_metric_invariant_to_reparameterization_not_reproduced():
    c = S.claim_metric_invariant_to_reparameterization(
        _rescaled([1e-7, 2e-7, 1e-7], [1.1, 1.2, 1.15]))
    assert c.verdict == Verdict.NOT_REPRODUCED and c.interval_method.endswith("sharpness factor: mlp")


def test_metric_invariant_to_reparameterization_inconclusive():
    c = S.claim_metric_invariant_to_reparameterization(
        _rescaled([1e-7, 2e-7, 1e-7], [1.5, 4.0, 2.5]))
    assert c.verdict == Verdict.INCONCLUSIVE
