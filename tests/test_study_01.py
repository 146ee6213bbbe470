"""Tests of study 01's pipeline (studylib.studies.loss_visualization): the tables the claims
are computed from, on cases small enough to work out by hand, and the record types the
notebook prints from. The claims themselves are tested in test_claims_01.py."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from test_claims_01 import SETTINGS, _records

from studylib.stats import Verdict, kendall_tau, mean_pairwise_kendall_tau, spearman_rho
from studylib.studies import loss_visualization as S
from studylib.techniques import landscape as L
from studylib.techniques.landscape import batched_logits

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest.py)


def small_mlp(seed=0):
    from studylib.models import build_model

    return build_model("mlp", in_features=16, num_classes=3, hidden=(12, 8), seed=seed).eval()


def small_cnn(seed=0, batchnorm=False):
    from studylib.models import build_model

    return build_model("small_cnn", in_channels=1, num_classes=3, image_size=8, width=4,
                       hidden=8, batchnorm=batchnorm, seed=seed).eval()


# ----------------------------------------------------------------------------- rank statistics


def test_kendall_and_spearman_by_hand():
    # for stats: these check studylib.stats.ranking, which test_stats.py does not cover yet
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair of 6: tau = (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    assert kendall_tau([1, 2, 3], [5, 5, 5]) == 0.0
    assert spearman_rho([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(1 - 6 * 2 / (4 * 15))
    with pytest.raises(ValueError):
        kendall_tau([1], [1])


def test_mean_pairwise_kendall_tau():
    s = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 4, 3]], float)
    # pairs: (0,1) tau 1, (0,2) 4/6, (1,2) 4/6
    assert mean_pairwise_kendall_tau(s) == pytest.approx((1 + 4 / 6 + 4 / 6) / 3)
    with pytest.raises(ValueError):
        mean_pairwise_kendall_tau(s[:1])


def test_ranking_stability_and_agreement_per_seed():
    rows = []
    for seed in (0, 1):
        for setting in ("a", "b"):
            for i, model in enumerate(["m1", "m2", "m3"]):
                score = i if (seed == 0 or setting == "a") else -i
                rows.append({"seed": seed, "arch": "x", "regime": model, "setting": setting,
                             "score": float(score)})
    df = pd.DataFrame(rows)
    st, left_out = S.ranking_stability_per_seed(df, setting_cols=["setting"], value_col="score")
    assert st == {0: pytest.approx(1.0), 1: pytest.approx(-1.0)}
    assert left_out == {0: [], 1: []}
    a = df[df.setting == "a"]
    b = df[df.setting == "b"]
    ag = S.rank_agreement_per_seed(a, b, value_a="score", value_b="score")
    assert ag == {0: pytest.approx(1.0), 1: pytest.approx(-1.0)}
    with pytest.raises(ValueError, match="method"):
        S.rank_agreement_per_seed(a, b, value_a="score", value_b="score", method="pearson")


def test_rank_agreement_and_stability_by_hand():
    psi_rows, acc_rows = [], []
    for seed in range(3):
        for i, reg in enumerate(["a", "b", "c", "d"]):
            for steps in (5, 10):
                # psi ranks a < b < c < d (a most robust) under every setting
                psi_rows.append({"arch": "x", "regime": reg, "seed": seed, "steps": steps,
                                 "restarts": 1, "score": (i + 1) * steps})
                # accuracy agrees under CE-PGD, is all zero (uninformative) under margin-PGD
                for obj in ("ce", "margin"):
                    acc_rows.append({"arch": "x", "regime": reg, "seed": seed,
                                     "objective": obj, "steps": steps,
                                     "accuracy": (0.9 - 0.2 * i) if obj == "ce" else 0.0})
    psi, acc = pd.DataFrame(psi_rows), pd.DataFrame(acc_rows)
    base = psi[psi.steps == 5]
    rho = S.rank_agreement_per_seed(base, acc[(acc.objective == "ce") & (acc.steps == 5)],
                                    value_a="score", value_b="accuracy")
    assert rho == pytest.approx({0: -1.0, 1: -1.0, 2: -1.0})
    tau_psi, out_psi = S.ranking_stability_per_seed(psi, setting_cols=list(S.PSI_SETTINGS),
                                                    value_col="score")
    tau_acc, out_acc = S.ranking_stability_per_seed(acc, setting_cols=list(S.ATTACK_SETTINGS),
                                                    value_col="accuracy")
    assert tau_psi == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0}) and out_psi[0] == []
    # the all-zero settings rank nothing: left out, the two CE settings agree perfectly
    assert tau_acc == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0})
    assert out_acc[0] == ["('margin', 5)", "('margin', 10)"]
    only_one, _ = S.ranking_stability_per_seed(acc[acc.steps == 5],
                                               setting_cols=list(S.ATTACK_SETTINGS),
                                               value_col="accuracy")
    assert only_one == {}  # one informative setting: no tau at all


# ----------------------------------------------------------------------------- tables


def _crossings(rows):
    return pd.DataFrame([{"arch": a, "regime": r, "seed": s, "point": p, "direction": d,
                          "k": k, "step": st} for a, r, s, p, d, k, st in rows])


def test_crossing_ratio_summary_by_hand():
    inf = math.inf
    df = _crossings([("a", "nat", 0, 0, "adv", 0, 0.1), ("a", "nat", 0, 0, "rand", 0, 0.5),
                     ("a", "nat", 0, 0, "rand", 1, inf), ("a", "nat", 0, 1, "adv", 0, 0.2),
                     ("a", "nat", 0, 1, "rand", 0, 0.4), ("a", "nat", 0, 1, "rand", 1, 0.6)])
    s = S.crossing_ratio_summary(df, max_step=1.0).iloc[0]
    # point 0: median(0.5, 1.0 [censored]) / 0.1 = 7.5; point 1: 0.5 / 0.2 = 2.5
    assert s.ratio_median == pytest.approx(5.0)
    assert s.adv_median == pytest.approx(0.15)
    assert s.rand_censored == pytest.approx(0.25)


def linear_softmax(d=4, k=3, seed=0):
    from studylib.models import build_model

    return build_model("mlp", in_features=d, num_classes=k, hidden=(), seed=seed).eval()


def test_psi_grid_settings_draw_their_own_starts():
    """No setting is a prefix of another: (5 steps, 1 start) and (5 steps, 2 starts) use
    different starts, so the second is not >= the first point by point by construction."""
    model = small_mlp()
    x = torch.rand(24, 16, generator=torch.Generator().manual_seed(3))
    g = S.psi_grid_table({("mlp", "r", 0): model}, x, eps=0.1, steps_values=[5],
                         restarts_values=[1, 2], progress=False)
    assert g[["steps", "restarts"]].values.tolist() == [[5, 1], [5, 2]]
    one = L.psi_per_point(model, x, 0.1, steps=5, restarts=1, seed=1000)
    assert float(g.score.iloc[0]) == pytest.approx(float(one.double().mean()))


def test_tightness_table_on_linear_models_is_at_most_one():
    models = {(S.TIGHTNESS_ARCH, "init", s): linear_softmax(seed=s) for s in range(2)}
    x = torch.rand(40, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    t = S.tightness_table(models, x, eps=0.2, steps_values=[2, 10], restarts_values=[1, 8])
    assert len(t) == 8 and (t.ratio <= 1 + 1e-5).all() and (t.worst <= 1 + 1e-5).all()
    means = t.groupby("restarts").ratio.mean()
    assert means[8] >= means[1] and means[8] > 0.8
    with pytest.raises(ValueError, match="linear"):
        S.tightness_table({("mlp", "r", 0): small_mlp()}, torch.rand(4, 16), eps=0.1,
                          steps_values=[2], restarts_values=[1])


def test_logit_scaling_table_keeps_decisions_and_lowers_psi_of_a_linear_model():
    """psi of a linear softmax model: its exact value (all box vertices) falls when the
    logits shrink (KL -> 0 with the logits), and the table sees the same direction."""
    model = linear_softmax(d=4, seed=1)
    with torch.no_grad():
        model.classifier[0].weight.mul_(8.0)  # a confident model
    x = torch.rand(60, 4, generator=torch.Generator().manual_seed(2))
    t = S.logit_scaling_table({("lin", "r", 0): model}, x, eps=0.1, scale=0.25, steps=10,
                              restarts=4, progress=False)
    assert t.same_decisions.iloc[0] == 1.0 and t.ratio.iloc[0] < 1.0
    layer = model.classifier[0]
    small = torch.nn.Linear(4, 3)
    with torch.no_grad():
        small.weight.copy_(layer.weight * 0.25)
        small.bias.copy_(layer.bias * 0.25)
    assert float(L.exact_psi_linear(small, x, 0.1).mean()) < float(
        L.exact_psi_linear(layer, x, 0.1).mean())


def test_shared_points_and_robust_accuracy_table():
    a, b = small_mlp(seed=0), small_mlp(seed=1)
    x = torch.rand(30, 16, generator=torch.Generator().manual_seed(5))
    y = batched_logits(a, x).argmax(1)
    shared = S.shared_correct_points({("m", "a", 0): a, ("m", "b", 0): b, ("m", "a", 1): a},
                                     x, y)
    both = batched_logits(b, x).argmax(1) == y
    assert torch.equal(shared[0], both) and bool(shared[1].all())  # seed 1 has a only
    t = S.robust_accuracy_table({("m", "a", 0): a}, x, y, eps=0.05, steps=3, restarts=1,
                                progress=False)
    row = t.iloc[0]
    assert row.clean_accuracy == 1.0 and 0 <= row.robust_accuracy <= row.clean_accuracy


def test_rescaling_table_and_claim_on_real_models():
    models = {("mlp", "init", s): small_mlp(seed=s) for s in range(2)}
    x = torch.rand(32, 16, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(1))
    t = S.rescaling_table(models, x, y, eps=0.05, layers=[0, 1, 5], psi_steps=3,
                          n_samples=3, progress=False)
    assert sorted(t.layer.unique()) == [0, 1]  # layer 5 does not exist: skipped
    assert t.psi_rel_change.max() < 1e-3
    assert t.max_logit_diff.max() < 1e-4
    with pytest.warns(UserWarning, match="skipped"):
        tb = S.rescaling_table({("cnn_bn", "init", 0): small_cnn(batchnorm=True)},
                               torch.rand(8, 1, 8, 8), torch.zeros(8, dtype=torch.long),
                               eps=0.05, layers=[0], psi_steps=2, n_samples=2, progress=False)
    assert tb.empty
    scaled = S.logit_scaling_table(models, x, eps=0.05, scale=0.25, steps=3, progress=False)
    assert (scaled.same_decisions == 1.0).all()
    claim = S.claim_metric_invariant_to_reparameterization(
        _records(rescaling=t, logit_scaling=scaled), SETTINGS)
    psi_row = claim.details["conditions"][0]
    assert psi_row["condition"].startswith("psi") and psi_row["estimate"] < 1e-3
    assert claim.verdict in tuple(Verdict)


def test_crossing_table_covers_correct_points_only():
    model = small_mlp()
    x = torch.rand(12, 16, generator=torch.Generator().manual_seed(2))
    y = batched_logits(model, x).argmax(1)  # every point correct ...
    y[:4] = (y[:4] + 1) % 3  # ... but four: left out
    t = S.crossing_table({("mlp", "natural", 0): model}, x, y, n_random=2, max_step=2.0,
                         n_grid=8, n_bisect=2, progress=False)
    assert sorted(t.point.unique()) == list(range(4, 12))
    assert t.groupby("direction").size().to_dict() == {"adv": 8, "rand": 16}
    assert (t.step >= 0).all()
    other = small_mlp(seed=4)  # a second model of the seed: only the points both get right
    t2 = S.crossing_table({("mlp", "natural", 0): model, ("mlp", "robust", 0): other}, x, y,
                          n_random=1, max_step=2.0, n_grid=8, n_bisect=2, progress=False)
    shared = set(((batched_logits(other, x).argmax(1) == y)
                  & (batched_logits(model, x).argmax(1) == y)).nonzero().flatten().tolist())
    assert 0 < len(shared) < 8  # the second model gets some of the eight points wrong
    for _, g in t2.groupby("regime"):
        assert set(g.point) == shared


# ----------------------------------------------------------------------------- records


def _diag(**changes) -> S.ModelDiagnostics:
    base = dict(clean_accuracy=0.9, max_abs_logit=10.0, psi=0.5, pgd_ce_accuracy=0.3,
                pgd_margin_accuracy=0.3, zero_gradient_fraction=0.0)
    return S.ModelDiagnostics(**{**base, **changes})


def test_masking_report_names_and_summary():
    reports = (S.MaskingReport(0, _diag(pgd_ce_accuracy=0.8, psi=0.1), _diag(), 0.2),
               S.MaskingReport(1, _diag(pgd_ce_accuracy=0.6, psi=0.1), _diag(), 0.2))
    flat = reports[0].flat()
    assert list(flat)[:2] == ["control_clean_accuracy", "control_max_abs_logit"]
    assert list(flat)[-1] == "control_transfer_accuracy" and len(flat) == 13
    records = dataclasses.replace(_records(), masking=reports)
    assert S.masking_means(records)["control_pgd_ce_accuracy"] == pytest.approx(0.7)
    summary = S.masking_summary(records, SETTINGS)  # margin 0.1
    assert summary.pgd_fooled and summary.transfer_breaks and summary.psi_says_robust
    strict = S.masking_summary(records, dataclasses.replace(SETTINGS,
                                                            masking_accuracy_margin=0.5))
    assert not strict.pgd_fooled and not strict.transfer_breaks  # 0.7 - 0.3 = 0.4 < 0.5
    assert "fooled by the masking: False" in str(strict)
