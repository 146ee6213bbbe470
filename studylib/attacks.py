"""L-infinity attacks: FGSM, PGD with random start and restarts, a generic projected-gradient
maximiser of any per-example objective, and EOT-PGD for stochastic (Bayesian) models.

Inputs are images in [0, 1]; every adversarial input is projected onto the eps-ball around the
clean input and clipped to [0, 1]. Written here rather than taken from torchattacks because the
studies need one maximiser that accepts *any* objective (the KL robustness metric of study 01,
the softmax-distance of study 05, expectation over posterior samples in study 03); the tests
check PGD against torchattacks on the same model and inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Objective = Callable[[torch.Tensor], torch.Tensor]


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return eps


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, clip: tuple[float, float]) -> torch.Tensor:
    x_adv = torch.max(torch.min(x_adv, x + eps), x - eps)
    return x_adv.clamp(*clip)


def _input_grad(objective_fn: Objective, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        values = objective_fn(x_adv)
        (grad,) = torch.autograd.grad(values.sum(), x_adv)
    return values.detach(), grad.detach()


def projected_gradient_ascent(objective_fn: Objective, x: torch.Tensor, eps: float, *,
                              steps: int = 10, step_size: float | None = None,
                              restarts: int = 1, random_start: bool = True, seed: int = 0,
                              clip: tuple[float, float] = (0.0, 1.0),
                              keep_best: bool = True) -> torch.Tensor:
    """Maximise ``objective_fn`` over the L-inf ball of radius ``eps`` around ``x``.

    Signed-gradient ascent (the PGD of Madry et al.) with optional uniform random start and
    restarts; each example keeps the iterate with the highest objective seen over all restarts
    (``keep_best=True``) or the final iterate of its best restart (``keep_best=False``).

    Args:
        objective_fn: maps a batch ``x_adv`` (N, ...) to per-example values (N,) to maximise;
            must be differentiable in ``x_adv``.
        x: clean inputs (N, ...).
        eps: L-inf radius (>= 0; 0 returns ``x``).
        steps: ascent steps per restart (default 10).
        step_size: default ``2.5 * eps / steps``.
        restarts: independent starts (default 1).
        random_start: start uniformly inside the ball (default True); when False the first
            restart starts at ``x`` and later restarts start at random.
        seed: seeds the random starts (the same seed gives the same result).
        clip: valid input range (default [0, 1]).
        keep_best: keep the best iterate seen, not only the last (default True).

    Returns:
        The adversarial inputs (N, ...), detached.
    """
    eps = _check_eps(eps)
    x = x.detach()
    if eps == 0 or steps < 1:
        return x.clone()
    step_size = float(step_size) if step_size is not None else 2.5 * eps / steps
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    best_x = x.clone()
    best_val = torch.full((x.shape[0],), -float("inf"), device=x.device)

    def consider(candidate: torch.Tensor, values: torch.Tensor) -> None:
        better = values > best_val
        best_val[better] = values[better]
        best_x[better] = candidate[better]

    for r in range(max(1, restarts)):
        if random_start or r > 0:
            noise = (torch.rand(x.shape, generator=gen) * 2 - 1).to(x.device, x.dtype) * eps
            x_adv = _project(x + noise, x, eps, clip)
        else:
            x_adv = x.clone()
        for _ in range(steps):
            values, grad = _input_grad(objective_fn, x_adv)
            if keep_best:
                consider(x_adv, values)
            x_adv = _project(x_adv + step_size * grad.sign(), x, eps, clip)
        with torch.no_grad():
            consider(x_adv, objective_fn(x_adv).detach())
    return best_x.detach()


def _ce_per_example(model: nn.Module, y: torch.Tensor) -> Objective:
    return lambda xa: F.cross_entropy(model(xa), y, reduction="none")


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example ``max_{i != y} Z_i - Z_y`` (positive = misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], -float("inf"))
    return other.max(1).values - true


OBJECTIVES = ("ce", "margin")


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
         clip: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Fast gradient sign method: ``clip(x + eps * sign(grad_x CE(model(x), y)))``."""
    eps = _check_eps(eps)
    if eps == 0:
        return x.detach().clone()
    _, grad = _input_grad(_ce_per_example(model, y), x)
    return (x.detach() + eps * grad.sign()).clamp(*clip)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = 10,
        step_size: float | None = None, restarts: int = 1, random_start: bool = True,
        seed: int = 0, objective: str = "ce", clip: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Untargeted L-inf PGD on ``model`` (cross-entropy or margin objective).

    Per example, among restarts, an iterate that misclassifies is preferred; otherwise the one
    with the highest objective. Arguments as in :func:`projected_gradient_ascent`.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")

    def with_success_bonus(xa: torch.Tensor) -> torch.Tensor:
        logits = model(xa)
        base = (F.cross_entropy(logits, y, reduction="none") if objective == "ce"
                else margin_loss(logits, y))
        # a large bonus for misclassified iterates makes "keep best" prefer successes; it is
        # constant within a region, so it does not change the gradient direction
        return base + 1e6 * (logits.argmax(1) != y).float()

    return projected_gradient_ascent(with_success_bonus, x, eps, steps=steps,
                                     step_size=step_size, restarts=restarts,
                                     random_start=random_start, seed=seed, clip=clip,
                                     keep_best=True)


