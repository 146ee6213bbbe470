"""Decision surfaces in input space and the psi robustness metric (Yu et al., IJCAI 2019).

The methods of F. Yu, Z. Qin, C. Liu, L. Zhao, Y. Wang, X. Chen, "Interpreting and Evaluating
Neural Network Robustness" (IJCAI 2019, arXiv 1905.04270) and its companion "Interpreting
Adversarial Robustness: A View from Decision Surface in Input Space" (arXiv 1810.00144). The
study that re-runs them (model family, tables, claims, figures) is
:mod:`studylib.studies.loss_visualization`; this module holds the methods only:

* **Decision surface** -- the margin ``D(x) = Z_y(x) - max_{i != y} Z_i(x)`` of the logits
  ``Z`` (the decision boundary is ``D = 0``) and the cross-entropy loss, evaluated along 1-D
  cuts ``x + a d`` (:func:`line_cut`) and over 2-D planes ``x + a d1 + b d2``
  (:func:`surface_2d`), for the adversarial direction ``d_adv = sign(grad_x L)``
  (:func:`adversarial_direction`) and random +-1 directions of the same L-inf norm
  (:func:`random_sign_directions`); :func:`crossing_step` finds the smallest step at which the
  margin reaches 0.
* **Robustness metric psi** -- ``psi(x) = max_{||delta||_inf <= eps} KL(softmax f(x) ||
  softmax f(x + delta))`` found by projected gradient ascent with random restarts
  (:func:`psi_per_point`, reusing :func:`studylib.attacks.projected_gradient_ascent`); a model's
  score is the mean over test points with a bootstrap 95% CI (:func:`psi_score`).
* **Reparameterisation** -- :func:`rescale_relu_layer` multiplies a ReLU layer's weights and bias
  by ``c`` and divides the next layer's weights by ``c`` (the network computes the same
  function, by positive homogeneity of ReLU and max-pooling); :func:`weight_sharpness` is the
  weight-space sharpness (mean loss increase under random weight perturbations of fixed L2 norm)
  that such a rescaling changes although the function does not (Dinh et al., ICML 2017).
* **Training regimes** -- loss functions for :func:`studylib.training.fit`: natural, FGSM and
  PGD adversarial training, input-gradient-norm regularisation, and a large-temperature
  softmax (a gradient-masking control); :func:`make_regime` builds them from a name and
  parameters, with a ``loss_id`` naming all of them for the checkpoint cache.
* **Accuracy under attack** -- :func:`adversarial_accuracy` (FGSM / PGD, white-box) and
  :func:`transfer_accuracy` (PGD crafted on another model), the baselines psi is compared with.

The margin, cuts, crossing search, sharpness and rescaling are written here (on plain torch)
because no maintained library computes input-space decision surfaces or this metric; the
attacks themselves live in :mod:`studylib.attacks`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models import eval_mode

QUANTITIES = ("margin", "loss")

# ============================================================================ margin and loss


def margin_from_logits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The margin ``D = Z_y - max_{i != y} Z_i`` of each row of ``logits`` (shape ``(N, K)``).

    Positive where the true class ``y`` (shape ``(N,)``, int64) wins, 0 on the decision boundary,
    negative where another class wins. Requires ``K >= 2``.

    Example:
        >>> margin_from_logits(torch.tensor([[2.0, 0.5, 1.0]]), torch.tensor([0]))
        tensor([1.])
    """
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, K>=2), got {tuple(logits.shape)}")
    y = y.to(logits.device).long()
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true - others.max(dim=1).values


def quantity_from_logits(logits: torch.Tensor, y: torch.Tensor, quantity: str) -> torch.Tensor:
    """``"margin"`` (:func:`margin_from_logits`) or ``"loss"`` (per-example cross-entropy)."""
    if quantity == "margin":
        return margin_from_logits(logits, y)
    if quantity == "loss":
        return F.cross_entropy(logits, y.to(logits.device).long(), reduction="none")
    raise ValueError(f"quantity must be one of {QUANTITIES}, got {quantity!r}")


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def _batched_quantity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, quantity: str,
                      batch_size: int) -> torch.Tensor:
    dev = model_device(model)
    out = []
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size].to(dev))
        out.append(quantity_from_logits(logits, y[i:i + batch_size].to(dev), quantity).cpu())
    return torch.cat(out) if out else torch.empty(0)


