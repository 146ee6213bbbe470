"""Confidence intervals, each on its quantity's natural scale.

One implementation of each interval the claims use (issue "Claims you can trust"):

- :func:`t_interval`: mean over seeds with a Student-t interval (an unbounded quantity);
- :func:`fisher_z_interval`: correlations over seeds, t-interval on ``atanh(r)`` and back, so
  the interval stays inside [-1, 1];
- :func:`log_ratio_interval`: multiplicative ratios over seeds, t-interval on ``log`` and back
  (a geometric mean and an interval inside (0, inf));
- :func:`logit_interval`: proportions over seeds (an accuracy per seed), t-interval on the
  logit scale, inside [0, 1];
- :func:`wilson_interval` and :func:`clopper_pearson_interval`: k successes of n trials;
- :func:`paired_difference`: per-seed differences of two paired quantities;
- :func:`hierarchical_bootstrap`: a statistic of test items measured within each seed, resampled
  over seeds and then over items within each drawn seed;
- :func:`bonferroni_ci`: the per-interval level for ``m`` comparisons judged together;
- :func:`seeds_needed`: how many seeds the observed effect and spread would need.

Why our own code: scipy and statsmodels give the distributions and the Wilson and
Clopper-Pearson formulas (used below), but no function that takes per-seed values, applies
the scale transform, and returns the interval together with what a claim needs to report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CI = 0.95
_EDGE = 1e-9  # a correlation of exactly +-1 or a proportion of exactly 0 or 1 is moved inside


def check_inside_range(lo: float, hi: float, bounds: tuple[float, float], what: str) -> None:
    """Raise ``ValueError`` when a defined end of ``[lo, hi]`` leaves the natural range
    ``bounds`` (``-inf``/``inf`` where open), beyond a relative rounding tolerance of 1e-9."""
    low, high = bounds
    tol = 1e-9 * max([1.0, *(abs(x) for x in (low, high) if math.isfinite(x))])
    for end in (lo, hi):
        if not math.isnan(end) and not low - tol <= end <= high + tol:
            raise ValueError(f"{what}: interval [{lo}, {hi}] leaves the natural range "
                             f"[{low}, {high}] of its quantity")


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval.

    Attributes:
        estimate: the point estimate on the quantity's own scale (a mean, a geometric mean,
            a back-transformed mean correlation).
        lo, hi: the interval's ends (NaN when it cannot be computed, e.g. from one seed).
        method: how it was computed, for the report (e.g. ``"fisher-z t over 3 seeds"``).
        n: the number of independent units it rests on (seeds, or trials).
        values: the per-unit values on the quantity's scale (empty for counts).
        spread: the standard deviation of the per-seed values *on the interval's working
            scale* (NaN for counts or one seed); :func:`seeds_needed` uses it.
        scale: the working scale's name: ``identity`` | ``fisher-z`` | ``log`` | ``logit``
            | ``count``.
        bounds: the quantity's natural range ``(low, high)`` (``-inf``/``inf`` where open):
            [-1, 1] for a correlation, (0, inf) for a ratio, [0, 1] for a proportion; the
            interval lies inside it (checked), and a claim carries it to results.json.
    """

    estimate: float
    lo: float
    hi: float
    method: str
    n: int
    values: tuple[float, ...] = ()
    spread: float = math.nan
    scale: str = "identity"
    bounds: tuple[float, float] = (-math.inf, math.inf)

    def __post_init__(self) -> None:
        check_inside_range(self.lo, self.hi, self.bounds, f"interval ({self.method})")

    @classmethod
    def undefined(cls, method: str,
                  bounds: tuple[float, float] = (-math.inf, math.inf)) -> Interval:
        """No estimate at all (nothing measurable), on a quantity whose natural range is
        ``bounds``: for a condition that is left out."""
        return cls(math.nan, math.nan, math.nan, method, 0, bounds=bounds)

    @property
    def ci95(self) -> tuple[float, float]:
        return (self.lo, self.hi)

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))


def _over(n: int, what: str = "seed") -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-d sequence of per-seed values, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"per-seed values must be finite, got {arr.tolist()}")
    return arr


