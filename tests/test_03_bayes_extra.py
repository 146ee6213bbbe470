"""The bayes.py additions study 03 uses: SVI's convergence criterion (``fit_vi(tol=...)``)
and the posterior-mean network (``posterior_mean_network``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from studylib.techniques import bayes
from studylib.techniques.bayes import _loss_converged


def _blobs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) * 0.5 + (y[:, None].float() * 2 - 1) * 2.0
    return x, y


def test_loss_converged_compares_window_medians():
    assert not _loss_converged([5.0, 4.0, 3.0], tol=0.1, window=2)  # too short
    # falling by 1 per epoch: window medians 4.5 then 2.5, a fall of 1 per epoch
    assert not _loss_converged([6.0, 5.0, 4.0, 3.0], tol=0.5, window=2)
    assert _loss_converged([6.0, 5.0, 4.0, 3.0], tol=1.5, window=2)
    # one spike in either window moves neither median: a flat loss has converged, a falling
    # one has not
    assert _loss_converged([1.0, 1.0, 1.0, 1.0, 1.0, 9.0], tol=0.1, window=3)
    assert _loss_converged([1.0, 9.0, 1.0, 1.0, 1.0, 1.0], tol=0.1, window=3)
    assert not _loss_converged([6.0, 5.0, 4.0, 3.0, 2.0, 30.0], tol=0.5, window=3)


def test_fit_vi_stops_at_the_criterion_and_says_so(tmp_path):
    x, y = _blobs(60)

    def fit(**kw):
        return bayes.fit_vi(bayes.bayesian_mlp(2, 2, hidden=(8,), seed=0), (x, y),
                            batch_size=60, lr=0.05, seed=0, cache_dir=tmp_path, progress=False,
                            **kw)

    plain = fit(epochs=200)
    assert len(plain.history) == 200 and plain.converged is None
    loose = fit(epochs=200, tol=1.0, window=3)
    assert loose.converged and 6 <= len(loose.history) < 200
    assert _loss_converged(loose.history, 1.0, 3)
    assert not _loss_converged(loose.history[:-1], 1.0, 3)  # it stopped at the first such epoch
    # the same seed runs the same epochs as the plain fit up to where it stopped
    assert loose.history == pytest.approx(plain.history[:len(loose.history)])
    tight = fit(epochs=8, tol=1e-9, window=3)
    assert tight.converged is False and len(tight.history) == 8
    again = fit(epochs=200, tol=1.0, window=3)  # the criterion is part of the cache key
    assert again.from_cache and again.converged and again.history == loose.history
    with pytest.raises(ValueError, match="tol"):
        fit(epochs=3, tol=0.0)


def test_posterior_mean_network_is_the_guide_means_without_sampling():
    x, y = _blobs(40)
    post = bayes.fit_vi(bayes.bayesian_mlp(2, 2, hidden=(8,), seed=0), (x, y), epochs=5,
                        batch_size=40, lr=0.05, seed=0, cache=False, progress=False)
    net = bayes.posterior_mean_network(post)
    want = post.forward_samples(x, post.mean_samples())[0]
    torch.testing.assert_close(net(x), want)
    assert not any(p.requires_grad for p in net.parameters())
    # gradients still reach the input (white-box attacks on it need them)
    xg = x.clone().requires_grad_(True)
    net(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    # the posterior itself is untouched, and a deterministic wrapper gives identical "samples"
    clf = bayes.DeterministicClassifier(net)
    s = clf.sample_logits(x, 3)
    torch.testing.assert_close(s[0], s[2])


def test_posterior_mean_network_keeps_a_frozen_extractor():
    torch.manual_seed(0)
    cnn = nn.Module()
    cnn.features = nn.Sequential(nn.Linear(2, 4), nn.ReLU())
    cnn.classifier = nn.Sequential(nn.Linear(4, 2))
    x, y = _blobs(30)
    post = bayes.fit_vi(bayes.bayesian_head(cnn, reinit_seed=None), (x, y), epochs=3,
                        batch_size=30, lr=0.05, seed=0, cache=False, progress=False)
    net = bayes.posterior_mean_network(post)
    torch.testing.assert_close(net(x), post.forward_samples(x, post.mean_samples())[0])
