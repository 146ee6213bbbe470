"""Study 03's claims on hand-built records: each can come out reproduced, not reproduced and
inconclusive (tests/test_claims_registry.py requires the three), conditions at the accuracy
floor are left out and reported, and every interval stays inside its quantity's range. The
settings are read from the notebook's parameters cell, so a renamed parameter fails here."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import notebook_parameters
from torch import nn

from studylib import attacks
from studylib.stats import Verdict
from studylib.studies import bayesian_robustness as S
from studylib.techniques import bayes


def _parameters() -> dict:
    return notebook_parameters("03_bayesian_robustness")


SETTINGS = S.Settings.from_params(_parameters())
EPS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)  # the hand-built grid; its primary eps is 0.1
PRIMARY = 0.1
PERTURBATIONS = {"gaussian_noise": (0.0, 0.2, 0.5), "gaussian_blur": (0.0, 1.0, 3.0)}
JITTER = (0.0, 0.02, -0.02)  # seed-to-seed variation shared by every model of a seed
# and a little of each model's own, so that paired differences have a spread (seeds that agree
# exactly give no interval from three seeds: see studylib.stats.sign_test_seeds)
OWN = {"cnn_ref": (0.0, 0.005, -0.005), "cnn_control": (0.004, 0.0, -0.004),
       "bayes_head": (-0.003, 0.006, 0.0), "bayes_full": (0.002, -0.004, 0.005),
       "bayes_full_mean": (0.001, -0.002, 0.003), "mc_dropout": (0.0, 0.003, -0.006)}


def _transfer_default(attack, eps, model, i):
    """cnn_ref falls with eps; the BNNs keep 0.2 more; everyone is at 0 at eps 0.3 (the floor
    cell of the real study)."""
    if eps >= 0.3:
        return 0.0
    base = {"cnn_ref": 0.8, "cnn_control": 0.8, "bayes_head": 0.9, "bayes_full": 0.9,
            "bayes_full_mean": 0.9, "mc_dropout": 0.7}[model] - 2 * eps
    gain = 0.2 * eps / 0.05 if model in S.BNNS else 0.0
    control = 0.1 if model == "cnn_control" and eps > 0 else 0.0
    return float(np.clip(base + min(gain, 0.25) + control + JITTER[i] + OWN[model][i], 0, 1))


def _pert_default(name, severity, model, i):
    return float(0.6 - 0.1 * severity + (0.1 if model in S.BNNS else 0.0) + JITTER[i]
                 + OWN[model][i])


def _white_default(model, i):
    return ({"cnn_ref": 0.05, "cnn_control": 0.05, "mc_dropout": 0.1}.get(model, 0.3)
            + JITTER[i] / 2 + OWN[model][i])


def _detection(shift_of, i):
    """Scores: clean N(0, 1), attacked N(shift, 1) per model (AUC = Phi(shift / sqrt 2))."""
    rng = np.random.default_rng(100 + i)
    out = {}
    for m in S.DETECTORS:
        clean = rng.normal(0, 1, 100)
        shift = shift_of(m, i)
        att = rng.normal(shift, 1, 100)
        out[m] = S.DetectionScores(clean, att, rng.normal(0, 1, 100), clean, att)
    return out


def _calibration(primary=PRIMARY) -> S.EpsCalibration:
    return S.EpsCalibration(EPS[1:], (0.9, 0.6, 0.5, 0.3, 0.0), (0.9, 0.7, 0.5, 0.3, 0.1),
                            EPS[1:], primary)


def _records(*, transfer=_transfer_default, perturbation=_pert_default, whitebox=_white_default,
             detection=lambda m, i: 2.0, clean=None, n=3, primary=PRIMARY) -> S.Records:
    seeds = []
    for i in range(n):
        tr = {(a, e): {m: transfer(a, e, m, i) for m in S.MODEL_NAMES} for a in S.ATTACKS
              for e in EPS}
        pe = {(p, s): {m: perturbation(p, s, m, i) for m in S.MODEL_NAMES}
              for p, sev in PERTURBATIONS.items() for s in sev}
        cl = {m: (clean(m, i) if clean else tr[("fgsm", 0.0)][m]) for m in S.MODEL_NAMES}
        seeds.append(S.SeedRecord(i, cl, tr, pe, {m: whitebox(m, i) for m in S.MODEL_NAMES},
                                  _detection(detection, i), {"bayes_full": (3.0, 2.0, 1.5)},
                                  {"bayes_full": i > 0}, {"half": 0.9, "full": 0.905}))
    return S.Records(tuple(seeds), _calibration(primary), "hand-built")


def _override(base, table: dict):
    """``base`` with values replaced: ``table[(attack, eps, model)] = [one per seed]``."""
    def fn(a, e, m, i):
        return table[(a, e, m)][i] if (a, e, m) in table else base(a, e, m, i)
    return fn


def _inside(c, lo=-1.0, hi=1.0):
    """The claim's interval lies inside [lo, hi], which is the range the claim declares."""
    a, b = c.ci95
    return lo <= a <= b <= hi and tuple(c.natural_range) == (lo, hi)


