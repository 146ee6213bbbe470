"""Statistical verification of probabilistic robustness for Bayesian neural networks.

Reproduces the estimation framework of Cardelli, Kwiatkowska, Laurenti, Paoletti, Patane and
Wicker, "Statistical Guarantees for the Robustness of Bayesian Neural Networks" (IJCAI 2019,
arXiv 1903.01980). For a test point ``x*``, a box ``T = {x : ||x - x*||_inf <= eps}``
(intersected with the input domain ``[0, 1]^d``) and an output threshold ``delta_out``,

    p = Pr_{w ~ posterior}[ exists x in T : ||softmax_w(x*) - softmax_w(x)||_2 > delta_out ].

Every sampled network ``w`` is one Bernoulli trial. This module works on ANY collection of
sampled deterministic networks (:class:`NetworkSet`), so it does not care how the posterior was
obtained (HMC/NUTS, variational inference, MC dropout masks, or a list of plain torch modules).

Pieces:

- sample sizes: :func:`chernoff_sample_size` (Chernoff-Hoeffding), :func:`clopper_pearson`,
  :func:`massart_h`, :func:`massart_sample_size` and the sequential scheme of Jegourel, Sun and
  Dong (:func:`sequential_stopping_index`, :func:`estimate_probability`);
- per-network Bernoulli outcomes: :func:`attack_outcomes` (FGSM / PGD, a *lower* bound on p,
  since an attack may miss) and :func:`ibp_outcomes` (interval bound propagation, a sound
  certificate, so an *upper* bound on p);
- :func:`softmax_interval` and :func:`softmax_l2_change_bound` turn logit intervals into a sound
  bound on the softmax L2 change.

IBP and the vectorised forward over many networks are written here (not taken from a library)
because they must run on a *stack* of sampled weight sets at once (``torch.func.vmap`` over the
sample dimension), including MC-dropout masks that stay fixed over ``T``; auto_LiRPA-style tools
bound one network at a time and are not among the project's dependencies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import special
from torch import nn

from ..models import eval_mode

__all__ = [
    "chernoff_sample_size",
    "clopper_pearson",
    "massart_h",
    "massart_min_h",
    "massart_sample_size",
    "sequential_halting_bounds",
    "sequential_stopping_index",
    "RobustnessEstimate",
    "estimate_probability",
    "NetworkSet",
    "softmax_interval",
    "softmax_l2_change_bound",
    "input_box",
    "softmax_divergence",
    "attack_outcomes",
    "ibp_outcomes",
    "bernoulli_outcomes",
    "resampled_coverage",
    "network_set_from_dropout",
    "network_set_from_posterior",
]

# ============================================================================ sample sizes


def _check_err_conf(err: float, conf: float) -> None:
    if not 0 < err < 1:
        raise ValueError(f"err must be in (0, 1), got {err}")
    if not 0 < conf < 1:
        raise ValueError(f"conf must be in (0, 1), got {conf}")


def chernoff_sample_size(err: float, conf: float) -> int:
    """Chernoff-Hoeffding sample size ``n = ceil(ln(2 / conf) / (2 err^2))``.

    With ``n`` i.i.d. Bernoulli(p) samples, ``Pr(|p_hat - p| > err) <= 2 exp(-2 n err^2) <= conf``
    whatever ``p`` is.

    Args:
        err: absolute error, in (0, 1).
        conf: allowed failure probability, in (0, 1).

    Example:
        >>> chernoff_sample_size(0.05, 0.05)
        738
    """
    _check_err_conf(err, conf)
    return int(math.ceil(math.log(2.0 / conf) / (2.0 * err**2)))


def clopper_pearson(k: int | np.ndarray, n: int | np.ndarray, alpha: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) two-sided ``1 - alpha`` confidence interval for a proportion.

    ``lo = Beta(alpha/2; k, n-k+1)`` quantile (0 when ``k = 0``), ``hi = Beta(1-alpha/2; k+1, n-k)``
    quantile (1 when ``k = n``). Vectorised over ``k`` and ``n`` (numpy broadcasting).

    Args:
        k: successes (int or array), ``0 <= k <= n``.
        n: trials (int or array), ``n >= 1``.
        alpha: 1 - coverage, in (0, 1).

    Returns:
        ``(lo, hi)`` as float arrays (0-d for scalar input).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise ValueError("clopper_pearson needs 0 <= k <= n and n >= 1")
    # Beta quantiles via the inverse regularised incomplete beta function (what
    # scipy.stats.beta.ppf computes, without its per-call overhead)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, special.betaincinv(np.maximum(k, 1e-300), n - k + 1, alpha / 2), 0.0)
        hi = np.where(k < n, special.betaincinv(k + 1, np.maximum(n - k, 1e-300), 1 - alpha / 2),
                      1.0)
    return lo, hi


def massart_h(p: float | np.ndarray, err: float) -> np.ndarray:
    """Massart's function ``h_a(p, err)`` for the absolute-error bound.

    ``Pr(|p_hat - p| > err) <= 2 exp(-n err^2 h_a(p, err))`` with

    - ``h_a(p, err) = 9 / (2 (3p + err) (3(1 - p) - err))`` for ``p <= 1/2``,
    - ``h_a(p, err) = h_a(1 - p, err)`` for ``p > 1/2``.

    For ``p <= 1/2`` this is the smaller of the two one-sided exponents (upper and lower tail),
    so the two-sided bound with the factor 2 holds. Its minimum over ``p`` is exactly 2 (at
    ``p = 1/2 -+ err/3``), where the bound becomes Chernoff-Hoeffding's.
    """
    p = np.asarray(p, dtype=float)
    q = np.where(p <= 0.5, p, 1.0 - p)
    return 9.0 / (2.0 * (3.0 * q + err) * (3.0 * (1.0 - q) - err))


def massart_min_h(lo: float | np.ndarray, hi: float | np.ndarray, err: float) -> np.ndarray:
    """Minimum of :func:`massart_h` over ``p`` in ``[lo, hi]`` (the worst case in an interval).

    ``h_a(., err)`` decreases on ``[0, 1/2 - err/3]``, increases on ``[1/2 - err/3, 1/2]`` and is
    symmetric about 1/2, so the minimum is at an endpoint or at ``1/2 -+ err/3`` when inside.
    (The authors' code uses the endpoint nearest 1/2, which is the same except for intervals
    ending within ``err/3`` of 1/2, where this function is the conservative one.)
    """
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    h = np.minimum(massart_h(lo, err), massart_h(hi, err))
    for c in (0.5 - err / 3.0, 0.5 + err / 3.0):
        inside = (lo <= c) & (c <= hi)
        h = np.where(inside, np.minimum(h, massart_h(c, err)), h)
    return h


def massart_sample_size(lo: float | np.ndarray, hi: float | np.ndarray, err: float,
                        conf_massart: float) -> np.ndarray:
    """Massart sample size ``ceil(ln(2 / conf_massart) / (min_{p in [lo,hi]} h_a(p, err) err^2))``."""
    h = massart_min_h(lo, hi, err)
    return np.ceil(math.log(2.0 / conf_massart) / (h * err**2)).astype(np.int64)


def _alpha_default(conf: float, alpha: float | None) -> float:
    a = conf / 2.0 if alpha is None else float(alpha)
    if not 0 < a < conf:
        raise ValueError(f"alpha (Clopper-Pearson level) must be in (0, conf={conf}), got {a}")
    return a


def sequential_halting_bounds(outcomes: Sequence[int] | np.ndarray, err: float, conf: float,
                              alpha: float | None = None, *, start: int = 0,
                              successes_before: int = 0) -> np.ndarray:
    """The sequential scheme's halting bound ``min(N_M(m), N_CH)`` after each sample.

    See :func:`sequential_stopping_index` for the rule. Entry ``i`` is the bound computed from
    the first ``m = start + i + 1`` outcomes, where ``outcomes`` continues a stream of which
    ``start`` samples with ``successes_before`` successes were seen already (default: a fresh
    stream). Returns an int array of the same length as ``outcomes``.
    """
    _check_err_conf(err, conf)
    a = _alpha_default(conf, alpha)
    x = np.asarray(outcomes, dtype=float).ravel()
    if x.size == 0:
        return np.zeros(0, dtype=np.int64)
    if np.any((x != 0) & (x != 1)):
        raise ValueError("outcomes must be 0/1 (Bernoulli)")
    m = np.arange(start + 1, start + x.size + 1)
    k = np.cumsum(x) + successes_before
    lo, hi = clopper_pearson(k, m, a)
    n_m = massart_sample_size(lo, hi, err, conf - a)
    return np.minimum(n_m, chernoff_sample_size(err, conf))


def sequential_stopping_index(outcomes: Sequence[int] | np.ndarray, err: float, conf: float,
                              alpha: float | None = None) -> int | None:
    """Number of samples at which the sequential Massart scheme stops (Jegourel, Sun, Dong).

    The rule, evaluated after each Bernoulli sample ``m = 1, 2, ...`` with ``k`` successes:

    1. ``[a_m, b_m]`` = Clopper-Pearson interval for ``p`` with coverage ``1 - alpha``;
    2. ``N_M(m) = ceil( ln(2 / (conf - alpha)) / (err^2 * min_{p in [a_m, b_m]} h_a(p, err)) )``,
       the Massart sample size at the least favourable ``p`` the interval allows
       (:func:`massart_h`, :func:`massart_min_h`);
    3. stop at the first ``m`` with ``m >= min(N_M(m), N_CH)``, ``N_CH`` the Chernoff size.

    The failure budget ``conf`` is split between the interval (``alpha``) and Massart's bound
    (``conf - alpha``), which is what gives ``Pr(|p_hat - p| > err) <= conf``. By construction
    the scheme never uses more than ``N_CH`` samples. (The authors' public code uses
    ``ln(1 / (conf - alpha))``; the two-sided bound has the factor 2 used here, slightly more
    conservative.)

    Args:
        outcomes: the Bernoulli outcomes in sampling order (0/1 array).
        err, conf: the guarantee ``Pr(|p_hat - p| > err) <= conf``.
        alpha: Clopper-Pearson level, in ``(0, conf)``; default ``conf / 2``.

    Returns:
        the stopping sample count ``m`` (1-based), or ``None`` when ``outcomes`` ends first.
    """
    bounds = sequential_halting_bounds(outcomes, err, conf, alpha)
    m = np.arange(1, bounds.size + 1)
    hit = np.nonzero(m >= bounds)[0]
    return int(hit[0] + 1) if hit.size else None


@dataclass
class RobustnessEstimate:
    """A probability estimate with its a-priori guarantee ``Pr(|p_hat - p| > err) <= conf``.

    Attributes:
        p_hat: the estimate (fraction of positive outcomes among the samples used).
        n_used: samples used; n_chernoff: the Chernoff-Hoeffding size for (err, conf).
        err, conf: the guarantee; method: ``"chernoff"`` or ``"sequential"``;
        alpha: Clopper-Pearson level of the sequential scheme (``None`` for Chernoff).
    """

    p_hat: float
    n_used: int
    n_chernoff: int
    err: float
    conf: float
    method: str
    alpha: float | None = None

    @property
    def guarantee(self) -> str:
        return f"Pr(|p_hat - p| > {self.err:g}) <= {self.conf:g}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["guarantee"] = self.guarantee
        return d


_METHODS = ("chernoff", "sequential")


def estimate_probability(outcomes: Callable[[int, int], Any] | Sequence[int] | np.ndarray, *,
                         err: float, conf: float, method: str = "sequential",
                         alpha: float | None = None, batch_size: int = 128
                         ) -> RobustnessEstimate:
    """Estimate ``p`` from Bernoulli outcomes with the a-priori guarantee (err, conf).

    Args:
        outcomes: either a 0/1 array of outcomes in sampling order (it must be long enough:
            ``N_CH`` entries for Chernoff, and as many as the sequential rule needs, at most
            ``N_CH``), or a callable ``draw(start, stop) -> 0/1 array`` giving the outcomes of
            samples ``start .. stop-1`` (called in batches of ``batch_size`` so expensive
            outcomes are computed lazily; the result equals the one-at-a-time rule, since the
            stopping rule is evaluated after each single sample).
        err, conf: guarantee ``Pr(|p_hat - p| > err) <= conf``.
        method: ``"chernoff"`` (fixed ``N_CH`` samples) or ``"sequential"`` (Massart, default).
        alpha: Clopper-Pearson level of the sequential scheme (default ``conf / 2``).
        batch_size: batch of the lazy draw (default 128).

    Example:
        >>> est = estimate_probability(np.zeros(738), err=0.05, conf=0.05, method="chernoff")
        >>> est.p_hat, est.n_used
        (0.0, 738)
    """
    _check_err_conf(err, conf)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    n_ch = chernoff_sample_size(err, conf)
    a = _alpha_default(conf, alpha) if method == "sequential" else None
    if callable(outcomes):
        draw = outcomes
    else:
        arr = np.asarray(outcomes, dtype=float).ravel()

        def draw(start: int, stop: int) -> np.ndarray:
            return arr[start:stop]

    got: list[np.ndarray] = []
    total, successes = 0, 0
    while total < n_ch:
        stop = n_ch if method == "chernoff" or not callable(outcomes) else \
            min(total + batch_size, n_ch)
        chunk = np.asarray(draw(total, stop), dtype=float).ravel()[: stop - total]
        if chunk.size == 0:
            break
        if np.any((chunk != 0) & (chunk != 1)):
            raise ValueError("outcomes must be 0/1 (Bernoulli)")
        if method == "sequential":
            bounds = sequential_halting_bounds(chunk, err, conf, a, start=total,
                                               successes_before=successes)
            m = np.arange(total + 1, total + chunk.size + 1)
            hit = np.nonzero(m >= bounds)[0]
            if hit.size:
                idx = int(hit[0]) + 1
                got.append(chunk[:idx])
                x = np.concatenate(got)
                return RobustnessEstimate(float(x.mean()), int(x.size), n_ch, err, conf,
                                          method, a)
        got.append(chunk)
        total += chunk.size
        successes += int(chunk.sum())
    x = np.concatenate(got) if got else np.zeros(0)
    if x.size < n_ch:
        raise ValueError(f"only {x.size} outcomes available but the guarantee (err={err}, "
                         f"conf={conf}) needs up to {n_ch}; draw more posterior samples or "
                         f"relax err/conf")
    return RobustnessEstimate(float(x.mean()), n_ch, n_ch, err, conf, method, a)


def resampled_coverage(pool: Sequence[int] | np.ndarray, *, err: float, conf: float,
                       method: str = "chernoff", repetitions: int = 200, alpha: float | None = None,
                       seed: int = 0) -> dict[str, Any]:
    """Empirical check of the guarantee by resampling a large pool of Bernoulli outcomes.

    The reference ``p`` is the mean of the whole pool (one outcome per posterior sample).
    Each repetition draws its samples *with replacement* from the pool with its own generator
    (``numpy.random.default_rng([seed, r])``), so, given the pool, the repetitions are
    independent and every draw is exactly Bernoulli(p_pool): the guarantee applies exactly to
    ``p_pool``. (The pool itself should hold i.i.d. posterior samples and be >= 20x the sample
    size, so ``p_pool`` is itself within about ``0.1 err`` of the posterior ``p``.)

    Returns:
        dict with ``p_pool``, ``pool_size``, ``repetitions``, ``failures`` (count of
        ``|p_hat - p_pool| > err``), ``failure_rate`` and its Clopper-Pearson 95% interval
        ``failure_ci95``, ``n_used_mean`` / ``n_used_min`` / ``n_used_max``, ``n_chernoff``.
    """
    x = np.asarray(pool, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("pool is empty")
    if repetitions < 1:
        raise ValueError(f"repetitions must be >= 1, got {repetitions}")
    p_pool = float(x.mean())
    n_ch = chernoff_sample_size(err, conf)
    fails, used = 0, []
    for r in range(int(repetitions)):
        rng = np.random.default_rng([int(seed), r])
        draws = x[rng.integers(0, x.size, size=n_ch)]
        est = estimate_probability(draws, err=err, conf=conf, method=method, alpha=alpha)
        fails += int(abs(est.p_hat - p_pool) > err)
        used.append(est.n_used)
    lo, hi = clopper_pearson(fails, repetitions, 0.05)
    return {
        "p_pool": p_pool, "pool_size": int(x.size), "repetitions": int(repetitions),
        "failures": fails, "failure_rate": fails / repetitions,
        "failure_ci95": [float(lo), float(hi)], "n_used_mean": float(np.mean(used)),
        "n_used_min": int(np.min(used)), "n_used_max": int(np.max(used)), "n_chernoff": n_ch,
        "method": method,
    }


# ============================================================================ networks

_SUPPORTED = (nn.Linear, nn.Conv2d, nn.ReLU, nn.Flatten, nn.Dropout, nn.Identity, nn.MaxPool2d,
              nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Tanh,
              nn.Sigmoid)


def _leaf_layers(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    children = list(module.named_children())
    if not children:
        return [(prefix.rstrip("."), module)]
    out: list[tuple[str, nn.Module]] = []
    for name, child in children:
        out += _leaf_layers(child, f"{prefix}{name}.")
    return out


class NetworkSet:
    """``S`` deterministic networks of one architecture, evaluated together (vectorised).

    The architecture (``template``) must compute the composition of its leaf layers in
    registration order (true of ``nn.Sequential`` stacks and of studylib's MLP / SmallCNN /
    LeNet); this is checked numerically at construction. Supported layers: Linear, Conv2d,
    ReLU, Flatten, Dropout (identity, or a fixed per-network mask), Identity, MaxPool2d,
    AvgPool2d, AdaptiveAvgPool2d, BatchNorm (eval statistics), Tanh, Sigmoid.

    Args:
        template: a module of the architecture (its own weights are not used).
        params: ``{name: Tensor(S, *shape)}`` for every parameter of ``template`` (names as in
            ``template.named_parameters()``).
        buffers: same for buffers (BatchNorm running statistics); default: the template's own,
            shared by all networks.
        masks: ``{dropout_layer_name: Tensor(S, *feature_shape)}`` multiplicative masks (already
            scaled by ``1 / (1 - p)``) that make an MC-dropout sample a deterministic network;
            dropout layers without a mask are the identity.

    Example:
        >>> nets = NetworkSet.from_modules([nn.Sequential(nn.Linear(4, 2)) for _ in range(3)])
        >>> nets(torch.zeros(5, 4)).shape
        torch.Size([3, 5, 2])
    """

    def __init__(self, template: nn.Module, params: dict[str, torch.Tensor],
                 buffers: dict[str, torch.Tensor] | None = None,
                 masks: dict[str, torch.Tensor] | None = None) -> None:
        self.template = template.eval()
        self.layers = _leaf_layers(template)
        for name, layer in self.layers:
            if not isinstance(layer, _SUPPORTED):
                raise ValueError(f"layer {name!r} ({type(layer).__name__}) is not supported; "
                                 f"supported: {[c.__name__ for c in _SUPPORTED]}")
        names = [n for n, _ in template.named_parameters()]
        missing = sorted(set(names) - set(params))
        if missing:
            raise ValueError(f"params lacks {missing}; expected {names}")
        sizes = {int(v.shape[0]) for v in params.values()}
        if len(sizes) != 1:
            raise ValueError(f"all params need the same leading sample size, got {sorted(sizes)}")
        self.size = sizes.pop()
        self.params = {n: params[n] for n in names}
        self.shared_buffers = {n: b for n, b in template.named_buffers()}
        self.buffers = dict(buffers or {})
        self.masks = dict(masks or {})
        dropout_names = {n for n, m in self.layers if isinstance(m, nn.Dropout)}
        bad = sorted(set(self.masks) - dropout_names)
        if bad:
            raise ValueError(f"masks given for non-dropout layers {bad}; dropout layers: "
                             f"{sorted(dropout_names)}")
        for n, v in list(self.buffers.items()) + list(self.masks.items()):
            if int(v.shape[0]) != self.size:
                raise ValueError(f"{n!r} has {v.shape[0]} samples, params have {self.size}")
        self._check_composition()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_modules(cls, modules: Sequence[nn.Module]) -> NetworkSet:
        """Stack a list of same-architecture modules (their current weights and buffers)."""
        if not modules:
            raise ValueError("modules is empty")
        params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in modules])
                  for n, _ in modules[0].named_parameters()}
        buffers = {n: torch.stack([dict(m.named_buffers())[n].detach() for m in modules])
                   for n, b in modules[0].named_buffers() if b.is_floating_point()}
        return cls(modules[0], params, buffers)

    def __len__(self) -> int:
        return self.size

    @property
    def device(self) -> torch.device:
        """Where the networks' weights live (inputs are moved there)."""
        return next(iter(self.params.values())).device

    def subset(self, index: Sequence[int] | torch.Tensor | slice) -> NetworkSet:
        """The networks at ``index`` (a slice, index list or tensor) as a new set."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long)
        return NetworkSet(self.template, {n: v[index] for n, v in self.params.items()},
                          {n: v[index] for n, v in self.buffers.items()},
                          {n: v[index] for n, v in self.masks.items()})

    def to(self, device: torch.device | str) -> NetworkSet:
        mv = lambda d: {n: v.to(device) for n, v in d.items()}  # noqa: E731
        out = NetworkSet.__new__(NetworkSet)
        out.__dict__.update(self.__dict__)
        out.template = self.template.to(device)
        out.params, out.buffers, out.masks = mv(self.params), mv(self.buffers), mv(self.masks)
        out.shared_buffers = mv(self.shared_buffers)
        return out

    # ------------------------------------------------------------------ evaluation
    def _get(self, store: dict, name: str, key: str):
        full = f"{name}.{key}" if name else key
        if full in store:
            return store[full]
        return self.shared_buffers.get(full)

    def _layer(self, name: str, layer: nn.Module, p: dict, b: dict, m: dict, x: torch.Tensor,
               *, interval: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Apply one layer to ``x`` (point mode) or to ``interval = (lo, hi)`` (IBP mode)."""
        if isinstance(layer, nn.Linear):
            w, bias = self._get(p, name, "weight"), self._get(p, name, "bias")
            if interval is None:
                if x.dim() > 2:
                    x = x.flatten(1)
                return F.linear(x, w, bias)
            lo, hi = interval
            if lo.dim() > 2:
                lo, hi = lo.flatten(1), hi.flatten(1)
            c, r = (hi + lo) / 2, (hi - lo) / 2
            c, r = F.linear(c, w, bias), F.linear(r, w.abs())
            return c - r, c + r
        if isinstance(layer, nn.Conv2d):
            if layer.padding_mode != "zeros":
                raise ValueError(f"conv {name!r}: only zero padding is supported")
            w, bias = self._get(p, name, "weight"), self._get(p, name, "bias")
            kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                      groups=layer.groups)
            if interval is None:
                return F.conv2d(x, w, bias, **kw)
            lo, hi = interval
            c, r = (hi + lo) / 2, (hi - lo) / 2
            c, r = F.conv2d(c, w, bias, **kw), F.conv2d(r, w.abs(), None, **kw)
            return c - r, c + r
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            mean, var = self._get(b, name, "running_mean"), self._get(b, name, "running_var")
            w = self._get(p, name, "weight")
            bias = self._get(p, name, "bias")
            scale = torch.rsqrt(var + layer.eps)
            if w is not None:
                scale = scale * w
            shift = -mean * scale + (bias if bias is not None else 0.0)
            shape = (1, -1) + (1,) * ((x if interval is None else interval[0]).dim() - 2)
            scale, shift = scale.reshape(shape), shift.reshape(shape)
            if interval is None:
                return x * scale + shift
            lo, hi = interval
            c, r = (hi + lo) / 2, (hi - lo) / 2
            return c * scale + shift - r * scale.abs(), c * scale + shift + r * scale.abs()
        if isinstance(layer, nn.Dropout):
            mask = m.get(name)
            if mask is None:
                return x if interval is None else interval
            if interval is None:
                return x * mask
            return interval[0] * mask, interval[1] * mask  # mask >= 0 keeps the order
        if isinstance(layer, nn.Flatten):
            fn = lambda t: t.flatten(layer.start_dim, layer.end_dim)  # noqa: E731
        elif isinstance(layer, (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                                nn.Identity, nn.Tanh, nn.Sigmoid)):
            fn = layer  # monotone non-decreasing element-wise / positive averaging: apply to ends
        else:  # pragma: no cover - guarded in __init__
            raise ValueError(f"unsupported layer {name!r}")
        if interval is None:
            return fn(x)
        return fn(interval[0]), fn(interval[1])

    def _single_forward(self, p: dict, b: dict, m: dict, x: torch.Tensor) -> torch.Tensor:
        for name, layer in self.layers:
            x = self._layer(name, layer, p, b, m, x)
        return x

    def _single_ibp(self, p: dict, b: dict, m: dict, lo: torch.Tensor, hi: torch.Tensor):
        iv = (lo, hi)
        for name, layer in self.layers:
            iv = self._layer(name, layer, p, b, m, lo, interval=iv)
        return iv

    def _check_composition(self) -> None:
        shape = _infer_input_shape(self.template, self.layers)
        if shape is None:
            return
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            x = torch.rand(2, *shape).to(self.device)  # drawn on the CPU: same probe anywhere
            pick = {n: v[0] for n, v in self.params.items()}
            bufs = {n: v[0] for n, v in self.buffers.items()}
            mine = self._single_forward(pick, bufs, {}, x)
            ref = torch.func.functional_call(self.template, {**pick, **bufs}, (x,))
        if mine.shape != ref.shape or not torch.allclose(mine, ref, atol=1e-4, rtol=1e-4):
            raise ValueError("the template's forward is not the composition of its leaf layers "
                             "in registration order; NetworkSet cannot evaluate it")

    def forward(self, x: torch.Tensor, *, paired: bool = False) -> torch.Tensor:
        """Logits of every network.

        Args:
            x: ``(B, *input_shape)`` inputs given to every network (result ``(S, B, K)``), or,
                with ``paired=True``, ``(S, B, *input_shape)`` where network ``s`` gets ``x[s]``
                (result ``(S, B, K)``).
        """
        if paired and x.shape[0] != self.size:
            raise ValueError(f"paired input needs {self.size} rows, got {x.shape[0]}")
        fn = torch.func.vmap(self._single_forward, in_dims=(0, 0, 0, 0 if paired else None))
        return fn(self.params, self.buffers, self.masks, x)

    __call__ = forward

    def paired_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Network ``s`` on the single input ``x[s]``: ``(S, *input_shape) -> (S, K)``."""
        return self.forward(x.unsqueeze(1), paired=True).squeeze(1)

    def interval_bounds(self, lower: torch.Tensor, upper: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Interval bound propagation of the input box ``[lower, upper]`` through every network.

        Args:
            lower, upper: ``(B, *input_shape)`` box corners (the same box for every network).

        Returns:
            ``(logit_lo, logit_hi)``, each ``(S, B, K)``: every network's logits at every point
            of the box lie between them (sound for every supported layer: affine layers use the
            centre/radius form ``W c + b -+ |W| r``, monotone layers map the two ends).
        """
        if lower.shape != upper.shape:
            raise ValueError(f"lower {tuple(lower.shape)} and upper {tuple(upper.shape)} differ")
        if torch.any(lower > upper):
            raise ValueError("lower must be <= upper element-wise")
        fn = torch.func.vmap(self._single_ibp, in_dims=(0, 0, 0, None, None))
        return fn(self.params, self.buffers, self.masks, lower, upper)


