"""The one formatting helper for every number a notebook prints.

Notebooks print numbers at the precision that carries meaning, never float noise, so that a
rendered notebook reads well and never shows digits that change from one CPU, thread count or
BLAS build to the next. :func:`fmt` rounds to ``sig`` significant digits and prints magnitudes
below ``floor`` as ``< floor`` (a relative change of 3e-7 is "no change", not a result);
:func:`fmt_table` applies it to every number of a pandas table.

What nbval compares and what it ignores is decided per cell (README, "Writing a notebook"):
rounding alone cannot make a number from a trained model identical on every machine, because
float differences between CPUs change the trained weights. Those numbers are checked with
stated tolerances by ``tests/test_smoke_regression.py`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

DEFAULT_SIG = 3
DEFAULT_FLOOR = 1e-6


def _fmt_float(v: float, sig: int, floor: float | None, plus: bool) -> str:
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    if floor is not None and abs(v) < floor:
        return f"< {floor:.0e}" if v > 0 else f"> -{floor:.0e}"
    text = f"{v:{'+' if plus else ''}.{sig}g}"
    if "e" in text:  # 1.5e+03 -> 1.5e3, 2e-05 -> 2e-5: shorter, still unambiguous
        mant, exp = text.split("e")
        text = f"{mant}e{int(exp)}"
    return text


def fmt(x: Any, sig: int = DEFAULT_SIG, floor: float | None = DEFAULT_FLOOR, *,
        plus: bool = False) -> str:
    """Format a number (or a list, tuple, interval or dict of numbers) for printing.

    Args:
        x: an int, float, numpy scalar or 0-d array, None, a bool, a string (returned as is),
            or a list / tuple / array / Series / tensor (``[a, b]``) or mapping (``{k: v}``)
            of those.
        sig: significant digits (default 3). Integers are printed in full.
        floor: magnitudes below it print as ``< 1e-06`` (default ``1e-6``); None: no floor.
        plus: write a ``+`` before positive numbers (for differences and gains).

    Returns:
        The text: ``fmt(0.123456) == "0.123"``, ``fmt(3.474e-7) == "< 1e-06"``,
        ``fmt([0.9123, 0.9876]) == "[0.912, 0.988]"``, ``fmt(None) == "n/a"``,
        ``fmt(float("nan")) == "n/a"``, ``fmt(12000.0) == "1.2e4"``, ``fmt(226) == "226"``.

    Example:
        >>> print(f"rho {fmt(0.93412)} (95% CI {fmt([0.91, 0.962])})")
        rho 0.934 (95% CI [0.91, 0.962])
    """
    if sig < 1:
        raise ValueError(f"sig must be >= 1, got {sig}")
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return f"{int(x):+d}" if plus else str(int(x))
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return fmt(x.item(), sig, floor, plus=plus)
    if isinstance(x, (float, np.floating)):
        return _fmt_float(float(x), sig, floor, plus)
    if isinstance(x, Mapping):
        return "{" + ", ".join(f"{k}: {fmt(v, sig, floor, plus=plus)}" for k, v in x.items()) + "}"
    if isinstance(x, (list, tuple, np.ndarray)):
        return "[" + ", ".join(fmt(v, sig, floor, plus=plus) for v in x) + "]"
    if hasattr(x, "tolist"):  # a pandas Series or Index, a torch tensor
        return fmt(x.tolist(), sig, floor, plus=plus)
    raise TypeError(f"fmt cannot format a {type(x).__name__}")


def fmt_table(df, sig: int = DEFAULT_SIG, floor: float | None = DEFAULT_FLOOR,
              **to_string: Any) -> str:
    """A pandas DataFrame or Series as text, every value through :func:`fmt` (the index and
    column labels as they are); keyword arguments go to ``to_string`` (e.g. ``index=False``)."""
    return df.map(lambda v: fmt(v, sig, floor)).to_string(**to_string)
