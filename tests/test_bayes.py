"""Tests of studylib.techniques.bayes: prior/guide shapes, vectorised predictive vs a Predictive loop,
MC dropout, EOT-PGD on deterministic models, uncertainty scores and detection AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Predictive
from torch import nn

from studylib import attacks
from studylib.techniques import bayes


def _blobs(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two well separated 2-D Gaussian blobs (labels 0/1)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    centres = torch.tensor([[-2.0, -2.0], [2.0, 2.0]])
    x = centres[y] + 0.5 * torch.randn(n, 2, generator=g)
    return x, y


def _tiny_cnn_bnet(prior_scale: float = 1.0) -> bayes.BayesianNet:
    return bayes.bayesian_cnn(1, 3, 8, width=2, hidden=5, prior_scale=prior_scale, seed=1)


# ----------------------------------------------------------------------------- shapes


def test_prior_sites_shapes_and_scale():
    bnet = _tiny_cnn_bnet(prior_scale=0.3)
    expected = {n: p.shape for n, p in bnet.template.named_parameters()}
    assert bnet.site_shapes == expected
    import pyro

    x = torch.rand(4, 1, 8, 8)
    tr = pyro.poutine.trace(bnet.model).get_trace(x, torch.zeros(4, dtype=torch.long))
    latent = {n: s for n, s in tr.nodes.items()
              if s["type"] == "sample" and not s["is_observed"] and n in expected}
    assert set(latent) == set(expected)
    for name, site in latent.items():
        assert site["value"].shape == expected[name]
        fn = site["fn"]
        assert fn.event_shape == expected[name]  # one joint site per tensor
        assert torch.allclose(fn.base_dist.scale, torch.tensor(0.3))
        assert torch.allclose(fn.base_dist.loc, torch.tensor(0.0))
    assert tr.nodes["logits"]["value"].shape == (4, 3)
    assert tr.nodes["obs"]["is_observed"]


def test_bayesian_head_keeps_extractor_frozen_and_only_head_is_random():
    from studylib.models import build_model

    net = build_model("small_cnn", in_channels=1, num_classes=3, image_size=8, width=2,
                      hidden=5, dropout=0.5, seed=0)
    bnet = bayes.bayesian_head(net, prior_scale=1.0, reinit_seed=3)
    assert set(bnet.site_shapes) == {f"{n}" for n, _ in net.classifier.named_parameters()}
    assert all(not p.requires_grad for p in bnet.extractor.parameters())
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(bnet.features(x), net.features(x))
    with pytest.raises(ValueError, match="dropout"):
        bayes.BayesianNet(net.classifier)  # p=0.5 dropout is rejected


def test_guide_shapes_and_initialisation():
    bnet = _tiny_cnn_bnet()
    x = torch.rand(6, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    post = bayes.fit_vi(bnet, (x, y), epochs=0, init_scale=0.05, cache=False, progress=False)
    for name, p in bnet.template.named_parameters():
        assert post.locs[name].shape == p.shape and post.scales[name].shape == p.shape
        assert torch.allclose(post.locs[name], p)  # guide means start at the body's weights
        assert torch.allclose(post.scales[name], torch.full_like(p, 0.05), atol=1e-6)
    draws = post.draw(7, seed=0)
    assert all(draws[n].shape == (7, *s) for n, s in bnet.site_shapes.items())
    assert all(torch.equal(draws[n], post.draw(7, seed=0)[n]) for n in draws)  # seeded


# ----------------------------------------------------------------------------- predictive


def _loop_logits(bnet: bayes.BayesianNet, samples: dict, x: torch.Tensor) -> torch.Tensor:
    """One pyro.infer.Predictive call per weight sample: the slow reference."""
    outs = []
    s_count = next(iter(samples.values())).shape[0]
    for s in range(s_count):
        one = {k: v[s:s + 1] for k, v in samples.items()}
        pred = Predictive(bnet.model, posterior_samples=one, return_sites=["logits"])
        outs.append(pred(x)["logits"].reshape(x.shape[0], -1))
    return torch.stack(outs)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "head"])
def test_vectorised_predictive_equals_predictive_loop(kind):
    torch.manual_seed(0)
    if kind == "mlp":
        bnet = bayes.bayesian_mlp(4, 3, hidden=(6,), seed=0)
        x = torch.randn(9, 4)
    elif kind == "cnn":
        bnet = _tiny_cnn_bnet()
        x = torch.rand(9, 1, 8, 8)
    else:
        from studylib.models import build_model

        net = build_model("small_cnn", in_channels=1, num_classes=3, image_size=8, width=2,
                          hidden=5, seed=0)
        bnet = bayes.bayesian_head(net)
        x = torch.rand(9, 1, 8, 8)
    y = torch.arange(9) % 3
    post = bayes.fit_vi(bnet, (x, y), epochs=2, batch_size=4, cache=False, progress=False)
    samples = post.draw(5, seed=4)
    vec = post.forward_samples(x, samples)
    ref = _loop_logits(bnet, samples, x)
    assert vec.shape == (5, 9, 3)
    torch.testing.assert_close(vec, ref, atol=1e-5, rtol=1e-5)
    # chunked computation gives the same numbers; different samples give different logits
    torch.testing.assert_close(post.forward_samples(x, samples, batch_size=4, chunk_size=2), vec,
                               atol=1e-6, rtol=1e-6)
    assert not torch.allclose(vec[0], vec[1])
    probs = post.predictive_probs(x, 5, seed=4)
    torch.testing.assert_close(probs, F.softmax(ref, -1).mean(0), atol=1e-6, rtol=1e-5)


def test_vi_learns_separable_blobs_and_caches(tmp_path):
    x, y = _blobs(60)
    bnet = bayes.bayesian_mlp(2, 2, hidden=(8,), seed=0)
    post = bayes.fit_vi(bnet, (x, y), epochs=40, batch_size=60, lr=0.05, seed=0,
                        cache=True, cache_dir=tmp_path, progress=False)
    assert post.history[-1] < post.history[0]
    xt, yt = _blobs(200, seed=1)
    acc = float((post.predictive_probs(xt, 20).argmax(1) == yt).float().mean())
    assert acc >= 0.95
    again = bayes.fit_vi(bayes.bayesian_mlp(2, 2, hidden=(8,), seed=0), (x, y), epochs=40,
                         batch_size=60, lr=0.05, seed=0, cache=True, cache_dir=tmp_path,
                         progress=False)
    assert again.from_cache and not post.from_cache
    assert all(torch.equal(again.locs[k], post.locs[k]) for k in post.locs)
    # a corrupt entry (a truncated write, another version) is discarded, said, and rebuilt
    (entry,) = tmp_path.glob("vi-*.pt")
    entry.write_bytes(entry.read_bytes()[:40])
    rebuilt = bayes.fit_vi(bayes.bayesian_mlp(2, 2, hidden=(8,), seed=0), (x, y), epochs=40,
                           batch_size=60, lr=0.05, seed=0, cache=True, cache_dir=tmp_path,
                           progress=False)
    assert not rebuilt.from_cache
    assert all(torch.equal(rebuilt.locs[k], post.locs[k]) for k in post.locs)
    assert bayes.fit_vi(bayes.bayesian_mlp(2, 2, hidden=(8,), seed=0), (x, y), epochs=40,
                        batch_size=60, lr=0.05, seed=0, cache=True, cache_dir=tmp_path,
                        progress=False).from_cache


def test_fit_vi_rejects_bad_arguments():
    bnet = bayes.bayesian_mlp(2, 2, hidden=(3,))
    x, y = _blobs(8)
    with pytest.raises(ValueError, match="kl_weight"):
        bayes.fit_vi(bnet, (x, y), kl_weight=0.0, cache=False, progress=False)
    with pytest.raises(ValueError, match="prior_scale"):
        bayes.bayesian_mlp(2, 2, prior_scale=-1.0)


def test_nuts_tiny_problem():
    x, y = _blobs(30)
    bnet = bayes.bayesian_mlp(2, 2, hidden=(3,), prior_scale=1.0, seed=0)
    post = bayes.fit_nuts(bnet, x, y, num_samples=20, warmup_steps=20, seed=0,
                          max_tree_depth=4, progress=False)
    assert post.num_stored == 20
    assert all(v.shape == (20, *bnet.site_shapes[k]) for k, v in post.samples.items())
    # samples move (a chain that never moves has zero spread)
    assert float(post.samples["classifier.0.weight"].std(0).mean()) > 1e-3
    xt, yt = _blobs(200, seed=1)
    acc = float((post.predictive_probs(xt, 20).argmax(1) == yt).float().mean())
    assert acc >= 0.95
    d = post.draw(10, seed=1)
    assert all(v.shape[0] == 10 for v in d.values())


# ----------------------------------------------------------------------------- MC dropout


class _LinearDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(3, 4))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 2))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_mc_dropout_is_unbiased_for_linear_net_and_seeded():
    torch.manual_seed(0)
    net = _LinearDropout()
    x = torch.randn(5, 3)
    mc = bayes.MCDropoutPosterior(net)
    s = mc.sample_logits(x, 4000, seed=0)
    assert s.shape == (4000, 5, 2)
    # inverted dropout is unbiased: for a net linear after the dropout, E[logits] = eval logits
    with torch.no_grad():
        det = net(x)
    torch.testing.assert_close(s.mean(0), det, atol=0.05, rtol=0)
    assert not torch.allclose(s[0], s[1])
    torch.testing.assert_close(mc.sample_logits(x, 8, seed=3), mc.sample_logits(x, 8, seed=3))
    # the features-once shortcut uses the same masks as the full repeated batch
    torch.testing.assert_close(bayes.mc_dropout_samples(net, x, 8, seed=3, _split=False),
                               mc.sample_logits(x, 8, seed=3))
    assert not net.training and not net.classifier[0].training  # modes restored
    with pytest.raises(ValueError, match="dropout"):
        bayes.MCDropoutPosterior(nn.Linear(3, 2))


def test_sample_forward_draws_fresh_samples_reproducibly():
    torch.manual_seed(0)
    net = _LinearDropout()
    x = torch.randn(5, 3)
    mc = bayes.MCDropoutPosterior(net).reseed(7)
    a, b = mc.sample_forward(x, 3), mc.sample_forward(x, 3)
    assert not torch.allclose(a, b)
    mc.reseed(7)
    torch.testing.assert_close(mc.sample_forward(x, 3), a)


# ----------------------------------------------------------------------------- attacks


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def test_eot_pgd_on_deterministic_model_is_pgd():
    model = _tiny_model().eval()
    x = torch.rand(12, 1, 4, 4)
    y = torch.arange(12) % 3
    det = bayes.DeterministicClassifier(model)
    x_eot = attacks.eot_pgd(det.sample_forward, x, y, 0.1, steps=7, n_samples=10, seed=5)
    x_pgd = attacks.projected_gradient_ascent(
        lambda xa: F.cross_entropy(model(xa), y, reduction="none"), x, 0.1, steps=7, seed=5,
        keep_best=False)
    torch.testing.assert_close(x_eot, x_pgd, atol=1e-6, rtol=0)
    assert float((x_eot - x).abs().max()) <= 0.1 + 1e-6


def test_eot_pgd_on_collapsed_posterior_is_pgd_on_its_mean():
    """A VI posterior with (almost) zero spread behaves as its mean network."""
    bnet = bayes.bayesian_mlp(4, 3, hidden=(6,), seed=0)
    locs = {k: v.clone() for k, v in bnet.template.named_parameters()}
    scales = {k: torch.full_like(v, 1e-12) for k, v in locs.items()}
    post = bayes.VIPosterior(bnet, locs, scales)
    x = torch.rand(10, 4)
    y = torch.arange(10) % 3
    x_eot = attacks.eot_pgd(post.sample_forward, x, y, 0.2, steps=5, n_samples=4, seed=1)
    x_pgd = attacks.projected_gradient_ascent(
        lambda xa: F.cross_entropy(bnet.template(xa), y, reduction="none"), x, 0.2, steps=5,
        seed=1, keep_best=False)
    torch.testing.assert_close(x_eot, x_pgd, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- uncertainty


def test_entropy_and_mutual_information_known_values():
    k = 4
    uniform = torch.full((3, 2, k), 1.0 / k)
    torch.testing.assert_close(bayes.predictive_entropy(uniform), torch.full((2,), math.log(k)))
    torch.testing.assert_close(bayes.mutual_information(uniform), torch.zeros(2))
    # two confident samples that disagree: all uncertainty is epistemic
    disagree = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    torch.testing.assert_close(bayes.predictive_entropy(disagree), torch.tensor([math.log(2)]))
    torch.testing.assert_close(bayes.expected_entropy(disagree), torch.tensor([0.0]))
    torch.testing.assert_close(bayes.mutual_information(disagree), torch.tensor([math.log(2)]))
    with pytest.raises(ValueError, match="S, N, K"):
        bayes.predictive_entropy(torch.ones(2, 3))


def test_detection_auc_identical_sets_is_half_and_known_cases():
    rng = np.random.default_rng(0)
    s = rng.normal(size=200)
    res = bayes.detection_auc(s, s.copy(), n_boot=200)
    assert res["auc"] == pytest.approx(0.5)
    assert res["ci95"][0] < 0.5 < res["ci95"][1]
    # hand-computed: pairs (pos > neg) + half ties over 4 pairs = 3.5 / 4
    assert bayes.roc_auc([0.0, 1.0], [1.0, 2.0]) == pytest.approx(0.875)
    assert bayes.roc_auc([0.0, 0.1], [0.5, 0.9]) == 1.0
    from sklearn.metrics import roc_auc_score

    neg, pos = rng.normal(size=50), rng.normal(0.7, size=70)
    ref = roc_auc_score(np.r_[np.zeros(50), np.ones(70)], np.r_[neg, pos])
    assert bayes.roc_auc(neg, pos) == pytest.approx(ref)


def test_log_joint_equals_pyro_model_density():
    import pyro

    bnet = bayes.bayesian_mlp(2, 3, hidden=(4,), prior_scale=0.7, seed=0)
    x, y = torch.randn(5, 2), torch.tensor([0, 1, 2, 1, 0])
    params = bnet.prior_samples(1, seed=3)
    params = {k: v[0] for k, v in params.items()}
    tr = pyro.poutine.trace(pyro.poutine.condition(bnet.model, data=params)).get_trace(x, y)
    ref = sum(site["fn"].log_prob(site["value"]).sum() for site in tr.nodes.values()
              if site["type"] == "sample")
    torch.testing.assert_close(bayes.log_joint(bnet, params, x, y), ref, atol=1e-4, rtol=1e-5)


def test_craft_transfer_is_pgd_on_the_source_and_accuracy_matches_argmax():
    model = _tiny_model().eval()
    x = torch.rand(16, 1, 4, 4)
    y = torch.arange(16) % 3
    det = bayes.DeterministicClassifier(model)
    clean = float((model(x).argmax(1) == y).float().mean())
    assert bayes.predictive_accuracy(det, x, y, 3, seed=2) == pytest.approx(clean)
    xa = bayes.craft_transfer(model, x, y, "pgd", 0.2, pgd_steps=5, seed=2)
    torch.testing.assert_close(xa, attacks.pgd(model, x, y, 0.2, steps=5, seed=2))
    acc = bayes.predictive_accuracy(det, xa, y, 3, seed=2)
    assert acc == pytest.approx(float((model(xa).argmax(1) == y).float().mean())) and acc <= clean
    with pytest.raises(ValueError, match="fgsm"):
        bayes.craft_transfer(model, x, y, "cw", 0.2)


def test_auto_batch_size_follows_the_device():
    from studylib.techniques.bayes import auto_batch_size
    assert auto_batch_size(30, "cpu") == 1024 // 30
    assert auto_batch_size(5000, "cpu") == 1
    assert auto_batch_size(30, "cuda") == 65_536 // 30


# ----------------------------------------------------------------------------- local reparameterisation


def test_local_reparameterisation_matches_weight_sampling_moments():
    """For a Linear layer the sampled pre-activation must have the mean and variance that
    weight sampling gives: mean h.mu + mu_b, variance h^2.sigma^2 + sigma_b^2 (checked against
    10,000 explicit weight draws), and a conv layer likewise."""
    torch.manual_seed(0)
    for body in (nn.Sequential(nn.Linear(3, 2)),
                 nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten())):
        bnet = bayes.BayesianNet(body, prior_scale=1.0)
        init = {k: torch.randn(s) for k, s in bnet.site_shapes.items()}
        lrt = bayes.LocalReparameterisation(bnet, init, init_scale=0.3, lr=1e-3)
        h = torch.randn(1, 3) if isinstance(body[0], nn.Linear) else torch.randn(1, 1, 4, 4)
        with torch.no_grad():
            # 10,000 copies of one example in a batch: each gets its own pre-activation draw
            draws = lrt.forward(h.expand(10000, *h.shape[1:]))
            post = bayes.VIPosterior(bnet, init, {k: torch.full(s, 0.3)
                                                   for k, s in bnet.site_shapes.items()})
            weights = bnet.forward_samples(h, post.draw(10000, seed=1))[:, 0]
        torch.testing.assert_close(draws.mean(0), weights.mean(0), atol=0.03, rtol=0.02)
        torch.testing.assert_close(draws.var(0), weights.var(0), atol=0.03, rtol=0.05)
        with torch.no_grad():  # at the means: the body with the initial means as its weights
            torch.testing.assert_close(lrt.forward(h, sample=False),
                                       torch.func.functional_call(body, init, (h,)))


def test_local_reparameterisation_kl_is_the_closed_form():
    bnet = bayes.BayesianNet(nn.Sequential(nn.Linear(1, 1, bias=False)), prior_scale=2.0)
    lrt = bayes.LocalReparameterisation(bnet, {"0.weight": torch.tensor([[1.0]])},
                                        init_scale=0.5, lr=1e-3)
    # KL(N(1, 0.5^2) || N(0, 2^2)) = log(2 / 0.5) + (0.25 + 1) / 8 - 1/2
    assert float(lrt.kl().detach()) == pytest.approx(math.log(4) + 1.25 / 8 - 0.5, rel=1e-5)


def test_fit_vi_with_local_reparameterisation_learns_and_is_cached_apart(tmp_path):
    x, y = _blobs(60)
    kw = dict(epochs=40, batch_size=60, lr=0.05, seed=0, cache=True, cache_dir=tmp_path,
              progress=False)
    post = bayes.fit_vi(bayes.bayesian_mlp(2, 2, hidden=(8,), seed=0), (x, y),
                        estimator="lrt", **kw)
    assert post.history[-1] < post.history[0]
    xt, yt = _blobs(200, seed=1)
    assert float((post.predictive_probs(xt, 20).argmax(1) == yt).float().mean()) >= 0.95
    svi = bayes.fit_vi(bayes.bayesian_mlp(2, 2, hidden=(8,), seed=0), (x, y), **kw)
    assert not svi.from_cache  # another estimator, another cache entry
    again = bayes.fit_vi(bayes.bayesian_mlp(2, 2, hidden=(8,), seed=0), (x, y),
                         estimator="lrt", **kw)
    assert again.from_cache and all(torch.equal(again.locs[k], post.locs[k]) for k in post.locs)
    with pytest.raises(ValueError, match="estimator"):
        bayes.fit_vi(bayes.bayesian_mlp(2, 2, seed=0), (x, y), estimator="flipout", **kw)


def test_local_reparameterisation_refuses_a_body_that_is_not_a_chain():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.b(x) + self.a(x)  # not a(b(x))

    bnet = bayes.BayesianNet(Residual())
    lrt = bayes.LocalReparameterisation(
        bnet, {n: p.detach() for n, p in Residual().named_parameters()}, init_scale=0.1, lr=1e-3)
    with pytest.raises(ValueError, match="chain"):
        lrt.step(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), 1.0)
