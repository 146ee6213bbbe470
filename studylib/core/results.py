"""Metrics, claims, confidence intervals and the ``results.json`` contract.

Every study writes one flat ``results.json`` (schema in ``shared/DESIGN.md``), so readers never
parse notebooks or logs. A claim's verdict is computed from its evidence by the helpers here:

- ``reproduced``: the whole 95% confidence interval is on the claimed side of the threshold;
- ``not reproduced``: the whole interval is on the other side;
- ``inconclusive``: the interval straddles the threshold, or it could not be computed
  (for example one seed only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from scipy import stats

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
STATUSES = ("ok", "failed")


class Verdict:
    """Namespace of the three verdict strings (``Verdict.REPRODUCED`` ...)."""

    REPRODUCED = REPRODUCED
    NOT_REPRODUCED = NOT_REPRODUCED
    INCONCLUSIVE = INCONCLUSIVE


# ----------------------------------------------------------------------------- intervals


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` over ``values``.

    Args:
        values: 1-D array of observations, or a 2-D array whose *rows* are resampled together
            (paired data, e.g. ``np.column_stack([scores, labels])`` for an AUC).
        statistic: function of the resampled array returning a float (default ``np.mean``).
        n_boot: bootstrap replicates (default 2000).
        ci: coverage (default 0.95).
        seed: seed of the resampling generator; the same seed gives the same interval.

    Returns:
        ``(lo, hi)``; ``(nan, nan)`` for fewer than two observations.

    Example:
        >>> lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
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
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return (math.nan, math.nan)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def mean_ci(values: Iterable[float], *, ci: float = 0.95) -> dict[str, Any]:
    """Mean with a Student-t confidence interval, for a handful of seeds.

    Returns ``{"mean": m, "ci95": [lo, hi], "n": n}`` (the key is ``ci95`` whatever ``ci`` is,
    as the results.json contract names it). With one value the interval is ``[nan, nan]``;
    with identical values it is ``[m, m]``.
    """
    arr = np.asarray(list(values), dtype=float)
    n = int(arr.size)
    if n == 0:
        return {"mean": math.nan, "ci95": [math.nan, math.nan], "n": 0}
    m = float(arr.mean())
    if n < 2:
        return {"mean": m, "ci95": [math.nan, math.nan], "n": n}
    se = float(arr.std(ddof=1) / math.sqrt(n))
    if se == 0.0:
        return {"mean": m, "ci95": [m, m], "n": n}
    half = float(stats.t.ppf(0.5 + ci / 2, df=n - 1)) * se
    return {"mean": m, "ci95": [m - half, m + half], "n": n}


# ----------------------------------------------------------------------------- verdicts


def _ci_pair(ci: Sequence[float] | float) -> tuple[float, float]:
    if isinstance(ci, (int, float, np.floating)):
        return float(ci), float(ci)
    lo, hi = ci
    return float(lo), float(hi)


def verdict_at_least(ci: Sequence[float] | float, threshold: float) -> str:
    """Verdict for a claim "the quantity is >= threshold" given its CI ``(lo, hi)``.

    A bare number counts as a degenerate interval (an exact quantity, such as a count).
    """
    lo, hi = _ci_pair(ci)
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    if lo >= threshold:
        return REPRODUCED
    if hi < threshold:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def verdict_at_most(ci: Sequence[float] | float, threshold: float) -> str:
    """Verdict for a claim "the quantity is <= threshold" given its CI ``(lo, hi)``."""
    lo, hi = _ci_pair(ci)
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    if hi <= threshold:
        return REPRODUCED
    if lo > threshold:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def verdict_greater(ci: Sequence[float] | float, threshold: float = 0.0) -> str:
    """Verdict for a strict claim "the quantity is > threshold" (e.g. a drop whose CI excludes 0)."""
    lo, hi = _ci_pair(ci)
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    if lo > threshold:
        return REPRODUCED
    if hi <= threshold:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def verdict_less(ci: Sequence[float] | float, threshold: float = 0.0) -> str:
    """Verdict for a strict claim "the quantity is < threshold"."""
    lo, hi = _ci_pair(ci)
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    if hi < threshold:
        return REPRODUCED
    if lo >= threshold:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def verdict_from_bool(holds: bool | None) -> str:
    """``True`` -> reproduced, ``False`` -> not reproduced, ``None`` -> inconclusive."""
    if holds is None:
        return INCONCLUSIVE
    return REPRODUCED if bool(holds) else NOT_REPRODUCED


def combine_verdicts(verdicts: Iterable[str]) -> str:
    """All parts of a claim must hold: any ``not reproduced`` wins, then any ``inconclusive``."""
    vs = list(verdicts)
    for v in vs:
        if v not in VERDICTS:
            raise ValueError(f"unknown verdict {v!r}; valid: {VERDICTS}")
    if not vs:
        return INCONCLUSIVE
    if NOT_REPRODUCED in vs:
        return NOT_REPRODUCED
    if INCONCLUSIVE in vs:
        return INCONCLUSIVE
    return REPRODUCED


# ----------------------------------------------------------------------------- contract

_REQUIRED = {
    "study": str,
    "profile": str,
    "status": str,
    "seeds": list,
    "device": str,
    "runtime_s": (int, float),
    "params": dict,
    "metrics": dict,
    "claims": list,
}


def validate_results(obj: dict[str, Any]) -> dict[str, Any]:
    """Check ``obj`` against the results.json contract; return it, or raise ``ValueError``.

    Required keys and types: study, profile, status ("ok" | "failed"), seeds, device,
    runtime_s, params, metrics (name -> number or null), claims (each with id, statement,
    verdict in ``VERDICTS`` and an evidence dict; ids unique). A failed study also has "error".
    """
    if not isinstance(obj, dict):
        raise ValueError("results must be a JSON object")
    for key, typ in _REQUIRED.items():
        if key not in obj:
            raise ValueError(f"results.json is missing key {key!r}")
        if not isinstance(obj[key], typ) or isinstance(obj[key], bool) and typ is not bool:
            raise ValueError(f"results.json key {key!r} has type {type(obj[key]).__name__}")
    if obj["status"] not in STATUSES:
        raise ValueError(f"status {obj['status']!r} is not one of {STATUSES}")
    if obj["status"] == "failed" and not obj.get("error"):
        raise ValueError("a failed study must say its error")
    for name, value in obj["metrics"].items():
        if value is not None and not isinstance(value, (int, float)):
            raise ValueError(f"metric {name!r} must be a number, got {type(value).__name__}")
    seen: set[str] = set()
    for c in obj["claims"]:
        if "schema" in c:  # a typed claim (studylib.stats.Claim): its own schema and checks
            from ..stats import Claim

            Claim.from_json(c)
        else:  # a claim written before the typed claims: id, statement, verdict, evidence
            for key in ("id", "statement", "verdict", "evidence"):
                if key not in c:
                    raise ValueError(f"claim {c.get('id', '?')!r} is missing {key!r}")
            if not isinstance(c["evidence"], dict):
                raise ValueError(f"claim {c['id']!r}: evidence must be an object")
        if c["verdict"] not in VERDICTS:
            raise ValueError(f"claim {c['id']!r}: verdict {c['verdict']!r} not in {VERDICTS}")
        if c["id"] in seen:
            raise ValueError(f"claim id {c['id']!r} appears twice")
        seen.add(c["id"])
    return obj


def round_sig(x: Any, sig: int = 4) -> Any:
    """Round numbers (also inside lists/dicts) to ``sig`` significant digits, for printing."""
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if x == 0 or not math.isfinite(x):
            return x
        return round(x, sig - 1 - int(math.floor(math.log10(abs(x)))))
    if isinstance(x, dict):
        return {k: round_sig(v, sig) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [round_sig(v, sig) for v in x]
    if isinstance(x, np.ndarray):
        return round_sig(x.tolist(), sig)
    return x