# ----------------------------------------------------------------------------- settings


def test_settings_come_from_the_parameters_cell():
    params = _parameters()
    assert SETTINGS.n_eval == params["n_eval"]
    assert SETTINGS.eps_candidates == tuple(params["eps_candidates"])
    assert (SETTINGS.eps_targets, SETTINGS.primary_target) == ((0.9, 0.7, 0.5, 0.3, 0.1), 0.5)
    assert (SETTINGS.head_margin, SETTINGS.interference_margin, SETTINGS.whitebox_min_gain,
            SETTINGS.auc_threshold) == (0.05, 0.05, 0.05, 0.7)
    assert set(SETTINGS.perturbations()) == {"gaussian_noise", "salt_and_pepper", "gaussian_blur",
                                             "brightness_contrast"}
    del params["head_margin"]
    with pytest.raises(KeyError, match="head_margin"):
        S.Settings.from_params(params)


def test_settings_reject_an_unknown_perturbation_and_a_bad_eps_protocol():
    with pytest.raises(ValueError, match="unknown perturbations"):
        dataclasses.replace(SETTINGS, perturbation_grid={"fog": [0.1]}).perturbations()
    with pytest.raises(ValueError, match="eps > 0"):
        dataclasses.replace(SETTINGS, eps_candidates=(0.0, 0.1))
    with pytest.raises(ValueError, match="outside eps_targets"):
        dataclasses.replace(SETTINGS, primary_target=0.95)
    with pytest.raises(ValueError, match="accuracies in"):
        dataclasses.replace(SETTINGS, eps_targets=(0.9, 1.0))


def test_calibrate_eps_picks_the_nearest_candidate_per_target_and_reports_the_rest():
    acc = {0.02: 0.95, 0.04: 0.88, 0.06: 0.71, 0.08: 0.52, 0.1: 0.33, 0.12: 0.12, 0.15: 0.03}
    cal = S.calibrate_eps(acc, (0.9, 0.7, 0.5, 0.3, 0.1), 0.5)
    assert cal.grid == (0.04, 0.06, 0.08, 0.1, 0.12) and cal.primary == 0.08
    assert [(c["eps"], c["reason"].split(":")[0]) for c in cal.left_out] == [
        (0.02, "ceiling"), (0.15, "floor")]
    # the primary eps joins the grid even when no target picked it
    cal = S.calibrate_eps(acc, (0.9, 0.1), 0.5)
    assert cal.grid == (0.04, 0.08, 0.12) and cal.primary == 0.08
    with pytest.raises(ValueError, match="no candidate"):
        S.calibrate_eps({}, (0.5,), 0.5)


def test_every_claim_has_its_three_cases_here():
    for claim_id in S.CLAIMS:
        for case in ("reproduced", "not_reproduced", "inconclusive"):
            assert callable(globals().get(f"test_{claim_id}_{case}")), (claim_id, case)


# ----------------------------------------------------------------------------- transferred attacks


