"""Tests of studylib.techniques.verification against independently known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest
from torch import nn

from studylib.models import build_model
from studylib.techniques import verification as V

# ----------------------------------------------------------------------------- sample sizes


def test_chernoff_sample_size_is_738_at_005_005():
    assert V.chernoff_sample_size(0.05, 0.05) == 738
    # ln(2/0.2) / (2 * 0.04) = 28.78 -> 29
    assert V.chernoff_sample_size(0.2, 0.2) == 29


@pytest.mark.parametrize("k,n,alpha", [(0, 10, 0.05), (3, 20, 0.05), (20, 20, 0.1),
                                       (7, 738, 0.025), (369, 738, 0.01), (1, 1, 0.05)])
def test_clopper_pearson_matches_scipy_binomtest(k, n, alpha):
    lo, hi = V.clopper_pearson(k, n, alpha)
    ref = binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="exact")
    assert float(lo) == pytest.approx(ref.low, abs=1e-9)
    assert float(hi) == pytest.approx(ref.high, abs=1e-9)


def test_massart_h_minimum_is_chernoff_rate():
    err = 0.05
    # analytic: the minimum of h_a over p is exactly 2, attained at p = 1/2 -+ err/3
    assert float(V.massart_h(0.5 - err / 3, err)) == pytest.approx(2.0, rel=1e-12)
    assert float(V.massart_h(0.5 + err / 3, err)) == pytest.approx(2.0, rel=1e-12)
    grid = np.linspace(0, 1, 20001)
    assert V.massart_h(grid, err).min() >= 2.0 - 1e-12
    assert float(V.massart_min_h(0.0, 1.0, err)) == pytest.approx(2.0)
    # hand value at p = 0: 9 / (2 * err * (3 - err))
    assert float(V.massart_h(0.0, err)) == pytest.approx(9 / (2 * 0.05 * 2.95))
    # interval min equals a brute-force min over a fine grid inside the interval
    for lo, hi in [(0.0, 0.1), (0.3, 0.49), (0.45, 0.6), (0.7, 0.99)]:
        g = np.linspace(lo, hi, 5001)
        assert float(V.massart_min_h(lo, hi, err)) == pytest.approx(V.massart_h(g, err).min(),
                                                                    rel=1e-6)


def test_sequential_bound_never_exceeds_chernoff():
    err, conf = 0.05, 0.05
    n_ch = V.chernoff_sample_size(err, conf)
    rng = np.random.default_rng(0)
    for p in [0.0, 0.01, 0.02, 0.1, 0.3, 0.5, 0.7, 0.98, 1.0]:
        for _ in range(5):
            x = (rng.random(n_ch) < p).astype(int)
            bounds = V.sequential_halting_bounds(x, err, conf)
            assert bounds.max() <= n_ch
            stop = V.sequential_stopping_index(x, err, conf)
            assert stop is not None and 1 <= stop <= n_ch


def test_sequential_all_zero_stream_stops_where_closed_form_says():
    # with k = 0 successes the Clopper-Pearson upper end is 1 - (alpha/2)^(1/m); the rule stops
    # at the first m >= ceil(ln(2/(conf-alpha)) / (h_a(b_m, err) err^2))
    err, conf, alpha = 0.05, 0.05, 0.025
    expected = None
    for m in range(1, 739):
        b = 1 - (alpha / 2) ** (1 / m)
        q = min(b, 0.5 - err / 3)
        h = 9 / (2 * (3 * q + err) * (3 * (1 - q) - err))
        if m >= min(math.ceil(math.log(2 / (conf - alpha)) / (h * err**2)), 738):
            expected = m
            break
    got = V.sequential_stopping_index(np.zeros(738), err, conf, alpha)
    assert got == expected and got < 738


@pytest.mark.parametrize("p", [0.02, 0.5])
def test_sequential_scheme_coverage_simulated(p):
    err, conf = 0.05, 0.05
    rng = np.random.default_rng(1)
    reps, fails, used = 200, 0, []
    for _ in range(reps):
        x = (rng.random(738) < p).astype(int)
        est = V.estimate_probability(x, err=err, conf=conf, method="sequential")
        fails += abs(est.p_hat - p) > err
        used.append(est.n_used)
    assert fails / reps <= conf
    if p == 0.02:
        assert np.mean(used) < 0.6 * 738  # saves samples near 0
    else:
        assert np.mean(used) == 738  # no saving at 1/2


def test_estimate_probability_array_and_lazy_agree_and_guard_length():
    rng = np.random.default_rng(3)
    x = (rng.random(738) < 0.1).astype(int)
    a = V.estimate_probability(x, err=0.05, conf=0.05, method="sequential")
    calls = []

    def draw(start, stop):
        calls.append((start, stop))
        return x[start:stop]

    b = V.estimate_probability(draw, err=0.05, conf=0.05, method="sequential", batch_size=50)
    assert (a.p_hat, a.n_used) == (b.p_hat, b.n_used)
    assert a.p_hat == pytest.approx(x[:a.n_used].mean())
    assert calls[-1][1] <= a.n_used + 50  # lazily: never more than one batch past the stop
    c = V.estimate_probability(x, err=0.05, conf=0.05, method="chernoff")
    assert c.n_used == 738 and c.p_hat == pytest.approx(x.mean())
    assert "0.05" in c.guarantee
    with pytest.raises(ValueError, match="needs up to 738"):
        V.estimate_probability(x[:100], err=0.05, conf=0.05, method="chernoff")
    with pytest.raises(ValueError, match="method"):
        V.estimate_probability(x, err=0.05, conf=0.05, method="bayes")
    with pytest.raises(ValueError, match="alpha"):
        V.estimate_probability(x, err=0.05, conf=0.05, alpha=0.05)


def test_resampled_coverage_counts_failures():
    pool = np.r_[np.ones(300), np.zeros(14700)]  # p_pool = 0.02
    res = V.resampled_coverage(pool, err=0.05, conf=0.05, method="sequential", repetitions=50,
                               seed=0)
    assert res["p_pool"] == pytest.approx(0.02)
    assert res["failures"] == 0 and res["n_used_max"] < 738
    again = V.resampled_coverage(pool, err=0.05, conf=0.05, method="sequential",
                                 repetitions=50, seed=0)
    assert again == res
    # a tolerance err smaller than the sampling noise must fail often (the check can fail)
    tight = V.resampled_coverage(np.r_[np.ones(7500), np.zeros(7500)], err=0.005, conf=0.5,
                                 method="chernoff", repetitions=50)
    assert tight["failures"] > 0


# ----------------------------------------------------------------------------- networks / IBP


def _random_mlp(seed=0):
    return build_model("mlp", in_features=12, num_classes=4, hidden=(16, 8), seed=seed).eval()


def _random_cnn(seed=0):
    return build_model("small_cnn", in_channels=2, num_classes=3, image_size=8, width=4,
                       hidden=8, seed=seed).eval()


def test_networkset_forward_matches_each_module():
    mods = [_random_cnn(s) for s in range(4)]
    nets = V.NetworkSet.from_modules(mods)
    x = torch.rand(5, 2, 8, 8)
    ref = torch.stack([m(x) for m in mods]).detach()
    assert torch.allclose(nets(x), ref, atol=1e-5)
    xp = torch.rand(4, 2, 8, 8)
    paired = nets.paired_logits(xp)
    assert torch.allclose(paired, torch.stack([m(xp[i:i + 1])[0] for i, m in enumerate(mods)]),
                          atol=1e-5)
    sub = nets.subset([2, 0])
    assert torch.allclose(sub(x)[0], ref[2], atol=1e-5)


@pytest.mark.parametrize("make", [_random_mlp, _random_cnn])
def test_ibp_contains_1000_random_points_of_T(make):
    torch.manual_seed(0)
    mods = [make(s) for s in range(3)]
    nets = V.NetworkSet.from_modules(mods)
    shape = (1, 12) if make is _random_mlp else (1, 2, 8, 8)
    x_star = torch.rand(shape) * 0.8 + 0.1
    eps = 0.05
    lo, hi = V.input_box(x_star, eps)
    l_lo, l_hi = nets.interval_bounds(lo, hi)
    pts = lo + (hi - lo) * torch.rand(1000, *shape[1:])
    corners = torch.where(torch.rand(200, *shape[1:]) < 0.5, lo, hi)  # box vertices too
    pts = torch.cat([pts, corners])
    with torch.no_grad():
        z = nets(pts)  # (S, 1200, K)
        s_star = torch.softmax(nets(x_star), -1)  # (S, 1, K)
    assert torch.all(z >= l_lo - 1e-5) and torch.all(z <= l_hi + 1e-5)
    s_lo, s_hi = V.softmax_interval(l_lo, l_hi)
    probs = torch.softmax(z, -1)
    assert torch.all(probs >= s_lo - 1e-6) and torch.all(probs <= s_hi + 1e-6)
    bound = V.softmax_l2_change_bound(l_lo, l_hi, s_star)  # (S, 1)
    change = torch.linalg.vector_norm(probs - s_star, dim=-1)  # (S, 1200)
    assert torch.all(change <= bound + 1e-6)


def test_softmax_interval_of_a_point_is_the_softmax_and_widens_with_eps():
    z = torch.randn(6, 5)
    lo, hi = V.softmax_interval(z, z)
    assert torch.allclose(lo, torch.softmax(z, -1), atol=1e-6)
    assert torch.allclose(hi, torch.softmax(z, -1), atol=1e-6)
    nets = V.NetworkSet.from_modules([_random_mlp(0)])
    x = torch.rand(1, 12)
    widths = []
    for eps in [0.0, 0.01, 0.05, 0.2]:
        b = V.ibp_outcomes(nets, x[0], eps, 0.25).divergence.item()
        widths.append(b)
    assert widths[0] == pytest.approx(0.0, abs=1e-6)
    assert all(a <= b + 1e-9 for a, b in zip(widths, widths[1:], strict=False))


def test_networkset_rejects_non_sequential_forward():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 2)
            self.input_shape = (4,)

        def forward(self, x):
            return self.b(x + self.a(x))

    with pytest.raises(ValueError, match="composition"):
        V.NetworkSet.from_modules([Residual()])
    with pytest.raises(ValueError, match="not supported"):
        V.NetworkSet.from_modules([nn.Sequential(nn.Linear(3, 3), nn.GELU())])


# ----------------------------------------------------------------------------- known answer


def _linear_two_class(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(2, 6, generator=g))
        net[1].bias.copy_(torch.randn(2, generator=g))
    net.input_shape = (6,)
    return net


def _exact_vertex_divergences(net, x_star, eps):
    # two classes: softmax depends on d = z1 - z0 only, ||s - s*||_2 = sqrt(2) |sig(d) - sig(d*)|;
    # d is linear in x, so over the box (no clipping here) it spans d* -+ eps ||v||_1 and the
    # divergence has one local maximum at each end (the larger is the global maximum)
    with torch.no_grad():
        v = net[1].weight[1] - net[1].weight[0]
        c = net[1].bias[1] - net[1].bias[0]
        d_star = float(v @ x_star + c)
        span = eps * float(v.abs().sum())
    sig = lambda d: 1 / (1 + math.exp(-d))  # noqa: E731
    ends = sorted([abs(sig(d_star - span) - sig(d_star)), abs(sig(d_star + span) - sig(d_star))])
    return math.sqrt(2) * ends[0], math.sqrt(2) * ends[1]


def test_identical_linear_networks_give_the_exact_p_hat():
    net = _linear_two_class(0)
    x_star = torch.full((6,), 0.5)
    eps = 0.1  # the box stays inside [0, 1]: no clipping
    local, truth = _exact_vertex_divergences(net, x_star, eps)
    assert local < 0.9 * truth  # the two ends differ, so the answers below are informative
    n = V.chernoff_sample_size(0.1, 0.1)  # 150 identical networks
    nets = V.NetworkSet(
        net, {k: v.detach().unsqueeze(0).expand(n, *v.shape) for k, v in net.named_parameters()})

    def p_hat(outcomes, method="chernoff"):
        return V.estimate_probability(outcomes.numpy(), err=0.1, conf=0.1, method=method).p_hat

    # FGSM (cross-entropy at the prediction) steps towards the decision boundary: for a linear
    # two-class net that is exactly the global maximiser, so its p_hat is exact on both sides
    o = V.attack_outcomes(nets, x_star, eps, 0.9 * truth, attack="fgsm")
    assert o.divergence.min().item() == pytest.approx(truth, rel=1e-4)
    assert p_hat(o.outcome) == 1.0 and p_hat(o.outcome, "sequential") == 1.0
    assert p_hat(V.attack_outcomes(nets, x_star, eps, 1.01 * truth, attack="fgsm").outcome) == 0
    # PGD on the softmax distance alone, from a random start, reaches one of the two local
    # maxima: exact whenever delta_out is outside [local, truth)
    o = V.attack_outcomes(nets, x_star, eps, 0.9 * local, attack="pgd", steps=20,
                          pgd_objectives=("softmax",))
    assert o.divergence.max().item() == pytest.approx(truth, rel=1e-4)
    assert o.divergence.min().item() >= local * (1 - 1e-4)
    assert p_hat(o.outcome) == 1.0
    # with the cross-entropy ascent as well (the default) every network reaches the global one
    o = V.attack_outcomes(nets, x_star, eps, 0.9 * truth, attack="pgd", steps=20)
    assert o.divergence.min().item() == pytest.approx(truth, rel=1e-4)
    assert p_hat(o.outcome) == 1.0
    assert p_hat(V.attack_outcomes(nets, x_star, eps, 1.01 * truth, attack="pgd").outcome) == 0
    # IBP: sound, and for this one-layer net certifies once delta_out exceeds its bound
    ibp = V.ibp_outcomes(nets, x_star, eps, 0.9 * truth)
    assert ibp.divergence.min().item() >= truth - 1e-6
    assert p_hat(ibp.outcome) == 1.0
    big = float(ibp.divergence.max()) * 1.01
    assert p_hat(V.ibp_outcomes(nets, x_star, eps, big).outcome) == 0.0


def test_attack_lower_bound_and_ibp_upper_bound_bracket_each_network():
    mods = [_random_mlp(s) for s in range(8)]
    nets = V.NetworkSet.from_modules(mods)
    x_star = torch.rand(12)
    for eps in (0.02, 0.1):
        pgd = V.attack_outcomes(nets, x_star, eps, 0.1, attack="pgd", steps=5, seed=0)
        ibp = V.ibp_outcomes(nets, x_star, eps, 0.1)
        assert torch.all(pgd.divergence <= ibp.divergence + 1e-6)
        assert torch.all(pgd.outcome.int() <= ibp.outcome.int())


@pytest.mark.parametrize("make", [_random_mlp, _random_cnn])
def test_ibp_bound_never_falls_as_eps_grows(make):
    """Study 05 asserts in its run that no IBP estimate falls as eps grows (it used to be a
    claim): the boxes are nested, also where they are clipped to [0, 1], and interval
    propagation maps nested boxes to nested bounds, network by network."""
    nets = V.NetworkSet.from_modules([make(s) for s in range(6)])
    shape = (12,) if make is _random_mlp else (2, 8, 8)
    x_star = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    x_star.view(-1)[:3] = torch.tensor([0.0, 1.0, 0.01])  # coordinates at the domain's edge
    bounds = torch.stack([V.ibp_outcomes(nets, x_star, eps, 0.25).divergence
                          for eps in (0.0, 0.005, 0.02, 0.05, 0.1, 0.3)])
    assert torch.all(bounds[1:] >= bounds[:-1] - 1e-6)


# ----------------------------------------------------------------------------- adapters


def test_dropout_networks_have_fixed_masks():
    net = build_model("mlp", in_features=12, num_classes=4, hidden=(16,), dropout=0.5,
                      seed=0).eval()
    nets = V.network_set_from_dropout(net, 8, seed=1)
    mask = nets.masks["features.3"]
    assert mask.shape == (8, 16) and set(mask.unique().tolist()) <= {0.0, 2.0}
    x = torch.rand(5, 12)
    h = torch.relu(net.features[1](x))  # (5, 16)
    ref = torch.stack([net.classifier(h * mask[s]) for s in range(8)]).detach()
    assert torch.allclose(nets(x), ref, atol=1e-5)
    again = V.network_set_from_dropout(net, 8, seed=1)
    assert torch.equal(again.masks["features.3"], mask)
    lo, hi = V.input_box(x[:1], 0.05)
    l_lo, l_hi = nets.interval_bounds(lo, hi)
    pts = lo + (hi - lo) * torch.rand(300, 12)
    z = nets(pts)
    assert torch.all(z >= l_lo - 1e-5) and torch.all(z <= l_hi + 1e-5)


def test_network_set_from_vi_posterior_matches_bayes_forward():
    from studylib.techniques.bayes import VIPosterior, bayesian_mlp

    bnet = bayesian_mlp(12, 3, hidden=(8,), seed=0)
    locs = {k: torch.randn(s) for k, s in bnet.site_shapes.items()}
    scales = {k: torch.full(s, 0.1) for k, s in bnet.site_shapes.items()}
    post = VIPosterior(bnet, locs, scales)
    nets = V.network_set_from_posterior(post, 6, seed=4)
    x = torch.rand(5, 12)
    ref = post.forward_samples(x, post.draw(6, seed=4))
    assert torch.allclose(nets(x), ref, atol=1e-5)


def test_the_hmc_sample_cache_rebuilds_a_corrupt_entry(tmp_path, monkeypatch):
    """A truncated HMC cache entry is discarded and the chain run again (same seed: same
    samples), instead of failing every rerun."""
    from types import SimpleNamespace

    from studylib.core import paths
    from studylib.techniques.bayes import bayesian_mlp

    monkeypatch.setattr(paths, "CHECKPOINT_DIR", tmp_path)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 4, generator=gen)
    bundle = SimpleNamespace(train=SimpleNamespace(x=x, y=(x[:, 0] > 0).long()),
                             spec={"name": "toy", "n": 20})
    kw = dict(num_samples=3, warmup_steps=2, num_leapfrog=2, seed=0)
    first, info = V._hmc_cached(bayesian_mlp(4, 2, hidden=(3,), seed=0), bundle, **kw)
    assert not info["from_cache"]
    assert V._hmc_cached(bayesian_mlp(4, 2, hidden=(3,), seed=0), bundle, **kw)[1]["from_cache"]
    (entry,) = tmp_path.glob("hmc-*.pt")
    entry.write_bytes(b"not a torch file")
    again, info = V._hmc_cached(bayesian_mlp(4, 2, hidden=(3,), seed=0), bundle, **kw)
    assert not info["from_cache"]
    assert all(torch.equal(again[k], first[k]) for k in first)


# ----------------------------------------------------------------------------- HMC chains


def _gaussian(mu, sd):
    def potential_and_grad(w):
        z = (w - mu) / sd
        return 0.5 * (z * z).sum(1), (w - mu) / sd ** 2
    return potential_and_grad


def test_hmc_chains_recover_the_moments_of_a_gaussian_target():
    """A Gaussian with known mean and (anisotropic) sd: the pooled chains' mean and sd match
    within a few Monte-Carlo standard errors of the ESS, the chains mix (split R-hat near 1),
    and the integrator's energy error stays small."""
    mu, sd = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 1.0, 2.0])
    chain, info = V.hmc_chains(_gaussian(mu, sd), torch.zeros(4, 3) + torch.tensor([[3.0]]),
                               num_samples=400, warmup_steps=200, trajectory_length=1.5,
                               init_step_size=0.1, seed=0)
    assert chain.shape == (4, 400, 3) and info["chains"] == 4
    diag = V.chain_diagnostics(chain)
    assert diag["ess"] > 200 and diag["rhat"] < 1.05
    x = chain.reshape(-1, 3)
    se = sd / math.sqrt(diag["ess"])
    assert torch.all(torch.abs(x.mean(0) - mu) < 5 * se)
    assert torch.allclose(x.std(0), sd, rtol=0.2)
    assert 0.5 < info["accept_rate"] <= 1 and info["divergent"] == 0
    assert info["energy_error_mean"] < 1.0
    # the trajectory sets the leapfrog count from the adapted step
    assert info["num_leapfrog"] == math.ceil(1.5 / info["step_size"])