def _infer_input_shape(template: nn.Module, layers: list[tuple[str, nn.Module]]
                       ) -> tuple[int, ...] | None:
    cfg = getattr(template, "config", None) or {}
    if "in_features" in cfg:
        return (int(cfg["in_features"]),)
    if "in_channels" in cfg and "image_size" in cfg:
        return (int(cfg["in_channels"]), int(cfg["image_size"]), int(cfg["image_size"]))
    explicit = getattr(template, "input_shape", None)
    if explicit is not None:
        return tuple(int(s) for s in explicit)
    for _, layer in layers:
        if isinstance(layer, nn.Linear):
            return (layer.in_features,)
        if isinstance(layer, nn.Conv2d):
            return None  # spatial size unknown
    return None


# ============================================================================ softmax bounds


def softmax_interval(logit_lo: torch.Tensor, logit_hi: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sound bounds on ``softmax(z)`` over the logit box ``z in [logit_lo, logit_hi]``.

    ``softmax_i`` increases in ``z_i`` and decreases in every other ``z_j``, so over the box
    ``s_i >= sigmoid(lo_i - logsumexp_{j != i} hi_j)`` and ``s_i <= sigmoid(hi_i -
    logsumexp_{j != i} lo_j)`` (both attained at box corners, computed in log-space).
    Works on the last dimension; any leading dimensions.
    """
    k = logit_lo.shape[-1]
    if k < 2:
        raise ValueError("softmax bounds need at least 2 classes")
    eye = torch.eye(k, dtype=torch.bool, device=logit_lo.device)
    neg_inf = torch.tensor(float("-inf"), dtype=logit_lo.dtype, device=logit_lo.device)
    others_hi = torch.where(eye, neg_inf, logit_hi.unsqueeze(-2)).logsumexp(-1)
    others_lo = torch.where(eye, neg_inf, logit_lo.unsqueeze(-2)).logsumexp(-1)
    return torch.sigmoid(logit_lo - others_hi), torch.sigmoid(logit_hi - others_lo)


def softmax_l2_change_bound(logit_lo: torch.Tensor, logit_hi: torch.Tensor,
                            probs_star: torch.Tensor) -> torch.Tensor:
    """Certified upper bound on ``||softmax(z) - probs_star||_2`` over the logit box.

    Per class the change is at most ``max(s_hi_i - s*_i, s*_i - s_lo_i)`` (from
    :func:`softmax_interval`); the L2 norm of these is a bound, capped at ``sqrt(2)`` (the
    largest distance between two probability vectors).
    """
    s_lo, s_hi = softmax_interval(logit_lo, logit_hi)
    d = torch.maximum(s_hi - probs_star, probs_star - s_lo).clamp_min(0.0)
    return torch.linalg.vector_norm(d, dim=-1).clamp_max(math.sqrt(2.0))


# ============================================================================ outcomes


def input_box(x_star: torch.Tensor, eps: float, clip: tuple[float, float] | None = (0.0, 1.0)
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``T = {x : ||x - x*||_inf <= eps}`` intersected with the input domain ``clip``."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    lo, hi = x_star - eps, x_star + eps
    if clip is not None:
        lo, hi = lo.clamp(*clip), hi.clamp(*clip)
    return lo, hi


def softmax_divergence(nets: NetworkSet, x: torch.Tensor, probs_star: torch.Tensor
                       ) -> torch.Tensor:
    """``||softmax_s(x_s) - probs_star_s||_2`` per network for paired inputs ``x`` ``(S, ...)``."""
    return torch.linalg.vector_norm(torch.softmax(nets.paired_logits(x), -1) - probs_star, dim=-1)


_ATTACKS = ("fgsm", "pgd")


@dataclass
class Outcomes:
    """Per-network Bernoulli outcomes (1 = an adversarial point exists / is not excluded).

    Attributes: ``outcome`` (bool ``(S,)``), ``divergence`` (the attained softmax L2 change for
    attacks, the certified bound for IBP), ``method`` (``"fgsm"``, ``"pgd"``, ``"ibp"``).
    """

    outcome: torch.Tensor
    divergence: torch.Tensor
    method: str


class _Paired(nn.Module):
    """Network ``s`` applied to example ``s`` (so per-example attacks run on all networks)."""

    def __init__(self, nets: NetworkSet) -> None:
        super().__init__()
        self.nets = nets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nets.paired_logits(x)


PGD_OBJECTIVES = ("softmax", "ce")


def attack_outcomes(nets: NetworkSet, x_star: torch.Tensor, eps: float, delta_out: float, *,
                    attack: str = "pgd", steps: int = 20, step_size: float | None = None,
                    restarts: int = 1, seed: int = 0, clip: tuple[float, float] = (0.0, 1.0),
                    pgd_objectives: Sequence[str] = PGD_OBJECTIVES) -> Outcomes:
    """Search ``T`` for a softmax change ``> delta_out`` in each sampled network.

    - ``"fgsm"``: one signed-gradient step of the cross-entropy at the network's own prediction
      at ``x*`` (as the authors' FGSM property check does); ``studylib.attacks.fgsm``.
    - ``"pgd"``: projected gradient ascent (``studylib.attacks.projected_gradient_ascent``,
      random start in ``T``, ``steps`` signed steps, ``restarts``) of each objective in
      ``pgd_objectives``, keeping per network the point of largest softmax change:
      ``"softmax"`` ascends ``||softmax(x) - softmax(x*)||_2`` itself (its gradient vanishes
      where the softmax saturates), ``"ce"`` ascends the cross-entropy at the network's own
      prediction (the authors' PGD). Default both.

    A found point is a real adversarial example, so the outcome is a *lower* bound on the
    per-network truth and its mean a lower bound on ``p`` (up to sampling error).

    Args:
        nets: the sampled networks; x_star: one input ``(*input_shape)``; eps: L-inf radius;
        delta_out: output threshold; attack: ``"fgsm"`` or ``"pgd"``; steps, step_size
        (default ``2.5 eps / steps``), restarts, seed: PGD settings; clip: input domain;
        pgd_objectives: subset of ``("softmax", "ce")``.
    """
    from .. import attacks

    if attack not in _ATTACKS:
        raise ValueError(f"attack must be one of {_ATTACKS}, got {attack!r}")
    bad = sorted(set(pgd_objectives) - set(PGD_OBJECTIVES)) if attack == "pgd" else []
    if bad or (attack == "pgd" and not pgd_objectives):
        raise ValueError(f"pgd_objectives must be a non-empty subset of {PGD_OBJECTIVES}")
    s = len(nets)
    x_star = x_star.to(nets.device)
    x0 = x_star.unsqueeze(0).expand(s, *x_star.shape).contiguous()
    with torch.no_grad():
        logits_star = nets.paired_logits(x0)
        probs_star = torch.softmax(logits_star, -1)
    y_star = logits_star.argmax(-1)
    if eps == 0:
        div = torch.zeros(s, device=x0.device)
        return Outcomes(div > delta_out, div, attack)
    if attack == "fgsm":
        candidates = [attacks.fgsm(_Paired(nets), x0, y_star, eps, clip=clip)]
    else:
        def softmax_objective(x: torch.Tensor) -> torch.Tensor:
            return softmax_divergence(nets, x, probs_star)

        def ce_objective(x: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(nets.paired_logits(x), y_star, reduction="none")

        objectives = {"softmax": softmax_objective, "ce": ce_objective}
        candidates = [attacks.projected_gradient_ascent(
            objectives[name], x0, eps, steps=steps,
            step_size=step_size if step_size is not None else 2.5 * eps / steps,
            restarts=restarts, random_start=True, seed=seed + 7919 * k, clip=clip)
            for k, name in enumerate(pgd_objectives)]
    div = torch.full((s,), -1.0, device=x0.device)
    with torch.no_grad():
        for x_adv in candidates:
            x_adv = torch.max(torch.min(x_adv.detach(), x0 + eps), x0 - eps).clamp(*clip)
            div = torch.maximum(div, softmax_divergence(nets, x_adv, probs_star))
    return Outcomes(div > delta_out, div, attack)


def ibp_outcomes(nets: NetworkSet, x_star: torch.Tensor, eps: float, delta_out: float, *,
                 clip: tuple[float, float] = (0.0, 1.0)) -> Outcomes:
    """Certify each sampled network over ``T`` with interval bound propagation.

    The outcome is 0 (robust) only when the certified bound on ``||softmax(x) - softmax(x*)||_2``
    over ``T`` is ``<= delta_out``; since the bound is sound, the outcome is an *upper* bound on
    the per-network truth, and its mean an upper bound on ``p`` (up to sampling error).
    """
    x_star = x_star.to(nets.device)
    lo, hi = input_box(x_star.unsqueeze(0), eps, clip)
    with torch.no_grad():
        probs_star = torch.softmax(nets(x_star.unsqueeze(0)), -1)  # (S, 1, K)
        l_lo, l_hi = nets.interval_bounds(lo, hi)
        bound = softmax_l2_change_bound(l_lo, l_hi, probs_star)[:, 0]
    return Outcomes(bound > delta_out, bound, "ibp")


def bernoulli_outcomes(nets: NetworkSet, x_star: torch.Tensor, eps: float, delta_out: float,
                       method: str, *, chunk: int = 2048, **attack_kwargs: Any) -> Outcomes:
    """Outcomes of ``method`` in ``("fgsm", "pgd", "ibp")`` over all networks, in chunks.

    ``chunk`` bounds memory (networks evaluated at once); PGD's ``seed`` is offset by the chunk
    index so chunks use different random starts.
    """
    if method not in ("fgsm", "pgd", "ibp"):
        raise ValueError(f"method must be 'fgsm', 'pgd' or 'ibp', got {method!r}")
    outs, divs = [], []
    for i, start in enumerate(range(0, len(nets), chunk)):
        sub = nets.subset(slice(start, min(start + chunk, len(nets))))
        if method == "ibp":
            o = ibp_outcomes(sub, x_star, eps, delta_out)
        else:
            kw = dict(attack_kwargs)
            kw["seed"] = int(kw.get("seed", 0)) * 100_003 + i
            o = attack_outcomes(sub, x_star, eps, delta_out, attack=method, **kw)
        outs.append(o.outcome)
        divs.append(o.divergence)
    return Outcomes(torch.cat(outs), torch.cat(divs), method)


# ============================================================================ posterior adapters


def _dropout_feature_shapes(net: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple]:
    shapes: dict[str, tuple] = {}
    hooks = []
    for name, m in net.named_modules():
        if isinstance(m, nn.Dropout):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(inp[0].shape[1:]))))
    try:
        with eval_mode(net), torch.no_grad():
            dev = next(iter(net.parameters())).device
            net(torch.zeros(1, *input_shape, device=dev))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def network_set_from_dropout(net: nn.Module, n_samples: int, *, seed: int = 0,
                             input_shape: Sequence[int] | None = None) -> NetworkSet:
    """``n_samples`` MC-dropout networks of ``net``, each with its own FIXED dropout mask.

    A sampled MC-dropout network is deterministic: its mask (Bernoulli(1 - p) / (1 - p) per
    unit of every ``nn.Dropout`` layer with ``p > 0``) stays the same for every input in ``T``
    (sampling a new mask per input would not be one posterior sample). The weights are shared
    (expanded, not copied). Masks come from ``torch.Generator().manual_seed(seed)``.

    Args:
        net: the trained network (its dropout layers define ``p``).
        n_samples: networks to draw; seed: mask seed.
        input_shape: ``(C, H, W)`` or ``(D,)``; default from ``net.config``.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    layers = _leaf_layers(net)
    shape = tuple(input_shape) if input_shape is not None else _infer_input_shape(net, layers)
    if shape is None:
        raise ValueError("pass input_shape: it cannot be inferred from net")
    drops = {n: m for n, m in net.named_modules() if isinstance(m, nn.Dropout) and m.p > 0}
    if not drops:
        raise ValueError("net has no dropout layer with p > 0")
    feat = _dropout_feature_shapes(net, shape)
    gen = torch.Generator().manual_seed(int(seed))
    dev = next(iter(net.parameters())).device
    masks = {}
    for name, m in drops.items():
        keep = 1.0 - m.p
        draw = torch.rand((n_samples, *feat[name]), generator=gen) < keep
        masks[name] = (draw.float() / keep).to(dev)
    params = {n: p.detach().unsqueeze(0).expand(n_samples, *p.shape)
              for n, p in net.named_parameters()}
    buffers = {n: b.detach().unsqueeze(0).expand(n_samples, *b.shape)
               for n, b in net.named_buffers() if b.is_floating_point()}
    return NetworkSet(net, params, buffers, masks)


def network_set_from_posterior(posterior: Any, n_samples: int | None = None, *, seed: int = 0
                               ) -> NetworkSet:
    """Sampled networks from a ``studylib.techniques.bayes`` posterior (or an MC-dropout network).

    Args:
        posterior: a ``VIPosterior`` / ``MCMCPosterior`` (weight posteriors of a fully Bayesian
            ``BayesianNet``: every layer sampled, no frozen extractor), an
            ``MCDropoutPosterior``, or a plain ``nn.Module`` with dropout (MC dropout).
        n_samples: networks to draw. For an ``MCMCPosterior`` ``None`` means every stored
            sample in chain order; otherwise required.
        seed: seed of the draw.
    """
    bnet = getattr(posterior, "bnet", None)
    if bnet is not None:
        if bnet.extractor is not None:
            raise ValueError("posterior has a frozen extractor; verification needs the whole "
                             "network as one NetworkSet (use a fully Bayesian net)")
        if n_samples is None:
            stored = getattr(posterior, "samples", None)
            if stored is None:
                raise ValueError("n_samples is required for this posterior")
            return NetworkSet(bnet.template, dict(stored))
        return NetworkSet(bnet.template, posterior.draw(int(n_samples), seed=seed))
    net = getattr(posterior, "net", posterior)
    if isinstance(net, nn.Module):
        if n_samples is None:
            raise ValueError("n_samples is required for MC dropout")
        return network_set_from_dropout(net, int(n_samples), seed=seed)
    raise ValueError(f"unsupported posterior type {type(posterior).__name__}")


# ============================================================================ experiment helpers

OUTCOME_METHODS = ("fgsm", "pgd", "ibp")


def robustness_grid(nets: NetworkSet, points: torch.Tensor, eps_grid: Sequence[float],
                    delta_out: float, *, err: float, conf: float,
                    outcome_methods: Sequence[str] = OUTCOME_METHODS, alpha: float | None = None,
                    pgd_steps: int = 20, pgd_restarts: int = 1, seed: int = 0,
                    progress: bool = True, desc: str | None = None, point_offset: int = 0
                    ) -> list[dict[str, Any]]:
    """Estimate ``p`` at every (test point, eps, outcome method) from the first ``N_CH`` networks.

    The same ``N_CH`` sampled networks serve every cell (common random numbers), so cells differ
    only through ``eps`` and the outcome method. Each cell reports the Chernoff estimate (all
    ``N_CH`` networks) and the sequential estimate (the prefix where the Massart rule stops).

    Args:
        nets: at least ``N_CH = chernoff_sample_size(err, conf)`` sampled networks, in sampling
            order.
        points: test inputs ``(P, *input_shape)``; eps_grid: L-inf radii; delta_out: threshold.
        err, conf, alpha: the guarantee and the sequential scheme's Clopper-Pearson level.
        outcome_methods: subset of ``("fgsm", "pgd", "ibp")``.
        pgd_steps, pgd_restarts, seed: PGD settings (seed offset by point and eps index).
        progress, desc: progress bar over cells.
        point_offset: index of ``points[0]`` among the test points (reported as ``point`` and
            used in the PGD seed, so a later batch of points continues the first one).

    Returns:
        one dict per cell: ``point, eps, outcome, p_hat, n_used`` (Chernoff), ``p_hat_seq,
        n_seq`` (sequential), ``n_chernoff``, ``mean_divergence``.
    """
    from ..core.runtime import progress as progress_bar

    bad = sorted(set(outcome_methods) - set(OUTCOME_METHODS))
    if bad:
        raise ValueError(f"unknown outcome method(s) {bad}; valid: {OUTCOME_METHODS}")
    n_ch = chernoff_sample_size(err, conf)
    if len(nets) < n_ch:
        raise ValueError(f"{len(nets)} networks but the guarantee (err={err}, conf={conf}) "
                         f"needs {n_ch}")
    sub = nets.subset(slice(0, n_ch))
    cells = [(i, j, m) for i in range(len(points)) for j in range(len(eps_grid))
             for m in outcome_methods]
    rows = []
    it = progress_bar(cells, desc=desc or "cells") if progress else cells
    for i, j, m in it:
        eps = float(eps_grid[j])
        kw = {} if m == "ibp" else {"steps": pgd_steps, "restarts": pgd_restarts,
                                    "seed": seed * 1_000_003 + (i + point_offset) * 1009 + j}
        o = bernoulli_outcomes(sub, points[i], eps, delta_out, m, **kw)
        x = o.outcome.cpu().numpy().astype(float)
        ch = estimate_probability(x, err=err, conf=conf, method="chernoff")
        sq = estimate_probability(x, err=err, conf=conf, method="sequential", alpha=alpha)
        rows.append({"point": i + point_offset, "eps": eps, "outcome": m, "p_hat": ch.p_hat,
                     "n_used": ch.n_used, "p_hat_seq": sq.p_hat, "n_seq": sq.n_used,
                     "n_chernoff": n_ch, "mean_divergence": float(o.divergence.mean())})
    return rows


def outcome_pool(nets: NetworkSet, x_star: torch.Tensor, eps: float, delta_out: float, *,
                 method: str = "pgd", chunk: int = 2048, **attack_kwargs: Any) -> np.ndarray:
    """0/1 outcomes of every network in ``nets`` (a large i.i.d. posterior pool), in chunks."""
    o = bernoulli_outcomes(nets, x_star, eps, delta_out, method, chunk=chunk, **attack_kwargs)
    return o.outcome.cpu().numpy().astype(np.int8)


# ============================================================================ fitted posteriors as network sets

INFERENCE_METHODS = ("hmc", "vi", "mc_dropout")
ARCHITECTURES = ("mlp", "cnn")


def _sampler_cache_path(blob: dict[str, Any]) -> Path:
    """Checkpoint file of an MCMC run described by ``blob`` (its ``kind`` names the file)."""
    from ..core import paths
    from ..core.io import cache_key

    return paths.CHECKPOINT_DIR / f"{blob['kind']}-{cache_key(blob)[:24]}.pt"


def _nuts_cached(bnet: Any, x: torch.Tensor, y: torch.Tensor, *, num_samples: int,
                 warmup_steps: int, max_tree_depth: int, seed: int, data_id: Any,
                 cache: bool = True) -> Any:
    """``studylib.techniques.bayes.fit_nuts`` behind a small content-addressed cache of its samples.

    (``fit_nuts`` has no cache of its own; notebooks re-run for nbval must not re-sample.)
    """

    from ..core.cache import load_entry, save_entry
    from . import bayes

    path = _sampler_cache_path({
        "kind": "nuts", "v": 1, "bnet": bnet.config, "data": data_id,
        "num_samples": num_samples, "warmup": warmup_steps, "depth": max_tree_depth,
        "seed": int(seed)})
    ck = load_entry(path, what="NUTS samples", check=lambda ck: "samples" in ck) if cache \
        else None
    if ck is not None:
        post = bayes.MCMCPosterior(bnet, ck["samples"], ck.get("diagnostics", {}))
        post.from_cache = True
        return post
    post = bayes.fit_nuts(bnet, x, y, num_samples=num_samples, warmup_steps=warmup_steps,
                          seed=seed, max_tree_depth=max_tree_depth, progress=False)
    post.from_cache = False
    if cache:
        save_entry(path, {"samples": {k: v.cpu() for k, v in post.samples.items()},
                          "diagnostics": post.diagnostics}, what="NUTS samples")
    return post


def _hmc_cached(bnet: Any, bundle: Any, *, num_samples: int, warmup_steps: int,
                num_leapfrog: int, seed: int, device: Any = "cpu", progress: bool = False,
                cache: bool = True, chains: int = 1, thin: int = 1,
                trajectory_length: float | None = None,
                inits: Sequence[Mapping[str, torch.Tensor]] | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """:func:`hmc_samples` on ``bundle.train`` behind a content-addressed cache (samples are
    returned on ``device``)."""

    from ..core.cache import load_entry, save_entry
    from ..core.runtime import select_device

    dev = select_device(device)
    path = _sampler_cache_path({
        "kind": "hmc", "v": 2, "bnet": bnet.config, "data": bundle.spec,
        "num_samples": num_samples, "warmup": warmup_steps, "leapfrog": num_leapfrog,
        "seed": int(seed), "chains": int(chains), "thin": int(thin),
        "trajectory": trajectory_length})
    ck = load_entry(path, what="HMC samples",
                    check=lambda ck: "samples" in ck and "info" in ck) if cache else None
    if ck is not None:
        return {k: v.to(dev) for k, v in ck["samples"].items()}, dict(ck["info"], from_cache=True)
    bnet.to(dev)
    samples, info = hmc_samples(bnet, bundle.train.x.to(dev), bundle.train.y.to(dev),
                                num_samples=num_samples, warmup_steps=warmup_steps,
                                num_leapfrog=num_leapfrog, seed=seed, progress=progress,
                                chains=chains, thin=thin, trajectory_length=trajectory_length,
                                inits=inits)
    if cache:
        save_entry(path, {"samples": {k: v.cpu() for k, v in samples.items()}, "info": info},
                   what="HMC samples")
    return samples, dict(info, from_cache=False)


@torch.no_grad()
def predictive_accuracy(nets: NetworkSet, x: torch.Tensor, y: torch.Tensor, *,
                        chunk: int = 256) -> float:
    """Accuracy of the posterior predictive (softmax averaged over all networks in ``nets``),
    computed where the networks live."""
    x, y = x.to(nets.device), y.to(nets.device)
    total = torch.zeros(x.shape[0], nets(x[:1]).shape[-1], device=nets.device)
    for start in range(0, len(nets), chunk):
        sub = nets.subset(slice(start, min(start + chunk, len(nets))))
        total += torch.softmax(sub(x), -1).sum(0)
    return float((total.argmax(1) == y).float().mean())


@torch.no_grad()
def predictive_series_diagnostics(nets: NetworkSet, x: torch.Tensor, chains: int
                                  ) -> dict[str, float]:
    """ESS and R-hat of each network's softmax probability of the posterior-predictive class at
    the inputs ``x`` (the quantity whose mean the study estimates), for ``nets`` laid out as
    ``chains`` chains one after the other; the worst input."""
    x = x.to(nets.device)
    probs = torch.softmax(nets(x), -1)  # (S, B, K)
    top = probs.mean(0).argmax(-1)  # (B,)
    series = probs[:, torch.arange(x.shape[0], device=probs.device), top]  # (S, B)
    d = chain_diagnostics(series.reshape(chains, -1, x.shape[0]))
    return {"predictive_ess": d["ess"], "predictive_rhat": d["rhat"]}


def pool_chunk_size(device: torch.device | str, n_params: int, *,
                    budget_bytes: float | None = None) -> int:
    """Networks drawn and attacked at once when a large pool is streamed: as many as fit
    ``budget_bytes`` of weights (default 0.5 GiB on a CPU, 4 GiB on a GPU), at least 16, at most
    4096. A draw holds the weights and one site's noise, PGD a few input-sized tensors per
    network, so the weights dominate the memory for every architecture the study uses."""
    dev = torch.device(device)
    if budget_bytes is None:
        budget_bytes = (4 if dev.type == "cuda" else 0.5) * 2 ** 30
    return int(min(4096, max(16, budget_bytes // (4 * max(1, int(n_params))))))


@dataclass
class FittedPosterior:
    """A fitted posterior that can draw sampled networks: i.i.d. draws (VI, MC dropout) through
    ``draw(n, seed)``, or the fixed MCMC samples in chain order (``samples``)."""

    inference: str
    info: dict[str, Any]
    draw: Callable[[int, int], NetworkSet] | None = None
    samples: NetworkSet | None = None

    @property
    def iid(self) -> bool:
        return self.draw is not None

    def networks(self, n: int, seed: int) -> NetworkSet:
        """``n`` networks: fresh i.i.d. draws, or the first ``n`` MCMC samples."""
        if self.draw is not None:
            return self.draw(int(n), int(seed))
        assert self.samples is not None
        if n > len(self.samples):
            raise ValueError(f"{n} networks asked of {len(self.samples)} MCMC samples")
        return self.samples.subset(slice(0, int(n)))

    def stream(self, n: int, seed: int, chunk: int):
        """``n`` i.i.d. networks in sets of at most ``chunk`` (draw ``i`` seeded ``(seed, i)``),
        so a pool larger than memory can be evaluated set by set."""
        if self.draw is None:
            raise ValueError(f"{self.inference}: MCMC samples are not i.i.d. draws; a pool of "
                             "them cannot be streamed")
        for i, start in enumerate(range(0, int(n), int(chunk))):
            yield self.draw(min(int(chunk), int(n) - start), int(seed) * 100_003 + i)


def fit_posterior(bundle: Any, *, arch: str, inference: str, seed: int, n_mcmc: int = 0,
                  mlp_hidden: Sequence[int] = (16,), cnn_width: int = 8,
                  cnn_hidden: int = 32, prior_scale: float = 1.0, vi_epochs: int = 20,
                  vi_lr: float = 1e-2, dropout_p: float = 0.25, train_epochs: int = 20,
                  hmc_backend: str = "torch", hmc_warmup: int = 200,
                  hmc_leapfrog: int = 20, hmc_chains: int = 1, hmc_thin: int = 1,
                  hmc_trajectory: float | None = None, nuts_max_tree_depth: int = 6,
                  device: str | torch.device = "cpu", progress: bool = True
                  ) -> FittedPosterior:
    """Fit one posterior on ``bundle`` (see :func:`posterior_networks` for the arguments; MCMC
    keeps at least ``n_mcmc`` samples in all, ``hmc_chains`` chains of ``ceil(n_mcmc /
    hmc_chains)``, thinned
    by ``hmc_thin``, with a trajectory of ``hmc_trajectory`` when given). Everything lives on
    ``device``; random draws come from CPU generators, so a seed gives the same networks on
    any device."""
    from ..core.runtime import select_device
    from ..models import build_model
    from ..training import TrainConfig, fit
    from . import bayes

    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    if inference not in INFERENCE_METHODS:
        raise ValueError(f"inference must be one of {INFERENCE_METHODS}, got {inference!r}")
    if hmc_backend not in ("torch", "nuts"):
        raise ValueError(f"hmc_backend must be 'torch' or 'nuts', got {hmc_backend!r}")
    dev = select_device(device)
    c, h, _ = bundle.input_shape
    k = bundle.num_classes
    info: dict[str, Any] = {"inference": inference, "arch": arch}

    def bayes_net(net_seed: int):
        if arch == "mlp":
            return bayes.bayesian_mlp(c * h * h, k, hidden=tuple(mlp_hidden),
                                      prior_scale=prior_scale, seed=net_seed)
        return bayes.bayesian_cnn(c, k, h, width=cnn_width, hidden=cnn_hidden,
                                  prior_scale=prior_scale, seed=net_seed)

    if inference == "mc_dropout":
        if arch == "mlp":
            net = build_model("mlp", in_features=c * h * h, num_classes=k,
                              hidden=tuple(mlp_hidden), dropout=dropout_p, seed=seed)
        else:
            net = build_model("small_cnn", in_channels=c, num_classes=k, image_size=h,
                              width=cnn_width, hidden=cnn_hidden, dropout=dropout_p, seed=seed)
        net = fit(net, bundle, TrainConfig(epochs=train_epochs, lr=3e-3), seed=seed,
                  device=device, progress=progress, desc=f"train {arch} (dropout)").to(dev)
        return FittedPosterior(inference, info, draw=lambda n, s: network_set_from_dropout(
            net, n, seed=s))
    bnet = bayes_net(seed)
    if inference == "vi":
        post = bayes.fit_vi(bnet, bundle, epochs=vi_epochs, lr=vi_lr, seed=seed,
                            device=device, progress=progress, desc=f"vi {arch}")
        post.bnet.to(dev)
        post = bayes.VIPosterior(post.bnet, {n: v.to(dev) for n, v in post.locs.items()},
                                 {n: v.to(dev) for n, v in post.scales.items()}, post.history)
        return FittedPosterior(inference, info, draw=lambda n, s: network_set_from_posterior(
            post, n, seed=s))
    if n_mcmc < 1:
        raise ValueError("MCMC needs n_mcmc >= 1 kept samples")
    if hmc_backend == "nuts":
        post = _nuts_cached(bnet, bundle.train.x, bundle.train.y, num_samples=n_mcmc,
                            warmup_steps=hmc_warmup, max_tree_depth=nuts_max_tree_depth,
                            seed=seed, data_id=bundle.spec)
        info["nuts_diagnostics"] = post.diagnostics
        nets = network_set_from_posterior(post).to(dev)  # every kept sample, chain order
        info["chains"] = 1
        return FittedPosterior(inference, info, samples=nets)
    if hmc_chains < 1:
        raise ValueError(f"hmc_chains must be >= 1, got {hmc_chains}")
    inits = [dict(bayes_net(seed * 1000 + 17 * i + 1).template.named_parameters())
             for i in range(hmc_chains - 1)]
    samples, hinfo = _hmc_cached(bnet, bundle, num_samples=-(-n_mcmc // hmc_chains),
                                 warmup_steps=hmc_warmup, num_leapfrog=hmc_leapfrog, seed=seed,
                                 device=dev, progress=progress, chains=hmc_chains,
                                 thin=hmc_thin, trajectory_length=hmc_trajectory, inits=inits)
    info.update({f"hmc_{k}": v for k, v in hinfo.items()})
    return FittedPosterior(inference, info,
                           samples=NetworkSet(bnet.template.to(dev), dict(samples)))


def posterior_networks(bundle: Any, *, arch: str, inference: str, n_networks: int, seed: int,
                       draw_seed: int | None = None, accuracy_networks: int = 200,
                       hmc_chains: int = 1, **fit_kwargs: Any
                       ) -> tuple[NetworkSet, dict[str, Any]]:
    """Fit one approximate posterior on ``bundle`` (:func:`fit_posterior`, which takes the
    ``fit_kwargs``) and return ``n_networks`` sampled networks.

    Args:
        bundle: a ``studylib.data.DataBundle``.
        arch: ``"mlp"`` (``studylib.models`` MLP with ``mlp_hidden``) or ``"cnn"`` (SmallCNN
            with ``cnn_width``, ``cnn_hidden``).
        inference: ``"hmc"`` (``n_networks`` kept samples after ``hmc_warmup`` warm-up
            proposals, ``hmc_chains`` chains one after the other, each in order:
            :func:`hmc_samples` with ``hmc_leapfrog`` steps, or a trajectory of
            ``hmc_trajectory``, thinned by ``hmc_thin``, when ``hmc_backend="torch"``; Pyro
            NUTS via ``studylib.techniques.bayes.fit_nuts`` with ``nuts_max_tree_depth`` when
            ``hmc_backend="nuts"``), ``"vi"`` (mean-field ``AutoNormal`` via ``fit_vi``,
            ``vi_epochs``, ``vi_lr``; i.i.d. draws) or ``"mc_dropout"`` (a deterministic net
            with dropout ``dropout_p`` trained by ``studylib.training.fit`` for
            ``train_epochs``; i.i.d. fixed masks).
        n_networks: sampled networks to return; seed: fit seed; draw_seed: seed of the draw
            (default ``seed``).
        prior_scale: Normal prior std for HMC and VI.
        device: where the posterior is fitted and the networks live.
        accuracy_networks: the clean accuracy uses the posterior predictive of the first this
            many networks (default 200; 0 skips it).

    Returns:
        ``(nets, info)``; ``info`` holds ``clean_accuracy`` (NaN when skipped), ``iid``
        (whether the networks are independent draws), fit details and, for HMC, the chain
        diagnostics (``hmc_weight_ess``, ``hmc_weight_rhat``, ``hmc_energy_ess``,
        ``hmc_energy_error_*``, and ``predictive_ess`` / ``predictive_rhat`` at the first 8
        test inputs).
    """
    post = fit_posterior(bundle, arch=arch, inference=inference, seed=seed,
                         n_mcmc=n_networks if inference == "hmc" else 0, hmc_chains=hmc_chains,
                         **fit_kwargs)
    nets = post.networks(n_networks, seed if draw_seed is None else draw_seed)
    info = dict(post.info, iid=post.iid)
    if not post.iid:
        info.update(predictive_series_diagnostics(post.samples, bundle.test.x[:8],
                                                  int(info.get("hmc_chains", hmc_chains))))
    info["clean_accuracy"] = (
        predictive_accuracy(nets.subset(slice(0, min(accuracy_networks, len(nets)))),
                            bundle.test.x, bundle.test.y) if accuracy_networks > 0 else math.nan)
    return nets, info


# ============================================================================ fast HMC adapter


def hmc_chains(potential_and_grad: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
               w0: torch.Tensor, *, num_samples: int, warmup_steps: int = 200,
               num_leapfrog: int = 20, trajectory_length: float | None = None,
               max_leapfrog: int = 128, thin: int = 1, target_accept: float = 0.8,
               init_step_size: float = 1e-3, seed: int = 0, progress: bool = False
               ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Hamiltonian Monte Carlo, ``C`` independent chains advanced together.

    Why it is written here: Pyro's NUTS runs one chain through the interpreter per gradient
    (about 2 s of CPU per sample for the digits MLP), so the hundreds of well-mixed samples per
    seed the guarantee needs do not fit the CPU budget; here every leapfrog step of all chains
    is one batched potential/gradient call. Plain HMC (the paper's sampler, through Edward):
    identity mass matrix, Metropolis correction per chain, one step size for all chains adapted
    during warm-up only (Robbins-Monro on ``log step`` towards ``target_accept`` using the mean
    acceptance probability; frozen afterwards, so the kept chains are valid MCMC chains).

    Args:
        potential_and_grad: ``w (C, D) -> (U (C,), dU/dw (C, D))``.
        w0: ``(C, D)`` starting points, one per chain.
        num_samples: kept samples per chain (after thinning).
        warmup_steps: adaptation proposals (discarded).
        num_leapfrog: leapfrog steps per proposal when ``trajectory_length`` is None.
        trajectory_length: integration time ``step * L`` to aim for; then ``L =
            ceil(trajectory_length / step)`` (at most ``max_leapfrog``), recomputed while the
            step adapts and frozen with it. A trajectory of about one posterior standard
            deviation moves the chain across the posterior in a few proposals.
        thin: keep every ``thin``-th post-warm-up state.
        seed: seeds momenta and acceptance draws (CPU generator: the same on any device).

    Returns:
        ``(samples (C, num_samples, D), info)``: ``accept_rate``, ``step_size``,
        ``num_leapfrog``, ``thin``, ``chains``, ``energy_error_mean`` / ``energy_error_max``
        (``|H(proposal) - H(start)|`` over post-warm-up proposals: near 0 for an accurate
        integrator) and ``divergent`` (post-warm-up proposals with an energy error > 1000).
    """
    from ..core.runtime import progress as progress_bar

    if num_samples < 1 or warmup_steps < 0 or num_leapfrog < 1 or thin < 1:
        raise ValueError("num_samples >= 1, warmup_steps >= 0, num_leapfrog >= 1 and thin >= 1 "
                         "required")
    if trajectory_length is not None and not trajectory_length > 0:
        raise ValueError(f"trajectory_length must be > 0, got {trajectory_length!r}")
    if w0.dim() != 2:
        raise ValueError(f"w0 must be (chains, dim), got shape {tuple(w0.shape)}")
    dev = w0.device
    gen = torch.Generator().manual_seed(int(seed))
    w = w0.detach().clone()
    u, g = potential_and_grad(w)
    log_step = math.log(init_step_size)

    def leapfrogs(step: float) -> int:
        if trajectory_length is None:
            return num_leapfrog
        return int(min(max_leapfrog, max(1, math.ceil(trajectory_length / step))))

    kept, accepts, errors, proposals = [], 0.0, [], 0
    total = warmup_steps + num_samples * thin
    it = progress_bar(range(total), desc="hmc") if progress else range(total)
    n_leap = leapfrogs(math.exp(log_step))
    for t in it:
        step = math.exp(log_step)
        if t <= warmup_steps:
            n_leap = leapfrogs(step)
        p0 = torch.randn(w.shape, generator=gen).to(dev)
        wn, pn, gn = w.clone(), p0 - 0.5 * step * g, g
        for i in range(n_leap):
            wn = wn + step * pn
            un, gn = potential_and_grad(wn)
            if i < n_leap - 1:
                pn = pn - step * gn
        pn = pn - 0.5 * step * gn
        log_ratio = (u - un + 0.5 * ((p0 * p0).sum(1) - (pn * pn).sum(1))).double().cpu()
        log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)
        acc_prob = torch.exp(torch.clamp(log_ratio, max=0.0))
        draws = torch.rand(w.shape[0], generator=gen, dtype=torch.float64)
        take = (draws < acc_prob).to(dev)
        w = torch.where(take[:, None], wn, w)
        u = torch.where(take, un, u)
        g = torch.where(take[:, None], gn, g)
        if t < warmup_steps:
            log_step += (float(acc_prob.mean()) - target_accept) * 2.0 / math.sqrt(t + 1.0)
        else:
            accepts += float(take.float().sum())
            proposals += w.shape[0]
            errors.append(torch.abs(log_ratio))
            if (t - warmup_steps + 1) % thin == 0:
                kept.append(w.clone())
    err = torch.cat(errors)
    finite = err[torch.isfinite(err)]
    return torch.stack(kept, dim=1), {
        "accept_rate": accepts / proposals, "step_size": math.exp(log_step),
        "num_leapfrog": n_leap, "thin": thin, "chains": int(w.shape[0]),
        "energy_error_mean": float(finite.mean()) if finite.numel() else math.inf,
        "energy_error_max": float(err.max()),
        "divergent": int((~torch.isfinite(err) | (err > 1000)).sum())}


def chain_diagnostics(series: torch.Tensor) -> dict[str, float]:
    """Effective sample size and split R-hat of ``series`` ``(chains, samples, *dims)`` (Pyro's
    estimators); the worst over ``dims``: the smallest ESS, the largest R-hat."""
    from pyro.ops.stats import effective_sample_size, split_gelman_rubin

    x = series.detach().double().cpu()
    if x.dim() == 2:
        x = x.unsqueeze(-1)
    ess = effective_sample_size(x, chain_dim=0, sample_dim=1)
    rhat = split_gelman_rubin(x, chain_dim=0, sample_dim=1) if x.shape[1] >= 4 else \
        torch.full(x.shape[2:], math.nan, dtype=x.dtype)
    ess, rhat = torch.nan_to_num(ess, nan=0.0), rhat
    return {"ess": float(ess.min()), "ess_median": float(ess.median()),
            "rhat": float(torch.nan_to_num(rhat, nan=math.inf).max())
            if x.shape[1] >= 4 else math.nan}


def hmc_samples(bnet: Any, x: torch.Tensor, y: torch.Tensor, *, num_samples: int,
                warmup_steps: int = 200, num_leapfrog: int = 20, target_accept: float = 0.8,
                init_step_size: float = 1e-3, seed: int = 0, progress: bool = False,
                chains: int = 1, thin: int = 1, trajectory_length: float | None = None,
                inits: Sequence[Mapping[str, torch.Tensor]] | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """HMC (:func:`hmc_chains`) on the weights of a ``studylib.techniques.bayes.BayesianNet``
    (full batch).

    Potential ``U(w) = -sum_i log softmax(f_w(x_i))[y_i] + ||w||^2 / (2 prior_scale^2)`` (the
    Normal prior of ``bnet``; constants dropped). ``chains`` chains run together (vectorised);
    chain 0 starts at the body's current weights, chain ``c`` at ``inits[c - 1]`` (default: the
    body's weights, so pass ``inits`` for dispersed starts).

    Returns:
        ``(samples, info)``: ``{site: (chains * num_samples, *shape)}``, chain after chain,
        each chain in order (``num_samples`` per chain), and :func:`hmc_chains`'s info plus
        ``weight_ess`` / ``weight_rhat`` (the worst weight coordinate) and ``energy_ess`` (of
        the potential along the chains).
    """
    if getattr(bnet, "extractor", None) is not None:
        raise ValueError("hmc_samples needs a fully Bayesian net (no frozen extractor)")
    if chains < 1:
        raise ValueError(f"chains must be >= 1, got {chains}")
    template = bnet.template
    names = list(bnet.site_shapes)
    shapes = [tuple(bnet.site_shapes[n]) for n in names]
    sizes = [int(np.prod(s)) for s in shapes]
    dev = x.device
    inv_var = 1.0 / float(bnet.prior_scale) ** 2

    def unflatten(w: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.reshape(s) for n, t, s in zip(names, w.split(sizes), shapes, strict=True)}

    def potential(w: torch.Tensor) -> torch.Tensor:
        logits = torch.func.functional_call(template, unflatten(w), (x,))
        return F.cross_entropy(logits, y, reduction="sum") + 0.5 * inv_var * (w * w).sum()

    if chains == 1:
        def potential_and_grad(wb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            w = wb[0].detach().requires_grad_(True)
            with torch.enable_grad():
                u = potential(w)
                (gr,) = torch.autograd.grad(u, w)
            return u.detach()[None], gr.detach()[None]
    else:
        batched = torch.func.vmap(torch.func.grad_and_value(potential))

        def potential_and_grad(wb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.enable_grad():
                gr, u = batched(wb.detach())
            return u.detach(), gr.detach()

    def flat(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([params[n].detach().reshape(-1).to(dev) for n in names])

    start = dict(template.named_parameters())
    starts = [flat(start)] + [flat(inits[c - 1]) if inits is not None else flat(start)
                              for c in range(1, chains)]
    chain, info = hmc_chains(potential_and_grad, torch.stack(starts), num_samples=num_samples,
                             warmup_steps=warmup_steps, num_leapfrog=num_leapfrog,
                             trajectory_length=trajectory_length, thin=thin,
                             target_accept=target_accept, init_step_size=init_step_size,
                             seed=seed, progress=progress)
    with torch.no_grad():
        energy = torch.stack([torch.stack([potential(w) for w in c]) for c in chain])
    info.update({f"weight_{k}": v for k, v in chain_diagnostics(chain).items()
                 if k in ("ess", "rhat")})
    info["energy_ess"] = chain_diagnostics(energy)["ess"]
    stacked = chain.reshape(-1, chain.shape[-1])
    samples = {n: t.reshape(stacked.shape[0], *s) for n, t, s in
               zip(names, stacked.split(sizes, dim=1), shapes, strict=True)}
    return samples, info