# ============================================================================ directions


def adversarial_direction(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                          batch_size: int = 512) -> torch.Tensor:
    """``d_adv = sign(grad_x CE(f(x), y))`` per example (same shape as ``x``, on the CPU).

    Its L-inf norm is 1 wherever the gradient is non-zero. Coordinates whose gradient is exactly
    0 (for example a saturated softmax: gradient masking) get 0. The model is used in eval mode
    and its parameters receive no gradient.
    """
    dev = model_device(model)
    out = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(dev).clone().requires_grad_(True)
            loss = F.cross_entropy(model(xb), y[i:i + batch_size].to(dev).long(), reduction="sum")
            (grad,) = torch.autograd.grad(loss, xb)
            out.append(grad.sign().cpu())
    return torch.cat(out) if out else torch.empty_like(x)


def random_sign_directions(shape: Sequence[int], *, seed: int = 0) -> torch.Tensor:
    """Random +-1 tensors of ``shape`` (each entry +1 or -1 with probability 1/2), seeded.

    Same L-inf norm (1) as :func:`adversarial_direction`; the same seed gives the same tensor.
    """
    gen = torch.Generator().manual_seed(int(seed))
    bits = torch.randint(0, 2, tuple(int(s) for s in shape), generator=gen)
    return bits.float() * 2 - 1


# ============================================================================ cuts and surfaces


def _check_directions(x: torch.Tensor, *directions: torch.Tensor) -> None:
    for d in directions:
        if d.shape != x.shape:
            raise ValueError(f"direction shape {tuple(d.shape)} must equal x's {tuple(x.shape)}")


def line_cut(model: nn.Module, x: torch.Tensor, y: torch.Tensor, direction: torch.Tensor,
             steps: Sequence[float] | torch.Tensor, *, quantity: str = "margin",
             clip: bool = False, batch_size: int = 2048) -> torch.Tensor:
    """The 1-D cut ``q(x + a d)`` for every step ``a`` in ``steps``.

    Args:
        model: the network (used in eval mode, no gradients).
        x: inputs ``(N, C, H, W)`` (or ``(N, D)``); y: labels ``(N,)``.
        direction: ``d``, same shape as ``x`` (one direction per example).
        steps: the step sizes ``a`` (1-D, any order; negative steps go the other way).
        quantity: ``"margin"`` (default) or ``"loss"`` (cross-entropy).
        clip: clip ``x + a d`` to the valid input range [0, 1] (default False: the surface in
            the whole input space, as the paper draws it).
        batch_size: inputs per forward pass (default 2048).

    Returns:
        Tensor ``(N, len(steps))`` on the CPU.
    """
    _check_directions(x, direction)
    a = torch.as_tensor(steps, dtype=x.dtype).flatten()
    n, s = len(x), len(a)
    shape = (1,) * (x.ndim - 1)
    pts = x[:, None] + a.view(1, s, *shape) * direction[:, None]
    if clip:
        pts = pts.clamp(0.0, 1.0)
    flat = pts.reshape(n * s, *x.shape[1:])
    with eval_mode(model):
        q = _batched_quantity(model, flat, y.repeat_interleave(s), quantity, batch_size)
    return q.view(n, s)