def sign_test_seeds(ci: float = CI) -> int:
    """Fewest seeds whose unanimous values decide a claim without any spread: the smallest
    ``n`` with ``2 * 0.5**n <= 1 - ci`` (6 at 95%)."""
    return int(math.ceil(math.log2(2 / (1 - ci))))


def _t_quantile(n: int, ci: float = CI) -> float:
    """The two-sided Student-t quantile for ``n`` seeds (``n - 1`` degrees of freedom)."""
    return float(stats.t.ppf(0.5 + ci / 2, df=n - 1))


def _t_on_scale(z: np.ndarray, ci: float) -> tuple[float, float, float, float]:
    """Mean, lo, hi and sd of ``z`` with a t-interval (NaN interval for one value).

    Seeds that agree exactly (a discrete statistic such as Kendall's tau over five models, or
    a pipeline that does not depend on the seed) have no spread, and a t-interval of zero
    width would claim a certainty that two or three equal values do not give. Then the
    distribution-free interval for the median is used instead: with ``n`` equal values it is
    that value once ``n >= sign_test_seeds(ci)`` (6 at 95%: all ``n`` on one side of the
    median has probability ``2 * 0.5**n``), and undefined (NaN) with fewer seeds.
    """
    n = z.size
    if n == 0:
        raise ValueError("no values")
    m = float(z.mean())
    if n < 2:
        return m, math.nan, math.nan, math.nan
    sd = float(z.std(ddof=1))
    if sd == 0.0:
        return (m, m, m, 0.0) if n >= sign_test_seeds(ci) else (m, math.nan, math.nan, 0.0)
    half = _t_quantile(n, ci) * sd / math.sqrt(n)
    return m, m - half, m + half, sd


def _range(low: float | None, high: float | None) -> tuple[float, float]:
    return (-math.inf if low is None else float(low), math.inf if high is None else float(high))


def t_interval(values: Sequence[float], *, ci: float = CI,
               bounds: tuple[float | None, float | None] = (None, None)) -> Interval:
    """Mean over seeds with a Student-t interval, for a quantity with no scale transform.

    ``bounds`` clips the interval to the quantity's natural range (e.g. ``(0, None)`` for a
    nonnegative change that can be exactly 0, where a log scale cannot go): the true value
    lies inside the range, so clipping keeps the coverage.
    """
    z = _values(values)
    m, lo, hi, sd = _t_on_scale(z, ci)
    low, high = bounds
    if low is not None and not math.isnan(lo):
        lo = max(lo, low)
    if high is not None and not math.isnan(hi):
        hi = min(hi, high)
    method = f"t over {_over(z.size)}" + (" (clipped to its range)" if bounds != (None, None)
                                         else "")
    return Interval(m, lo, hi, method, z.size, tuple(z.tolist()), sd,
                    bounds=_range(low, high))


def fisher_z_interval(rhos: Sequence[float], *, ci: float = CI) -> Interval:
    """Correlations over seeds: t-interval of ``atanh(r)`` over seeds, mapped back by ``tanh``.

    The estimate is ``tanh(mean(atanh(r)))``; the interval lies inside [-1, 1].

    A seed at exactly +-1 (a rank correlation of a handful of models often is) has no Fisher
    z: ``atanh`` is infinite there, and moving the value to 1 - eps makes the interval depend
    on eps. Then the interval is the t-interval on the raw scale, clipped to [-1, 1] (the true
    value lies inside, so clipping keeps the coverage), and the method says so.
    """
    r = _values(rhos)
    if np.any(np.abs(r) > 1 + 1e-9):
        raise ValueError(f"correlations must lie in [-1, 1], got {r.tolist()}")
    at_one = np.abs(r) >= 1 - 1e-12  # a tau of 0.9999999999999998 is a tau of 1
    r = np.where(at_one, np.sign(r), r)
    if np.any(at_one) and not np.all(at_one):
        raw = t_interval(r, ci=ci, bounds=(-1.0, 1.0))
        return Interval(raw.estimate, raw.lo, raw.hi,
                        f"t over {_over(r.size)}, clipped to [-1, 1] (a seed at +-1 has no "
                        "Fisher z)", r.size, raw.values, raw.spread, "identity", (-1.0, 1.0))
    z = np.arctanh(np.clip(r, -1 + _EDGE, 1 - _EDGE))
    m, lo, hi, sd = _t_on_scale(z, ci)
    return Interval(float(np.tanh(m)), float(np.tanh(lo)), float(np.tanh(hi)),
                    f"fisher-z t over {_over(r.size)}", r.size, tuple(r.tolist()), sd, "fisher-z",
                    (-1.0, 1.0))


