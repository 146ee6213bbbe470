"""One seaborn theme for every study, and ``save_figure``.

Figures are written as PNG (they render on code-hosting sites and in static HTML) and shown
inline at a modest width, instead of matplotlib's own inline display, so a notebook shows each
figure exactly once.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.rcParams["svg.hashsalt"] = "studylib"  # deterministic ids if someone saves SVG

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_write_bytes  # noqa: E402

PALETTE = "colorblind"
DPI = 110
INLINE_WIDTH = 720


def set_theme() -> None:
    """The kit's single look: seaborn "whitegrid", colour-blind palette, readable fonts."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE, font_scale=0.95)
    plt.rcParams.update(
        {
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "savefig.bbox": "tight",
            "axes.titlesize": "medium",
            "figure.autolayout": False,
        }
    )


def palette(n: int) -> list:
    """``n`` colours of the kit's palette."""
    return sns.color_palette(PALETTE, n)


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    return get_ipython() is not None


def save_figure(
    fig: matplotlib.figure.Figure,
    name: str,
    figures_dir: str | Path,
    *,
    show: bool = True,
    width: int = INLINE_WIDTH,
) -> Path:
    """Write ``fig`` to ``figures_dir/<name>.png`` atomically, show it inline, close it.

    Args:
        fig: the matplotlib figure.
        name: file stem, letters, digits, ``_`` and ``-`` only (e.g. ``"loss_curves"``).
        figures_dir: folder for the PNG (created if missing).
        show: display inline when running under IPython (default True).
        width: inline display width in pixels (default 720).

    Returns:
        The path of the PNG.
    """
    if not name or any(not (ch.isalnum() or ch in "_-") for ch in name):
        raise ValueError(f"figure name {name!r} must use letters, digits, '_' or '-' only")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    path = atomic_write_bytes(Path(figures_dir) / f"{name}.png", buf.getvalue())
    if show and _in_ipython():
        from IPython.display import Image, display

        display(Image(data=buf.getvalue(), width=width))
    plt.close(fig)
    return path