def surface_2d(model: nn.Module, x: torch.Tensor, y: torch.Tensor, d1: torch.Tensor,
               d2: torch.Tensor, alphas: Sequence[float] | torch.Tensor,
               betas: Sequence[float] | torch.Tensor, *, quantity: str = "margin",
               clip: bool = False, batch_size: int = 2048) -> torch.Tensor:
    """The 2-D surface ``q(x + a d1 + b d2)`` over the grid ``alphas x betas``.

    Arguments as for :func:`line_cut`; ``d1``, ``d2`` have ``x``'s shape.

    Returns:
        Tensor ``(N, len(alphas), len(betas))`` on the CPU; entry ``[n, i, j]`` is at
        ``a = alphas[i]``, ``b = betas[j]``.
    """
    _check_directions(x, d1, d2)
    a = torch.as_tensor(alphas, dtype=x.dtype).flatten()
    b = torch.as_tensor(betas, dtype=x.dtype).flatten()
    out = []
    for i in range(len(a)):
        out.append(line_cut(model, x + a[i] * d1, y, d2, b, quantity=quantity, clip=clip,
                            batch_size=batch_size))
    return torch.stack(out, dim=1)


def crossing_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, direction: torch.Tensor,
                  *, max_step: float = 1.0, n_grid: int = 64, n_bisect: int = 10,
                  clip: bool = False, batch_size: int = 2048) -> torch.Tensor:
    """Smallest step ``a >= 0`` at which the margin ``D(x + a d)`` reaches 0.

    A grid ``a_k = max_step * k / n_grid`` (k = 0..n_grid) locates the first grid step with
    ``D <= 0``; ``n_bisect`` bisection steps then refine it within its grid cell (to a width of
    ``max_step / n_grid / 2**n_bisect``). A crossing inside one grid cell that re-crosses back
    before the next grid point is missed (the grid is the resolution of the search).

    Args:
        model, x, y, direction, clip, batch_size: as for :func:`line_cut`.
        max_step: the largest step searched (default 1.0); must be > 0.
        n_grid: grid intervals (default 64); n_bisect: bisection steps (default 10).

    Returns:
        Tensor ``(N,)``: 0 where ``x`` is already misclassified (``D(x) <= 0``), ``inf`` where
        the margin stays positive up to ``max_step`` (the crossing is censored).
    """
    if not max_step > 0:
        raise ValueError(f"max_step must be > 0, got {max_step}")
    if n_grid < 1 or n_bisect < 0:
        raise ValueError("n_grid must be >= 1 and n_bisect >= 0")
    grid = torch.linspace(0.0, float(max_step), n_grid + 1)
    m = line_cut(model, x, y, direction, grid, quantity="margin", clip=clip,
                 batch_size=batch_size)
    crossed = m <= 0
    any_cross = crossed.any(dim=1)
    first = torch.where(any_cross, crossed.float().argmax(dim=1), torch.zeros_like(any_cross,
                                                                                   dtype=torch.long))
    result = torch.full((len(x),), float("inf"))
    result[any_cross & (first == 0)] = 0.0
    todo = any_cross & (first > 0)
    if todo.any():
        idx = todo.nonzero().flatten()
        lo = grid[first[idx] - 1].clone()
        hi = grid[first[idx]].clone()
        xs, ys, ds = x[idx], y[idx], direction[idx]
        shape = (-1,) + (1,) * (x.ndim - 1)
        with eval_mode(model):
            for _ in range(n_bisect):
                mid = (lo + hi) / 2
                pts = xs + mid.view(shape) * ds
                if clip:
                    pts = pts.clamp(0.0, 1.0)
                neg = _batched_quantity(model, pts, ys, "margin", batch_size) <= 0
                hi = torch.where(neg, mid, hi)
                lo = torch.where(neg, lo, mid)
        result[idx] = hi
    return result


# ============================================================================ psi metric


