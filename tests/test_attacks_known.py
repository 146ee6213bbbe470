"""Known-answer tests of studylib.attacks.

* A linear two-class model ``z = W x + b``: the cross-entropy of label ``y`` is increasing in
  ``(w_o - w_y) . x`` (``o`` the other class), so over the L-inf ball of radius ``eps`` its worst
  case is ``x + eps * sign(w_o - w_y)`` in closed form (inputs kept inside (0, 1) so clipping is
  inactive). FGSM must return exactly that point and PGD must converge to it.
* A linear K-class model under the margin objective: the worst case of
  ``max_{j != y} (z_j - z_y)`` over the ball is ``max_j [(w_j - w_y) . x + b_j - b_y +
  eps * ||w_j - w_y||_1]``, an upper bound no attack can exceed and PGD with restarts attains.
* Against torchattacks (an independent implementation): FGSM gives the same images, and PGD
  with the same eps / step size / steps gives the same robust accuracy within 1 point on a
  small MLP trained on the embedded digits.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from studylib import attacks

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest.py)


def linear(d: int, k: int, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(d, k))
    with torch.no_grad():
        m[1].weight.copy_(torch.randn(k, d, generator=gen))
        m[1].bias.copy_(torch.randn(k, generator=gen) * 0.1)
    return m.eval()


def interior_points(n: int, d: int, eps: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return eps + (1 - 2 * eps) * torch.rand(n, d, generator=gen)  # x +- eps stays in [0, 1]


def closed_form_worst_case(m: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float):
    w = m[1].weight.detach()
    g = w[1 - y] - w[y]  # (N, d): gradient direction of the CE for each example
    return x + eps * g.sign()


def test_fgsm_is_the_closed_form_worst_case_of_a_linear_model():
    m = linear(12, 2, seed=0)
    eps = 0.1
    x = interior_points(50, 12, eps, seed=1)
    y = torch.randint(0, 2, (50,), generator=torch.Generator().manual_seed(2))
    xa = attacks.fgsm(m, x, y, eps)
    assert torch.allclose(xa, closed_form_worst_case(m, x, y, eps), atol=1e-6)


def test_pgd_converges_to_the_closed_form_worst_case_when_no_point_flips():
    m = linear(12, 2, seed=3)
    eps = 0.05
    x = interior_points(400, 12, eps, seed=4)
    w, b = m[1].weight.detach(), m[1].bias.detach()
    margin = (x @ (w[0] - w[1]) + b[0] - b[1])
    y = (margin < 0).long()  # every point correctly classified
    # keep points whose margin survives the worst case, so PGD's success bonus never applies
    keep = margin.abs() > eps * (w[0] - w[1]).abs().sum() + 1e-3
    x, y = x[keep], y[keep]
    assert len(x) > 50
    xa = attacks.pgd(m, x, y, eps, steps=20, step_size=eps / 4, seed=0)
    want = closed_form_worst_case(m, x, y, eps)
    assert torch.allclose(xa, want, atol=1e-6)
    ce = F.cross_entropy(m(xa), y, reduction="none")
    ce_want = F.cross_entropy(m(want), y, reduction="none")
    assert torch.allclose(ce, ce_want, atol=1e-5)


def test_pgd_finds_a_misclassification_wherever_the_closed_form_says_one_exists():
    m = linear(12, 2, seed=5)
    eps = 0.1
    x = interior_points(400, 12, eps, seed=6)
    w, b = m[1].weight.detach(), m[1].bias.detach()
    y = ((x @ (w[0] - w[1]) + b[0] - b[1]) < 0).long()
    worst = closed_form_worst_case(m, x, y, eps)
    breakable = m(worst).argmax(1) != y
    assert 0 < int(breakable.sum()) < len(x)
    xa = attacks.pgd(m, x, y, eps, steps=20, seed=0)
    broken = m(xa).argmax(1) != y
    assert torch.equal(broken, breakable)
    assert (xa - x).abs().max() <= eps + 1e-6


def test_margin_ascent_attains_the_closed_form_maximum_of_a_linear_model():
    d, k, eps = 10, 4, 0.05
    m = linear(d, k, seed=7)
    x = interior_points(200, d, eps, seed=8)
    y = torch.randint(0, k, (200,), generator=torch.Generator().manual_seed(9))
    w, b = m[1].weight.detach(), m[1].bias.detach()
    diff = w[None] - w[y][:, None]  # (N, K, d): w_j - w_y
    best = (torch.einsum("nkd,nd->nk", diff, x) + (b[None] - b[y][:, None])
            + eps * diff.abs().sum(-1))
    best = best.scatter(1, y[:, None], float("-inf")).max(1).values
    xa = attacks.projected_gradient_ascent(lambda z: attacks.margin_loss(m(z), y), x, eps,
                                           steps=30, step_size=eps / 5, restarts=5, seed=0)
    got = attacks.margin_loss(m(xa), y).detach()
    assert torch.all(got <= best + 1e-5)  # nothing beats the closed-form maximum
    assert float((got >= best - 1e-4).float().mean()) >= 0.95


# ----------------------------------------------------------------------------- torchattacks


@pytest.fixture(scope="module")
def digits_mlp():
    """A small MLP trained on the embedded 8x8 digits (full-batch Adam, a few seconds)."""
    from studylib import data
    from studylib.models import build_model

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    b = data.load("digits", image_size=8)
    m = build_model("mlp", in_features=64, num_classes=10, hidden=(64,), seed=0).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(b.train.y), (256,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(m(b.train.x[idx]), b.train.y[idx]).backward()
        opt.step()
    torch.set_num_threads(n)
    return m.eval(), b.test.x, b.test.y


def test_fgsm_equals_torchattacks_fgsm(digits_mlp):
    torchattacks = pytest.importorskip("torchattacks")
    m, x, y = digits_mlp
    eps = 0.1
    ours = attacks.fgsm(m, x, y, eps)
    theirs = torchattacks.FGSM(m, eps=eps)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_pgd_robust_accuracy_matches_torchattacks_within_one_point(digits_mlp, eps):
    torchattacks = pytest.importorskip("torchattacks")
    m, x, y = digits_mlp
    steps, alpha = 20, eps / 4
    clean = float((m(x).argmax(1) == y).float().mean())
    ours = attacks.pgd(m, x, y, eps, steps=steps, step_size=alpha, seed=0)
    torch.manual_seed(0)
    theirs = torchattacks.PGD(m, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    with torch.no_grad():
        acc_ours = float((m(ours).argmax(1) == y).float().mean())
        acc_theirs = float((m(theirs).argmax(1) == y).float().mean())
    assert clean > 0.85
    assert 0.02 < acc_theirs < clean - 0.1  # an informative operating point
    assert abs(acc_ours - acc_theirs) <= 0.01