def test_bnn_more_robust_to_transferred_attacks_reproduced():
    c = S.claim_bnn_more_robust_to_transferred_attacks(_records(), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED and _inside(c) and not c.excluded
    # decided at the primary eps only; the grid (floor cell at 0.3 included) is reported
    assert {row["condition"] for row in c.details["conditions"]} == {
        f"{m} - cnn_ref, {a} eps=0.1" for m in S.BNNS for a in S.ATTACKS}
    assert len(c.details["grid"]) == 2 * 2 * 5 and c.details["eps"] == PRIMARY
    assert {r["condition"].split(",")[0] for r in c.details["posterior_mean_network"]} == {
        "bayes_full_mean - cnn_ref", "bayes_full - bayes_full_mean"}
    assert c.k_of_n == "3 of 3 seeds"


def test_a_primary_eps_at_the_floor_is_left_out_and_reported_not_decided():
    c = S.claim_bnn_more_robust_to_transferred_attacks(_records(primary=0.3), SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE
    assert {e["condition"] for e in c.excluded} == {
        f"{m} - cnn_ref, {a} eps=0.3" for m in S.BNNS for a in S.ATTACKS}
    assert all(e["reason"].startswith("floor") for e in c.excluded)


def test_bnn_more_robust_to_transferred_attacks_not_reproduced():
    rec = _records(transfer=_override(_transfer_default, {
        ("fgsm", 0.1, "bayes_head"): [0.45, 0.47, 0.43]}))  # cnn_ref 0.6, 0.62, 0.58
    c = S.claim_bnn_more_robust_to_transferred_attacks(rec, SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED
    assert "bayes_head - cnn_ref, fgsm eps=0.1" in c.interval_method and c.ci95[1] < 0


def test_bnn_more_robust_to_transferred_attacks_inconclusive():
    rec = _records(transfer=_override(_transfer_default, {
        ("pgd", 0.1, "bayes_full"): [0.95, 0.5, 0.62]}))  # cnn_ref 0.6, 0.625, 0.575
    c = S.claim_bnn_more_robust_to_transferred_attacks(rec, SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and "pgd eps=0.1" in c.interval_method
    assert c.power and _inside(c)


def test_one_seed_gives_no_interval_and_stays_inconclusive():
    c = S.claim_bnn_more_robust_to_transferred_attacks(_records(n=1), SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and c.n_seeds == 1


def test_bnn_gain_beyond_transfer_control_reproduced():
    c = S.claim_bnn_gain_beyond_transfer_control(_records(), SETTINGS)
    # control 0.7 + jitter at eps 0.1, BNNs 0.95 + jitter
    assert c.verdict == Verdict.REPRODUCED and _inside(c)
    assert {row["condition"] for row in c.details["conditions"]} == {
        f"{m} - cnn_control, {a} eps=0.1" for m in S.BNNS for a in S.ATTACKS}


def test_bnn_gain_beyond_transfer_control_not_reproduced():
    rec = _records(transfer=_override(_transfer_default, {
        ("pgd", 0.1, "bayes_head"): [0.3, 0.32, 0.28]}))
    c = S.claim_bnn_gain_beyond_transfer_control(rec, SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED and "bayes_head - cnn_control, pgd" in c.interval_method


def test_bnn_gain_beyond_transfer_control_inconclusive():
    rec = _records(transfer=_override(_transfer_default, {
        ("fgsm", 0.1, "bayes_full"): [0.95, 0.5, 0.72]}))  # control 0.704, 0.72, 0.676
    c = S.claim_bnn_gain_beyond_transfer_control(rec, SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and c.power and _inside(c)


def _head_minus_full(diffs_at_01):
    """bayes_head = bayes_full + ``diffs`` at fgsm eps 0.1 (equal elsewhere)."""
    def fn(a, e, m, i):
        v = _transfer_default(a, e, m, i)
        return v + diffs_at_01[i] if (m == "bayes_head" and a == "fgsm" and e == 0.1) else v
    return fn


def test_bayesian_head_suffices_reproduced():
    c = S.claim_bayesian_head_suffices(_records(transfer=_head_minus_full([-0.01, 0.0, -0.005])),
                                       SETTINGS)
    assert c.verdict == Verdict.REPRODUCED and c.rule.kind == "non_inferior"
    assert c.rule.margin == SETTINGS.head_margin and _inside(c) and not c.excluded


def test_bayesian_head_suffices_not_reproduced():
    c = S.claim_bayesian_head_suffices(_records(transfer=_head_minus_full([-0.2, -0.22, -0.18])),
                                       SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED and c.ci95[1] < -SETTINGS.head_margin
    assert "fgsm eps=0.1" in c.interval_method


def test_bayesian_head_suffices_inconclusive():
    # the case: an interval of head - full like [-0.37, 0.10] was labelled reproduced
    c = S.claim_bayesian_head_suffices(_records(transfer=_head_minus_full([-0.30, -0.05, 0.03])),
                                       SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE
    assert c.ci95[0] < -SETTINGS.head_margin < c.ci95[1] and _inside(c)


# ----------------------------------------------------------------------------- perturbations


def test_bnn_robust_to_signal_interference_reproduced():
    c = S.claim_bnn_robust_to_signal_interference(_records(), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED and c.rule.kind == "non_inferior"
    assert c.rule.margin == SETTINGS.interference_margin
    assert {row["condition"] for row in c.details["conditions"]} == {
        f"{m} - cnn_ref, {p}" for m in S.BNNS for p in ("gaussian_noise 0.5", "gaussian_blur 3")}


def test_bnn_robust_to_signal_interference_not_reproduced():
    def pert(p, s, m, i):
        v = _pert_default(p, s, m, i)
        return v - 0.3 if (m == "bayes_full" and p == "gaussian_blur" and s == 3.0) else v
    c = S.claim_bnn_robust_to_signal_interference(_records(perturbation=pert), SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED and "bayes_full - cnn_ref, gaussian_blur 3" in \
        c.interval_method and c.ci95[1] < -SETTINGS.interference_margin


def test_bnn_robust_to_signal_interference_inconclusive():
    def pert(p, s, m, i):
        v = _pert_default(p, s, m, i)
        return v + [-0.3, 0.1, 0.05][i] if (m == "bayes_head" and s == 0.5) else v
    c = S.claim_bnn_robust_to_signal_interference(_records(perturbation=pert), SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and c.power


def test_signal_interference_at_the_ceiling_is_left_out():
    def pert(p, s, m, i):
        return 1.0 if p == "gaussian_noise" else _pert_default(p, s, m, i)
    c = S.claim_bnn_robust_to_signal_interference(_records(perturbation=pert), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED
    assert all(e["reason"].startswith("ceiling") and "gaussian_noise" in e["condition"]
               for e in c.excluded) and len(c.excluded) == 2


# ----------------------------------------------------------------------------- white-box


def test_bnn_advantage_survives_whitebox_reproduced():
    c = S.claim_bnn_advantage_survives_whitebox(_records(), SETTINGS)  # 0.3 vs 0.05
    assert c.verdict == Verdict.REPRODUCED and c.ci95[0] >= SETTINGS.whitebox_min_gain


def test_bnn_advantage_survives_whitebox_not_reproduced():
    # the BNNs' white-box gain over cnn_ref is about 0 (Feng et al.)
    acc = {"cnn_ref": [0.52, 0.515, 0.515], "bayes_head": [0.515, 0.51, 0.515],
           "bayes_full": [0.515, 0.52, 0.51]}
    c = S.claim_bnn_advantage_survives_whitebox(
        _records(whitebox=lambda m, i: acc.get(m, [0.05] * 3)[i]), SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED and c.ci95[1] < SETTINGS.whitebox_min_gain
    assert _inside(c)


def test_bnn_advantage_survives_whitebox_inconclusive():
    acc = {"cnn_ref": [0.05, 0.05, 0.05], "bayes_head": [0.3, 0.31, 0.29],
           "bayes_full": [0.05, 0.25, 0.15]}
    c = S.claim_bnn_advantage_survives_whitebox(
        _records(whitebox=lambda m, i: acc.get(m, [0.05] * 3)[i]), SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and "bayes_full" in c.interval_method and c.power


def test_whitebox_at_the_floor_is_left_out_not_decided():
    c = S.claim_bnn_advantage_survives_whitebox(_records(whitebox=lambda m, i: 0.0), SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and len(c.excluded) == 2


# ----------------------------------------------------------------------------- detection


def test_uncertainty_flags_attacks_reproduced():
    c = S.claim_uncertainty_flags_attacks(_records(detection=lambda m, i: 2.0), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED and _inside(c, 0.0, 1.0)
    assert c.interval_method.startswith("hierarchical bootstrap over 3 seeds")
    assert "bayes_full/mutual_information_whitebox" in c.details["other_scores"]


def test_uncertainty_flags_attacks_not_reproduced():
    c = S.claim_uncertainty_flags_attacks(
        _records(detection=lambda m, i: 0.0 if m == "bayes_head" else 2.0), SETTINGS)
    assert c.verdict == Verdict.NOT_REPRODUCED and "bayes_head" in c.interval_method
    assert _inside(c, 0.0, 1.0) and c.ci95[1] < SETTINGS.auc_threshold


def test_uncertainty_flags_attacks_inconclusive():
    # per-seed AUCs about 0.62, 0.70 and 0.78 (shift d gives Phi(d / sqrt 2)): the seeds disagree
    shifts = [0.43, 0.74, 1.09]
    c = S.claim_uncertainty_flags_attacks(
        _records(detection=lambda m, i: shifts[i] if m == "bayes_full" else 2.0), SETTINGS)
    assert c.verdict == Verdict.INCONCLUSIVE and "bayes_full" in c.interval_method
    assert c.ci95[0] < SETTINGS.auc_threshold < c.ci95[1] and _inside(c, 0.0, 1.0)


# ----------------------------------------------------------------------------- tables, sweeps


def test_tables_and_sanity_lines_read_the_records():
    def clean(m, i):
        return {"bayes_head": 0.8, "bayes_full": 0.95}.get(m, 0.9) + 0.01 * (i - 1)
    rec = _records(clean=clean)
    table = S.clean_table(rec)
    assert table.loc["bayes_head", "mean"] == pytest.approx(0.8)
    assert 0 <= table["lo"].min() and table["hi"].max() <= 1  # logit intervals stay inside
    # the clean-accuracy match is checked in both directions
    d = S._clean_details(rec, SETTINGS)
    assert d["clean_mismatch"] == {"bayes_head": "below", "bayes_full": "above",
                                   "bayes_full_mean": None}
    assert d["svi_converged_seeds"] == {"bayes_full": "2 of 3"} and d["cnn_ref_at_plateau"]
    lines = S.sanity_lines(rec, SETTINGS)
    assert "primary eps 0.1" in lines[0] and "at its plateau" in lines[3]
    assert "below cnn_ref" in lines[4] and "above cnn_ref" in lines[5] and "within" in lines[6]
    assert list(S.transfer_table(rec).columns) == list(S.MODEL_NAMES)
    # 0.3 + the mean of bayes_full's own jitter (0.002 - 0.004 + 0.005) / 3
    assert S.whitebox_table(rec, SETTINGS).loc["bayes_full", "white-box"] == pytest.approx(0.301)


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def test_transfer_sweep_eps_zero_is_clean_and_source_self_attack_matches_pgd():
    model = _tiny_model().eval()
    x = torch.rand(16, 1, 4, 4)
    y = torch.arange(16) % 3
    targets = {"det": bayes.DeterministicClassifier(model)}
    table, adv = S.transfer_sweep(model, targets, x, y, [0.0, 0.2], attacks=("pgd",),
                                  pgd_steps=5, n_samples=3, seed=2, progress=False)
    clean = float((model(x).argmax(1) == y).float().mean())
    assert table[("pgd", 0.0)]["det"] == pytest.approx(clean)
    xa = attacks.pgd(model, x, y, 0.2, steps=5, seed=2)
    torch.testing.assert_close(adv[("pgd", 0.2)], xa)
    acc = table[("pgd", 0.2)]["det"]
    assert acc == pytest.approx(float((model(xa).argmax(1) == y).float().mean())) and acc <= clean


def test_a_wide_difference_is_clipped_to_its_range():
    rec = _records(transfer=_override(_transfer_default, {
        ("pgd", 0.1, "bayes_full"): [1.0, 0.0, 1.0], ("pgd", 0.1, "cnn_ref"): [0.0, 1.0, 0.0]}))
    c = S.claim_bnn_more_robust_to_transferred_attacks(rec, SETTINGS)
    row = next(r for r in c.details["conditions"]
               if r["condition"] == "bayes_full - cnn_ref, pgd eps=0.1")
    assert row["ci95"] == [-1.0, 1.0] and "clipped" in row["interval"]