def kl_from_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Per-row ``KL(softmax p || softmax q)`` (natural log), computed stably from logits."""
    log_p = F.log_softmax(p_logits, dim=1)
    log_q = F.log_softmax(q_logits, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def psi_per_point(model: nn.Module, x: torch.Tensor, eps: float, *, steps: int = 20,
                  step_size: float | None = None, restarts: int = 1, seed: int = 0,
                  batch_size: int = 512) -> torch.Tensor:
    """``psi(x_n) = max_{||delta||_inf <= eps} KL(softmax f(x_n) || softmax f(x_n + delta))``.

    The maximum is searched by :func:`studylib.attacks.projected_gradient_ascent` (random start
    in the eps-ball, signed-gradient steps, projection onto the ball and onto [0, 1], best of
    ``restarts``); a random start is needed because the KL's gradient is exactly 0 at
    ``delta = 0``. The value is a lower bound of the true maximum (an attack can miss it).

    Args:
        model: the network (eval mode; its parameters get no gradient).
        x: inputs in [0, 1], ``(N, ...)``.
        eps: L-inf radius (> 0).
        steps: ascent steps (default 20); step_size: default ``2.5 * eps / steps``.
        restarts: random restarts, the best is kept (default 1).
        seed: seeds the random starts (batch ``b`` uses ``seed + b``).
        batch_size: points per attack batch (default 512).

    Returns:
        Tensor ``(N,)`` of psi values (>= 0) on the CPU.
    """
    from .. import attacks

    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if steps < 1 or restarts < 1:
        raise ValueError("steps and restarts must be >= 1")
    step_size = 2.5 * eps / steps if step_size is None else float(step_size)
    dev = model_device(model)
    out = []
    with eval_mode(model):
        for b, i in enumerate(range(0, len(x), batch_size)):
            xb = x[i:i + batch_size].to(dev)
            with torch.no_grad():
                ref = model(xb).detach()

            def objective(x_adv: torch.Tensor, ref: torch.Tensor = ref) -> torch.Tensor:
                return kl_from_logits(ref, model(x_adv))

            x_adv = attacks.projected_gradient_ascent(objective, xb, eps, steps=steps,
                                                      step_size=step_size, restarts=restarts,
                                                      random_start=True, seed=seed + b)
            with torch.no_grad():
                out.append(objective(x_adv).clamp_min(0.0).cpu())
    return torch.cat(out) if out else torch.empty(0)


@dataclass(frozen=True)
class PsiResult:
    """A model's psi score: ``mean`` over points, its bootstrap ``ci95``, the per-point values,
    and the wall time of the search in ``seconds``."""

    mean: float
    ci95: tuple[float, float]
    per_point: np.ndarray
    seconds: float


def psi_score(model: nn.Module, x: torch.Tensor, eps: float, *, steps: int = 20,
              step_size: float | None = None, restarts: int = 1, seed: int = 0,
              batch_size: int = 512, n_boot: int = 2000) -> PsiResult:
    """The model's psi (mean of :func:`psi_per_point` over ``x``) with a bootstrap 95% CI.

    Arguments as for :func:`psi_per_point`; ``n_boot`` bootstrap replicates (default 2000).
    Lower psi = more robust.
    """
    from ..stats import bootstrap_interval

    t0 = time.perf_counter()
    vals = psi_per_point(model, x, eps, steps=steps, step_size=step_size, restarts=restarts,
                         seed=seed, batch_size=batch_size).double().numpy()
    seconds = time.perf_counter() - t0
    lo, hi = bootstrap_interval(vals, n_boot=n_boot, seed=seed)
    return PsiResult(float(vals.mean()), (lo, hi), vals, seconds)


# ============================================================================ reparameterisation

_PARAMETRIC = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BREAKS_HOMOGENEITY = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
                       nn.InstanceNorm1d, nn.InstanceNorm2d, nn.Sigmoid, nn.Tanh, nn.GELU,
                       nn.Softmax)


def parametric_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the Linear / Conv layers of ``model`` in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _PARAMETRIC)]


def rescale_relu_layer(model: nn.Module, c: float = 10.0, layer: int = 0) -> nn.Module:
    """A copy of ``model`` computing the same function with rescaled weights.

    Layer ``layer`` (an index into :func:`parametric_layers`) gets ``W <- c W`` and
    ``b <- c b``; the next parametric layer gets ``W <- W / c`` (its bias unchanged). Because
    ReLU and max-pooling are positively homogeneous (``relu(c z) = c relu(z)`` for ``c > 0``),
    the output is unchanged -- up to float rounding -- for sequential ReLU networks such as
    :class:`studylib.models.SmallCNN` and :class:`studylib.models.MLP`.

    Args:
        model: the network (not modified).
        c: the positive scale (default 10.0).
        layer: index of the first of the two layers (default 0, the input layer).

    Raises:
        ValueError: ``c <= 0``; no layer after ``layer``; or a normalisation / non-homogeneous
            activation module registered between the two layers (the rescaling would change
            the function).
    """
    if not c > 0:
        raise ValueError(f"c must be > 0 (ReLU is only positively homogeneous), got {c}")
    layers = parametric_layers(model)
    if not 0 <= layer < len(layers) - 1:
        raise ValueError(f"layer must be in [0, {len(layers) - 2}] for this model "
                         f"({len(layers)} parametric layers), got {layer}")
    first, second = layers[layer][0], layers[layer + 1][0]
    names = [n for n, _ in model.named_modules()]
    between = names[names.index(first) + 1:names.index(second)]
    modules = dict(model.named_modules())
    bad = [n for n in between if isinstance(modules[n], _BREAKS_HOMOGENEITY)]
    if bad:
        raise ValueError(f"modules {bad} between {first!r} and {second!r} are not positively "
                         "homogeneous; the rescaling would change the function")
    out = copy.deepcopy(model)
    mods = dict(out.named_modules())
    with torch.no_grad():
        mods[first].weight.mul_(c)
        if mods[first].bias is not None:
            mods[first].bias.mul_(c)
        mods[second].weight.div_(c)
    return out


@torch.no_grad()
def weight_sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, radius: float = 1.0,
                     n_samples: int = 10, seed: int = 0, batch_size: int = 1024) -> float:
    """Weight-space sharpness: mean loss increase under random weight perturbations.

    ``S = mean_k [L(w + u_k) - L(w)]`` with ``u_k = radius * g_k / ||g_k||_2``, ``g_k`` a
    standard normal vector over *all* parameters (one vector, fixed L2 norm ``radius``), and
    ``L`` the mean cross-entropy on ``(x, y)``. The perturbations depend only on ``seed`` and
    the parameter shapes, so two models of the same architecture see the same ``u_k``.
    Such measures are not invariant to function-preserving reparameterisations (Dinh et al.,
    "Sharp Minima Can Generalize For Deep Nets", ICML 2017) -- the point of the comparison.

    Args:
        model: the network (not modified; a copy is perturbed).
        x, y: the data the loss is computed on.
        radius: L2 norm of each perturbation (default 1.0; > 0).
        n_samples: perturbations averaged (default 10).
        seed: seed of the perturbations.
        batch_size: points per forward pass.
    """
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    work = copy.deepcopy(model).eval()
    base_params = [p.detach().clone() for p in work.parameters()]

    def loss() -> float:
        return float(_batched_quantity(work, x, y, "loss", batch_size).double().mean())

    base = loss()
    gen = torch.Generator().manual_seed(int(seed))
    increases = []
    for _ in range(n_samples):
        noise = [torch.randn(p.shape, generator=gen) for p in base_params]
        norm = torch.sqrt(sum((n.double() ** 2).sum() for n in noise))
        for p, p0, n in zip(work.parameters(), base_params, noise, strict=True):
            p.copy_(p0 + (radius / norm).float() * n.to(p0.device))
        increases.append(loss() - base)
    return float(np.mean(increases))


@torch.no_grad()
def max_output_difference(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor) -> float:
    """``max |model_a(x) - model_b(x)|`` over all logits (to check function preservation)."""
    a = batched_logits(model_a, x)
    b = batched_logits(model_b, x)
    return float((a - b).abs().max())


@torch.no_grad()
def batched_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The logits of ``model`` (eval mode, no gradients) on ``x``, ``batch_size`` points per
    forward pass, on the CPU."""
    dev = model_device(model)
    with eval_mode(model):
        return torch.cat([model(x[i:i + batch_size].to(dev)).cpu()
                          for i in range(0, len(x), batch_size)])