def test_hmc_chains_short_trajectories_mix_worse_than_long_ones():
    """At the same step size (no adaptation), proposals of one leapfrog step (a trajectory of
    0.05 of the target's sd) give a far smaller effective sample size than trajectories of
    about one sd: the failure the study's audit found in its short-trajectory chain."""
    mu, sd = torch.zeros(5), torch.ones(5)
    kw = dict(warmup_steps=0, init_step_size=0.05, seed=1)
    short, _ = V.hmc_chains(_gaussian(mu, sd), torch.zeros(2, 5), num_samples=400,
                            num_leapfrog=1, **kw)
    long_, _ = V.hmc_chains(_gaussian(mu, sd), torch.zeros(2, 5), num_samples=400,
                            trajectory_length=1.2, **kw)
    assert V.chain_diagnostics(long_)["ess"] > 4 * V.chain_diagnostics(short)["ess"]


def test_chain_diagnostics_flags_chains_stuck_in_different_places():
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(2, 200, generator=rng)
    x[1] += 5.0
    d = V.chain_diagnostics(x)
    assert d["rhat"] > 1.5
    assert V.chain_diagnostics(torch.randn(4, 200, generator=rng))["rhat"] < 1.05


def test_hmc_chains_reject_bad_arguments():
    pg = _gaussian(torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError):
        V.hmc_chains(pg, torch.zeros(2), num_samples=5)
    with pytest.raises(ValueError):
        V.hmc_chains(pg, torch.zeros(1, 2), num_samples=5, thin=0)
    with pytest.raises(ValueError):
        V.hmc_chains(pg, torch.zeros(1, 2), num_samples=5, trajectory_length=0.0)