def log_ratio_interval(ratios: Sequence[float], *, ci: float = CI) -> Interval:
    """Multiplicative ratios over seeds: t-interval of ``log`` ratio, mapped back by ``exp``.

    The estimate is the geometric mean. Example: ratios 26, 92 and 35 give 43.7 [8.5, 226],
    where a raw-scale t-interval would give [-38, 140].
    """
    x = _values(ratios)
    if np.any(x <= 0):
        raise ValueError(f"ratios must be positive, got {x.tolist()}")
    m, lo, hi, sd = _t_on_scale(np.log(x), ci)
    return Interval(math.exp(m), math.exp(lo) if not math.isnan(lo) else math.nan,
                    math.exp(hi) if not math.isnan(hi) else math.nan,
                    f"log-scale t over {_over(x.size)}", x.size, tuple(x.tolist()), sd, "log",
                    (0.0, math.inf))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EDGE, 1 - _EDGE)
    return np.log(p / (1 - p))


def _expit(z: float) -> float:
    return float(1 / (1 + math.exp(-z))) if not math.isnan(z) else math.nan


def logit_interval(proportions: Sequence[float], *, ci: float = CI) -> Interval:
    """Proportions over seeds (e.g. one accuracy per seed): t-interval on the logit scale.

    The estimate is the plain mean of the proportions (what a reader expects to see); the
    interval is the back-transformed logit-scale interval, inside [0, 1]. With every seed at
    0 or at 1 the interval is that point (the quantity is at its floor or ceiling: see
    :func:`studylib.stats.verdicts.at_floor_or_ceiling`).
    """
    p = _values(proportions)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"proportions must lie in [0, 1], got {p.tolist()}")
    mean = float(p.mean())
    if np.all(p == p[0]) and p[0] in (0.0, 1.0):
        return Interval(mean, mean, mean, f"logit t over {_over(p.size)}", p.size,
                        tuple(p.tolist()), 0.0, "logit", (0.0, 1.0))
    _, lo, hi, sd = _t_on_scale(_logit(p), ci)
    return Interval(mean, _expit(lo), _expit(hi), f"logit t over {_over(p.size)}", p.size,
                    tuple(p.tolist()), sd, "logit", (0.0, 1.0))


def wilson_interval(k: int, n: int, *, ci: float = CI) -> Interval:
    """``k`` successes in ``n`` independent trials: Wilson score interval."""
    from statsmodels.stats.proportion import proportion_confint

    _check_counts(k, n)
    lo, hi = proportion_confint(k, n, alpha=1 - ci, method="wilson")
    return Interval(k / n, float(lo), float(hi), f"wilson over {_over(n, 'trial')}", n, (), math.nan,
                    "count", (0.0, 1.0))


def clopper_pearson_interval(k: int, n: int, *, ci: float = CI) -> Interval:
    """``k`` successes in ``n`` independent trials: exact (Clopper-Pearson) interval."""
    from statsmodels.stats.proportion import proportion_confint

    _check_counts(k, n)
    lo, hi = proportion_confint(k, n, alpha=1 - ci, method="beta")
    return Interval(k / n, float(lo), float(hi), f"clopper-pearson over {_over(n, 'trial')}", n, (),
                    math.nan, "count", (0.0, 1.0))


def bonferroni_ci(m: int, ci: float = CI) -> float:
    """Confidence level of each of ``m`` intervals so that all ``m`` cover together with
    probability at least ``ci`` (Bonferroni: each misses with probability ``(1 - ci) / m``).

    Pass it as ``ci=`` to any interval of this module when a claim looks at ``m`` comparisons
    and would pass on any one of them (a family-wise error rate of ``1 - ci``).
    """
    if int(m) != m or m < 1:
        raise ValueError(f"the number of comparisons must be a positive integer, got {m!r}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci!r}")
    return 1.0 - (1.0 - ci) / int(m)