def eot_pgd(forward_samples: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor,
            y: torch.Tensor, eps: float, *, steps: int = 10, n_samples: int = 10,
            step_size: float | None = None, random_start: bool = True, seed: int = 0,
            loss: str = "expected_ce", clip: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """PGD with Expectation over Transformation for a stochastic model.

    Args:
        forward_samples: ``forward_samples(x, n)`` returns logits of ``n`` freshly drawn
            posterior samples, shape (n, N, K). A deterministic model is
            ``lambda x, n: model(x).expand(n, -1, -1)``, for which EOT-PGD equals PGD.
        n_samples: posterior samples per step (gradient averaged over them), default 10.
        loss: ``"expected_ce"`` (mean over samples of the cross-entropy: the averaged gradient)
            or ``"predictive_ce"`` (cross-entropy of the mean softmax).
        Others as in :func:`projected_gradient_ascent`; returns the final iterate (the
        objective is random, so "best seen" would favour lucky draws).
    """
    if loss not in ("expected_ce", "predictive_ce"):
        raise ValueError(f"loss must be 'expected_ce' or 'predictive_ce', got {loss!r}")

    def objective(xa: torch.Tensor) -> torch.Tensor:
        logits = forward_samples(xa, n_samples)  # (S, N, K)
        if loss == "expected_ce":
            logp = F.log_softmax(logits, dim=-1)
            return -logp.gather(2, y[None, :, None].expand(logits.shape[0], -1, 1)).squeeze(2).mean(0)
        probs = F.softmax(logits, dim=-1).mean(0)
        return F.nll_loss(torch.log(probs.clamp_min(1e-12)), y, reduction="none")

    return projected_gradient_ascent(objective, x, eps, steps=steps, step_size=step_size,
                                     restarts=1, random_start=random_start, seed=seed,
                                     clip=clip, keep_best=False)


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (model(x).argmax(1) == y).float()


def adversarial_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str,
                         eps: float, *, device: str | torch.device = "cpu",
                         batch_size: int = 256, **kwargs) -> float:
    """Accuracy of ``model`` on ``attack`` (``"fgsm"`` | ``"pgd"``) examples, in batches."""
    attacks = {"fgsm": fgsm, "pgd": pgd}
    if attack not in attacks:
        raise ValueError(f"attack must be one of {sorted(attacks)}, got {attack!r}")
    model.eval()
    correct = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        xa = attacks[attack](model, xb, yb, eps, **kwargs)
        correct.append(_accuracy(model, xa, yb).cpu())
    return float(torch.cat(correct).mean()) if correct else float("nan")