def test_hmc_samples_several_chains_lay_out_chain_after_chain(tmp_path):
    from studylib.techniques.bayes import bayesian_mlp
    torch.manual_seed(0)
    x, y = torch.rand(20, 4), torch.randint(0, 2, (20,))
    inits = [dict(bayesian_mlp(4, 2, hidden=(3,), seed=s).template.named_parameters())
             for s in (5, 6)]
    samples, info = V.hmc_samples(bayesian_mlp(4, 2, hidden=(3,), seed=0), x, y, num_samples=6,
                                  warmup_steps=5, chains=3, thin=2, trajectory_length=0.3,
                                  inits=inits, seed=0)
    assert {v.shape[0] for v in samples.values()} == {18}
    assert info["chains"] == 3 and info["thin"] == 2
    for key in ("weight_ess", "weight_rhat", "energy_ess", "energy_error_mean"):
        assert key in info


# ----------------------------------------------------------------------------- pools, device


def test_pool_chunk_size_bounds_the_weights_held_at_once():
    assert V.pool_chunk_size("cpu", 407_050) == (2 ** 29) // (4 * 407_050)  # 329 MNIST MLPs
    assert V.pool_chunk_size("cpu", 10) == 4096 and V.pool_chunk_size("cpu", 10 ** 9) == 16
    assert V.pool_chunk_size("cuda", 407_050) > V.pool_chunk_size("cpu", 407_050)