# ============================================================================ training regimes

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
REGIME_KINDS = ("natural", "fgsm_at", "pgd_at", "grad_norm", "temperature")


def _fresh_seed() -> int:
    # Drawn from the global generator, which studylib.training.fit seeds: deterministic per run.
    return int(torch.randint(0, 2**31 - 1, (1,)))


def _attack_in_eval(model: nn.Module, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    with eval_mode(model):
        return fn().detach()


def natural_loss() -> LossFn:
    """Mean cross-entropy on clean inputs."""

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    return loss


def fgsm_at_loss(eps: float, clean_weight: float = 0.5) -> LossFn:
    """FGSM adversarial training (Goodfellow et al., 2015): ``w * CE(x) + (1 - w) * CE(x_fgsm)``
    with ``x_fgsm = clip(x + eps sign(grad_x CE), 0, 1)`` and ``w = clean_weight`` (default 0.5,
    the paper's alpha)."""
    from .. import attacks

    if not 0 <= clean_weight <= 1:
        raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}")

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = _attack_in_eval(model, lambda: attacks.fgsm(model, x, y, eps))
        adv = F.cross_entropy(model(x_adv), y)
        if clean_weight == 0:
            return adv
        return clean_weight * F.cross_entropy(model(x), y) + (1 - clean_weight) * adv

    return loss


