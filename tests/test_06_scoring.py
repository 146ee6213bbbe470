"""Study 06's scoring over many minibatches: the expensive scores on a prefix of them, the
split halves, the reference's moving average, and the within-gate correlations and tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from studylib.techniques.pruning import (
    ChannelGates,
    estimate_scores,
    score_minibatches,
    split_half_reliability,
)


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(3, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


def _setup(n_batches=4):
    torch.manual_seed(3)
    model = TwoLayer()
    x, y = torch.randn(8 * n_batches, 3), torch.randint(0, 2, (8 * n_batches,))
    gates = ChannelGates(model, x[:2])
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, len(y), 8)]
    return model, gates, batches


def test_expensive_scores_use_the_first_batches_and_halves_alternate():
    model, gates, batches = _setup(4)
    est = estimate_scores(model, gates, batches, ["taylor_fo", "taylor_so", "random"],
                          expensive_batches=2)
    singles = [score_minibatches(model, gates, [b], ["taylor_fo", "taylor_so"]) for b in batches]
    np.testing.assert_allclose(est.scores["taylor_fo"],
                               np.mean([s["taylor_fo"] for s in singles], 0), rtol=1e-6)
    for k in ("taylor_so", "oracle"):  # the first two minibatches only
        np.testing.assert_allclose(est.scores[k], (singles[0][k] + singles[1][k]) / 2, rtol=1e-6)
        even, odd = est.halves[k]
        np.testing.assert_allclose(even, singles[0][k], rtol=1e-6)
        np.testing.assert_allclose(odd, singles[1][k], rtol=1e-6)
    even, odd = est.halves["taylor_fo"]  # batches 0, 2 against 1, 3
    np.testing.assert_allclose(even, (singles[0]["taylor_fo"] + singles[2]["taylor_fo"]) / 2,
                               rtol=1e-6)
    np.testing.assert_allclose(odd, (singles[1]["taylor_fo"] + singles[3]["taylor_fo"]) / 2,
                               rtol=1e-6)
    assert est.n_batches == {"taylor_fo": 4, "random": 4, "taylor_so": 2, "oracle": 2,
                             "oracle_signed": 2}
    assert est.n_images["taylor_fo"] == 32 and est.n_images["oracle"] == 16


def test_momentum_is_the_reference_moving_average():
    model, gates, batches = _setup(3)
    m = 0.5
    est = estimate_scores(model, gates, batches, ["taylor_fo"], oracle=False, momentum=m)
    s = [score_minibatches(model, gates, [b], ["taylor_fo"], oracle=False)["taylor_fo"]
         for b in batches]
    np.testing.assert_allclose(est.scores["taylor_fo"], m * (m * s[0] + (1 - m) * s[1])
                               + (1 - m) * s[2], rtol=1e-6)
    with pytest.raises(ValueError, match="momentum"):
        estimate_scores(model, gates, batches, ["taylor_fo"], momentum=1.0)
    with pytest.raises(ValueError, match="expensive_batches"):
        estimate_scores(model, gates, batches, ["taylor_fo"], expensive_batches=4)


def test_split_half_reliability_is_rank_agreement_of_the_halves():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    out = split_half_reliability({"same": (a, 10 * a), "reversed": (a, -a),
                                  "short": (a[:2], a[:2]),
                                  "nan": (np.array([1.0, np.nan, 3.0, 4.0]), a)})
    assert out["same"] == pytest.approx(1.0) and out["reversed"] == pytest.approx(-1.0)
    assert math.isnan(out["short"]) and out["nan"] == pytest.approx(1.0)


def test_within_layer_rho_and_tables():
    from test_claims_06 import _records, _seeds

    from studylib.studies import taylor_pruning as S

    recs = _records(lenet=_seeds(fo=[0.9, 0.8, 0.85], ratio=[0.5, 2.0, 1.0]))
    lay = {"conv": S.Correlation(0.4, 0.3, 8, {}), "fc": S.Correlation(0.6, 0.5, 12, {}),
           "tiny": S.Correlation(math.nan, math.nan, 2, {})}
    r = recs.by_setup["lenet"][0]
    rec = S.SeedRecord(**{**r.__dict__, "correlations": {
        **r.correlations, "taylor_fo": S.Correlation(0.9, 0.8, 22, lay)}})
    assert rec.within_layer_rho("taylor_fo") == pytest.approx(0.5)
    t = S.timing_table(recs)
    assert t.loc["lenet", "ratio pruned/dense (geo. mean)"] == pytest.approx(1.0)
    assert t.loc["lenet", "min"] == pytest.approx(0.5)


def test_second_order_claim_compares_with_fo_on_the_same_batches():
    from test_claims_06 import SETTINGS, _records, _seeds

    from studylib.stats import Verdict
    from studylib.studies import taylor_pruning as S

    recs = _records(lenet=_seeds(fo=[0.5, 0.52, 0.51], so=[0.9, 0.91, 0.9]))
    assert S.claim_second_order_matches_first(recs, SETTINGS).verdict == Verdict.NOT_REPRODUCED
    same = tuple(S.SeedRecord(**{**r.__dict__, "correlations": {
        **r.correlations, S.FO_ON_ORACLE_BATCHES: S.Correlation(0.9 + 0.001 * r.seed, 0.8, 20,
                                                                 {})}})
        for r in recs.by_setup["lenet"])
    c = S.claim_second_order_matches_first(S.Records({"lenet": same}), SETTINGS)
    assert c.verdict == Verdict.REPRODUCED


def test_train_like_pruning_replays_the_pruning_runs_data_order_and_optimizer():
    """The dense control takes the same steps as the training inside prune_iteratively: Adam at
    the config's lr over a fresh seeded permutation per epoch (checked against a loop written
    here from that description), and 0 minibatches leave the model as it was."""
    import copy
    from types import SimpleNamespace

    from studylib.techniques.pruning import PruneConfig, train_like_pruning

    torch.manual_seed(5)
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    split = SimpleNamespace(x=x, y=y)
    cfg = PruneConfig(criterion="taylor_fo", batch_size=16, lr=1e-2)
    start = TwoLayer()

    same = train_like_pruning(copy.deepcopy(start), split, cfg, 0, seed=4)
    for a, b in zip(same.parameters(), start.parameters(), strict=True):
        assert torch.equal(a, b)

    trained = train_like_pruning(copy.deepcopy(start), split, cfg, 5, seed=4)
    ref = copy.deepcopy(start)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(4)
    steps = 0
    while steps < 5:  # 40 images, minibatches of 16: two per epoch, the last 8 images dropped
        order = torch.randperm(40, generator=gen)
        for start_i in (0, 16):
            if steps == 5:
                break
            idx = order[start_i:start_i + 16]
            opt.zero_grad()
            nn.functional.cross_entropy(ref(x[idx]), y[idx]).backward()
            opt.step()
            steps += 1
    for a, b in zip(trained.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    moved = max(float((a - b).abs().max()) for a, b in zip(trained.parameters(),
                                                            start.parameters(), strict=True))
    assert moved > 1e-3  # it did train
    with pytest.raises(ValueError, match="n_minibatches"):
        train_like_pruning(copy.deepcopy(start), split, cfg, -1, seed=4)


@pytest.mark.slow
def test_seed_workers_give_the_same_numbers_as_one_process(tmp_path, monkeypatch):
    """Seeds run in worker processes (one torch thread each) give the numbers they give run one
    after another in this process, also one thread each, in the jobs' order."""
    import dataclasses

    from conftest import notebook_parameters

    import studylib.core.paths as paths
    from studylib.studies import taylor_pruning as S

    monkeypatch.setattr(paths, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(paths, "CHECKPOINT_DIR", tmp_path / "checkpoints")
    params = {k: v for k, v in notebook_parameters("06_taylor_pruning").items()
              if k not in ("profile", "output_dir", "device", "seeds")}
    params["setups"]["lenet_digits"]["epochs"] = 2
    settings = S.Settings.from_params(params)
    setup = settings.setups["lenet_digits"]
    jobs = [("lenet_digits", setup, 0), ("lenet_digits", setup, 1)]
    one = S.run_seeds(jobs, dataclasses.replace(settings, seed_workers=1))
    two = S.run_seeds(jobs, dataclasses.replace(settings, seed_workers=2))
    assert [r.seed for r in two] == [0, 1]
    for a, b in zip(one, two, strict=True):
        assert a.base_accuracy == b.base_accuracy
        np.testing.assert_array_equal(a.scores["taylor_fo"], b.scores["taylor_fo"])
        np.testing.assert_array_equal(a.matched["parameters"].pruned_correct,
                                      b.matched["parameters"].pruned_correct)
    assert one[0].base_accuracy != one[1].base_accuracy or not np.array_equal(
        one[0].scores["taylor_fo"], one[1].scores["taylor_fo"])  # the seeds differ
