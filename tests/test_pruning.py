"""Tests of studylib.techniques.pruning against hand-computed answers and exact invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from studylib.models import build_model
from studylib.techniques.pruning import (
    CRITERIA,
    ChannelGates,
    PruneConfig,
    TaylorPruner,
    compare_inference_time,
    count_flops_params,
    curve_gap,
    gate_grads_from_params,
    gate_hessian_diagonal,
    loss_vs_removed,
    lowest_active,
    minibatch_scores,
    oracle_loss_change,
    prune_iteratively,
    rank_correlations,
    score_minibatches,
    torch_pruning_taylor_scores,
)


def _close(a, b, tol=1e-5):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


class TwoLayer(nn.Module):
    """x -> Linear(3, 4) -> [gate] -> Linear(4, 2): linear, so gradients are easy by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(3, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.hidden(x))


def _mse(model, x, t):
    return 0.5 * ((model(x) - t) ** 2).sum(1).mean()


def _warm_bn(model, x):
    """Give BatchNorms non-trivial running statistics and affine parameters."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
        model.train()
        model(x)
    model.eval()


def _lenet(seed=0):
    return build_model("lenet", seed=seed, in_channels=1, num_classes=3, image_size=8,
                       widths=(3, 4), hidden=(5, 4), batchnorm=True)


def _resnet(seed=0):
    return build_model("resnet", seed=seed, in_channels=2, num_classes=3, image_size=8,
                       widths=(4, 6), blocks_per_stage=(2, 1))


# ------------------------------------------------------------------ first-order gate score


def test_fo_gate_score_equals_hand_computed_sum_g_w_squared():
    torch.manual_seed(0)
    model = TwoLayer()
    x = torch.randn(5, 3)
    t = torch.randn(5, 2)
    gates = ChannelGates(model, x[:2])
    assert [g.module_names for g in gates.gates] == [["hidden"]]
    loss = _mse(model, x, t)
    loss.backward()
    fo = minibatch_scores(gates, ["taylor_fo"])["taylor_fo"].numpy()

    # by hand: r = out - t; dL/dW1 = mean_n (W2^T r_n) x_n^T; dL/db1 = mean_n W2^T r_n
    W1, b1 = model.hidden.weight.detach().numpy(), model.hidden.bias.detach().numpy()
    W2, b2 = model.out.weight.detach().numpy(), model.out.bias.detach().numpy()
    xn, tn = x.numpy(), t.numpy()
    r = (xn @ W1.T + b1) @ W2.T + b2 - tn
    back = r @ W2  # (N, 4)
    dW1 = back.T @ xn / len(xn)
    db1 = back.mean(0)
    expected = ((W1 * dW1).sum(1) + b1 * db1) ** 2
    _close(fo, expected)


def test_fo_weight_and_magnitude_scores_by_hand():
    torch.manual_seed(1)
    model = TwoLayer()
    x, t = torch.randn(6, 3), torch.randn(6, 2)
    gates = ChannelGates(model, x[:2])
    _mse(model, x, t).backward()
    s = minibatch_scores(gates, ["taylor_fo_weight", "weight_magnitude", "bn_scale"])
    W, b = model.hidden.weight.detach(), model.hidden.bias.detach()
    gW, gb = model.hidden.weight.grad, model.hidden.bias.grad
    _close(s["taylor_fo_weight"], ((W * gW) ** 2).sum(1) + (b * gb) ** 2)
    _close(s["weight_magnitude"], (W ** 2).sum(1) + b ** 2)
    assert np.isnan(s["bn_scale"].numpy()).all()  # no BatchNorm on this gate


def test_gates_are_not_parameters_and_start_at_one():
    model = _resnet()
    gates = ChannelGates(model, torch.rand(2, 2, 8, 8))
    params = {id(p) for p in model.parameters()}
    assert all(id(g.z) not in params for g in gates.gates)
    assert np.all(gates.values().numpy() == 1.0)


def test_building_gates_leaves_batchnorm_statistics_and_mode_untouched():
    model = _resnet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ChannelGates(model, torch.rand(2, 2, 8, 8))
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------ second-order gate score


def test_hessian_diagonal_of_quadratic_loss_by_hand():
    torch.manual_seed(2)
    model = TwoLayer()
    x, t = torch.randn(4, 3), torch.randn(4, 2)
    gates = ChannelGates(model, x[:2])
    loss = _mse(model, x, t)
    g, h = gate_hessian_diagonal(gates, loss)
    # L = 0.5 mean_n ||sum_j z_j a_nj W2[:, j] + b2 - t_n||^2  ->  H_jj = mean_n a_nj^2 ||W2[:, j]||^2
    a = model.hidden(x).detach().numpy()
    W2 = model.out.weight.detach().numpy()
    expected = (a ** 2).mean(0) * (W2 ** 2).sum(0)
    _close(h, expected)
    gates.zero_grad()
    _mse(model, x, t).backward()
    _close(g, gates.gate_grads())


def test_hessian_diagonal_matches_full_hessian_on_nonlinear_net():
    torch.manual_seed(3)
    model = _lenet()
    x = torch.rand(6, 1, 8, 8)
    y = torch.randint(0, 3, (6,))
    _warm_bn(model, x)
    gates = ChannelGates(model, x[:2])
    loss = F.cross_entropy(model(x), y)
    _, h = gate_hessian_diagonal(gates, loss)
    # reference: torch's full Hessian w.r.t. each gate vector, with the other gates fixed
    for gi, gate in enumerate(gates.gates):
        z0 = gate.z.detach().clone()
        H = torch.autograd.functional.hessian(
            lambda zv, gi=gi: _loss_with_gate(model, gates, gi, zv, x, y), z0)
        lo, hi = gates.offsets[gi], gates.offsets[gi + 1]
        _close(h[lo:hi], torch.diagonal(H), tol=1e-4)


def _loss_with_gate(model, gates, gi, zv, x, y):
    """Loss with gate ``gi`` replaced by the tensor ``zv`` (so autograd sees zv)."""
    gate = gates.gates[gi]
    handles = []
    with gates.suspended():
        for gg in gates.gates:
            v = zv if gg is gate else gg.z.detach()
            for mod in gg.modules:
                handles.append(mod.register_forward_hook(
                    lambda m, i, o, v=v: o * v.view((1, -1) + (1,) * (o.dim() - 2))))
        try:
            return F.cross_entropy(model(x), y)
        finally:
            for h in handles:
                h.remove()


# ------------------------------------------------------------------ removal == zeroing


@pytest.mark.parametrize("builder", [_lenet, _resnet])
def test_zeroing_gates_equals_removing_channels(builder):
    torch.manual_seed(4)
    model = builder()
    cin = 1 if builder is _lenet else 2
    x = torch.rand(8, cin, 8, 8)
    _warm_bn(model, x)
    gates = ChannelGates(model, x[:2])
    rng = np.random.default_rng(0)
    gates.zero_channels(lowest_active(rng.random(gates.n_channels), gates, gates.n_channels // 3))
    gated_out = model(x)
    pruned = gates.pruned_copy()
    pruned.eval()
    assert not any(m._forward_hooks for m in pruned.modules())
    torch.testing.assert_close(pruned(x), gated_out, atol=1e-5, rtol=1e-5)
    # the pruned layers really are narrower
    for g in gates.gates:
        kept = gates.kept_per_layer()[g.name]
        for name in g.producer_names:
            layer = pruned.get_submodule(name)
            width = layer.out_channels if hasattr(layer, "out_channels") else layer.out_features
            assert width == kept


def test_removing_one_lenet_filter_removes_the_hand_counted_parameters():
    model = _lenet()
    x = torch.rand(2, 1, 8, 8)
    gates = ChannelGates(model, x)
    _, p0 = count_flops_params(model, x)
    conv1_gate = [i for i, g in enumerate(gates.gates) if g.producer_names == ["features.0"]][0]
    gates.zero_channels([int(gates.offsets[conv1_gate])])
    _, p1 = count_flops_params(gates.pruned_copy(), x)
    # conv1 filter: 1*5*5 weights + 1 bias; its BN: gamma + beta; conv2 inputs: 4 * 5*5
    assert p0 - p1 == 26 + 2 + 4 * 25


def test_residual_stage_shares_one_gate_over_its_blocks():
    model = _resnet()
    gates = ChannelGates(model, torch.rand(2, 2, 8, 8))
    by_first = {g.module_names[0]: g for g in gates.gates}
    stage0 = by_first["stem.1"]
    # stem BN plus the last BN of each of the two blocks of stage 0
    assert stage0.module_names == ["stem.1", "stages.0.0.bn2", "stages.0.1.bn2"] or \
        sorted(stage0.module_names) == sorted(["stem.1", "stages.0.0.bn2", "stages.0.1.bn2"])
    assert stage0.n_shared == 3
    stage1 = [g for g in gates.gates if "stages.1.0.shortcut.1" in g.module_names][0]
    assert sorted(stage1.module_names) == ["stages.1.0.bn2", "stages.1.0.shortcut.1"]
    assert gates.n_channels == 4 + 4 + 4 + 6 + 6  # 2 stage gates + 3 block-internal gates


def test_shared_gate_gradient_sums_places_and_score_divides_by_them():
    torch.manual_seed(5)
    model = _resnet()
    x, y = torch.rand(6, 2, 8, 8), torch.randint(0, 3, (6,))
    _warm_bn(model, x)
    gates = ChannelGates(model, x[:2])
    stage0 = [g for g in gates.gates if "stem.1" in g.module_names][0]
    lo = int(gates.offsets[gates.gates.index(stage0)])
    F.cross_entropy(model(x), y).backward()
    fo = minibatch_scores(gates, ["taylor_fo"])["taylor_fo"][lo:lo + 4]
    # reference: one separate gate tensor per place; dL/dz_shared = sum of their gradients
    with gates.suspended():
        zs = [torch.ones(4, requires_grad=True) for _ in stage0.modules]
        hs = [m.register_forward_hook(lambda mod, i, o, z=z: o * z.view(1, -1, 1, 1))
              for m, z in zip(stage0.modules, zs, strict=True)]
        F.cross_entropy(model(x), y).backward()
        for h in hs:
            h.remove()
    total = sum(z.grad for z in zs)
    _close(fo, total ** 2 / 3)


# ------------------------------------------------------------------ oracle


def test_oracle_of_dead_filter_is_zero_and_matches_removal_elsewhere():
    torch.manual_seed(6)
    model = _lenet()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,))
    _warm_bn(model, x)
    bn1 = model.features[1]
    with torch.no_grad():  # kill filter 1 of conv1: its BN outputs exactly 0
        bn1.weight[1] = 0.0
        bn1.bias[1] = 0.0
    gates = ChannelGates(model, x[:2])
    gi = [i for i, g in enumerate(gates.gates) if g.producer_names == ["features.0"]][0]
    lo = int(gates.offsets[gi])
    oracle = oracle_loss_change(model, gates, x, y).numpy()
    assert oracle[lo + 1] == 0.0
    F.cross_entropy(model(x), y).backward()
    assert minibatch_scores(gates, ["taylor_fo"])["taylor_fo"][lo + 1] == 0.0
    # a live filter: the oracle is the loss change of the physically pruned model
    gates.zero_grad()
    with torch.no_grad():
        base = float(F.cross_entropy(model(x), y))
    gates.zero_channels([lo])
    pruned = gates.pruned_copy().eval()
    gates.reset()
    with torch.no_grad():
        removed = float(F.cross_entropy(pruned(x), y))
    assert oracle[lo] == pytest.approx(abs(removed - base), abs=1e-6)
    assert np.all(gates.values().numpy() == 1.0)  # the oracle restored every gate


def test_score_minibatches_averages_per_minibatch_scores():
    torch.manual_seed(7)
    model = _lenet()
    x, y = torch.rand(12, 1, 8, 8), torch.randint(0, 3, (12,))
    _warm_bn(model, x)
    gates = ChannelGates(model, x[:2])
    batches = [(x[:6], y[:6]), (x[6:], y[6:])]
    both = score_minibatches(model, gates, batches, criteria=CRITERIA)
    singles = [score_minibatches(model, gates, [b], criteria=["taylor_fo", "taylor_so"])
               for b in batches]
    for k in ("taylor_fo", "taylor_so", "oracle"):
        _close(both[k], (singles[0][k] + singles[1][k]) / 2)
    assert set(both) == set(CRITERIA) | {"oracle", "oracle_signed"}
    # second order agrees with first order where the Hessian term is small, and differs
    assert not np.allclose(both["taylor_so"], both["taylor_fo"])


# ------------------------------------------------------------------ ranking and curves


def test_lowest_active_ranks_globally_and_keeps_one_channel_per_layer():
    model = TwoLayer()
    gates = ChannelGates(model, torch.randn(2, 3))
    scores = np.array([0.4, 0.1, np.nan, 0.3])
    assert list(lowest_active(scores, gates, 2)) == [1, 3]
    assert list(lowest_active(scores, gates, 10)) == [1, 3, 0]  # one channel always stays
    gates.zero_channels([1])
    assert list(lowest_active(scores, gates, 1)) == [3]  # already-pruned channels are skipped


def test_lowest_active_has_no_per_layer_normalisation():
    model = _lenet()
    gates = ChannelGates(model, torch.rand(2, 1, 8, 8))
    scores = np.zeros(gates.n_channels)
    big = int(np.argmax([g.channels for g in gates.gates]))
    for i, g in enumerate(gates.gates):  # one layer scaled 1000x above the others
        scores[gates.offsets[i]:gates.offsets[i + 1]] = np.arange(1, g.channels + 1) * (
            1000.0 if i == big else 1.0)
    chosen = lowest_active(scores, gates, 5)
    assert not np.isin(gates.layer_index()[chosen], [big]).any()


def test_rank_correlations_known_answers():
    ref = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    layers = np.array([0, 0, 0, 1, 1, 1])
    out = rank_correlations({"same": ref ** 3, "rev": -ref, "part": np.array(
        [1.0, np.nan, 3.0, 4.0, 5.0, 6.0])}, ref, layers, ["a", "b"])
    assert out["same"]["spearman"] == pytest.approx(1.0)
    assert out["same"]["kendall"] == pytest.approx(1.0)
    assert out["rev"]["spearman"] == pytest.approx(-1.0)
    assert out["rev"]["per_layer"]["b"]["kendall"] == pytest.approx(-1.0)
    assert out["part"]["n"] == 5


def test_curve_gap_is_trapezoid_mean_gap():
    counts = [0, 2, 4]
    assert curve_gap(np.array([1.0, 3.0, 5.0]), np.array([1.0, 1.0, 1.0]), counts) == \
        pytest.approx((0.5 * 0 + 2 + 0.5 * 4) * 2 / 4)


def test_loss_vs_removed_starts_at_full_model_loss_and_restores_gates():
    torch.manual_seed(8)
    model = _lenet()
    x, y = torch.rand(10, 1, 8, 8), torch.randint(0, 3, (10,))
    _warm_bn(model, x)
    gates = ChannelGates(model, x[:2])
    with torch.no_grad():
        full = float(F.cross_entropy(model(x), y))
    curve = loss_vs_removed(model, gates, np.arange(gates.n_channels, dtype=float), x, y, [0, 2])
    assert curve[0] == pytest.approx(full, abs=1e-6)
    gates.zero_channels([0, 1])  # the two lowest scores = flat indices 0, 1
    with torch.no_grad():
        assert curve[1] == pytest.approx(float(F.cross_entropy(model(x), y)), abs=1e-6)
    gates.reset()


# ------------------------------------------------------------------ iterative pruning


def test_pruner_momentum_and_step_schedule():
    model = TwoLayer()
    gates = ChannelGates(model, torch.randn(2, 3))
    pruner = TaylorPruner(gates, PruneConfig(criterion="weight_magnitude", frequency=2,
                                             neurons_per_step=1, momentum=0.9,
                                             snapshot_fractions=(0.5,)))
    mag = minibatch_scores(gates, ["weight_magnitude"])["weight_magnitude"]
    assert pruner.step() is None
    chosen = pruner.step()
    assert list(chosen) == [int(torch.argmin(mag))]
    _close(pruner.averaged, mag)
    pruner._sum, pruner._n = torch.full((4,), 10.0), 1  # next contribution: 10 everywhere
    pruner.prune_now(0)
    _close(pruner.averaged, 0.9 * mag + 0.1 * 10.0)


def test_prune_iteratively_reaches_exact_snapshot_counts(tmp_path, monkeypatch):
    import studylib.core.paths as paths

    monkeypatch.setattr(paths, "CACHE_DIR", tmp_path)
    torch.manual_seed(9)
    model = _lenet()
    from types import SimpleNamespace

    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 3, (64,))
    split = SimpleNamespace(x=x, y=y)
    gates = ChannelGates(model, x[:2])
    cfg = PruneConfig(criterion="taylor_fo", frequency=2, neurons_per_step=2,
                      snapshot_fractions=(0.2, 0.4), batch_size=16)
    snaps = prune_iteratively(model, gates, split, cfg, seed=0, progress=False)
    n = gates.n_channels
    assert [s["removed"] for s in snaps] == [round(0.2 * n), round(0.4 * n)]
    # pruned channels of the first snapshot stay pruned in the second
    first_off = snaps[0]["gate_values"] == 0
    assert np.all(snaps[1]["gate_values"][first_off] == 0)
    assert np.all(gates.values().numpy() == snaps[1]["gate_values"])
    # second call: from the cache, same result
    model2 = _lenet()
    gates2 = ChannelGates(model2, x[:2])
    snaps2 = prune_iteratively(model2, gates2, split, cfg, seed=0, progress=False)
    assert np.array_equal(snaps2[1]["gate_values"], snaps[1]["gate_values"])
    torch.testing.assert_close(model2.state_dict(), model.state_dict())
    # a corrupt cache entry is discarded and the run pruned again, to the same result
    (entry,) = (tmp_path / "pruning").glob("*.pt")
    entry.write_bytes(b"truncated")
    model3 = _lenet()
    gates3 = ChannelGates(model3, x[:2])
    snaps3 = prune_iteratively(model3, gates3, split, cfg, seed=0, progress=False)
    assert np.array_equal(snaps3[1]["gate_values"], snaps[1]["gate_values"])
    assert entry.stat().st_size > 100  # rewritten


def test_prune_config_rejects_bad_values():
    with pytest.raises(ValueError, match="criterion"):
        PruneConfig(criterion="oracle")
    with pytest.raises(ValueError, match="snapshot_fractions"):
        PruneConfig(snapshot_fractions=(0.5, 0.2))


# ------------------------------------------------------------------ torch-pruning, timing


def test_torch_pruning_taylor_matches_fo_weight_on_plain_layers():
    torch.manual_seed(10)
    model = TwoLayer()
    x, t = torch.randn(5, 3), torch.randint(0, 2, (5,))
    gates = ChannelGates(model, x[:2])
    tp_scores = torch_pruning_taylor_scores(model, gates, [(x, t)])
    model.zero_grad()
    F.cross_entropy(model(x), t).backward()
    W, g = model.hidden.weight.detach(), model.hidden.weight.grad
    W2, g2 = model.out.weight.detach(), model.out.weight.grad
    # tp: mean over the group's layers of sum |w g| (hidden rows, out columns)
    expected = ((W * g).abs().sum(1) + (W2 * g2).abs().sum(0)) / 2
    _close(tp_scores, expected)


def test_compare_inference_time_reports_medians():
    a = nn.Linear(64, 64)
    b = nn.Linear(64, 8)
    r = compare_inference_time(a, b, torch.randn(32, 64), repeats=5, warmup=1)
    assert r["median_a_s"] > 0 and r["median_b_s"] > 0
    assert r["ratio_b_over_a"] == pytest.approx(r["median_b_s"] / r["median_a_s"])
    with pytest.raises(ValueError, match="repeats"):
        compare_inference_time(a, b, torch.randn(2, 64), repeats=0)


# ------------------------------------------------------------------ claim helpers


@pytest.mark.parametrize("builder", [_lenet, _resnet])
def test_gate_gradient_equals_parameter_identity(builder):
    torch.manual_seed(11)
    model = builder()
    cin = 1 if builder is _lenet else 2
    x, y = torch.rand(6, cin, 8, 8), torch.randint(0, 3, (6,))
    _warm_bn(model, x)
    gates = ChannelGates(model, x[:2])
    model.train()
    F.cross_entropy(model(x), y).backward()
    _close(gate_grads_from_params(gates), gates.gate_grads(), tol=1e-5)