def pgd_at_loss(eps: float, steps: int = 7, step_size: float | None = None) -> LossFn:
    """PGD adversarial training (Madry et al., 2018): CE on PGD examples (random start, ``steps``
    signed-gradient steps of ``step_size``, default ``2.5 * eps / steps``)."""
    from .. import attacks

    step_size = 2.5 * eps / steps if step_size is None else float(step_size)

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seed = _fresh_seed()
        x_adv = _attack_in_eval(model, lambda: attacks.pgd(
            model, x, y, eps, steps=steps, step_size=step_size, restarts=1, random_start=True,
            seed=seed))
        return F.cross_entropy(model(x_adv), y)

    return loss


def grad_norm_loss(lam: float, p: int = 2) -> LossFn:
    """Input-gradient-norm regularisation ("double backpropagation", Drucker & LeCun 1992; Ross
    & Doshi-Velez 2018): ``CE(x) + lam * mean_n ||grad_x CE_n||_p^p`` for ``p`` in {1, 2}
    (p = 1 is the first-order L-inf adversarial loss; p = 2 the squared L2 norm)."""
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.clone().requires_grad_(True)
        per = F.cross_entropy(model(x), y, reduction="none")
        (g,) = torch.autograd.grad(per.sum(), x, create_graph=True)
        g = g.flatten(1)
        pen = g.abs().sum(1) if p == 1 else (g ** 2).sum(1)
        return per.mean() + lam * pen.mean()

    return loss