def _check_counts(k: int, n: int) -> None:
    if n < 1 or not 0 <= k <= n or int(k) != k or int(n) != n:
        raise ValueError(f"need integers 0 <= k <= n and n >= 1, got k={k}, n={n}")


def paired_difference(a: Sequence[float], b: Sequence[float], *, ci: float = CI,
                      bounds: tuple[float | None, float | None] = (None, None)) -> Interval:
    """``a - b`` paired by seed (the same seed's models), with a t-interval over seeds.

    ``bounds`` is the difference's natural range, e.g. ``(-1, 1)`` for two proportions or two
    correlations; the interval is clipped to it (the true difference lies inside it)."""
    x, y = _values(a), _values(b)
    if x.shape != y.shape:
        raise ValueError(f"paired values need equal lengths, got {x.size} and {y.size}")
    d = x - y
    m, lo, hi, sd = _t_on_scale(d, ci)
    low, high = _range(*bounds)
    clipped = not math.isnan(lo) and (lo < low or hi > high)
    if not math.isnan(lo):
        lo, hi = max(lo, low), min(hi, high)
    method = f"paired t over {_over(d.size)}" + (" (clipped to its range)" if clipped else "")
    return Interval(m, lo, hi, method, d.size, tuple(d.tolist()), sd, bounds=(low, high))


def small_sample_factor(n: int, ci: float = CI) -> float:
    """How much a percentile bootstrap over ``n`` top-level units (seeds) must be widened.

    A bootstrap that resamples ``n`` seeds sees their spread with the plug-in variance (divided
    by ``n``, not ``n - 1``) and takes normal quantiles: with 3 seeds its interval is about
    2.7 times too narrow against the Student-t interval on the same per-seed values, and it can
    never reach beyond the seeds' range. The factor ``t_{n-1} / z * sqrt(n / (n - 1))`` undoes
    both (the correction behind Hesterberg's expanded percentile interval, applied to the
    width); 1 for one unit or fewer, where no between-seed spread can be seen. It tends to 1
    as ``n`` grows (1.22 at 10 seeds, 1.06 at 30).
    """
    if n < 2:
        return 1.0
    z = float(stats.norm.ppf(0.5 + ci / 2))
    return _t_quantile(n, ci) / z * math.sqrt(n / (n - 1))


def hierarchical_bootstrap(per_seed: Sequence[np.ndarray],
                           statistic: Callable[[np.ndarray], float] = np.mean, *,
                           n_boot: int = 2000, ci: float = CI, seed: int = 0,
                           bounds: tuple[float | None, float | None] = (None, None)) -> Interval:
    """A statistic of test items measured within each seed: resample seeds, then items.

    Args:
        per_seed: one array per seed; its first axis indexes test items (rows are resampled
            together, e.g. ``np.column_stack([score, label])`` for an AUC).
        statistic: function of one seed's (resampled) items returning a float; the estimate is
            its mean over seeds.
        n_boot: bootstrap replicates; ci: coverage; seed: seed of the resampling generator.
        bounds: the statistic's natural range (e.g. ``(0, 1)`` for an AUC); the interval is
            clipped to it.

    Each replicate draws seeds with replacement, then items with replacement within each
    drawn seed, and averages the statistic over the drawn seeds: both the between-seed and the
    within-seed (test-set) variation enter the percentile interval. Each side of that interval
    is then widened about the estimate by :func:`small_sample_factor` of the number of seeds,
    so that few seeds do not give a falsely narrow interval (the factor treats all of the
    width as between-seed, which errs wide when the item noise dominates). The interval's
    ``spread`` is the per-seed standard deviation that the widened half-width implies, so
    :func:`seeds_needed` can extrapolate from it.
    """
    groups = [np.asarray(g) for g in per_seed]
    if not groups or any(g.shape[0] < 2 for g in groups):
        raise ValueError("need at least one seed with at least two items each")
    rng = np.random.default_rng(seed)
    n = len(groups)
    estimate = float(np.mean([statistic(g) for g in groups]))
    reps = np.empty(n_boot)
    for b in range(n_boot):
        drawn = rng.integers(0, n, size=n)
        vals = [statistic(groups[s][rng.integers(0, groups[s].shape[0], groups[s].shape[0])])
                for s in drawn]
        reps[b] = np.mean(vals)
    reps = reps[np.isfinite(reps)]
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha]) if reps.size else (math.nan, math.nan)
    factor = small_sample_factor(n, ci)
    if reps.size:
        lo = estimate - factor * max(0.0, estimate - float(lo))
        hi = estimate + factor * max(0.0, float(hi) - estimate)
    low, high = _range(*bounds)
    lo, hi = max(lo, low), min(hi, high)
    spread = math.nan
    if n >= 2 and math.isfinite(hi - lo):
        spread = (hi - lo) / 2 / _t_quantile(n, ci) * math.sqrt(n)
    method = f"hierarchical bootstrap over {_over(n)} x items"
    if n >= 2:
        method += f" (widened x{factor:.2f} for {n} seeds)"
    return Interval(estimate, float(lo), float(hi), method, n,
                    tuple(float(statistic(g)) for g in groups), spread, "bootstrap",
                    (low, high))


