"""Tests of studylib.techniques.landscape against answers known in closed form (the study
layer built on it, tables and claims, is tested in test_study_01.py and test_claims_01.py).

Most cases use a linear two-class model ``z = W x + b``: its margin is affine in ``x``, so the
margin along ``x + a d`` is ``D(x) + a g.d`` with ``g = w_0 - w_1`` (label 0), the adversarial
direction is ``sign(w_1 - w_0)``, the crossing step is ``D(x) / ||g||_1``, and the psi metric's
maximiser moves the logit difference by ``eps * ||g||_1`` one way or the other.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from studylib.techniques import landscape as L

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest.py)


def linear_model(d: int = 6, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(d, 2))
    with torch.no_grad():
        m[1].weight.copy_(torch.randn(2, d))
        m[1].bias.copy_(torch.randn(2) * 0.1)
    return m.eval()


def linear_parts(m: nn.Module):
    w, b = m[1].weight.detach(), m[1].bias.detach()
    return w[0] - w[1], b[0] - b[1]


# ----------------------------------------------------------------------------- margin


def test_margin_by_hand():
    logits = torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, -1.0], [1.0, 1.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    assert torch.allclose(L.margin_from_logits(logits, y), torch.tensor([1.0, -3.0, 0.0]))
    ce = L.quantity_from_logits(logits, y, "loss")
    assert torch.allclose(ce, torch.nn.functional.cross_entropy(logits, y, reduction="none"))
    with pytest.raises(ValueError, match="quantity"):
        L.quantity_from_logits(logits, y, "entropy")
    with pytest.raises(ValueError, match="logits"):
        L.margin_from_logits(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))


# ----------------------------------------------------------------------------- directions


def test_adversarial_direction_of_linear_model_is_sign_of_weight_difference():
    m = linear_model()
    g, _ = linear_parts(m)
    x = torch.rand(5, 6)
    y = torch.tensor([0, 1, 0, 1, 0])
    d = L.adversarial_direction(m, x, y)
    want = torch.where(y[:, None] == 0, torch.sign(-g), torch.sign(g)).expand(5, 6)
    assert torch.equal(d, want)
    assert all(p.grad is None for p in m.parameters())


def test_random_sign_directions_are_seeded_pm_one():
    a = L.random_sign_directions((200, 3, 4), seed=3)
    assert set(a.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(a, L.random_sign_directions((200, 3, 4), seed=3))
    assert not torch.equal(a, L.random_sign_directions((200, 3, 4), seed=4))
    assert abs(float(a.mean())) < 0.1


# ----------------------------------------------------------------------------- cuts


def test_line_cut_and_surface_of_linear_model_are_affine():
    m = linear_model()
    g, c = linear_parts(m)
    x = torch.rand(4, 6)
    y = torch.zeros(4, dtype=torch.long)
    d1 = L.random_sign_directions(x.shape, seed=1)
    d2 = L.random_sign_directions(x.shape, seed=2)
    steps = torch.linspace(-1, 1, 7)
    cut = L.line_cut(m, x, y, d1, steps)
    want = (x @ g + c)[:, None] + steps[None] * (d1 @ g)[:, None]
    assert torch.allclose(cut, want, atol=1e-5)
    surf = L.surface_2d(m, x, y, d1, d2, steps, steps[:3])
    want2 = ((x @ g + c)[:, None, None] + steps[None, :, None] * (d1 @ g)[:, None, None]
             + steps[None, None, :3] * (d2 @ g)[:, None, None])
    assert surf.shape == (4, 7, 3)
    assert torch.allclose(surf, want2, atol=1e-5)
    loss = L.line_cut(m, x, y, d1, steps, quantity="loss")
    # two classes: CE = softplus(-margin)
    assert torch.allclose(loss, torch.nn.functional.softplus(-want), atol=1e-5)


def test_line_cut_clip_keeps_inputs_in_unit_box():
    m = linear_model()
    x = torch.full((1, 6), 0.5)
    d = torch.ones(1, 6)
    y = torch.zeros(1, dtype=torch.long)
    far = L.line_cut(m, x, y, d, [5.0], clip=True)
    at_one = L.line_cut(m, torch.ones(1, 6), y, d, [0.0])
    assert torch.allclose(far, at_one)
    with pytest.raises(ValueError, match="direction shape"):
        L.line_cut(m, x, y, torch.ones(2, 6), [0.0])


def test_crossing_step_matches_closed_form():
    m = linear_model(d=10, seed=1)
    g, c = linear_parts(m)
    torch.manual_seed(0)
    x = torch.rand(64, 10)
    y = torch.where(x @ g + c > 0, 0, 1)  # every point correctly classified
    dmargin = torch.where(y == 0, x @ g + c, -(x @ g + c))
    d_adv = L.adversarial_direction(m, x, y)
    steps = L.crossing_step(m, x, y, d_adv, max_step=10.0, n_grid=64, n_bisect=20)
    want = dmargin / g.abs().sum()
    tol = 10.0 / 64 / 2**20 + 1e-5
    assert torch.all((steps - want).abs() <= tol + 1e-4 * want)
    # a random direction: crossing at D / (-s g.d) where that is positive, else never (inf)
    d = L.random_sign_directions(x.shape, seed=5)
    slope = torch.where(y == 0, d @ g, -(d @ g))
    st = L.crossing_step(m, x, y, d, max_step=10.0, n_grid=64, n_bisect=20)
    expect = torch.where(slope < 0, dmargin / -slope, torch.full_like(slope, math.inf))
    expect = torch.where(expect > 10.0, torch.full_like(expect, math.inf), expect)
    fin = torch.isfinite(expect)
    assert torch.equal(torch.isfinite(st), fin)
    assert torch.all((st[fin] - expect[fin]).abs() <= 1e-3 * (1 + expect[fin]))


def test_crossing_step_is_zero_for_misclassified_points():
    m = linear_model()
    g, c = linear_parts(m)
    x = torch.rand(8, 6)
    y = torch.where(x @ g + c > 0, 1, 0)  # every point wrong
    d = L.adversarial_direction(m, x, y)
    assert torch.all(L.crossing_step(m, x, y, d) == 0)
    with pytest.raises(ValueError, match="max_step"):
        L.crossing_step(m, x, y, d, max_step=0.0)


# ----------------------------------------------------------------------------- KL


def test_kl_from_logits_by_hand():
    p = torch.tensor([[0.0, 0.0]])
    q = torch.tensor([[0.0, math.log(3.0)]])  # softmax = (1/4, 3/4)
    want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert abs(float(L.kl_from_logits(p, q)) - want) < 1e-6
    assert float(L.kl_from_logits(q, q)) == pytest.approx(0.0, abs=1e-7)


# ----------------------------------------------------------------------------- rescaling


def small_mlp(seed=0):
    from studylib.models import build_model

    return build_model("mlp", in_features=16, num_classes=3, hidden=(12, 8), seed=seed).eval()


def small_cnn(seed=0, batchnorm=False):
    from studylib.models import build_model

    return build_model("small_cnn", in_channels=1, num_classes=3, image_size=8, width=4,
                       hidden=8, batchnorm=batchnorm, seed=seed).eval()


@pytest.mark.parametrize("layer", [0, 1])
def test_relu_rescaling_preserves_the_function(layer):
    for model, x in ((small_mlp(), torch.rand(20, 16)), (small_cnn(), torch.rand(20, 1, 8, 8))):
        out = L.rescale_relu_layer(model, c=10.0, layer=layer)
        name0, m0 = L.parametric_layers(model)[layer]
        _, r0 = L.parametric_layers(out)[layer]
        _, r1 = L.parametric_layers(out)[layer + 1]
        _, m1 = L.parametric_layers(model)[layer + 1]
        assert torch.allclose(r0.weight, 10 * m0.weight)
        assert torch.allclose(r0.bias, 10 * m0.bias)
        assert torch.allclose(r1.weight, m1.weight / 10)
        assert torch.equal(r1.bias, m1.bias)
        ref = model(x).detach()
        assert L.max_output_difference(model, out, x) <= 1e-4 * (1 + float(ref.abs().max()))


def test_relu_rescaling_refuses_what_it_cannot_preserve():
    with pytest.raises(ValueError, match="c must be > 0"):
        L.rescale_relu_layer(small_mlp(), c=-1.0)
    with pytest.raises(ValueError, match="not positively homogeneous"):
        L.rescale_relu_layer(small_cnn(batchnorm=True), c=10.0)
    with pytest.raises(ValueError, match="layer must be"):
        L.rescale_relu_layer(small_mlp(), layer=2)


class ConstantLogits(nn.Module):
    """Logits equal to a parameter vector ``b`` whatever the input."""

    def __init__(self, k: int = 2):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(k))

    def forward(self, x):
        return self.b.expand(len(x), -1)


def test_weight_sharpness_matches_second_order_expectation():
    # L(b) = CE(softmax(b), y); at b = 0 with two classes the Hessian is [[1,-1],[-1,1]]/4 and
    # odd terms vanish on average, so E[L(u) - L(0)] = r^2 tr(H) / 2 / K = r^2 / 8 (+ O(r^4)).
    m = ConstantLogits(2)
    x = torch.zeros(10, 1)
    y = torch.tensor([0, 1] * 5)
    r = 0.2
    s = L.weight_sharpness(m, x, y, radius=r, n_samples=1000, seed=0)
    assert s == pytest.approx(r**2 / 8, rel=0.1)  # Monte Carlo standard error ~2%
    assert torch.equal(m.b, torch.zeros(2))  # the model itself is untouched
    with pytest.raises(ValueError, match="radius"):
        L.weight_sharpness(m, x, y, radius=0.0)


def test_rescaling_changes_sharpness_but_not_outputs():
    # at a minimum (sharpness is a property of minima; at a random init it can be negative)
    model = small_mlp(seed=1).train()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 16, generator=gen)
    y = torch.randint(0, 3, (64,), generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    out = L.rescale_relu_layer(model, c=10.0)
    s0 = L.weight_sharpness(model, x, y, radius=0.5, n_samples=8)
    s1 = L.weight_sharpness(out, x, y, radius=0.5, n_samples=8)
    assert L.max_output_difference(model, out, x) < 1e-4
    assert max(s1 / s0, s0 / s1) > 2.0


# ----------------------------------------------------------------------------- regimes


def test_make_regime_ids_and_errors():
    r = L.make_regime("pgd_at", eps=0.1, steps=5)
    assert r.loss_id == "pgd_at(eps=0.1,steps=5)"
    assert L.make_regime("natural").loss_id == "natural()"
    assert L.make_regime("grad_norm", lam=1.0, p=1).loss_id != L.make_regime("grad_norm",
                                                                             lam=1.0).loss_id
    with pytest.raises(ValueError, match="unknown regime kind"):
        L.make_regime("mixup")
    with pytest.raises(ValueError, match="unknown parameter"):
        L.make_regime("natural", eps=0.1)


def test_temperature_and_natural_losses():
    m = linear_model()
    x, y = torch.rand(7, 6), torch.randint(0, 2, (7,))
    ce = torch.nn.functional.cross_entropy(m(x), y)
    assert torch.allclose(L.make_regime("natural").loss_fn(m, x, y), ce)
    assert torch.allclose(L.make_regime("temperature", temperature=1.0).loss_fn(m, x, y), ce)
    t = L.make_regime("temperature", temperature=50.0).loss_fn(m, x, y)
    assert torch.allclose(t, torch.nn.functional.cross_entropy(m(x) / 50.0, y))
    assert float(t.detach()) == pytest.approx(math.log(2), abs=0.05)  # logits / 50 are near 0


@pytest.mark.parametrize("p", [1, 2])
def test_grad_norm_penalty_of_linear_model_by_hand(p):
    m = linear_model()
    w = m[1].weight.detach()
    x, y = torch.rand(5, 6), torch.tensor([0, 1, 1, 0, 1])
    lam = 0.3
    z = m(x).detach()
    probs = torch.softmax(z, 1)
    grad = (probs - torch.nn.functional.one_hot(y, 2).float()) @ w  # dCE_n/dx_n
    pen = grad.abs().sum(1) if p == 1 else (grad**2).sum(1)
    want = torch.nn.functional.cross_entropy(z, y) + lam * pen.mean()
    got = L.make_regime("grad_norm", lam=lam, p=p).loss_fn(m, x, y)
    assert torch.allclose(got, want, atol=1e-6)
    got.backward()  # differentiable w.r.t. the weights (double backprop)
    assert m[1].weight.grad is not None


# ----------------------------------------------------------------------------- psi (attacks)


def test_psi_of_linear_model_matches_closed_form():
    # two classes, logits (z0, z1): the softmax depends on s = z1 - z0 only, and KL(p(s) || p(s'))
    # is convex in s' with its minimum at s' = s, so over the eps-ball (interior points) the
    # maximum sits at s' = s +- eps * ||w1 - w0||_1.
    d, eps = 8, 0.05
    m = linear_model(d=d, seed=2)
    w, b = m[1].weight.detach(), m[1].bias.detach()
    g = w[1] - w[0]
    x = eps + (1 - 2 * eps) * torch.rand(40, d, generator=torch.Generator().manual_seed(0))
    s = x @ g + b[1] - b[0]
    t = eps * g.abs().sum()

    def kl(s0, s1):
        z0 = torch.stack([torch.zeros_like(s0), s0], 1)
        z1 = torch.stack([torch.zeros_like(s1), s1], 1)
        return L.kl_from_logits(z0, z1)

    up, down = kl(s, s + t), kl(s, s - t)
    want = torch.maximum(up, down)
    # both ends are local maxima: one restart reaches the end on the side of its random start
    one = L.psi_per_point(m, x, eps, steps=30, restarts=1, seed=0)
    assert torch.all(torch.isclose(one, up, rtol=1e-3) | torch.isclose(one, down, rtol=1e-3))
    # with 10 restarts each point misses the global maximum with probability ~2^-10
    got = L.psi_per_point(m, x, eps, steps=30, restarts=10, seed=0)
    assert torch.all(got <= want + 1e-5)
    assert float(torch.isclose(got, want, rtol=1e-3).float().mean()) >= 0.95
    res = L.psi_score(m, x, eps, steps=30, restarts=10, seed=0, n_boot=500)
    assert res.ci95[0] <= res.mean <= res.ci95[1]
    assert res.mean == pytest.approx(float(got.double().mean()), rel=1e-6)


def test_psi_is_unchanged_by_function_preserving_rescaling_and_grows_with_eps():
    model = small_cnn(seed=3)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    p = L.psi_per_point(model, x, 0.05, steps=5, seed=0)
    q = L.psi_per_point(L.rescale_relu_layer(model, 10.0), x, 0.05, steps=5, seed=0)
    # the same function and the same starts: the same ascent, except where float rounding
    # flips the sign of a near-zero gradient coordinate (the KL here is ~1e-6), which moves
    # that point's maximum a little; most points match, the mean matches closely
    close = torch.isclose(p, q, rtol=1e-3, atol=1e-7)
    assert float(close.float().mean()) >= 0.75
    assert float(q.mean()) == pytest.approx(float(p.mean()), rel=0.05)
    big = L.psi_per_point(model, x, 0.2, steps=5, seed=0)
    assert float(big.mean()) > float(p.mean())
    with pytest.raises(ValueError, match="eps"):
        L.psi_per_point(model, x, 0.0)


def test_adversarial_training_losses_on_a_linear_model():
    # for a two-class linear model FGSM and PGD both find x + eps sign(w_o - w_y) (interior x,
    # margin large enough that no point flips, so PGD's success bonus never applies)
    m = linear_model(d=6, seed=4)
    w, b = m[1].weight.detach(), m[1].bias.detach()
    eps = 0.02
    x = eps + (1 - 2 * eps) * torch.rand(200, 6, generator=torch.Generator().manual_seed(3))
    margin = x @ (w[0] - w[1]) + b[0] - b[1]
    keep = margin.abs() > eps * (w[0] - w[1]).abs().sum() + 1e-3
    x, y = x[keep], (margin[keep] < 0).long()
    worst = x + eps * (w[1 - y] - w[y]).sign()
    ce = torch.nn.functional.cross_entropy
    m.train()
    fg = L.make_regime("fgsm_at", eps=eps).loss_fn(m, x, y)
    assert torch.allclose(fg, 0.5 * ce(m(x), y) + 0.5 * ce(m(worst), y), atol=1e-6)
    assert m.training  # the attack ran in eval mode and restored the mode
    torch.manual_seed(0)
    pg = L.make_regime("pgd_at", eps=eps, steps=10).loss_fn(m, x, y)
    assert torch.allclose(pg, ce(m(worst), y), atol=1e-5)
    pg.backward()
    assert m[1].weight.grad is not None


# ----------------------------------------------------------------------------- accuracy


def test_batched_logits_and_correctly_classified():
    m = linear_model()
    g, c = linear_parts(m)
    x = torch.rand(9, 6)
    assert torch.allclose(L.batched_logits(m, x, batch_size=4), m(x).detach())
    y = torch.where(x @ g + c > 0, 0, 1)  # the labels the model predicts
    assert bool(L.correctly_classified([m], x, y).all())
    wrong = y.clone()
    wrong[:3] = 1 - wrong[:3]
    assert L.correctly_classified([m, m], x, wrong).tolist() == [False] * 3 + [True] * 6
    assert L.adversarial_accuracy(m, x, y, attack="pgd", eps=0.0 + 1e-9, steps=1) == 1.0
    with pytest.raises(ValueError, match="attack"):
        L.adversarial_accuracy(m, x, y, attack="cw", eps=0.1)


# ----------------------------------------------------------------------------- exact psi


def softmax_model(d: int, k: int, seed: int, scale: float = 3.0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(d, k))
    with torch.no_grad():
        m[1].weight.copy_(torch.randn(k, d) * scale)
        m[1].bias.copy_(torch.randn(k))
    return m.eval()


def test_box_vertices_enumerate_the_clipped_box():
    x = torch.tensor([[0.05, 0.5, 0.97]])
    v = L.box_vertices(x, 0.1)
    assert v.shape == (1, 8, 3)
    # per coordinate the two ends of [x - eps, x + eps] within [0, 1]
    ends = [{0.0, 0.15}, {0.4, 0.6}, {0.87, 1.0}]
    for j in range(3):
        assert {round(float(t), 6) for t in v[0, :, j]} == {round(e, 6) for e in ends[j]}
    assert len({tuple(round(float(t), 6) for t in row) for row in v[0]}) == 8  # all distinct
    with pytest.raises(ValueError):
        L.box_vertices(torch.zeros(1, 17), 0.1)


def test_exact_psi_linear_matches_brute_force_grid():
    """d = 2: a dense grid over the box contains the 4 vertices; its maximum is the exact psi
    (the KL of a linear softmax model is convex, so no interior point beats the vertices)."""
    m = softmax_model(2, 3, seed=3)
    x = torch.tensor([[0.3, 0.6], [0.02, 0.9], [0.5, 0.5]])
    eps = 0.2
    exact = L.exact_psi_linear(m[1], x, eps)
    for n in range(len(x)):
        lo, hi = (x[n] - eps).clamp_min(0), (x[n] + eps).clamp_max(1)
        a = torch.linspace(0, 1, 41, dtype=torch.float64)
        g = torch.stack(torch.meshgrid(a, a, indexing="ij"), -1).reshape(-1, 2)
        pts = lo.double() + g * (hi - lo).double()
        w, b = m[1].weight.double().detach(), m[1].bias.double().detach()
        ref = (x[n].double() @ w.T + b).expand(len(pts), -1)
        brute = L.kl_from_logits(ref, pts @ w.T + b)
        assert float(exact[n]) == pytest.approx(float(brute.max()), rel=1e-5)  # float32 box ends
        assert float(brute.max()) > float(brute.median())  # the maximum is not trivial


def test_psi_is_a_lower_bound_of_the_exact_maximum_and_restarts_help():
    m = softmax_model(6, 4, seed=5)
    x = torch.rand(64, 6, generator=torch.Generator().manual_seed(0))
    exact = L.exact_psi_linear(m[1], x, 0.1)
    one = L.psi_per_point(m, x, 0.1, steps=10, restarts=1, seed=0).double()
    many = L.psi_per_point(m, x, 0.1, steps=10, restarts=8, seed=0).double()
    assert (one <= exact + 1e-5).all() and (many <= exact + 1e-5).all()
    assert (many >= one - 1e-6).all()  # restarts keep the best: restart 1 is the first start
    assert float(many.mean()) > 0.8 * float(exact.mean())


# ----------------------------------------------------------------------------- ground truth, controls


def test_robust_correct_is_the_pointwise_minimum_over_the_attacks():
    m = softmax_model(6, 3, seed=1)
    x = torch.rand(80, 6, generator=torch.Generator().manual_seed(4))
    y = L.batched_logits(m, x).argmax(1)
    y[:10] = (y[:10] + 1) % 3  # ten points misclassified: never robust
    both = L.robust_correct(m, x, y, eps=0.1, steps=5, seed=0)
    ce = L.robust_correct(m, x, y, eps=0.1, steps=5, objectives=("ce",), seed=0)
    margin = L.robust_correct(m, x, y, eps=0.1, steps=5, objectives=("margin",), seed=0)
    assert torch.equal(both, ce & margin)
    assert not both[:10].any()
    assert 0 < int(both.sum()) < 70  # some points break at eps = 0.1, some do not
    clean = L.robust_correct(m, x, y, eps=0.0, steps=5, seed=0)
    assert torch.equal(clean, L.batched_logits(m, x).argmax(1) == y)
    with pytest.raises(ValueError):
        L.robust_correct(m, x, y, eps=0.1, objectives=("hinge",))


def test_margin_pgd_breaks_a_saturated_softmax_that_ce_pgd_misses():
    """Logits x 1e4: the float32 softmax is one-hot, the CE gradient exactly 0 at every
    confidently classified point, so CE-PGD stays where it started; the margin does not go
    through the softmax. The per-point minimum is the margin's answer."""
    base = softmax_model(6, 3, seed=2, scale=1.0)
    masked = L.LogitScaled(base, 1e4).eval()
    x = torch.rand(80, 6, generator=torch.Generator().manual_seed(5))
    y = L.batched_logits(base, x).argmax(1)
    truth = L.robust_correct(base, x, y, eps=0.2, steps=10, objectives=("margin",), seed=0)
    ce = L.robust_correct(masked, x, y, eps=0.2, steps=10, objectives=("ce",), seed=0)
    both = L.robust_correct(masked, x, y, eps=0.2, steps=10, seed=0)
    assert float(ce.float().mean()) > float(truth.float().mean()) + 0.2
    assert torch.equal(both, truth)  # decisions of the scaled model are the base model's


def test_logit_scaling_keeps_decisions_and_moves_psi():
    m = softmax_model(6, 4, seed=7)
    x = torch.rand(50, 6, generator=torch.Generator().manual_seed(1))
    soft = L.LogitScaled(m, 0.25)
    assert torch.equal(L.batched_logits(m, x).argmax(1), L.batched_logits(soft, x).argmax(1))
    assert torch.allclose(L.batched_logits(soft, x), 0.25 * L.batched_logits(m, x))
    # for a linear model psi is exact at the vertices: shrinking the logits to 0 sends it to 0
    e1 = L.exact_psi_linear(m[1], x, 0.1)
    tiny = nn.Linear(6, 4)
    with torch.no_grad():
        tiny.weight.copy_(m[1].weight * 1e-3)
        tiny.bias.copy_(m[1].bias * 1e-3)
    assert float(L.exact_psi_linear(tiny, x, 0.1).mean()) < 1e-4 * float(e1.mean())
    with pytest.raises(ValueError):
        L.LogitScaled(m, 0.0)
