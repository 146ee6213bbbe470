"""Core properties of studylib.attacks (known-answer tests on linear models live in
test_attacks_known.py)."""

import pytest
import torch
from torch import nn

from studylib.attacks import (
    adversarial_accuracy,
    eot_pgd,
    fgsm,
    margin_loss,
    pgd,
    projected_gradient_ascent,
)


def _linear(seed=0, d=20, k=3):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(d, k))
    return m.eval()


def test_ascent_stays_in_ball_and_box():
    x = torch.rand(16, 1, 4, 5)
    w = torch.randn(20)
    xa = projected_gradient_ascent(lambda z: z.flatten(1) @ w, x, 0.1, steps=5, seed=0)
    assert (xa - x).abs().max() <= 0.1 + 1e-6
    assert xa.min() >= 0 and xa.max() <= 1


def test_ascent_on_linear_objective_reaches_box_corner():
    # maximise w.x over the L-inf ball intersected with [0, 1]: answer clip(x + eps sign(w))
    x = torch.full((4, 20), 0.5)
    w = torch.randn(20)
    xa = projected_gradient_ascent(lambda z: z @ w, x, 0.2, steps=20, step_size=0.05, seed=1)
    assert torch.allclose(xa, (x + 0.2 * w.sign()).clamp(0, 1), atol=1e-6)


def test_eps_zero_returns_input():
    m, x, y = _linear(), torch.rand(8, 20), torch.randint(0, 3, (8,))
    assert torch.equal(fgsm(m, x, y, 0.0), x)
    assert torch.equal(pgd(m, x, y, 0.0), x)
    with pytest.raises(ValueError):
        pgd(m, x, y, -0.1)
    with pytest.raises(ValueError):
        pgd(m, x, y, 0.1, objective="hinge")


def test_pgd_is_seeded_and_at_least_as_strong_as_fgsm():
    m = _linear(1)
    x, y = torch.rand(200, 20), torch.randint(0, 3, (200,))
    a = pgd(m, x, y, 0.1, steps=10, seed=3)
    assert torch.equal(a, pgd(m, x, y, 0.1, steps=10, seed=3))
    acc_pgd = adversarial_accuracy(m, x, y, "pgd", 0.1, steps=10)
    acc_fgsm = adversarial_accuracy(m, x, y, "fgsm", 0.1)
    acc_clean = float((m(x).argmax(1) == y).float().mean())
    assert acc_pgd <= acc_fgsm + 1e-9 and acc_fgsm <= acc_clean + 1e-9


def test_margin_loss_by_hand():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    assert torch.allclose(margin_loss(logits, torch.tensor([0, 2])), torch.tensor([-1.0, 6.0]))


def test_eot_pgd_reduces_to_pgd_on_a_deterministic_model():
    m = _linear(2)
    x, y = torch.rand(32, 20), torch.randint(0, 3, (32,))

    def samples(z, n):
        return m(z).unsqueeze(0).expand(n, -1, -1)

    a = eot_pgd(samples, x, y, 0.1, steps=7, n_samples=4, seed=5)
    b = projected_gradient_ascent(lambda z: nn.functional.cross_entropy(m(z), y, reduction="none"),
                                  x, 0.1, steps=7, seed=5, keep_best=False)
    assert torch.allclose(a, b, atol=1e-6)