def bootstrap_interval(values: Sequence[float] | np.ndarray, *,
                       statistic: Callable[[np.ndarray], float] = np.mean, n_boot: int = 2000,
                       ci: float = CI, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval ``(lo, hi)`` of ``statistic`` over the items of one sample
    (test points of one model; for statistics over seeds use the intervals above).

    ``values`` is 1-D, or 2-D with rows resampled together (paired data). ``(nan, nan)`` for
    fewer than two items; the same seed gives the same interval.
    """
    arr = np.asarray(values, dtype=float)
    n = arr.shape[0] if arr.ndim else 0
    if n < 2:
        return (math.nan, math.nan)
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    if statistic is np.mean and arr.ndim == 1:
        reps = arr[idx].mean(axis=1)
    else:
        reps = np.array([statistic(arr[i]) for i in idx], dtype=float)
    return percentile_interval(reps, ci=ci)


def percentile_interval(reps: Sequence[float] | np.ndarray, *, ci: float = CI
                        ) -> tuple[float, float]:
    """Percentile interval ``(lo, hi)`` of bootstrap replicates, ignoring non-finite ones;
    ``(nan, nan)`` with fewer than two finite replicates."""
    r = np.asarray(reps, dtype=float).ravel()
    r = r[np.isfinite(r)]
    if r.size < 2:
        return (math.nan, math.nan)
    a = (1.0 - ci) / 2.0
    lo, hi = np.quantile(r, [a, 1.0 - a])
    return (float(lo), float(hi))


def seeds_needed(interval: Interval, threshold: float, *, ci: float = CI,
                 max_seeds: int = 1000) -> int | None:
    """Seeds the observed effect and spread would need to decide ``estimate`` vs ``threshold``.

    On the interval's working scale, the smallest ``n >= 2`` with
    ``t_{n-1} * sd / sqrt(n) < |mean - threshold|`` (:func:`sign_test_seeds` when the seeds
    agree exactly); None when the interval has no spread to extrapolate from (one seed,
    counts), or when the estimate sits on the threshold, or more than
    ``max_seeds`` would be needed.
    """
    sd = interval.spread
    if math.isnan(sd) or interval.n < 2:
        return None
    transform = {"identity": lambda v: v,
                 "bootstrap": lambda v: v,
                 "fisher-z": lambda v: math.atanh(max(-1 + _EDGE, min(1 - _EDGE, v))),
                 "log": lambda v: math.log(v) if v > 0 else -math.inf,
                 "logit": lambda v: float(_logit(np.array([v]))[0])}.get(interval.scale)
    if transform is None:
        return None
    z = np.asarray([transform(v) for v in interval.values], dtype=float)
    gap = abs(float(z.mean()) - transform(threshold))
    if not math.isfinite(gap) or gap == 0:
        return None
    if sd == 0:
        return sign_test_seeds(ci)
    for n in range(2, max_seeds + 1):
        if _t_quantile(n, ci) * sd / math.sqrt(n) < gap:
            return n
    return None
