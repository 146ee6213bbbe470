"""Rank correlations: the one Spearman and the one Kendall of the kit.

scipy computes them; these wrappers fix the two conventions the studies rely on: vectors of
unequal length are an error, and a vector without spread (a setting that ranks nothing) gives a
correlation of 0 instead of NaN, so it counts as not agreeing. :func:`spearman_rows` computes
one Spearman correlation per row of two arrays at once (saliency maps, one per image), which
scipy's ``spearmanr`` does not do without a Python loop.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy import stats


def _pair(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"a and b must be 1-D of equal length >= 2, got {a.shape} and {b.shape}")
    return a, b


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b between two score vectors (ties handled); 0 where a vector has no
    spread."""
    tau = stats.kendalltau(*_pair(a, b)).statistic
    return float(tau) if np.isfinite(tau) else 0.0


def spearman_rho(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); 0 where a vector has no spread."""
    rho = stats.spearmanr(*_pair(a, b)).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation between ``a[i]`` and ``b[i]`` for every row ``i`` (each row
    flattened; ties get average ranks), shape (N,). ``nan`` where a row is constant: a constant
    map has no ranking to compare, and the caller decides how to count it."""
    fa = np.asarray(a, float).reshape(len(a), -1)
    fb = np.asarray(b, float).reshape(len(b), -1)
    if fa.shape != fb.shape:
        raise ValueError(f"rows must have equal shapes, got {fa.shape} and {fb.shape}")
    ra = stats.rankdata(fa, axis=1)
    rb = stats.rankdata(fb, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / np.where(den > 0, den, 1), np.nan)


def mean_pairwise_kendall_tau(scores: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Mean Kendall tau over all pairs of rows of ``scores`` (shape ``(n_settings, n_items)``):
    how stable the ranking of the items is across the settings (1 = identical rankings)."""
    s = np.asarray(scores, float)
    if s.ndim != 2 or s.shape[0] < 2:
        raise ValueError("scores must be 2-D with at least two settings (rows)")
    return float(np.mean([kendall_tau(s[i], s[j])
                          for i, j in itertools.combinations(range(s.shape[0]), 2)]))
