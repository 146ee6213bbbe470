"""Decision surfaces in input space and the psi robustness metric (Yu et al., IJCAI 2019).

The study ``01_loss_visualization`` re-runs F. Yu, Z. Qin, C. Liu, L. Zhao, Y. Wang, X. Chen,
"Interpreting and Evaluating Neural Network Robustness" (IJCAI 2019, arXiv 1905.04270) and its
companion "Interpreting Adversarial Robustness: A View from Decision Surface in Input Space"
(arXiv 1810.00144). This module holds every piece of logic of that study:

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
* **Tables and claims** -- loops over a family of models (:func:`train_family`,
  :func:`crossing_table`, :func:`psi_table`, :func:`adversarial_accuracy_table`) returning
  pandas DataFrames, and the ranking statistics the claims are computed from
  (:func:`kendall_tau`, :func:`mean_pairwise_kendall_tau`, :func:`ranking_stability_per_seed`,
  :func:`rank_agreement_per_seed`). The claims themselves are decided in
  :mod:`studylib.studies.loss_visualization`.

The margin, cuts, crossing search, sharpness and rescaling are written here (on plain torch)
because no maintained library computes input-space decision surfaces or this metric; the
attacks themselves live in :mod:`studylib.attacks`.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models import eval_mode
from ..stats.ranking import kendall_tau, mean_pairwise_kendall_tau, spearman_rho

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


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def _batched_quantity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, quantity: str,
                      batch_size: int) -> torch.Tensor:
    dev = _device_of(model)
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
    dev = _device_of(model)
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
    dev = _device_of(model)
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
    from ..core.results import bootstrap_ci

    t0 = time.perf_counter()
    vals = psi_per_point(model, x, eps, steps=steps, step_size=step_size, restarts=restarts,
                         seed=seed, batch_size=batch_size).double().numpy()
    seconds = time.perf_counter() - t0
    lo, hi = bootstrap_ci(vals, n_boot=n_boot, seed=seed)
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
    a = _batched_quantity_logits(model_a, x)
    b = _batched_quantity_logits(model_b, x)
    return float((a - b).abs().max())


@torch.no_grad()
def _batched_quantity_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024):
    dev = _device_of(model)
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


# ============================================================================ model family


def _arch_kwargs(arch: str, spec: Mapping[str, Any], input_shape: Sequence[int],
                 num_classes: int) -> dict[str, Any]:
    c, h, w = (int(s) for s in input_shape)
    kw = dict(spec)
    name = kw.pop("model", arch)
    if name == "mlp":
        kw.setdefault("in_features", c * h * w)
    else:
        kw.setdefault("in_channels", c)
        kw.setdefault("image_size", h)
    kw.setdefault("num_classes", num_classes)
    return {"name": name, **kw}


def train_family(data: Any, architectures: Mapping[str, Mapping[str, Any]],
                 regimes: Mapping[str, Mapping[str, Any]], seeds: Iterable[int], config: Any, *,
                 device: str | torch.device = "cpu", progress: bool = True,
                 cache: bool = True) -> dict[tuple[str, str, int], nn.Module]:
    """Train one model per (architecture, regime, seed) through the checkpoint cache.

    Args:
        data: a ``studylib.data.DataBundle``.
        architectures: ``{label: {"model": <build_model name, default label>, **kwargs}}``,
            e.g. ``{"small_cnn": {"width": 8}, "mlp": {"hidden": [128]}}``; input size and
            class count are filled in from ``data``.
        regimes: ``{label: {"kind": <regime kind>, **params}}`` (see :func:`make_regime`).
        seeds: seeds; each seeds both the initial weights and the training.
        config: a ``studylib.training.TrainConfig``.
        device: where to train.
        progress: show a bar over the models.
        cache: read and write the checkpoint cache (default True).

    Returns:
        ``{(arch_label, regime_label, seed): trained model (eval mode)}``.
    """
    from ..core.runtime import progress as progress_bar
    from ..models import build_model
    from ..training import fit

    seeds = [int(s) for s in seeds]
    jobs = list(itertools.product(architectures, regimes, seeds))
    out: dict[tuple[str, str, int], nn.Module] = {}
    it = progress_bar(jobs, desc="train family") if progress else jobs
    for arch, reg, seed in it:
        kw = _arch_kwargs(arch, architectures[arch], data.input_shape, data.num_classes)
        name = kw.pop("name")
        model = build_model(name, seed=seed, **kw)
        rspec = dict(regimes[reg])
        kind = rspec.pop("kind", reg)
        regime = make_regime(kind, **rspec)
        out[(arch, reg, seed)] = fit(model, data, config, seed=seed, device=device,
                                     loss_fn=regime.loss_fn, loss_id=regime.loss_id,
                                     progress=False, cache=cache)
    return out


# ============================================================================ evaluation tables

ModelKey = tuple[str, str, int]


def _key_cols(key: ModelKey) -> dict[str, Any]:
    arch, regime, seed = key
    return {"arch": arch, "regime": regime, "seed": int(seed)}


def correctly_classified(models: Iterable[nn.Module], x: torch.Tensor,
                         y: torch.Tensor) -> torch.Tensor:
    """Boolean mask ``(N,)`` of the points of ``x`` that every model classifies correctly."""
    mask = torch.ones(len(x), dtype=torch.bool)
    for m in models:
        mask &= _batched_quantity_logits(m, x).argmax(1) == y
    return mask


def clean_accuracy_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor,
                         y: torch.Tensor):
    """Clean accuracy of every model on ``(x, y)`` as a DataFrame (arch, regime, seed,
    accuracy)."""
    import pandas as pd

    rows = []
    for key, model in models.items():
        logits = _batched_quantity_logits(model, x)
        rows.append({**_key_cols(key), "accuracy": float((logits.argmax(1) == y).float().mean())})
    return pd.DataFrame(rows)


def crossing_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, y: torch.Tensor, *,
                   n_random: int = 4, max_step: float = 1.0, n_grid: int = 64,
                   n_bisect: int = 10, clip: bool = False, seed: int = 0,
                   progress: bool = True):
    """Margin-crossing steps along ``d_adv`` and ``n_random`` random +-1 directions.

    For every model and every point of ``x`` correctly classified by that model, the crossing
    step (:func:`crossing_step`) along the model's own ``d_adv`` and along ``n_random`` random
    sign directions (seeded by ``seed`` and the direction index, the same for every model).

    Returns:
        DataFrame with columns arch, regime, seed, point (index into ``x``), direction
        (``"adv"`` | ``"rand"``), k (random direction index; 0 for adv), step (``inf`` when
        censored at ``max_step``).
    """
    import pandas as pd

    from ..core.runtime import progress as progress_bar

    rand = [random_sign_directions(x.shape, seed=seed * 1000 + k) for k in range(n_random)]
    rows = []
    items = list(models.items())
    for key, model in (progress_bar(items, desc="crossings") if progress else items):
        logits = _batched_quantity_logits(model, x)
        ok = (logits.argmax(1) == y).nonzero().flatten()
        if len(ok) == 0:
            continue
        xs, ys = x[ok], y[ok]
        dirs = [("adv", 0, adversarial_direction(model, xs, ys))]
        dirs += [("rand", k, r[ok]) for k, r in enumerate(rand)]
        for kind, k, d in dirs:
            steps = crossing_step(model, xs, ys, d, max_step=max_step, n_grid=n_grid,
                                  n_bisect=n_bisect, clip=clip)
            for p, s in zip(ok.tolist(), steps.tolist(), strict=True):
                rows.append({**_key_cols(key), "point": p, "direction": kind, "k": k,
                             "step": s})
    return pd.DataFrame(rows)


def crossing_ratio_summary(crossings, *, max_step: float):
    """Per model: median crossing step along d_adv and along random directions and the median
    over points of ``rand / adv`` (random crossings first take their median over the random
    directions of a point; censored values count as ``max_step``, so the ratio is a lower
    bound where random directions never cross). Also the censored fraction of each.

    Returns a DataFrame (arch, regime, seed, adv_median, rand_median, ratio_median,
    adv_censored, rand_censored, n_points).
    """
    import pandas as pd

    rows = []
    for (arch, regime, seed), g in crossings.groupby(["arch", "regime", "seed"], sort=False):
        adv = g[g.direction == "adv"].set_index("point")["step"]
        rnd = g[g.direction == "rand"].groupby("point")["step"]
        rand_cens = float(np.isinf(g[g.direction == "rand"]["step"]).mean())
        rnd_med = rnd.apply(lambda s: float(np.median(np.minimum(s.to_numpy(), max_step))))
        adv_c = np.minimum(adv.to_numpy(), max_step)
        both = pd.concat([pd.Series(adv_c, index=adv.index, name="adv"), rnd_med.rename("rand")],
                         axis=1).dropna()
        pos = both[both.adv > 0]
        ratio = (pos.rand / pos.adv).to_numpy()
        rows.append({"arch": arch, "regime": regime, "seed": int(seed),
                     "adv_median": float(np.median(adv_c)) if len(adv_c) else math.nan,
                     "rand_median": float(rnd_med.median()) if len(rnd_med) else math.nan,
                     "ratio_median": float(np.median(ratio)) if len(ratio) else math.nan,
                     "adv_censored": float(np.isinf(adv.to_numpy()).mean()) if len(adv) else
                     math.nan,
                     "rand_censored": rand_cens, "n_points": int(len(adv))})
    return pd.DataFrame(rows)


def psi_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, *,
              eps_values: Sequence[float], restarts_values: Sequence[int] = (1,),
              steps: int = 20, seed: int = 0, n_boot: int = 1000, progress: bool = True):
    """Per-point psi of every model for every (eps, restarts) setting.

    Returns:
        (per_point, summary): ``per_point`` is an array-valued DataFrame with columns arch,
        regime, seed, eps, restarts, psi (np.ndarray over the points of ``x``), seconds;
        ``summary`` has psi_mean and psi_ci95 over all points of ``x``.
    """
    import pandas as pd

    from ..core.runtime import progress as progress_bar

    jobs = list(itertools.product(models.items(), eps_values, restarts_values))
    rows = []
    for (key, model), eps, restarts in (progress_bar(jobs, desc="psi") if progress else jobs):
        res = psi_score(model, x, float(eps), steps=steps, restarts=int(restarts), seed=seed,
                        n_boot=n_boot)
        rows.append({**_key_cols(key), "eps": float(eps), "restarts": int(restarts),
                     "psi": res.per_point, "psi_mean": res.mean, "psi_ci95": list(res.ci95),
                     "seconds": res.seconds})
    return pd.DataFrame(rows)


def psi_subset_scores(per_point, n_points_values: Sequence[int]):
    """Expand :func:`psi_table` output to settings (eps, restarts, n_points): the model's psi
    is the mean over the first ``n_points`` points (the test points come in a fixed random
    order, so the first n are a random subset). Returns a DataFrame with column ``score``."""
    import pandas as pd

    rows = []
    n_points_values = sorted({int(n) for n in n_points_values})
    for _, r in per_point.iterrows():
        for n in n_points_values:
            n = min(int(n), len(r.psi))
            rows.append({"arch": r.arch, "regime": r.regime, "seed": r.seed, "eps": r.eps,
                         "restarts": r.restarts, "n_points": n,
                         "score": float(np.mean(r.psi[:n]))})
    return pd.DataFrame(rows)


def adversarial_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack: str,
                         eps: float, steps: int = 10, restarts: int = 1, seed: int = 0,
                         batch_size: int = 512) -> float:
    """Accuracy of ``model`` on ``attack(x)``: ``attack`` is ``"fgsm"`` or ``"pgd"`` (random
    start, ``steps`` steps of ``2.5 * eps / steps``, ``restarts``) from
    :mod:`studylib.attacks`."""
    from .. import attacks

    if attack not in ("fgsm", "pgd"):
        raise ValueError(f"attack must be 'fgsm' or 'pgd', got {attack!r}")
    dev = _device_of(model)
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


def adversarial_accuracy_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor,
                               y: torch.Tensor, *, eps_values: Sequence[float],
                               pgd_steps: Sequence[int] = (10,), include_fgsm: bool = True,
                               restarts: int = 1, seed: int = 0, progress: bool = True):
    """The conventional baseline: adversarial accuracy over a grid of attacks x eps x steps.

    Settings: FGSM at each eps (if ``include_fgsm``) and PGD with each number of steps at each
    eps. Returns a DataFrame (arch, regime, seed, attack, eps, steps, accuracy, seconds).
    """
    import pandas as pd

    from ..core.runtime import progress as progress_bar

    settings = [("fgsm", float(e), 1) for e in eps_values] if include_fgsm else []
    settings += [("pgd", float(e), int(s)) for e in eps_values for s in pgd_steps]
    jobs = list(itertools.product(models.items(), settings))
    rows = []
    for (key, model), (attack, eps, steps) in (progress_bar(jobs, desc="adv. accuracy")
                                               if progress else jobs):
        t0 = time.perf_counter()
        acc = adversarial_accuracy(model, x, y, attack=attack, eps=eps, steps=steps,
                                   restarts=restarts, seed=seed)
        rows.append({**_key_cols(key), "attack": attack, "eps": eps, "steps": steps,
                     "accuracy": acc, "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def transfer_accuracy(source: nn.Module, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      *, eps: float, steps: int = 20, seed: int = 0,
                      batch_size: int = 512) -> float:
    """Accuracy of ``target`` on PGD examples crafted on ``source`` (a black-box transfer
    attack, which gradient masking of ``target`` cannot stop)."""
    from .. import attacks

    dev = _device_of(target)
    correct = 0
    for b, i in enumerate(range(0, len(x), batch_size)):
        xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
        xa = attacks.pgd(source, xb, yb, eps, steps=steps, step_size=2.5 * eps / steps,
                         restarts=1, random_start=True, seed=seed + b)
        with torch.no_grad():
            correct += int((target(xa).argmax(1) == yb).sum())
    return correct / max(len(x), 1)


# ============================================================================ rankings


def _score_matrix(df, setting_cols: Sequence[str], value_col: str,
                  model_cols: Sequence[str]) -> np.ndarray:
    wide = df.pivot_table(index=list(setting_cols), columns=list(model_cols), values=value_col,
                          aggfunc="mean")
    return wide.to_numpy()


def ranking_stability_per_seed(df, *, setting_cols: Sequence[str], value_col: str,
                               model_cols: Sequence[str] = ("arch", "regime")) -> dict[int, float]:
    """For each seed: :func:`mean_pairwise_kendall_tau` of the models' scores (``value_col``)
    across the settings (distinct values of ``setting_cols``)."""
    out = {}
    for seed, g in df.groupby("seed"):
        out[int(seed)] = mean_pairwise_kendall_tau(_score_matrix(g, setting_cols, value_col,
                                                                 model_cols))
    return out


def rank_agreement_per_seed(df_a, df_b, *, value_a: str, value_b: str,
                            model_cols: Sequence[str] = ("arch", "regime"),
                            method: str = "spearman") -> dict[int, float]:
    """For each seed: rank correlation (``"spearman"`` | ``"kendall"``) between the models'
    ``value_a`` in ``df_a`` and ``value_b`` in ``df_b`` (one row per model and seed each)."""
    if method not in ("spearman", "kendall"):
        raise ValueError(f"method must be 'spearman' or 'kendall', got {method!r}")
    fn = spearman_rho if method == "spearman" else kendall_tau
    cols = list(model_cols)
    out = {}
    for seed in sorted(set(df_a.seed) & set(df_b.seed)):
        a = df_a[df_a.seed == seed].set_index(cols)[value_a]
        b = df_b[df_b.seed == seed].set_index(cols)[value_b]
        common = a.index.intersection(b.index)
        out[int(seed)] = fn(a.loc[common].to_numpy(), b.loc[common].to_numpy())
    return out


def rescaling_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, y: torch.Tensor, *,
                    eps: float, c: float = 10.0, layers: Sequence[int] = (0,),
                    psi_steps: int = 10, radius: float = 1.0, n_samples: int = 10,
                    seed: int = 0, progress: bool = True):
    """psi and weight sharpness of every model before and after :func:`rescale_relu_layer`
    (``c``, each layer of ``layers`` that the model has). The psi search uses the same seed on
    both, the sharpness the same weight perturbations. Returns a DataFrame (arch, regime, seed,
    layer, psi, psi_rescaled, psi_rel_change, sharpness, sharpness_rescaled, sharpness_factor,
    max_logit_diff); ``sharpness_factor = max(s'/s, s/s')`` (NaN unless both are > 0). A layer
    that cannot be rescaled without changing the function (see :func:`rescale_relu_layer`) is
    skipped with a warning."""
    import pandas as pd

    from ..core.runtime import progress as progress_bar

    rows = []
    items = list(models.items())
    for key, model in (progress_bar(items, desc="rescaling") if progress else items):
        psi0 = float(psi_per_point(model, x, eps, steps=psi_steps, seed=seed).double().mean())
        s0 = weight_sharpness(model, x, y, radius=radius, n_samples=n_samples, seed=seed)
        n_layers = len(parametric_layers(model))
        for layer in layers:
            if layer >= n_layers - 1:
                continue
            try:
                r = rescale_relu_layer(model, c=c, layer=layer)
            except ValueError as exc:  # e.g. BatchNorm after the layer: not function-preserving
                warnings.warn(f"{key}: layer {layer} skipped ({exc})", stacklevel=2)
                continue
            psi1 = float(psi_per_point(r, x, eps, steps=psi_steps, seed=seed).double().mean())
            s1 = weight_sharpness(r, x, y, radius=radius, n_samples=n_samples, seed=seed)
            fac = max(s1 / s0, s0 / s1) if (s0 > 0 and s1 > 0) else math.nan
            rows.append({**_key_cols(key), "layer": int(layer), "psi": psi0,
                         "psi_rescaled": psi1,
                         "psi_rel_change": abs(psi1 - psi0) / max(abs(psi0), 1e-12),
                         "sharpness": s0, "sharpness_rescaled": s1, "sharpness_factor": fac,
                         "max_logit_diff": max_output_difference(model, r, x)})
    return pd.DataFrame(rows)


def gradient_masking_report(control: nn.Module, reference: nn.Module, x: torch.Tensor,
                            y: torch.Tensor, *, eps: float, steps: int = 20,
                            psi_steps: int = 10, seed: int = 0) -> dict[str, float]:
    """The gradient-masking control: for the ``control`` model (e.g. trained at a large softmax
    temperature, evaluated at T = 1) and a ``reference`` model of the same architecture
    (natural training): clean accuracy, psi, white-box PGD accuracy with the cross-entropy and
    with the margin objective, accuracy under PGD transferred from ``reference``, the fraction
    of points whose input gradient of the cross-entropy is exactly 0, and the largest logit."""
    from .. import attacks

    out: dict[str, float] = {}
    for name, m in (("control", control), ("reference", reference)):
        logits = _batched_quantity_logits(m, x)
        out[f"{name}_clean_accuracy"] = float((logits.argmax(1) == y).float().mean())
        out[f"{name}_max_abs_logit"] = float(logits.abs().max())
        out[f"{name}_psi"] = float(psi_per_point(m, x, eps, steps=psi_steps, seed=seed)
                                   .double().mean())
        out[f"{name}_pgd_ce_accuracy"] = adversarial_accuracy(m, x, y, attack="pgd", eps=eps,
                                                              steps=steps, seed=seed)
        dev = _device_of(m)
        xa = attacks.pgd(m, x.to(dev), y.to(dev), eps, steps=steps, seed=seed,
                         objective="margin")
        with torch.no_grad():
            out[f"{name}_pgd_margin_accuracy"] = float((m(xa).argmax(1).cpu() == y)
                                                       .float().mean())
        d = adversarial_direction(m, x, y)
        out[f"{name}_zero_gradient_fraction"] = float((d.flatten(1).abs().sum(1) == 0)
                                                      .float().mean())
    out["control_transfer_accuracy"] = transfer_accuracy(reference, control, x, y, eps=eps,
                                                         steps=steps, seed=seed)
    return out


# ============================================================================ figures


def cut_curves(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: Sequence[float], *,
               n_random: int = 1, seed: int = 0, clip: bool = False) -> dict[str, np.ndarray]:
    """Margin and loss along ``d_adv`` and ``n_random`` random sign directions for every point.

    Returns ``{"margin_adv": (N, S), "margin_rand": (N * n_random, S), "loss_adv": ...,
    "loss_rand": ...}`` as numpy arrays (rows = point x direction, columns = ``steps``)."""
    d_adv = adversarial_direction(model, x, y)
    out: dict[str, list] = {k: [] for k in ("margin_adv", "margin_rand", "loss_adv",
                                            "loss_rand")}
    dirs = [("adv", d_adv)] + [("rand", random_sign_directions(x.shape, seed=seed * 1000 + k))
                               for k in range(n_random)]
    for kind, d in dirs:
        for q in QUANTITIES:
            out[f"{q}_{kind}"].append(line_cut(model, x, y, d, steps, quantity=q,
                                               clip=clip).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def plot_cut_curves(curves: Mapping[str, Mapping[str, np.ndarray]], steps: Sequence[float]):
    """Figure: rows margin / loss, one column per model label of ``curves`` (each from
    :func:`cut_curves`); median over points with the inter-quartile band, adversarial vs
    random direction; the decision boundary D = 0 dashed."""
    import matplotlib.pyplot as plt

    from ..core.plotting import palette

    steps = np.asarray(steps, float)
    cols = list(curves)
    fig, axes = plt.subplots(2, len(cols), figsize=(3.4 * len(cols), 5.6), sharex=True,
                             squeeze=False)
    colors = palette(2)
    for j, label in enumerate(cols):
        for i, q in enumerate(QUANTITIES):
            ax = axes[i, j]
            for c, kind, name in ((colors[0], "adv", "d_adv"), (colors[1], "rand", "d_rand")):
                v = curves[label][f"{q}_{kind}"]
                lo, med, hi = np.quantile(v, [0.25, 0.5, 0.75], axis=0)
                ax.plot(steps, med, color=c, label=name)
                ax.fill_between(steps, lo, hi, color=c, alpha=0.2)
            if q == "margin":
                ax.axhline(0, color="k", ls="--", lw=0.8)
                ax.set_title(label)
            ax.set_ylabel("margin D" if q == "margin" else "cross-entropy")
            if i == 1:
                ax.set_xlabel("step a along direction")
    axes[0, 0].legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def plot_surfaces(surfaces: Mapping[str, np.ndarray], alphas: Sequence[float],
                  betas: Sequence[float], *, quantity: str = "margin"):
    """Figure: one heat map per label of ``surfaces`` (each ``(len(alphas), len(betas))``),
    x axis ``a`` along d_adv, y axis ``b`` along d_rand, the decision boundary D = 0 (for the
    margin) drawn as a black contour."""
    import matplotlib.pyplot as plt

    labels = list(surfaces)
    fig, axes = plt.subplots(1, len(labels), figsize=(3.6 * len(labels), 3.3), squeeze=False)
    a, b = np.asarray(alphas, float), np.asarray(betas, float)
    lim = max(float(np.abs(s).max()) for s in surfaces.values())
    for ax, label in zip(axes[0], labels, strict=True):
        s = np.asarray(surfaces[label]).T  # rows = b, columns = a
        im = ax.pcolormesh(a, b, s, cmap="RdBu", vmin=-lim if quantity == "margin" else None,
                           vmax=lim if quantity == "margin" else None, shading="auto")
        if quantity == "margin" and s.min() < 0 < s.max():
            ax.contour(a, b, s, levels=[0.0], colors="k", linewidths=1.2)
        ax.set_title(label)
        ax.set_xlabel("a (adversarial direction)")
        ax.set_ylabel("b (random direction)")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def plot_psi_vs_accuracy(psi_scores, acc_scores, *, title: str = ""):
    """Figure: psi (log scale) against PGD accuracy, one point per model and seed, colour =
    regime, marker = architecture."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = psi_scores.merge(acc_scores, on=["arch", "regime", "seed"])
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    sns.scatterplot(data=df, x="accuracy", y="score", hue="regime", style="arch", s=60, ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("PGD accuracy")
    ax.set_ylabel("psi (mean max KL; lower = more robust)")
    ax.set_title(title)
    ax.legend(fontsize="x-small", loc="best")
    fig.tight_layout()
    return fig


def plot_ranking_stability(psi_settings, acc_settings, *, seed: int):
    """Figure: the rank of each model (1 = most robust) under every psi setting (left) and
    every adversarial-accuracy setting (right), for one seed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, df, cols, col, asc, name in (
            (axes[0], psi_settings, ["eps", "restarts", "n_points"], "score", True, "psi"),
            (axes[1], acc_settings, ["attack", "eps", "steps"], "accuracy", False,
             "adversarial accuracy")):
        g = df[df.seed == seed].copy()
        g["model"] = g.arch + "/" + g.regime
        short = {"eps": "eps", "restarts": "r", "n_points": "n", "attack": "", "steps": "k"}
        g["setting"] = g[cols].apply(lambda r, cols=cols, short=short: " ".join(
            f"{short[c]}={r[c]:g}" if short[c] else str(r[c]) for c in cols), axis=1)
        wide = g.pivot_table(index="setting", columns="model", values=col, aggfunc="mean")
        order = list(dict.fromkeys(g["setting"]))
        ranks = wide.loc[order].rank(axis=1, ascending=asc, method="average")
        for m in ranks.columns:
            ax.plot(range(len(order)), ranks[m].to_numpy(), marker="o", ms=3, label=m)
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(order, rotation=70, fontsize="x-small")
        ax.set_title(f"ranking by {name} (seed {seed})")
        ax.invert_yaxis()
    axes[0].set_ylabel("rank (1 = most robust)")
    axes[1].legend(fontsize="x-small", bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


def plot_crossing_steps(crossings, *, max_step: float):
    """Figure: distribution of margin-crossing steps (censored at ``max_step``) along d_adv and
    random directions, per architecture and regime."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = crossings.copy()
    df["step"] = np.minimum(df["step"].to_numpy(), max_step)
    archs = list(df.arch.unique())
    fig, axes = plt.subplots(1, len(archs), figsize=(4.6 * len(archs), 3.6), sharey=True,
                             squeeze=False)
    for ax, arch in zip(axes[0], archs, strict=True):
        sns.boxplot(data=df[df.arch == arch], x="regime", y="step", hue="direction", ax=ax,
                    fliersize=1)
        ax.set_yscale("log")
        ax.set_title(arch)
        ax.set_ylabel("step where margin reaches 0")
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return fig