def test_a_streamed_pool_has_every_network_once_and_is_seeded():
    from studylib.techniques.bayes import VIPosterior, bayesian_mlp
    bnet = bayesian_mlp(4, 2, hidden=(3,), seed=0)
    locs = {k: torch.zeros(s) for k, s in bnet.site_shapes.items()}
    scales = {k: torch.ones(s) for k, s in bnet.site_shapes.items()}
    post = VIPosterior(bnet, locs, scales)
    fp = V.FittedPosterior("vi", {}, draw=lambda n, s: V.network_set_from_posterior(post, n,
                                                                                    seed=s))
    sets = list(fp.stream(10, seed=3, chunk=4))
    assert [len(s) for s in sets] == [4, 4, 2]
    again = list(fp.stream(10, seed=3, chunk=4))
    first = next(iter(sets[0].params))
    assert all(torch.equal(a.params[first], b.params[first]) for a, b in zip(sets, again, strict=True))
    assert not torch.equal(sets[0].params[first], sets[1].params[first][:4])
    mcmc = V.FittedPosterior("hmc", {}, samples=sets[0])
    with pytest.raises(ValueError, match="not i.i.d."):
        list(mcmc.stream(4, 0, 2))
    assert len(mcmc.networks(3, 0)) == 3
    with pytest.raises(ValueError):
        mcmc.networks(5, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_network_sets_and_outcomes_live_on_the_gpu():
    nets = V.NetworkSet.from_modules([nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
                                      for _ in range(5)]).to("cuda")
    assert nets.device.type == "cuda"
    o = V.bernoulli_outcomes(nets, torch.rand(4), 0.1, 0.25, "pgd", steps=3)
    assert o.outcome.device.type == "cuda"
    ibp = V.ibp_outcomes(nets, torch.rand(4), 0.1, 0.25)
    assert torch.all(o.outcome <= ibp.outcome)


def test_network_set_reports_its_device_and_moves_inputs_there():
    nets = V.NetworkSet.from_modules([nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
                                      for _ in range(5)])
    assert nets.device == torch.device("cpu")
    o = V.attack_outcomes(nets, torch.rand(4), 0.0, 0.25)
    assert o.outcome.device == nets.device and not o.outcome.any()