def temperature_loss(temperature: float) -> LossFn:
    """Cross-entropy of ``softmax(f(x) / T)``: trained at a large ``T`` and evaluated at T = 1,
    the logits are ~T times too large, the softmax saturates and input gradients vanish
    (gradient masking, as in defensive distillation; Carlini & Wagner 2016)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x) / temperature, y)

    return loss


@dataclass(frozen=True)
class Regime:
    """A training regime: its ``kind``, ``params``, the ``loss_fn`` for ``fit`` and ``loss_id``."""

    kind: str
    params: tuple[tuple[str, Any], ...]
    loss_fn: LossFn
    loss_id: str


_REGIME_BUILDERS: dict[str, tuple[Callable[..., LossFn], tuple[str, ...]]] = {
    "natural": (natural_loss, ()),
    "fgsm_at": (fgsm_at_loss, ("eps", "clean_weight")),
    "pgd_at": (pgd_at_loss, ("eps", "steps", "step_size")),
    "grad_norm": (grad_norm_loss, ("lam", "p")),
    "temperature": (temperature_loss, ("temperature",)),
}


def make_regime(kind: str, **params: Any) -> Regime:
    """Build a training regime by name.

    Args:
        kind: ``"natural"``; ``"fgsm_at"`` (``eps``, ``clean_weight=0.5``); ``"pgd_at"``
            (``eps``, ``steps=7``, ``step_size=None``); ``"grad_norm"`` (``lam``, ``p=2``);
            ``"temperature"`` (``temperature``).
        **params: the kind's parameters.

    Returns:
        :class:`Regime` whose ``loss_id`` (e.g. ``"pgd_at(eps=0.1,steps=7)"``) names the kind and
        every given parameter, for the checkpoint cache of :func:`studylib.training.fit`.

    Example:
        >>> make_regime("pgd_at", eps=0.1, steps=5).loss_id
        'pgd_at(eps=0.1,steps=5)'
    """
    if kind not in _REGIME_BUILDERS:
        raise ValueError(f"unknown regime kind {kind!r}; valid: {list(_REGIME_BUILDERS)}")
    builder, allowed = _REGIME_BUILDERS[kind]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for regime {kind!r}; valid: "
                         f"{list(allowed)}")
    items = tuple(sorted(params.items()))
    loss_id = f"{kind}({','.join(f'{k}={v}' for k, v in items)})"
    return Regime(kind, items, builder(**params), loss_id)


# ============================================================================ accuracy under attack


def correctly_classified(models: Iterable[nn.Module], x: torch.Tensor,
                         y: torch.Tensor) -> torch.Tensor:
    """Boolean mask ``(N,)`` of the points of ``x`` that every model classifies correctly."""
    mask = torch.ones(len(x), dtype=torch.bool)
    for m in models:
        mask &= batched_logits(m, x).argmax(1) == y
    return mask


def adversarial_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack: str,
                         eps: float, steps: int = 10, restarts: int = 1, seed: int = 0,
                         batch_size: int = 512) -> float:
    """Accuracy of ``model`` on ``attack(x)``: ``attack`` is ``"fgsm"`` or ``"pgd"`` (random
    start, ``steps`` steps of ``2.5 * eps / steps``, ``restarts``) from
    :mod:`studylib.attacks`."""
    from .. import attacks

    if attack not in ("fgsm", "pgd"):
        raise ValueError(f"attack must be 'fgsm' or 'pgd', got {attack!r}")
    dev = model_device(model)
    correct = 0
    for b, i in enumerate(range(0, len(x), batch_size)):
        xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
        if attack == "fgsm":
            xa = attacks.fgsm(model, xb, yb, eps)
        else:
            xa = attacks.pgd(model, xb, yb, eps, steps=steps, step_size=2.5 * eps / steps,
                             restarts=restarts, random_start=True, seed=seed + b)
        with torch.no_grad():
            correct += int((model(xa).argmax(1) == yb).sum())
    return correct / max(len(x), 1)


def transfer_accuracy(source: nn.Module, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      *, eps: float, steps: int = 20, seed: int = 0,
                      batch_size: int = 512) -> float:
    """Accuracy of ``target`` on PGD examples crafted on ``source`` (a black-box transfer
    attack, which gradient masking of ``target`` cannot stop)."""
    from .. import attacks

    dev = model_device(target)
    correct = 0
    for b, i in enumerate(range(0, len(x), batch_size)):
        xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
        xa = attacks.pgd(source, xb, yb, eps, steps=steps, step_size=2.5 * eps / steps,
                         restarts=1, random_start=True, seed=seed + b)
        with torch.no_grad():
            correct += int((target(xa).argmax(1) == yb).sum())
    return correct / max(len(x), 1)


# ============================================================================ ground truth, controls


def robust_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                   steps: int = 20, restarts: int = 1, objectives: Sequence[str] = ("ce", "margin"),
                   seed: int = 0, batch_size: int = 512) -> torch.Tensor:
    """Per point: is ``model`` correct on ``x`` *and* under every attack of ``objectives``?

    Each objective is white-box L-inf PGD (:func:`studylib.attacks.pgd`: random start,
    ``steps`` steps of ``2.5 * eps / steps``, best of ``restarts``). A point counts as robust
    only when no attack breaks it: the per-point minimum over the attacks, so the robust
    accuracy (the mean) is at most that of any single attack. The margin objective does not
    go through the softmax, so a saturated softmax (gradient masking) does not hide it.

    Returns:
        Bool tensor ``(N,)`` on the CPU. The random starts of an objective depend only on
        ``seed``, the objective and the batch, so the result with ``("ce", "margin")`` is the
        pointwise AND of those with ``("ce",)`` and ``("margin",)``.
    """
    from .. import attacks

    if not objectives:
        raise ValueError("need at least one attack objective")
    dev = model_device(model)
    out = []
    with eval_mode(model):
        for b, i in enumerate(range(0, len(x), batch_size)):
            xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
            with torch.no_grad():
                ok = model(xb).argmax(1) == yb
            for obj in objectives:  # each objective its own starts, whatever else is run
                k = attacks.OBJECTIVES.index(obj)
                xa = attacks.pgd(model, xb, yb, eps, steps=steps, step_size=2.5 * eps / steps,
                                 restarts=restarts, random_start=True,
                                 seed=seed + 7919 * k + b, objective=obj)
                with torch.no_grad():
                    ok &= model(xa).argmax(1) == yb
            out.append(ok.cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.bool)


class LogitScaled(nn.Module):
    """``model`` with its logits multiplied by ``scale`` (> 0): every decision -- the argmax at
    every input, hence clean and robust accuracy -- is unchanged, the softmax is not
    (``scale < 1`` softens it, ``> 1`` sharpens it)."""

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be > 0 (a negative one reverses the argmax), got {scale}")
        self.model = model
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.scale


# ============================================================================ exact psi (linear)


def box_vertices(x: torch.Tensor, eps: float, clip: tuple[float, float] = (0.0, 1.0)
                 ) -> torch.Tensor:
    """The ``2**d`` vertices of the L-inf ball of radius ``eps`` around each row of ``x``
    (shape ``(N, d)``), intersected with the box ``clip``: shape ``(N, 2**d, d)``.

    The intersection of two boxes is a box, with per-coordinate ends ``max(x - eps, lo)`` and
    ``min(x + eps, hi)``; vertex ``v`` takes the upper end in coordinate ``j`` when bit ``j``
    of ``v`` is set."""
    if x.ndim != 2:
        raise ValueError(f"x must be (N, d), got {tuple(x.shape)}")
    d = x.shape[1]
    if d > 16:
        raise ValueError(f"2**{d} vertices per point is too many to enumerate (d <= 16)")
    lo = (x - eps).clamp_min(clip[0])
    hi = (x + eps).clamp_max(clip[1])
    bits = ((torch.arange(2 ** d)[:, None] >> torch.arange(d)[None, :]) & 1).to(x.dtype)
    return lo[:, None, :] + bits[None] * (hi - lo)[:, None, :]


@torch.no_grad()
def exact_psi_linear(layer: nn.Linear, x: torch.Tensor, eps: float, *,
                     clip: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """The exact psi of a linear softmax model ``z = W x + b``: per point the maximum over the
    eps-box (within ``clip``) of ``KL(softmax z(x) || softmax z(x + delta))``.

    For a linear model ``KL = logsumexp(z + W delta) - sum_i p_i (W delta)_i - logsumexp(z)``
    is convex in ``delta`` (a log-sum-exp of an affine map minus a linear one), so its maximum
    over a box is attained at a vertex: all :func:`box_vertices` are enumerated (``d <= 16``).

    Args:
        layer: the model's one linear layer (``in_features = d``).
        x: points ``(N, d)`` (flattened inputs).
        eps: L-inf radius.

    Returns:
        Tensor ``(N,)`` of exact maxima (float64, on the CPU).
    """
    w, b = layer.weight.detach().double().cpu(), layer.bias.detach().double().cpu()
    x = x.detach().double().cpu().flatten(1)
    out = []
    for i in range(0, len(x), 64):
        xb = x[i:i + 64]
        ref = xb @ w.T + b  # (n, K)
        verts = box_vertices(xb, eps, clip)  # (n, V, d)
        z = verts @ w.T + b  # (n, V, K)
        log_p = F.log_softmax(ref, dim=1)[:, None, :]
        kl = (log_p.exp() * (log_p - F.log_softmax(z, dim=2))).sum(2)
        out.append(kl.max(dim=1).values)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)
