"""Study 01's claims on hand-built records: each can come out reproduced, not reproduced and
inconclusive (tests/test_claims_registry.py requires the three). The records are the study's
own dataclasses; the settings are those of the notebook's parameters cell, so a parameter
renamed there (or a field added to ``Settings`` that the cell lacks) fails here."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
from conftest import notebook_parameters

from studylib.stats import Verdict
from studylib.studies import loss_visualization as S

SEEDS = [0, 1, 2]
MODELS = [("mlp", "natural"), ("mlp", "pgd"), ("cnn", "natural"), ("cnn", "pgd")]



def _parameters_cell() -> dict:
    return notebook_parameters("01_loss_visualization")


SETTINGS = S.Settings.from_params(_parameters_cell())


def test_settings_come_from_the_parameters_cell():
    params = _parameters_cell()
    fields = {f.name for f in dataclasses.fields(S.Settings)}
    assert fields <= set(params)  # from_params would raise on a missing one; say which here too
    assert SETTINGS.crossing_ratio_threshold == 3.0 and SETTINGS.rho_threshold == -0.8
    assert SETTINGS.robust_regimes == tuple(params["robust_regimes"])  # lists become tuples
    assert 0 < SETTINGS.logit_scale < 1  # the direction of the logit-scaling control is known
    with pytest.raises(KeyError, match="rho_threshold"):
        S.Settings.from_params({k: v for k, v in params.items() if k != "rho_threshold"})


def _settings(**changes) -> S.Settings:
    return dataclasses.replace(SETTINGS, **changes)


EMPTY = pd.DataFrame()


def _records(*, crossing_summary=EMPTY, psi=None, cost=None, rescaling=EMPTY,
             logit_scaling=EMPTY, clean_accuracy=EMPTY) -> S.Records:
    """A Records with the tables a claim reads; every other part empty."""
    psi = psi or S.PsiRecords(grid=EMPTY, accuracy_grid=EMPTY, base=EMPTY, robust=EMPTY,
                              n_correct={})
    cost = cost or S.CostRecords(psi=EMPTY, accuracy=EMPTY, budget=0, n_points=0)
    return S.Records(data=S.DataSummary("hand-built", 0, 0, (1, 8, 8), 0, 0),
                     clean_accuracy=clean_accuracy, control_accuracy=EMPTY, surfaces=None,
                     crossings=EMPTY, crossing_summary=crossing_summary, psi=psi, cost=cost,
                     rescaling=rescaling, logit_scaling=logit_scaling, tightness=EMPTY,
                     masking=())


def _crossing(ratios: dict[str, list[float]]) -> S.Records:
    return _records(crossing_summary=pd.DataFrame(
        [{"arch": arch, "regime": "natural", "seed": s, "ratio_median": r,
          "rand_censored": 0.1, "adv_median": 0.1}
         for arch, rs in ratios.items() for s, r in zip(SEEDS, rs, strict=False)]))


def test_margin_crossing_adversarial_vs_random_reproduced():
    c = S.claim_margin_crossing_adversarial_vs_random(
        _crossing({"mlp": [5.0, 5.2, 5.1], "cnn": [4.0, 4.1, 4.2]}), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED and c.k_of_n == "3 of 3 seeds"
    assert c.ci95[0] > 3 and c.interval_method.startswith("log-scale")


def test_margin_crossing_adversarial_vs_random_not_reproduced():
    c = S.claim_margin_crossing_adversarial_vs_random(
        _crossing({"mlp": [5.0, 5.2, 5.1], "cnn": [1.5, 1.6, 1.55]}), SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED and "cnn" in c.interval_method


def test_margin_crossing_adversarial_vs_random_inconclusive():
    c = S.claim_margin_crossing_adversarial_vs_random(_crossing({"mlp": [2.5, 4.5, 3.5]}),
                                                      SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and c.ci95[0] > 0 and c.power


def _steps(natural: list[float], robust: list[float]) -> S.Records:
    rows = [{"arch": "mlp", "regime": reg, "seed": s, "adv_median": v, "ratio_median": 4.0,
             "rand_censored": 0.0}
            for reg, vals in (("natural", natural), ("pgd_large", robust))
            for s, v in zip(SEEDS, vals, strict=False)]
    return _records(crossing_summary=pd.DataFrame(rows))


ROBUST = _settings(natural_regime="natural", robust_regimes=("pgd_large",))


def test_robust_training_widens_margin_reproduced():
    c = S.claim_robust_training_widens_margin(_steps([0.10, 0.11, 0.12], [0.20, 0.21, 0.23]),
                                              ROBUST)
    geo = (0.20 / 0.10 * 0.21 / 0.11 * 0.23 / 0.12) ** (1 / 3)
    assert c.verdict == Verdict.REPRODUCED and c.estimate == pytest.approx(geo)
    assert "mlp/pgd_large" in c.interval_method


def test_robust_training_widens_margin_not_reproduced():
    c = S.claim_robust_training_widens_margin(_steps([0.10, 0.11, 0.12], [0.05, 0.06, 0.055]),
                                              ROBUST)
    assert c.verdict == Verdict.NOT_REPRODUCED and 0 < c.ci95[0] <= c.ci95[1] < 1


def test_robust_training_widens_margin_inconclusive():
    c = S.claim_robust_training_widens_margin(_steps([0.10, 0.11, 0.12], [0.09, 0.13, 0.115]),
                                              ROBUST)
    assert c.verdict == Verdict.INCONCLUSIVE and c.ci95[0] < 1 < c.ci95[1] and c.power


def _model_table(value: str, per_seed: list[list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"arch": a, "regime": r, "seed": s, value: v}
                         for s, vals in zip(SEEDS, per_seed, strict=True)
                         for (a, r), v in zip(MODELS, vals, strict=True)])


ROBUST_ACC = [[0.1, 0.2, 0.3, 0.4]] * 3  # the ground truth: the models in order


def _robust(per_seed=ROBUST_ACC, clean=(0.9, 0.8, 0.95, 0.85)) -> pd.DataFrame:
    t = _model_table("robust_accuracy", per_seed)
    t["clean_accuracy"] = [clean[i % len(MODELS)] for i in range(len(t))]
    return t


def _tracking(psi_per_seed: list[list[float]]) -> S.Records:
    base = _model_table("score", psi_per_seed)
    base["score_correct"] = base["score"] * 0.9
    return _records(psi=S.PsiRecords(grid=EMPTY, accuracy_grid=EMPTY, base=base,
                                     robust=_robust(), n_correct={0: 50, 1: 50, 2: 50}))


def test_metric_tracks_adversarial_accuracy_reproduced():
    c = S.claim_metric_tracks_adversarial_accuracy(_tracking([[0.9, 0.7, 0.5, 0.1]] * 3),
                                                   SETTINGS)  # rho = -1 in every seed
    assert c.verdict == Verdict.REPRODUCED and -1 <= c.ci95[0] and c.ci95[1] <= -0.8
    assert "robust accuracy" in c.statement
    # psi ignores labels: its rank correlation with clean accuracy (0.9, 0.8, 0.95, 0.85 ->
    # ranks 3, 1, 4, 2 against psi ranks 4, 3, 2, 1: sum d^2 = 1 + 4 + 4 + 1 = 10) is reported
    assert c.details["rho_psi_vs_clean_accuracy_per_seed"] == pytest.approx([0.0] * 3)
    assert c.details["rho_psi_on_correct_points_per_seed"] == pytest.approx([-1.0] * 3)


def test_metric_tracks_adversarial_accuracy_not_reproduced():
    c = S.claim_metric_tracks_adversarial_accuracy(_tracking([[0.1, 0.2, 0.3, 0.4]] * 3),
                                                   SETTINGS)  # rho = +1: psi says the opposite
    assert c.verdict == Verdict.NOT_REPRODUCED and c.ci95[1] <= 1


def test_metric_tracks_adversarial_accuracy_inconclusive():
    # psi ranks (4, 3, 2, 1): rho -1; (4, 1, 3, 2): sum d^2 = 14, rho -0.4; (3, 4, 2, 1): -0.8
    c = S.claim_metric_tracks_adversarial_accuracy(
        _tracking([[0.9, 0.7, 0.5, 0.1], [0.9, 0.1, 0.7, 0.5], [0.7, 0.9, 0.5, 0.1]]), SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and -1 <= c.ci95[0] < -0.8 < c.ci95[1] <= 1
    assert [round(v, 2) for v in c.details["conditions"][0]["per_seed"]] == [-1.0, -0.4, -0.8]
    assert c.power and "seeds" in c.power
    boot = c.details["bootstrap_seed_model"]
    assert -1 <= boot["ci95"][0] <= boot["ci95"][1] <= 1


def _grid(value: str, cols: tuple[str, ...], grid: list[tuple], scores,
          seeds=SEEDS) -> pd.DataFrame:
    """``scores(seed, setting_index)`` -> one score per model."""
    rows = []
    for s in seeds:
        for i, setting in enumerate(grid):
            for (a, r), v in zip(MODELS, scores(s, i), strict=True):
                rows.append({"arch": a, "regime": r, "seed": s, value: v,
                             **dict(zip(cols, setting, strict=True))})
    return pd.DataFrame(rows)


PSI_GRID = [(5, 1), (5, 4), (10, 1)]  # (steps, restarts)
ATTACK_GRID = [("ce", 5), ("ce", 10), ("margin", 5)]  # (objective, steps)
SAME = [0.1, 0.2, 0.3, 0.4]
FLAT = [0.0] * 4  # a setting that ranks nothing


def _stability(psi_scores, acc_scores, seeds=SEEDS) -> S.Records:
    return _records(psi=S.PsiRecords(
        grid=_grid("score", S.PSI_SETTINGS, PSI_GRID, psi_scores, seeds),
        accuracy_grid=_grid("accuracy", S.ATTACK_SETTINGS, ATTACK_GRID, acc_scores, seeds),
        base=EMPTY, robust=EMPTY, n_correct={}))


SIX = list(range(6))  # seeds that agree exactly decide only from six on (the sign test)


def test_metric_stable_across_settings_reproduced():
    c = S.claim_metric_stable_across_settings(_stability(
        lambda s, i: SAME,  # the same ranking in every setting: tau 1
        lambda s, i: SAME if i < 2 else SAME[::-1], SIX), SETTINGS)  # the last one reverses it
    assert c.verdict == Verdict.REPRODUCED and c.k_of_n == "6 of 6 seeds"
    assert c.details["n_psi_settings"] == 3 and c.details["n_accuracy_settings"] == 3


def test_metric_stable_across_settings_not_reproduced():
    c = S.claim_metric_stable_across_settings(_stability(
        lambda s, i: SAME if i != 1 else SAME[::-1], lambda s, i: SAME, SIX),
        SETTINGS)  # tau -1/3 in every seed
    assert c.verdict == Verdict.NOT_REPRODUCED
    psi_tau, diff = c.details["conditions"]
    assert psi_tau["verdict"] == diff["verdict"] == Verdict.NOT_REPRODUCED
    assert -1 <= psi_tau["ci95"][0] <= psi_tau["ci95"][1] < 0.8  # a tau stays in [-1, 1]
    assert -2 <= diff["ci95"][0] <= diff["ci95"][1] < 0  # a difference of taus, in [-2, 2]


def test_metric_stable_across_settings_inconclusive():
    swapped = [0.2, 0.1, 0.3, 0.4]
    c = S.claim_metric_stable_across_settings(_stability(
        lambda s, i: SAME if (s != 1 or i == 0) else swapped,  # seed 1 less stable
        lambda s, i: SAME if i < 2 else SAME[::-1]), SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and c.power


def test_metric_stable_across_settings_leaves_out_flat_settings():
    """An attack setting with every model at the same accuracy ranks nothing: it is left out
    and reported -- not scored tau = 0, which would make the accuracy side look unstable."""
    c = S.claim_metric_stable_across_settings(_stability(
        lambda s, i: SAME if i != 1 else [0.1, 0.2, 0.4, 0.3],  # psi tau (1 + 2/3 + 2/3) / 3
        lambda s, i: SAME if i < 2 else FLAT, SIX), SETTINGS)
    assert c.details["tau_accuracy_per_seed"] == pytest.approx([1.0] * 6)  # not (1 + 0 + 0) / 3
    assert c.details["accuracy_settings_left_out"]["0"] == ["('margin', 5)"]
    assert c.verdict == Verdict.NOT_REPRODUCED  # psi (0.78) is less stable than accuracy (1)
    only_flat = S.claim_metric_stable_across_settings(_stability(
        lambda s, i: SAME, lambda s, i: FLAT if i else SAME, SIX), SETTINGS)
    assert only_flat.verdict == Verdict.INCONCLUSIVE and only_flat.excluded  # nothing to rank


def _cost(psi: list[list[float]], acc: list[list[float]]) -> S.Records:
    """Cheap psi and cheap accuracy per seed; the ground truth ranks the models in order."""
    t_psi, t_acc = _model_table("score", psi), _model_table("accuracy", acc)
    t_psi["seconds"], t_acc["seconds"] = 1.0, 2.0
    return _records(psi=S.PsiRecords(grid=EMPTY, accuracy_grid=EMPTY, base=EMPTY,
                                     robust=_robust(), n_correct={}),
                    cost=S.CostRecords(psi=t_psi, accuracy=t_acc, budget=5, n_points=100))


RIGHT_PSI = [0.4, 0.3, 0.2, 0.1]  # low psi = robust: the ground truth's order, tau 1
ONE_SWAP_ACC = [0.2, 0.1, 0.3, 0.4]  # one discordant pair of 6: tau 2/3
TWO_SWAP_ACC = [0.2, 0.1, 0.4, 0.3]  # two of 6: tau 1/3


def test_metric_cheaper_than_adversarial_testing_reproduced():
    c = S.claim_metric_cheaper_than_adversarial_testing(
        _cost([RIGHT_PSI] * 3, [ONE_SWAP_ACC, TWO_SWAP_ACC, ONE_SWAP_ACC]), SETTINGS)
    # differences 1/3, 2/3, 1/3: mean 0.44, t-interval [-0.03, 0.92], above -0.1
    assert c.verdict == Verdict.REPRODUCED and "5 input gradients" in c.statement
    assert c.details["tau_psi_per_seed"] == pytest.approx([1.0] * 3)
    assert c.details["tau_accuracy_per_seed"] == pytest.approx([2 / 3, 1 / 3, 2 / 3])


def test_metric_cheaper_than_adversarial_testing_not_reproduced():
    c = S.claim_metric_cheaper_than_adversarial_testing(
        _cost([[0.3, 0.1, 0.4, 0.2], [0.3, 0.4, 0.1, 0.2], [0.2, 0.4, 0.1, 0.3]],
              [SAME] * 3), SETTINGS)  # psi tau 0, 1/3, 0 against accuracy 1
    assert c.verdict == Verdict.NOT_REPRODUCED and c.ci95[1] < -0.1
    assert -2 <= c.ci95[0]


def test_metric_cheaper_than_adversarial_testing_inconclusive():
    c = S.claim_metric_cheaper_than_adversarial_testing(
        _cost([RIGHT_PSI, [0.4, 0.2, 0.3, 0.1], RIGHT_PSI],
              [SAME, SAME, ONE_SWAP_ACC]), SETTINGS)  # differences 0, -1/3, +1/3
    assert c.verdict == Verdict.INCONCLUSIVE and c.power


def test_metric_cheaper_leaves_out_a_seed_where_a_cheap_measure_ranks_nothing():
    c = S.claim_metric_cheaper_than_adversarial_testing(
        _cost([RIGHT_PSI] * 3, [ONE_SWAP_ACC, ONE_SWAP_ACC, FLAT]), SETTINGS)
    assert c.details["seeds_left_out"] == [2] and c.n_seeds == 2


def _rescaled(psi_change: list[float], factors: list[float],
              logit_ratios: list[float] = (0.5, 0.6, 0.55)) -> S.Records:
    rows = [{"arch": a, "regime": r, "seed": s, "layer": 0, "psi_rel_change": p,
             "sharpness_factor": f}
            for (a, r), (s, p, f) in itertools.product(
                MODELS, zip(SEEDS, psi_change, factors, strict=True))]
    rows.append({"arch": "cnn", "regime": "natural", "seed": 0, "layer": 1,
                 "psi_rel_change": 1e-7, "sharpness_factor": 30.0})
    scaled = pd.DataFrame([{"arch": a, "regime": r, "seed": s, "psi": 1.0, "psi_scaled": q,
                            "ratio": q, "same_decisions": 1.0}
                           for (a, r), (s, q) in itertools.product(
                               MODELS, zip(SEEDS, logit_ratios, strict=True))])
    return _records(rescaling=pd.DataFrame(rows), logit_scaling=scaled)


def test_metric_invariant_to_reparameterization_reproduced():
    c = S.claim_metric_invariant_to_reparameterization(
        _rescaled([1e-7, 2e-7, 0.0], [20, 30, 25]), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED and "cnn/layer1" in c.details["other_layers"]
    names = [d["condition"] for d in c.details["conditions"]]
    assert names[1].startswith("psi ratio under logit scaling")


def test_metric_invariant_to_reparameterization_not_reproduced():
    c = S.claim_metric_invariant_to_reparameterization(
        _rescaled([1e-7, 2e-7, 1e-7], [1.1, 1.2, 1.15]), SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED
    assert c.interval_method.endswith("sharpness factor: mlp")


def test_metric_invariant_fails_when_psi_does_not_follow_the_logit_scaling():
    """The control psi can fail: psi that rises when the logits shrink is not reproduced,
    however well the exact rescaling and the sharpness behave."""
    c = S.claim_metric_invariant_to_reparameterization(
        _rescaled([1e-7, 2e-7, 0.0], [20, 30, 25], logit_ratios=[1.3, 1.4, 1.35]), SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED and "logit scaling" in c.interval_method
    assert c.ci95[0] > 1


def test_metric_invariant_to_reparameterization_inconclusive():
    c = S.claim_metric_invariant_to_reparameterization(
        _rescaled([1e-7, 2e-7, 1e-7], [1.5, 4.0, 2.5]), SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and c.ci95[0] > 0 and c.power


def test_metric_invariant_to_reparameterization_leaves_out_flat_sharpness():
    """An architecture whose sharpness is 0 before or after (no finite factor in any seed) is
    left out and reported, not counted against the claim."""
    records = _rescaled([1e-7, 2e-7, 0.0], [20, 30, 25])
    table = records.rescaling.copy()
    table.loc[(table.arch == "cnn") & (table.layer == 0), "sharpness_factor"] = np.nan
    c = S.claim_metric_invariant_to_reparameterization(
        dataclasses.replace(records, rescaling=table), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED
    assert [e["condition"] for e in c.excluded] == ["sharpness factor: cnn"]
    with pytest.raises(ValueError, match="logit_scale"):
        S.claim_metric_invariant_to_reparameterization(records, _settings(logit_scale=2.0))


def test_thresholds_come_from_the_settings():
    records = _crossing({"mlp": [5.0, 5.2, 5.1], "cnn": [4.0, 4.1, 4.2]})
    c = S.claim_margin_crossing_adversarial_vs_random(
        records, _settings(crossing_ratio_threshold=6.0))
    assert c.verdict == Verdict.NOT_REPRODUCED and c.rule.threshold == 6.0 and ">= 6" in c.statement
