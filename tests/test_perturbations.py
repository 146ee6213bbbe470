"""Known-answer tests of studylib.perturbations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studylib import perturbations as P


def _img(n=2, c=1, h=16, w=16, seed=0):
    return torch.rand((n, c, h, w), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- study 03 signals


def test_salt_and_pepper_fraction_values_and_determinism():
    x = torch.full((4, 1, 64, 64), 0.5)
    out = P.salt_and_pepper(x, 0.2, seed=3)
    changed = (out != 0.5)
    assert abs(changed.float().mean().item() - 0.2) < 0.02
    assert set(torch.unique(out[changed]).tolist()) <= {0.0, 1.0}
    # salt and pepper in roughly equal numbers
    assert abs((out == 1).float().mean().item() - (out == 0).float().mean().item()) < 0.02
    assert torch.equal(out, P.salt_and_pepper(x, 0.2, seed=3))
    assert not torch.equal(out, P.salt_and_pepper(x, 0.2, seed=4))
    assert torch.equal(P.salt_and_pepper(x, 0.0, seed=3), x)
    with pytest.raises(ValueError, match="amount"):
        P.salt_and_pepper(x, 1.5)


def test_gaussian_blur_preserves_constant_and_matches_variance_of_impulse():
    const = torch.full((1, 1, 20, 20), 0.3)
    assert torch.allclose(P.gaussian_blur(const, 1.5), const, atol=1e-6)
    # an impulse blurred with sigma has spatial second moment sigma^2 along each axis
    imp = torch.zeros((1, 1, 41, 41))
    imp[0, 0, 20, 20] = 1.0
    out = P.gaussian_blur(imp, 2.0)[0, 0]
    assert abs(out.sum().item() - 1.0) < 1e-5
    t = torch.arange(41.0) - 20
    var_x = (out.sum(0) * t**2).sum().item()
    assert abs(var_x - 4.0) < 0.05
    assert torch.equal(P.gaussian_blur(imp, 0.0), imp)


def test_brightness_contrast_known_values():
    x = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(1, 1, 2, 2)
    out = P.brightness_contrast(x, brightness=0.1, contrast=0.5)
    expected = (x - 0.5) * 0.5 + 0.5 + 0.1
    assert torch.allclose(out, expected)
    assert torch.allclose(P.brightness_contrast(x, brightness=0.5, contrast=2.0).max(), torch.tensor(1.0))
    assert torch.allclose(P.brightness_contrast(x), x)


@pytest.mark.parametrize("name", sorted(P.SIGNAL_PERTURBATIONS))
def test_signal_perturbations_grid_identity_at_zero_and_range(name):
    fn, grid = P.SIGNAL_PERTURBATIONS[name]
    assert grid[0] == 0 and len(grid) >= 5 and grid == sorted(grid)
    x = _img(n=3, c=3, h=12, w=12)
    assert torch.allclose(fn(x, 0.0, seed=0), x)
    out = fn(x, grid[-1], seed=1)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)
    assert torch.equal(out, P.apply_signal_perturbation(name, x, grid[-1], seed=1))
