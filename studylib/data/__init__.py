"""Data sets by name: embedded real data, procedural generators, the user's images, torchvision.

One entry point, :func:`load`, returns a :class:`DataBundle` holding a train and a test
:class:`Split`. Every split holds ``x`` as float32 ``(N, C, H, W)`` in ``[0, 1]``, ``y`` as int64
``(N,)`` and a dict ``extras`` of per-example side information (masks, lesion types, ...).
Every generator is deterministic in its ``seed``: the same arguments give the same tensors.

Names (see each ``_load_<name>`` function for its arguments):

- ``"digits"``: scikit-learn's bundled handwritten digits (1,797 real 8x8 images), offline.
- ``"signs"``: procedural RGB traffic signs modelled on eight GTSRB classes, with object masks.
- ``"mammo_phantom"``: procedural mammogram patches with microcalcification clusters and masses.
- ``"mammo_folder"``: the user's own mammograms (PNG or DICOM) listed in a CSV file.
- ``"mnist"``, ``"cifar10"``, ``"gtsrb"``: torchvision data sets read from a data root.

Example::

    from studylib import data
    bundle = data.load("signs", n_train=2000, n_test=500, classes=[2, 25], seed=0)
    bundle.num_classes, bundle.input_shape      # 2, (3, 32, 32)
    bundle.train.extras["mask"].shape           # (2000, 1, 32, 32)

``bundle.spec`` is a JSON-able dict of every argument that determined the tensors (name
included, defaults filled in); the training cache uses it in its keys.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DataBundle",
    "Split",
    "load",
    "available",
    "SIGN_CLASSES",
    "GTSRB_CLASS_NAMES",
    "speck_cnr",
]

# Bump when a procedural generator changes its output, so cached checkpoints keyed on
# ``spec`` are not reused for different pixels.
GENERATOR_VERSION = 2


# --------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------


def _as_index(idx: Any, n: int) -> torch.Tensor:
    """Turn a slice, int sequence, bool mask, numpy array or tensor into a LongTensor of rows."""
    if isinstance(idx, slice):
        return torch.arange(n)[idx]
    if isinstance(idx, torch.Tensor):
        t = idx.detach().cpu()
    else:
        t = torch.as_tensor(np.asarray(idx))
    if t.dtype == torch.bool:
        if t.shape != (n,):
            raise ValueError(f"boolean index must have shape ({n},), got {tuple(t.shape)}")
        return torch.nonzero(t, as_tuple=False).flatten()
    if t.ndim == 0:
        t = t.reshape(1)
    if t.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    if t.is_floating_point():
        raise ValueError("index must hold integers or booleans, got floating-point values")
    t = t.long().flatten()
    if (t >= n).any() or (t < -n).any():
        raise IndexError(f"index out of range for a split of {n} examples")
    return torch.where(t < 0, t + n, t)


def _take(value: Any, index: torch.Tensor, n: int) -> Any:
    """Index one extras entry if it is per-example (leading length ``n``), else keep it whole."""
    if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == n:
        return value[index.to(value.device)]
    if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n:
        return value[index.numpy()]
    if isinstance(value, (list, tuple)) and len(value) == n:
        return [value[i] for i in index.tolist()]
    return value


def _move(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list):
        return [_move(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(_move(v, device) for v in value)
    return value


@dataclass
class Split:
    """One part (train or test) of a data set.

    Attributes:
        x: float32 tensor ``(N, C, H, W)`` with values in ``[0, 1]``.
        y: int64 tensor ``(N,)`` of class labels ``0 .. num_classes-1``.
        extras: per-example side information keyed by name, e.g. ``"mask"`` ``(N, 1, H, W)``,
            ``"lesion_type"`` ``(N,)``, or a list of ``N`` tensors (``"specks"``). An entry whose
            leading length equals ``N`` (tensor, array, list) is treated as per-example and is
            sliced by :meth:`subset`; anything else is carried along unchanged.

    ``len(split)`` is ``N``. ``split[i]`` with an int returns ``(x[i], y[i])`` so a Split works
    as a torch ``Dataset``; ``split[idx]`` with a slice, int list/array/tensor or a boolean mask
    returns a new Split (same as ``split.subset(idx)``), extras sliced alike.
    """

    x: torch.Tensor
    y: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} rows but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: Any) -> Split:
        """A new Split with rows ``idx`` (slice, ints, bool mask, array or tensor)."""
        n = len(self)
        index = _as_index(idx, n)
        return Split(
            x=self.x[index.to(self.x.device)],
            y=self.y[index.to(self.y.device)],
            extras={k: _take(v, index, n) for k, v in self.extras.items()},
        )

    def __getitem__(self, idx: Any):
        if isinstance(idx, (int, np.integer)):
            return self.x[idx], self.y[idx]
        return self.subset(idx)

    def to(self, device: torch.device | str) -> Split:
        """A copy with ``x``, ``y`` and every tensor in ``extras`` (also inside lists) on ``device``."""
        return Split(
            x=self.x.to(device),
            y=self.y.to(device),
            extras={k: _move(v, device) for k, v in self.extras.items()},
        )


@dataclass
class DataBundle:
    """A named data set: train and test splits, class names and the spec that produced them.

    Attributes:
        name: the name given to :func:`load`.
        spec: JSON-able dict of every argument that determined the data (``name`` included,
            defaults filled in, plus a generator version for procedural sets). Used in cache keys.
        train, test: the two :class:`Split` objects.
        classes: class names; label ``i`` is ``classes[i]``.
        info: descriptive metadata that does not change the data (pixel size, what a mask
            means, GTSRB ids); not part of cache keys.
    """

    name: str
    spec: dict[str, Any]
    train: Split
    test: Split
    classes: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one example."""
        return tuple(int(s) for s in self.train.x.shape[1:])  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Argument checks shared by the loaders
# --------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value: Any, low: float = 0.0, high: float = 1.0,
                    open_interval: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = (low < value < high) if open_interval else (low <= value <= high)
    if not ok:
        bracket = f"({low}, {high})" if open_interval else f"[{low}, {high}]"
        raise ValueError(f"{name} must be a number in {bracket}, got {value!r}")
    return float(value)


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: per class, ``round(test_fraction * n_c)`` go to test.

    Written here rather than using scikit-learn's ``train_test_split`` so the per-class counts
    are exactly the rounded expectation and the split does not depend on the sklearn version.
    Returns sorted train and test index arrays.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(math.floor(test_fraction * len(idx) + 0.5))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``(N, C, H, W)`` to ``size x size`` (antialiased when shrinking)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = size < max(x.shape[-1], x.shape[-2])
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=shrink).clamp_(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# digits: scikit-learn's bundled real handwritten digits
# --------------------------------------------------------------------------------------------


def _load_digits(image_size: int = 8, test_fraction: float = 0.3, seed: int = 0) -> DataBundle:
    """scikit-learn's 1,797 real 8x8 handwritten digits (UCI optdigits test set), offline.

    Args:
        image_size: side of the returned images; 8 keeps the originals, anything else
            (e.g. 28, the MNIST size) resizes bilinearly and clamps to [0, 1]. Default 8.
        test_fraction: fraction of each class that goes to the test split, in (0, 1). Default 0.3.
        seed: seed of the stratified split. Default 0.

    x is ``pixel / 16`` (the original 0..16 counts), shape ``(N, 1, image_size, image_size)``.
    """
    image_size = _check_int("image_size", image_size, 2)
    test_fraction = _check_fraction("test_fraction", test_fraction, open_interval=True)
    seed = _check_int("seed", seed)
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = _resize(x, image_size)
    y = torch.tensor(d.target, dtype=torch.long)
    tr, te = _stratified_split(d.target, test_fraction, seed)
    spec = {"name": "digits", "image_size": image_size, "test_fraction": test_fraction,
            "seed": seed}
    return DataBundle(
        name="digits", spec=spec,
        train=Split(x[tr], y[tr], {"index": torch.as_tensor(tr)}),
        test=Split(x[te], y[te], {"index": torch.as_tensor(te)}),
        classes=[str(i) for i in range(10)],
        info={"source": "sklearn.datasets.load_digits", "extras": {
            "index": "row of the example in sklearn's load_digits()"}},
    )


# --------------------------------------------------------------------------------------------
# signs: procedural traffic signs modelled on GTSRB
# --------------------------------------------------------------------------------------------

#: The eight procedural sign classes as (name, GTSRB class id), in label order for classes=None.
SIGN_CLASSES: list[tuple[str, int]] = [
    ("speed_limit_30", 1),
    ("speed_limit_50", 2),
    ("speed_limit_70", 4),
    ("priority_road", 12),
    ("yield", 13),
    ("stop", 14),
    ("no_entry", 17),
    ("road_work", 25),
]

#: GTSRB's 43 class names, index = GTSRB class id.
GTSRB_CLASS_NAMES: list[str] = [
    "speed_limit_20", "speed_limit_30", "speed_limit_50", "speed_limit_60", "speed_limit_70",
    "speed_limit_80", "end_of_speed_limit_80", "speed_limit_100", "speed_limit_120",
    "no_passing", "no_passing_over_3_5t", "right_of_way_next_intersection", "priority_road",
    "yield", "stop", "no_vehicles", "over_3_5t_prohibited", "no_entry", "general_caution",
    "dangerous_curve_left", "dangerous_curve_right", "double_curve", "bumpy_road",
    "slippery_road", "road_narrows_right", "road_work", "traffic_signals", "pedestrians",
    "children_crossing", "bicycles_crossing", "beware_ice_snow", "wild_animals_crossing",
    "end_of_all_limits", "turn_right_ahead", "turn_left_ahead", "ahead_only",
    "go_straight_or_right", "go_straight_or_left", "keep_right", "keep_left",
    "roundabout_mandatory", "end_of_no_passing", "end_of_no_passing_over_3_5t",
]


def _norm_name(s: str) -> str:
    return str(s).strip().lower().replace(" ", "_").replace("-", "_")


def _select_classes(classes: Sequence[Any] | None, names: list[str], ids: list[int],
                    what: str) -> list[int]:
    """Resolve ``classes`` (names or integer ids, any mix) to positions in ``names``.

    Returns positions in the order given, so label ``i`` of the result is ``classes[i]``.
    """
    if classes is None:
        return list(range(len(names)))
    if isinstance(classes, (str, int)) or not isinstance(classes, Sequence):
        raise ValueError(f"classes must be a list of class names or ids, got {classes!r}")
    by_name = {_norm_name(n): i for i, n in enumerate(names)}
    by_id = {int(c): i for i, c in enumerate(ids)}
    out: list[int] = []
    for c in classes:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            pos = by_id.get(int(c))
        elif isinstance(c, str):
            pos = by_name.get(_norm_name(c))
        else:
            pos = None
        if pos is None:
            valid = ", ".join(f"{n} ({i})" for n, i in zip(names, ids, strict=True))
            raise ValueError(f"unknown {what} class {c!r}; valid classes (name (id)): {valid}")
        if pos in out:
            raise ValueError(f"class {c!r} is listed twice in classes={list(classes)}")
        out.append(pos)
    if len(out) < 2:
        raise ValueError(f"classes must name at least two classes, got {list(classes)}")
    return out


def _seg_dist(u: torch.Tensor, v: torch.Tensor, a: tuple[float, float],
              b: tuple[float, float]) -> torch.Tensor:
    """Euclidean distance from points (u, v) to the segment a-b."""
    bx, by = b[0] - a[0], b[1] - a[1]
    pu, pv = u - a[0], v - a[1]
    h = ((pu * bx + pv * by) / max(bx * bx + by * by, 1e-12)).clamp(0.0, 1.0)
    return torch.hypot(pu - bx * h, pv - by * h)


def _polyline_dist(u: torch.Tensor, v: torch.Tensor,
                   pts: Sequence[tuple[float, float]]) -> torch.Tensor:
    d = _seg_dist(u, v, pts[0], pts[1])
    for a, b in zip(pts[1:-1], pts[2:], strict=True):
        d = torch.minimum(d, _seg_dist(u, v, a, b))
    return d


def _regular_polygon(n: int, circumradius: float, phase_deg: float,
                     centre: tuple[float, float] = (0.0, 0.0)) -> list[tuple[float, float]]:
    ang = np.deg2rad(phase_deg) + 2 * np.pi * np.arange(n) / n
    return [(centre[0] + circumradius * math.cos(t), centre[1] + circumradius * math.sin(t))
            for t in ang]


def _sd_convex_polygon(u: torch.Tensor, v: torch.Tensor,
                       verts: Sequence[tuple[float, float]]) -> torch.Tensor:
    """Exact signed distance to a convex polygon (negative inside)."""
    cx = sum(p[0] for p in verts) / len(verts)
    cy = sum(p[1] for p in verts) / len(verts)
    dist = None
    plane = None
    for a, b in zip(verts, list(verts[1:]) + [verts[0]], strict=True):
        d = _seg_dist(u, v, a, b)
        dist = d if dist is None else torch.minimum(dist, d)
        nx, ny = b[1] - a[1], -(b[0] - a[0])
        norm = math.hypot(nx, ny)
        nx, ny = nx / norm, ny / norm
        if (cx - a[0]) * nx + (cy - a[1]) * ny > 0:  # point the normal away from the centre
            nx, ny = -nx, -ny
        s = (u - a[0]) * nx + (v - a[1]) * ny
        plane = s if plane is None else torch.maximum(plane, s)
    return torch.where(plane < 0, -dist, dist)


def _sd_rounded_regular(u, v, n, circumradius, phase_deg, corner, centre=(0.0, 0.0)):
    """Signed distance to a regular n-gon whose corners are rounded with radius ``corner``."""
    inradius = circumradius * math.cos(math.pi / n)
    shrunk = (inradius - corner) / math.cos(math.pi / n)
    return _sd_convex_polygon(u, v, _regular_polygon(n, shrunk, phase_deg, centre)) - corner


def _ellipse_ring_dist(u, v, cx, cy, a, b):
    """First-order distance to the ellipse ((u-cx)/a)^2 + ((v-cy)/b)^2 = 1."""
    du, dv = (u - cx) / a, (v - cy) / b
    e = torch.sqrt(du * du + dv * dv).clamp_min(1e-6)
    grad = torch.sqrt((du / a) ** 2 + (dv / b) ** 2).clamp_min(1e-6) / e
    return (e - 1.0).abs() / grad


# Glyphs as polylines in a box [-1, 1] x [-1, 1] (x right, y down), DIN-like with a flat-top 3.
_DIGIT_STROKES: dict[str, list[list[tuple[float, float]]]] = {
    "3": [[(-0.85, -1.0), (0.85, -1.0), (-0.15, -0.12)],
          [(-0.15, -0.12), (0.45, -0.08), (0.88, 0.3), (0.85, 0.72), (0.45, 1.0), (-0.2, 1.0),
           (-0.88, 0.72)]],
    "5": [[(0.85, -1.0), (-0.7, -1.0), (-0.85, -0.05), (0.15, -0.2), (0.7, 0.02), (0.92, 0.45),
           (0.72, 0.88), (0.15, 1.02), (-0.88, 0.8)]],
    "7": [[(-0.9, -1.0), (0.9, -1.0), (-0.25, 1.0)]],
}
_LETTER_STROKES: dict[str, list[list[tuple[float, float]]]] = {
    "S": [[(0.9, -1.0), (-0.9, -1.0), (-0.9, 0.0), (0.9, 0.0), (0.9, 1.0), (-0.9, 1.0)]],
    "T": [[(-1.0, -1.0), (1.0, -1.0)], [(0.0, -1.0), (0.0, 1.0)]],
    "P": [[(-0.9, 1.0), (-0.9, -1.0), (0.9, -1.0), (0.9, 0.05), (-0.9, 0.05)]],
}


def _glyph_dist(u, v, strokes, cx, cy, hw, hh):
    """Distance (in sign units) to a glyph drawn in the box centred (cx, cy), half-size (hw, hh)."""
    d = None
    for line in strokes:
        pts = [(cx + x * hw, cy + y * hh) for x, y in line]
        dl = _polyline_dist(u, v, pts)
        d = dl if d is None else torch.minimum(d, dl)
    return d


_RED = (0.80, 0.07, 0.11)
_WHITE = (0.93, 0.93, 0.91)
_BLACK = (0.07, 0.07, 0.08)
_YELLOW = (0.98, 0.74, 0.06)
_TRI_SHIFT = 0.275  # moves a centroid-centred triangle so its bounding box is centred


def _sign_layers(cls: str, u: torch.Tensor,
                 v: torch.Tensor) -> list[tuple[torch.Tensor, tuple[float, float, float]]]:
    """Painter's-order layers ``(signed distance, rgb)`` of sign ``cls`` at sign coordinates.

    Sign coordinates: x right, y down, the sign fits the unit disc. A layer covers the points
    where its signed distance is negative; the first layer is the sign's silhouette.
    """
    if cls.startswith("speed_limit") or cls == "no_entry":
        d = torch.hypot(u, v)
        layers = [(d - 1.0, _WHITE), (d - 0.94, _RED)]  # thin reflective rim, red disc/ring
        if cls == "no_entry":
            bar = torch.maximum(u.abs() - 0.62, v.abs() - 0.15)
            layers.append((bar, _WHITE))
        else:
            digit = cls.rsplit("_", 1)[1][0]
            stroke = 0.065
            ink = torch.minimum(_glyph_dist(u, v, _DIGIT_STROKES[digit], -0.2, 0.0, 0.15, 0.36),
                                _ellipse_ring_dist(u, v, 0.2, 0.0, 0.15, 0.36))
            layers += [(d - 0.73, _WHITE), (ink - stroke, _BLACK)]
        return layers
    if cls == "stop":
        sd = _sd_rounded_regular(u, v, 8, 1.0, 22.5, 0.05)
        ink = None
        for k, ch in enumerate("STOP"):
            cx = -0.5 + k * (1.0 / 3.0)
            if ch == "O":
                dk = _ellipse_ring_dist(u, v, cx, 0.0, 0.12, 0.2)
            else:
                dk = _glyph_dist(u, v, _LETTER_STROKES[ch], cx, 0.0, 0.11, 0.2)
            ink = dk if ink is None else torch.minimum(ink, dk)
        return [(sd, _WHITE), (sd + 0.06, _RED), (ink - 0.045, _WHITE)]
    if cls in ("yield", "road_work"):
        phase = 90.0 if cls == "yield" else -90.0  # yield points down (y grows downwards)
        centre = (0.0, -_TRI_SHIFT if cls == "yield" else _TRI_SHIFT)
        sd = _sd_rounded_regular(u, v, 3, 1.1, phase, 0.08, centre)
        layers = [(sd, _WHITE), (sd + 0.05, _RED), (sd + 0.24, _WHITE)]
        if cls == "road_work":
            # a worker digging next to a pile of earth: head, torso, legs, arm, shovel, pile
            ink = torch.hypot(u + 0.06, v + 0.03) - 0.08
            for a, b, r in [((-0.06, 0.08), (0.06, 0.3), 0.065),
                            ((0.06, 0.3), (-0.08, 0.52), 0.045),
                            ((0.06, 0.3), (0.2, 0.52), 0.045),
                            ((-0.04, 0.13), (-0.2, 0.28), 0.04),
                            ((-0.3, 0.08), (-0.1, 0.5), 0.028)]:
                ink = torch.minimum(ink, _seg_dist(u, v, a, b) - r)
            ink = torch.minimum(ink, torch.hypot(u - 0.34, v - 0.62) - 0.17)
            layers.append((torch.maximum(ink, sd + 0.24), _BLACK))  # clipped to the interior
        return layers
    if cls == "priority_road":
        sd = _sd_rounded_regular(u, v, 4, 1.0, 0.0, 0.06)
        return [(sd, _BLACK), (sd + 0.03, _WHITE), (sd + 0.2, _BLACK), (sd + 0.225, _YELLOW)]
    raise ValueError(f"unknown sign class {cls!r}")  # pragma: no cover - guarded by caller


def _coverage(sd: torch.Tensor, pixel: torch.Tensor | float) -> torch.Tensor:
    """Anti-aliased coverage of a shape from its signed distance (box filter of one pixel)."""
    return (0.5 - sd / pixel).clamp_(0.0, 1.0)


_SKY_BUILDING = np.array([
    [0.55, 0.70, 0.90], [0.75, 0.82, 0.90], [0.85, 0.85, 0.85], [0.50, 0.50, 0.52],
    [0.60, 0.55, 0.48], [0.70, 0.62, 0.55], [0.30, 0.32, 0.36], [0.20, 0.30, 0.45],
], dtype=np.float32)
_GROUND = np.array([
    [0.30, 0.42, 0.20], [0.20, 0.30, 0.14], [0.40, 0.40, 0.40], [0.28, 0.28, 0.30],
    [0.45, 0.38, 0.28], [0.15, 0.17, 0.15], [0.55, 0.55, 0.50],
], dtype=np.float32)
_CLUTTER = np.concatenate([_SKY_BUILDING, _GROUND, np.array([
    [0.65, 0.25, 0.20], [0.80, 0.78, 0.70], [0.10, 0.10, 0.12], [0.85, 0.70, 0.30],
    [0.25, 0.40, 0.55], [0.45, 0.30, 0.20]], dtype=np.float32)])
_FOLIAGE = np.array([
    [0.18, 0.30, 0.10], [0.28, 0.40, 0.15], [0.35, 0.25, 0.15], [0.45, 0.45, 0.42],
    [0.10, 0.12, 0.10], [0.55, 0.50, 0.35],
], dtype=np.float32)
_N_CLUTTER = 6


def _sample_sign_params(rng: np.random.Generator, n: int, k: int,
                        occlusion: float) -> dict[str, np.ndarray]:
    """Per-image random parameters of the sign generator (all drawn up front, in one order)."""
    labels = rng.permutation(np.arange(n) % k)

    def u(lo, hi, size=n):
        return rng.uniform(lo, hi, size).astype(np.float32)

    def pick(palette, size, jitter):
        c = palette[rng.integers(0, len(palette), size)]
        return np.clip(c + rng.uniform(-jitter, jitter, c.shape), 0, 1).astype(np.float32)

    m = _N_CLUTTER
    return {
        "label": labels,
        "scale": u(0.45, 0.8), "tx": u(-0.18, 0.18), "ty": u(-0.18, 0.18),
        "rot": np.deg2rad(u(-12.0, 12.0)), "aspect": u(0.9, 1.1),
        "px": u(-0.15, 0.15), "py": u(-0.15, 0.15),
        "bg_top": pick(_SKY_BUILDING, n, 0.08), "bg_bottom": pick(_GROUND, n, 0.08),
        "horizon": u(-0.3, 0.5), "horizon_soft": u(0.05, 0.5),
        "shape_kind": rng.integers(0, 2, (n, m)),
        "shape_cx": u(-1.2, 1.2, (n, m)), "shape_cy": u(-1.2, 1.2, (n, m)),
        "shape_hw": u(0.05, 0.6, (n, m)), "shape_hh": u(0.05, 0.6, (n, m)),
        "shape_col": pick(_CLUTTER, (n, m), 0.1), "shape_alpha": u(0.5, 1.0, (n, m)),
        "pole": rng.random(n) < 0.5, "pole_w": u(0.04, 0.08), "pole_grey": u(0.35, 0.65),
        "occluded": rng.random(n) < occlusion,
        "occ_angle": u(0.0, 2 * np.pi), "occ_rho": u(0.7, 1.15),
        "occ_a": u(0.2, 0.45), "occ_b": u(0.2, 0.45), "occ_rect": rng.random(n) < 0.5,
        "occ_col": pick(_FOLIAGE, n, 0.05),
        "contrast": u(0.6, 1.15), "brightness": u(-0.18, 0.15), "gain": u(0.9, 1.1, (n, 3)),
        "blur": u(0.0, 1.0), "noise": u(0.0, 0.04),
    }


def _gaussian_blur_per_image(img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with one sigma (pixels) per image; ~0 = no blur."""
    b, c, h, w = img.shape
    radius = max(1, int(math.ceil(3 * float(sigma.max())))) if sigma.numel() else 1
    t = torch.arange(-radius, radius + 1, dtype=img.dtype)
    s = sigma.clamp_min(1e-3).view(b, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)
    k = k.repeat_interleave(c, dim=0)  # (B*C, K)
    x = img.reshape(1, b * c, h, w)
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(b * c, 1, 1, -1), groups=b * c)
    x = F.conv2d(x, k.view(b * c, 1, -1, 1), groups=b * c)
    return x.reshape(b, c, h, w)


def _render_signs(p: dict[str, np.ndarray], lo: int, hi: int, class_names: list[str],
                  image_size: int,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render images ``lo:hi``: returns x (B,3,S,S), visible mask and full sign mask (B,1,S,S).

    Every edge is anti-aliased analytically: a shape's coverage of a pixel is its signed
    distance mapped through a one-pixel ramp (``_coverage``), so no supersampling is needed.
    """
    b, res = hi - lo, image_size
    q = {k: torch.as_tensor(v[lo:hi]) for k, v in p.items()}
    pix = 2.0 / res  # one pixel in world units (the image spans [-1, 1])
    g = (torch.arange(res, dtype=torch.float32) + 0.5) * pix - 1.0
    wy, wx = torch.meshgrid(g, g, indexing="ij")  # world coordinates, y down
    wx, wy = wx.expand(b, res, res), wy.expand(b, res, res)

    def per_image(name, j=None):
        t = q[name] if j is None else q[name][:, j]
        return t.float().view(b, 1, 1)

    def col3(t):
        return t.float().view(b, 3, 1, 1)

    def blend(img, rgb, cov):
        return torch.lerp(img, rgb, cov.unsqueeze(1))

    # background: sky/buildings over ground with a soft horizon, colour texture, clutter
    t = ((wy - per_image("horizon")) / per_image("horizon_soft")).sigmoid().unsqueeze(1)
    img = torch.lerp(col3(q["bg_top"]), col3(q["bg_bottom"]), t)
    tex = torch.randn(b, 3, 6, 6, generator=gen) * 0.06
    img = img + F.interpolate(tex, size=(res, res), mode="bilinear", align_corners=False)
    for j in range(_N_CLUTTER):
        dx, dy = wx - per_image("shape_cx", j), wy - per_image("shape_cy", j)
        hw, hh = per_image("shape_hw", j), per_image("shape_hh", j)
        box = torch.maximum(dx.abs() - hw, dy.abs() - hh)
        ell = _ellipse_ring_dist(dx, dy, 0.0, 0.0, hw, hh) * torch.where(
            (dx / hw) ** 2 + (dy / hh) ** 2 < 1, -1.0, 1.0)
        sd = torch.where(per_image("shape_kind", j) == 1, box, ell)
        img = blend(img, q["shape_col"][:, j].view(b, 3, 1, 1),
                    _coverage(sd, pix) * per_image("shape_alpha", j))

    tx, ty, s = per_image("tx"), per_image("ty"), per_image("scale")
    pole_sd = torch.maximum((wx - tx).abs() - per_image("pole_w") * s, ty - wy)
    pole = _coverage(pole_sd, pix) * per_image("pole")
    img = blend(img, per_image("pole_grey").unsqueeze(1).expand(b, 3, 1, 1), pole)

    # world -> sign coordinates: inverse of  sign -> projective -> scale/aspect -> rotate -> shift
    c, sn = torch.cos(per_image("rot")), torch.sin(per_image("rot"))
    rx, ry = wx - tx, wy - ty
    ax = per_image("aspect")
    qx = (c * rx + sn * ry) / (s * ax)
    qy = (-sn * rx + c * ry) * ax / s
    den = (1 - per_image("px") * qx - per_image("py") * qy).clamp_min(0.05)
    su, sv = qx / den, qy / den
    pix_sign = pix / (s * den)  # one pixel in sign units (local scale of the warp)

    sign_col = torch.zeros(b, 3, res, res)
    sign_cov = torch.zeros(b, res, res)
    labels = q["label"]
    for k, name in enumerate(class_names):
        sel = torch.nonzero(labels == k, as_tuple=False).flatten()
        if sel.numel() == 0:
            continue
        layers = _sign_layers(name, su[sel], sv[sel])
        pk = pix_sign[sel]
        col = torch.zeros(sel.numel(), 3, res, res)
        for sd, rgb in layers[1:]:
            col = blend(col, torch.tensor(rgb).view(1, 3, 1, 1), _coverage(sd, pk))
        # the first layer is the silhouette: its colour fills everything the later ones leave
        first = torch.tensor(layers[0][1]).view(1, 3, 1, 1)
        under = 1.0 - _coverage(layers[1][0], pk).unsqueeze(1)
        sign_col[sel] = col + first * under
        sign_cov[sel] = _coverage(layers[0][0], pk)
    img = blend(img, sign_col, sign_cov)

    # partial occlusion (foliage, a post, another object) near the sign's rim
    ang, rho = per_image("occ_angle"), per_image("occ_rho")
    ocx, ocy = tx + s * rho * torch.cos(ang), ty + s * rho * torch.sin(ang)
    oa, ob = s * per_image("occ_a"), s * per_image("occ_b")
    dx, dy = wx - ocx, wy - ocy
    box = torch.maximum(dx.abs() - oa, dy.abs() - ob)
    ell = _ellipse_ring_dist(dx, dy, 0.0, 0.0, oa, ob) * torch.where(
        (dx / oa) ** 2 + (dy / ob) ** 2 < 1, -1.0, 1.0)
    occ = _coverage(torch.where(q["occ_rect"].view(b, 1, 1), box, ell), pix)
    occ = occ * per_image("occluded")
    img = blend(img, col3(q["occ_col"]), occ)

    full_mask = sign_cov.unsqueeze(1)
    visible_mask = (sign_cov * (1 - occ)).unsqueeze(1)

    # photometric: contrast, brightness, colour cast, blur, sensor noise
    img = (img - 0.5) * per_image("contrast").unsqueeze(1) + 0.5 + per_image("brightness").unsqueeze(1)
    img = img * col3(q["gain"])
    img = _gaussian_blur_per_image(img, q["blur"])
    img = img + torch.randn(img.shape, generator=gen) * per_image("noise").unsqueeze(1)
    return img.clamp_(0.0, 1.0), visible_mask, full_mask


def _make_signs(n: int, class_names: list[str], image_size: int, seed: int, stream: int,
                occlusion: float, chunk: int = 256) -> Split:
    rng = np.random.default_rng([seed, stream, 0x516])
    p = _sample_sign_params(rng, n, len(class_names), occlusion)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    xs, vis, full = [], [], []
    starts = range(0, n, chunk)
    if n > 8 * chunk:
        from ..core.runtime import progress

        starts = progress(starts, desc="signs", total=len(starts))
    for lo in starts:
        x, mv, mf = _render_signs(p, lo, min(n, lo + chunk), class_names, image_size, gen)
        xs.append(x)
        vis.append(mv)
        full.append(mf)
    return Split(
        x=torch.cat(xs).contiguous(),
        y=torch.as_tensor(p["label"], dtype=torch.long),
        extras={
            "mask": torch.cat(vis),
            "full_mask": torch.cat(full),
            "occluded": torch.as_tensor(p["occluded"]),
        },
    )


def _load_signs(n_train: int = 2000, n_test: int = 500, image_size: int = 32,
                classes: Sequence[str | int] | None = None, seed: int = 0,
                occlusion: float = 0.3) -> DataBundle:
    """Procedural RGB traffic signs modelled on eight GTSRB classes.

    Classes (name, GTSRB id): speed_limit_30 (1), speed_limit_50 (2), speed_limit_70 (4),
    priority_road (12), yield (13), stop (14), no_entry (17), road_work (25), each with its
    real shape and colours. Each image varies scale, position, rotation (+-12 deg), perspective,
    aspect, background clutter (gradient, colour texture, six random shapes, a post),
    occlusion, contrast/brightness/colour cast, Gaussian blur (sigma 0-1 px) and sensor noise.
    Geometry is evaluated with signed-distance functions at 4x resolution and box-filtered
    down (anti-aliasing). Written here (no library draws parametric traffic signs).

    Args:
        n_train, n_test: number of images in each split (classes balanced to +-1). Defaults
            2000 and 500.
        image_size: side in pixels. Default 32.
        classes: ``None`` (all eight, in the order above) or a list of class names and/or GTSRB
            ids, e.g. ``[2, 25]`` or ``["speed_limit_50", "road_work"]``; labels follow the
            order given (label ``i`` is ``classes[i]``).
        seed: train and test use separate streams derived from it. Default 0.
        occlusion: probability that an occluder covers part of the sign's rim. Default 0.3.

    Extras: ``"mask"`` (N,1,H,W) float: the visible sign (after occlusion), anti-aliased;
    ``"full_mask"``: the whole sign silhouette before occlusion; ``"occluded"`` bool (N,).
    """
    n_train = _check_int("n_train", n_train, 1)
    n_test = _check_int("n_test", n_test, 1)
    image_size = _check_int("image_size", image_size, 8)
    seed = _check_int("seed", seed)
    occlusion = _check_fraction("occlusion", occlusion)
    names = [nm for nm, _ in SIGN_CLASSES]
    ids = [i for _, i in SIGN_CLASSES]
    pos = _select_classes(classes, names, ids, "signs")
    chosen = [names[i] for i in pos]
    spec = {"name": "signs", "n_train": n_train, "n_test": n_test, "image_size": image_size,
            "classes": chosen, "seed": seed, "occlusion": occlusion,
            "version": GENERATOR_VERSION}
    return DataBundle(
        name="signs", spec=spec,
        train=_make_signs(n_train, chosen, image_size, seed, 0, occlusion),
        test=_make_signs(n_test, chosen, image_size, seed, 1, occlusion),
        classes=chosen,
        info={"gtsrb_ids": [ids[i] for i in pos], "extras": {
            "mask": "visible sign pixels (after occlusion), anti-aliased, (N,1,H,W)",
            "full_mask": "whole sign silhouette before occlusion, (N,1,H,W)",
            "occluded": "bool (N,): an occluder covers part of the sign"}},
    )


# --------------------------------------------------------------------------------------------
# mammo_phantom: procedural mammogram patches with microcalcification clusters and masses
# --------------------------------------------------------------------------------------------

_PHANTOM_REF_SIZE = 128  # lesion sizes below are in pixels at this size (100 um per pixel)


def _power_law_noise(b: int, size: int, beta: torch.Tensor | float, gen: torch.Generator,
                     stretch: torch.Tensor | float = 1.0,
                     angle: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``b`` fields of 1/f^beta noise, ``(b, size, size)``, each zero-mean with unit std.

    White Gaussian noise filtered in the Fourier domain by ``|f|^(-beta/2)`` (so the power
    spectrum falls as ``|f|^-beta``; beta about 3 matches mammographic anatomical noise,
    Burgess et al. 2001). The DC term is removed. ``stretch`` > 1 makes the texture
    anisotropic (elongated along ``angle``, radians), like fibroglandular tissue oriented
    towards the nipple. ``beta``, ``stretch`` and ``angle`` may be per-image tensors ``(b,)``.
    """
    def per(v):
        return torch.as_tensor(v, dtype=torch.float32).reshape(-1, 1, 1)

    white = torch.randn(b, size, size, generator=gen)
    fy = torch.fft.fftfreq(size).view(1, -1, 1)
    fx = torch.fft.rfftfreq(size).view(1, 1, -1)
    c, s = torch.cos(per(angle)), torch.sin(per(angle))
    fa = fx * c + fy * s  # frequency along the elongation axis: shrunk, so structures elongate
    fb = -fx * s + fy * c
    st = per(stretch)
    f = torch.sqrt((fa * st) ** 2 + (fb / st) ** 2)
    f[:, 0, 0] = 1.0
    amp = f.pow(-per(beta) / 2.0)
    amp[:, 0, 0] = 0.0
    field = torch.fft.irfft2(torch.fft.rfft2(white) * amp, s=(size, size))
    field = field - field.mean(dim=(1, 2), keepdim=True)
    return field / field.std(dim=(1, 2), keepdim=True).clamp_min(1e-8)


def _place_specks(rng: np.random.Generator, n_specks: int, cluster_r: float, cy: float,
                  cx: float, r_lo: float, r_hi: float, gap: float) -> np.ndarray:
    """Speck centres/radii ``(K, 3)`` = (row, col, radius) inside a disc, ``gap`` px apart.

    Rejection sampling, 64 candidate positions at a time; the cluster radius grows by 10%
    whenever a batch has no valid candidate, so the requested number is always placed.
    """
    out = np.zeros((0, 3))
    while len(out) < n_specks:
        r = float(rng.uniform(r_lo, r_hi))
        rho = max(cluster_r - r, 0.0) * np.sqrt(rng.random(64))
        phi = rng.uniform(0, 2 * np.pi, 64)
        y, x = cy + rho * np.sin(phi), cx + rho * np.cos(phi)
        dist = np.hypot(y[:, None] - out[None, :, 0], x[:, None] - out[None, :, 1])
        ok = np.flatnonzero((dist >= r + out[None, :, 2] + gap).all(axis=1))
        if len(ok):
            out = np.concatenate([out, [[y[ok[0]], x[ok[0]], r]]])
        else:
            cluster_r *= 1.1
    return out.astype(np.float32)


def _sample_phantom_params(rng: np.random.Generator, n: int, size: int, lesion_fraction: float,
                           calc_fraction: float, calc_contrast: float,
                           mass_contrast: float) -> dict[str, Any]:
    """Per-image random parameters of the phantom generator (drawn up front, in one order)."""
    sc = size / _PHANTOM_REF_SIZE
    n_pos = int(math.floor(n * lesion_fraction + 0.5))
    n_calc = int(math.floor(n_pos * calc_fraction + 0.5))
    lesion_type = rng.permutation(np.array([1] * n_calc + [2] * (n_pos - n_calc)
                                           + [0] * (n - n_pos), dtype=np.int64))

    def u(lo, hi, sz=n):
        return rng.uniform(lo, hi, sz).astype(np.float32)

    p: dict[str, Any] = {
        "lesion_type": lesion_type,
        "beta": u(2.8, 3.2),
        "fat": u(0.20, 0.30), "gland": u(0.25, 0.40), "density": u(-1.2, 1.0),
        "texture": u(0.02, 0.05), "stretch": u(1.0, 2.0), "orient": u(0.0, np.pi),
        "edge": rng.random(n) < 0.25, "edge_dir": u(0, 2 * np.pi),
        "edge_curv": u(1.5, 4.0) * size, "edge_roll": u(0.08, 0.2) * size,
    }
    # lesion geometry (pixel units; row, col)
    centre = np.full((n, 2), np.nan, dtype=np.float32)
    radius = np.zeros(n, dtype=np.float32)
    specks: list[np.ndarray] = []
    mass = {k: np.zeros(n, dtype=np.float32) for k in ("spiculated", "n_spic")}
    harm_a = u(0.0, 0.08, (n, 3))
    harm_phi = u(0.0, 2 * np.pi, (n, 3))
    spic_jitter = u(-0.3, 0.3, (n, 16))  # spicule k points at angle 2 pi (k + jitter) / K
    spic_len = u(1.0, 1.8, (n, 16))
    amp = np.zeros(n, dtype=np.float32)
    for i in range(n):
        t = lesion_type[i]
        if t == 1:
            cr = float(rng.uniform(10, 30)) * sc
            cy, cx = rng.uniform(cr + 3 * sc, size - cr - 3 * sc, 2)
            k = int(rng.integers(5, 16))
            sp = _place_specks(rng, k, cr, float(cy), float(cx), max(0.75, 1.0 * sc),
                               max(0.75, 3.0 * sc), 1.5)
            sp_amp = rng.uniform(0.75, 1.25, len(sp)).astype(np.float32) * calc_contrast
            specks.append(np.concatenate([sp, sp_amp[:, None]], axis=1))
            centre[i], radius[i] = (cy, cx), cr
        else:
            specks.append(np.zeros((0, 4), dtype=np.float32))
        if t == 2:
            mr = float(rng.uniform(25, 50)) * sc
            lo, hi = min(mr + 2, size / 2), max(size - mr - 2, size / 2)
            cy, cx = rng.uniform(lo, hi, 2)
            centre[i], radius[i] = (cy, cx), mr
            mass["spiculated"][i] = float(rng.random() < 0.5)
            mass["n_spic"][i] = int(rng.integers(8, 17))
            amp[i] = mass_contrast * float(rng.uniform(0.8, 1.2))
    p.update(centre=centre, radius=radius, specks=specks, mass_amp=amp, harm_a=harm_a,
             harm_phi=harm_phi, spic_jitter=spic_jitter, spic_len=spic_len, **mass)
    # keep the skin line away from the lesion: the edge passes at signed distance e from the
    # patch centre along edge_dir; e is at least the lesion's projection + its radius + 4 px
    e = rng.uniform(0.15, 0.5, n).astype(np.float32) * size
    nrm = np.stack([np.sin(p["edge_dir"]), np.cos(p["edge_dir"])], axis=1)  # (row, col)
    has = lesion_type > 0
    proj = np.where(has, ((centre - size / 2) * nrm).sum(axis=1) + radius * 1.8 + 4, -np.inf)
    e = np.maximum(e, proj)
    p["edge"] = p["edge"] & (e < 0.5 * size)
    p["edge_offset"] = e.astype(np.float32)
    return p


def _render_phantoms(p: dict[str, Any], lo: int, hi: int, size: int, quantum_noise: float,
                     gen: torch.Generator) -> dict[str, torch.Tensor]:
    b = hi - lo
    sc = size / _PHANTOM_REF_SIZE

    def pi(name):
        return torch.as_tensor(p[name][lo:hi]).float().view(b, 1, 1)

    # anatomical background: 1/f^beta noise mapped to fatty / fibroglandular tissue
    beta = torch.as_tensor(p["beta"][lo:hi])
    n1 = _power_law_noise(b, size, beta, gen, torch.as_tensor(p["stretch"][lo:hi]),
                          torch.as_tensor(p["orient"][lo:hi]))
    n2 = _power_law_noise(b, size, beta, gen)
    gland_frac = torch.sigmoid((n1 - pi("density")) / 0.45)
    tissue = pi("fat") + pi("gland") * gland_frac + pi("texture") * n2

    # breast edge (skin line) with thickness roll-off towards it, air outside
    rows = torch.arange(size, dtype=torch.float32).view(1, -1, 1)
    cols = torch.arange(size, dtype=torch.float32).view(1, 1, -1)
    ny, nx = torch.sin(pi("edge_dir")), torch.cos(pi("edge_dir"))
    rc = pi("edge_curv")
    # centre of the (large) breast outline circle, inside the breast, behind the patch centre
    oy = size / 2 - ny * (rc - pi("edge_offset"))
    ox = size / 2 - nx * (rc - pi("edge_offset"))
    dist = rc - torch.sqrt((rows - oy) ** 2 + (cols - ox) ** 2)  # > 0 inside the breast
    dist = torch.where(pi("edge") > 0, dist, torch.full_like(dist, 1e6))
    thick = 1.0 - torch.exp(-dist.clamp_min(0.0) / pi("edge_roll"))
    air = 0.03
    img = air + (tissue - air) * thick
    tissue_mask = (dist > 0).float()

    lesion = torch.zeros(b, size, size)
    calc_mask = torch.zeros(b, size, size)
    mass_mask = torch.zeros(b, size, size)

    # microcalcifications: anti-aliased discs (4x4 sub-pixel coverage), summed into the image
    sp = [torch.as_tensor(s) for s in p["specks"][lo:hi]]
    counts = [len(s) for s in sp]
    if sum(counts):
        allsp = torch.cat(sp)
        img_idx = torch.repeat_interleave(torch.arange(b), torch.tensor(counts))
        w = int(math.ceil(float(allsp[:, 2].max()) + 1.0))
        off = torch.arange(-w, w + 1, dtype=torch.float32)
        sub = (torch.arange(4, dtype=torch.float32) + 0.5) / 4 - 0.5
        cy, cx, r, a = (allsp[:, k].view(-1, 1, 1) for k in range(4))
        py = torch.round(cy) + off.view(1, -1, 1)  # (M, W, 1) pixel rows
        px = torch.round(cx) + off.view(1, 1, -1)  # (M, 1, W) pixel cols
        sy = (py - cy).unsqueeze(-1).unsqueeze(-1) + sub.view(1, 1, 1, -1, 1)
        sx = (px - cx).unsqueeze(-1).unsqueeze(-1) + sub.view(1, 1, 1, 1, -1)
        cov = ((sy * sy + sx * sx) <= (r * r).view(-1, 1, 1, 1, 1)).float().mean(dim=(-1, -2))
        py, px = py.expand_as(cov), px.expand_as(cov)
        ok = (py >= 0) & (py < size) & (px >= 0) & (px < size) & (cov > 0)
        flat = (img_idx.view(-1, 1, 1).expand_as(cov) * size * size + py.long() * size
                + px.long())[ok]
        lesion.view(-1).index_add_(0, flat, (cov * a)[ok])
        hard = ok & (cov >= 0.5)
        flat_hard = (img_idx.view(-1, 1, 1).expand_as(cov) * size * size + py.long() * size
                     + px.long())[hard]
        calc_mask.view(-1)[flat_hard] = 1.0

    # masses: projected ellipsoid (sqrt(1 - (d/R)^2)) with a lobulated outline; spiculated
    # ones have a smaller core and thin tapered spicules radiating from it
    mi_np = np.flatnonzero(p["lesion_type"][lo:hi] == 2)
    if len(mi_np):
        g, mi = lo + mi_np, torch.as_tensor(mi_np)
        m = len(mi_np)
        t = torch.as_tensor
        cy = t(p["centre"][g, 0]).view(m, 1, 1)
        cx = t(p["centre"][g, 1]).view(m, 1, 1)
        rad = t(p["radius"][g]).view(m, 1, 1)
        spic = t(p["spiculated"][g]).view(m, 1, 1)
        dy, dx = rows - cy, cols - cx
        d = torch.sqrt(dy * dy + dx * dx)
        theta = torch.atan2(dy, dx)
        shape = torch.ones(m, size, size)
        for k in range(3):
            shape = shape + t(p["harm_a"][g, k]).view(m, 1, 1) * torch.cos(
                (k + 2) * theta + t(p["harm_phi"][g, k]).view(m, 1, 1))
        body_r = rad * torch.where(spic > 0, 0.7, 1.0) * shape
        body = torch.sqrt((1.0 - (d / body_r) ** 2).clamp_min(0.0))
        mask = d < body_r
        # spicule k of K points at angle 2 pi (k + jitter_k) / K (|jitter| <= 0.3), so a pixel
        # at angle theta lies between spicules floor(theta K / 2 pi) and the next one; only
        # those two can reach it (others are >= 0.4 of a sector away): two evaluations
        # instead of K
        spic_img = torch.zeros(m, size, size)
        width = 1.0 * max(sc, 0.75)
        n_sp = t(p["n_spic"][g]).view(m, 1, 1)
        sector = torch.floor((theta % (2 * math.pi)) / (2 * math.pi) * n_sp)
        jit = t(p["spic_jitter"][g])
        lens = t(p["spic_len"][g])
        for step in (0, 1):
            k = ((sector + step) % n_sp).long().view(m, -1)
            ang = (2 * math.pi * (k + torch.gather(jit, 1, k)) / n_sp.view(m, 1)).view(m, size,
                                                                                      size)
            length = rad * torch.gather(lens, 1, k).view(m, size, size)
            along = dx * torch.cos(ang) + dy * torch.sin(ang)
            perp = -dx * torch.sin(ang) + dy * torch.cos(ang)
            taper = (1.0 - along / length).clamp(0.0, 1.0) * (along > 0).float() * spic
            line = 0.8 * taper * torch.exp(-0.5 * (perp / width) ** 2)
            spic_img = torch.maximum(spic_img, line)
            mask = mask | ((perp.abs() < width) & (taper > 0.1))
        amp = t(p["mass_amp"][g]).view(m, 1, 1)
        lesion[mi] += amp * torch.maximum(body, spic_img)
        mass_mask[mi] = mask.float()

    # imaging chain: lesions add attenuation, detector blur (MTF), quantum noise
    img = img + lesion
    img = _gaussian_blur_per_image(img.unsqueeze(1), torch.full((b,), 0.5 * max(sc, 0.5)))
    sigma = quantum_noise * torch.sqrt(img.clamp_min(1e-3) / 0.5)
    img = img + sigma * torch.randn(img.shape, generator=gen)
    return {
        "x": img.clamp_(0.0, 1.0),
        "calc_mask": calc_mask.unsqueeze(1),
        "mask": torch.maximum(calc_mask, mass_mask).unsqueeze(1),
        "tissue_mask": tissue_mask.unsqueeze(1),
    }


def _make_phantoms(n: int, size: int, seed: int, stream: int, lesion_fraction: float,
                   calc_fraction: float, calc_contrast: float, mass_contrast: float,
                   quantum_noise: float, chunk: int = 256) -> Split:
    rng = np.random.default_rng([seed, stream, 0x3A3])
    p = _sample_phantom_params(rng, n, size, lesion_fraction, calc_fraction, calc_contrast,
                               mass_contrast)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    out: dict[str, torch.Tensor] = {}
    starts = range(0, n, chunk)
    if n > 8 * chunk:
        from ..core.runtime import progress

        starts = progress(starts, desc="mammo_phantom", total=len(starts))
    for lo in starts:
        hi = min(n, lo + chunk)
        part = _render_phantoms(p, lo, hi, size, quantum_noise, gen)
        for k, v in part.items():  # filled in place: no second copy of the whole split
            if k not in out:
                out[k] = torch.empty((n, *v.shape[1:]), dtype=v.dtype)
            out[k][lo:hi] = v
    lesion_type = torch.as_tensor(p["lesion_type"])
    return Split(
        x=out.pop("x").contiguous(),
        y=(lesion_type > 0).long(),
        extras={
            "lesion_type": lesion_type,
            **out,
            "specks": [torch.as_tensor(s) for s in p["specks"]],
            "lesion_center": torch.as_tensor(p["centre"]),
            "lesion_radius": torch.as_tensor(p["radius"]),
        },
    )


def _load_mammo_phantom(n_train: int = 1000, n_test: int = 500, image_size: int = 128,
                        lesion_fraction: float = 0.5, calc_fraction: float = 0.5,
                        calc_contrast: float = 0.25, mass_contrast: float = 0.15,
                        quantum_noise: float = 0.02, seed: int = 0) -> DataBundle:
    """Procedural grayscale mammogram patches (nominal 100 um per pixel at 128 x 128).

    Background: two fields of 1/f^beta noise (beta ~ U(2.8, 3.2) per image, the exponent of
    mammographic anatomical noise) mapped to fatty and fibroglandular tissue through a sigmoid
    whose threshold sets the breast density; a quarter of the patches include the breast
    edge (a large circular skin line, tissue thinning towards it, air outside). Lesions:

    - microcalcification cluster (lesion_type 1): 5-15 bright anti-aliased discs of radius
      1-3 px, 1.5 px apart, inside a cluster disc of radius 10-30 px (2-6 mm: "within about
      1 cm"); each speck's amplitude is ``calc_contrast * U(0.75, 1.25)``.
    - mass (lesion_type 2): radius 25-50 px (5-10 mm diameter; the upper half of the clinical
      5-15 mm range does not fit a 12.8 mm patch), a projected ellipsoid with a lobulated
      outline, half of them spiculated (core 0.7 R and 8-16 tapered spicules up to 1.8 R);
      amplitude ``mass_contrast * U(0.8, 1.2)``.

    Then detector blur (Gaussian, sigma 0.5 px) and quantum noise with std
    ``quantum_noise * sqrt(I / 0.5)`` (Poisson-like: variance grows with the signal).
    All lengths are given at 128 px and scale with ``image_size / 128`` (the patch always
    covers 12.8 mm; speck radii are kept >= 0.75 px). Written here: no library generates
    mammographic phantoms with lesion ground truth.

    With the default contrasts most specks have CNR >= 3 against a ring around them
    (see :func:`speck_cnr`), as on real screening mammograms, while masses are low-contrast
    (their amplitude is about the fibroglandular texture's local variation).

    Args:
        n_train, n_test: images per split. Defaults 1000 and 500.
        image_size: side in pixels. Default 128.
        lesion_fraction: fraction of images with a lesion (label 1). Default 0.5.
        calc_fraction: fraction of the lesion images that get calcifications (the rest get
            masses). Default 0.5.
        calc_contrast: mean speck amplitude added to the intensity in [0, 1]. Default 0.25.
        mass_contrast: mean mass amplitude at its centre. Default 0.15.
        quantum_noise: quantum noise std at intensity 0.5. Default 0.02.
        seed: train and test use separate streams derived from it. Default 0.

    Extras: ``"lesion_type"`` int64 (N,) 0 none / 1 calcification / 2 mass; ``"mask"``
    (N,1,H,W) lesion pixels (speck discs or mass body and spicules); ``"calc_mask"`` speck
    pixels only (coverage >= 0.5); ``"tissue_mask"`` breast (1) vs air (0); ``"specks"`` list
    of N float tensors (K,4): row, col, radius (px, pixel centres at integer coordinates) and
    amplitude of each speck ((0,4) without calcifications); ``"lesion_center"`` (N,2) row/col
    (NaN without a lesion); ``"lesion_radius"`` (N,) cluster or mass radius in px (0 without).
    """
    n_train = _check_int("n_train", n_train, 1)
    n_test = _check_int("n_test", n_test, 1)
    image_size = _check_int("image_size", image_size, 32)
    lesion_fraction = _check_fraction("lesion_fraction", lesion_fraction)
    calc_fraction = _check_fraction("calc_fraction", calc_fraction)
    calc_contrast = _check_fraction("calc_contrast", calc_contrast)
    mass_contrast = _check_fraction("mass_contrast", mass_contrast)
    quantum_noise = _check_fraction("quantum_noise", quantum_noise, 0.0, 0.5)
    seed = _check_int("seed", seed)
    args = dict(lesion_fraction=lesion_fraction, calc_fraction=calc_fraction,
                calc_contrast=calc_contrast, mass_contrast=mass_contrast,
                quantum_noise=quantum_noise)
    spec = {"name": "mammo_phantom", "n_train": n_train, "n_test": n_test,
            "image_size": image_size, **args, "seed": seed, "version": GENERATOR_VERSION}
    return DataBundle(
        name="mammo_phantom", spec=spec,
        train=_make_phantoms(n_train, image_size, seed, 0, **args),
        test=_make_phantoms(n_test, image_size, seed, 1, **args),
        classes=["normal", "lesion"],
        info={"pixel_size_mm": 12.8 / image_size, "lesion_types": ["none", "calcification",
                                                                    "mass"]},
    )


def speck_cnr(image: torch.Tensor, specks: torch.Tensor, gap: float = 1.0,
              ring_width: float = 3.0) -> torch.Tensor:
    """Contrast-to-noise ratio of each microcalcification speck against a ring around it.

    ``CNR = (mean inside - mean ring) / std ring`` with "inside" the pixels whose centre is
    within the speck radius r (at least the nearest pixel), "ring" the pixels at distance
    ``(r + gap, r + gap + ring_width]`` that are not within ``r_j + gap`` of another speck j.

    Args:
        image: ``(H, W)`` or ``(1, H, W)`` tensor.
        specks: ``(K, >=3)`` rows of (row, col, radius, ...) as in ``extras["specks"]``.
        gap, ring_width: ring geometry in pixels. Defaults 1 and 3.

    Returns a float tensor ``(K,)``.
    """
    img = image.reshape(image.shape[-2], image.shape[-1]).double()
    h, w = img.shape
    rows = torch.arange(h, dtype=torch.float64).view(-1, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, -1)
    sp = specks.double()
    out = torch.zeros(len(sp), dtype=torch.float64)
    for k in range(len(sp)):
        cy, cx, r = float(sp[k, 0]), float(sp[k, 1]), float(sp[k, 2])
        win = int(math.ceil(r + gap + ring_width + 1))
        r0, r1 = max(0, int(cy) - win), min(h, int(cy) + win + 2)
        c0, c1 = max(0, int(cx) - win), min(w, int(cx) + win + 2)
        d = torch.sqrt((rows[r0:r1] - cy) ** 2 + (cols[:, c0:c1] - cx) ** 2)
        inside = d <= max(r, float(d.min()))
        ring = (d > r + gap) & (d <= r + gap + ring_width)
        for j in range(len(sp)):
            if j != k:
                dj = torch.sqrt((rows[r0:r1] - sp[j, 0]) ** 2 + (cols[:, c0:c1] - sp[j, 1]) ** 2)
                ring &= dj > sp[j, 2] + gap
        patch = img[r0:r1, c0:c1]
        ring_vals = patch[ring]
        if ring_vals.numel() < 3:
            out[k] = float("nan")
            continue
        out[k] = (patch[inside].mean() - ring_vals.mean()) / ring_vals.std().clamp_min(1e-12)
    return out.float()


# --------------------------------------------------------------------------------------------
# mammo_folder: the user's own mammograms (PNG or DICOM) listed in a CSV file
# --------------------------------------------------------------------------------------------


class _BadImage(Exception):
    """An image file that is missing or cannot be decoded (message names the reason)."""


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _dicom_output_range(ds: Any) -> tuple[float, float]:
    """The value range of a DICOM image after its modality and VOI transforms.

    Mirrors the DICOM standard (PS3.3 C.11): a VOI LUT sequence outputs
    ``[0, 2^bits - 1]`` with bits from its LUT Descriptor; otherwise (a window, or no VOI
    transform) the range is that of the modality output: a modality LUT's ``[0, 2^bits - 1]``,
    else the stored-value range (BitsStored, signed or not) through RescaleSlope/Intercept.
    pydicom's ``apply_windowing`` maps a window onto this same range.
    """
    voi = ds.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") is not None:
        return 0.0, float(2 ** int(voi[0].LUTDescriptor[2]) - 1)
    mod = ds.get("ModalityLUTSequence")
    if mod:
        return 0.0, float(2 ** int(mod[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = sorted((lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)))
    return lo, hi


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom

    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - any decoder failure is reported with its reason
        raise _BadImage(f"not a readable DICOM image ({type(e).__name__}: {e})") from e
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise _BadImage(f"DICOM has {ds.SamplesPerPixel} samples per pixel; expected grayscale")
    if arr.ndim == 3:  # multi-frame: the first frame
        arr = arr[0]
    lo, hi = _dicom_output_range(ds)
    arr = apply_voi_lut(apply_modality_lut(arr, ds), ds)
    x = np.clip((np.asarray(arr, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        x = 1.0 - x  # MONOCHROME1: low values are bright; flip so dense tissue is bright
    return x


def _read_bitmap(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode.startswith("I;16"):
                return np.asarray(im, dtype=np.float64) / 65535.0
            if mode == "I":  # 32-bit int container; PNGs come here with 16-bit samples
                arr = np.asarray(im, dtype=np.float64)
                return np.clip(arr / 65535.0, 0.0, 1.0)
            if mode == "F":
                return np.clip(np.asarray(im, dtype=np.float64), 0.0, 1.0)
            if mode != "L":
                im = im.convert("L")
            return np.asarray(im, dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise _BadImage(f"not a readable image ({type(e).__name__}: {e})") from e


def _read_mammogram(path: Path) -> np.ndarray:
    """A 2-D float64 array in [0, 1] from a PNG/other bitmap (scaled by its bit depth's
    maximum) or a DICOM file (modality LUT, VOI LUT/window, MONOCHROME1 inverted)."""
    if not path.is_file():
        raise _BadImage("file not found" if not path.exists() else "not a regular file")
    x = _read_dicom(path) if _is_dicom(path) else _read_bitmap(path)
    if x.ndim != 2 or min(x.shape) < 1:
        raise _BadImage(f"expected a 2-D grayscale image, got shape {x.shape}")
    return x


def _fit_square(x: np.ndarray, size: int, how: str) -> torch.Tensor:
    """``(1, size, size)`` from a 2-D array: ``resize`` (stretch), ``pad`` (pad to a square
    with zeros, then resize: keeps the aspect ratio) or ``crop`` (centre crop at native
    resolution, zero-padded where the image is smaller)."""
    t = torch.as_tensor(x, dtype=torch.float32)
    h, w = t.shape
    if how == "crop":
        out = torch.zeros(size, size)
        sh, sw = min(h, size), min(w, size)
        y0, x0 = (h - sh) // 2, (w - sw) // 2
        oy, ox = (size - sh) // 2, (size - sw) // 2
        out[oy:oy + sh, ox:ox + sw] = t[y0:y0 + sh, x0:x0 + sw]
        return out.unsqueeze(0)
    if how == "pad" and h != w:
        side = max(h, w)
        sq = torch.zeros(side, side)
        sq[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = t
        t = sq
    return _resize(t.view(1, 1, *t.shape), size)[0]


def _read_label_csv(csv_path: Path) -> list[dict[str, Any]]:
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("path", "label") if c not in fields]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing}; the CSV needs "
                             f"path,label and optionally lesion_type and split (found {fields})")
        rows = []
        for line, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            if not row.get("path"):
                raise ValueError(f"{csv_path} line {line}: empty path")
            out: dict[str, Any] = {"path": row["path"], "line": line}
            for col in ("label", "lesion_type"):
                if col not in fields:
                    continue
                try:
                    out[col] = int(row[col])
                except ValueError:
                    raise ValueError(f"{csv_path} line {line}: {col} must be a non-negative "
                                     f"integer, got {row[col]!r}") from None
                if out[col] < 0:
                    raise ValueError(f"{csv_path} line {line}: {col} must be >= 0, got {out[col]}")
            if "split" in fields:
                sp = row.get("split", "").lower()
                if sp not in ("train", "test"):
                    raise ValueError(f"{csv_path} line {line}: split must be 'train' or 'test', "
                                     f"got {row.get('split')!r}")
                out["split"] = sp
            rows.append(out)
    if not rows:
        raise ValueError(f"{csv_path} lists no images")
    return rows


def _load_mammo_folder(data_root: str | None = None, csv: str = "labels.csv",
                       image_size: int = 512, resize: str = "resize", skip_bad: bool = False,
                       test_fraction: float = 0.2, seed: int = 0) -> DataBundle:
    """The user's own mammograms: PNG (8 or 16 bit) or DICOM files listed in a CSV.

    The CSV has a header and columns ``path,label`` and optionally ``lesion_type`` (0 none,
    1 calcification, 2 mass, or your own coding) and ``split`` (``train``/``test``; without it
    the split is stratified by label with ``test_fraction`` and ``seed``). Paths are relative
    to ``data_root``. Pixels are scaled to [0, 1]: PNG by its bit depth's maximum (255 or
    65535); DICOM through ``apply_modality_lut`` then ``apply_voi_lut`` (window or VOI LUT),
    divided by that output's value range, MONOCHROME1 inverted so dense tissue is bright.

    Args:
        data_root: folder of the images and the CSV; relative paths are taken from the repo
            root. Default ``studylib.core.paths.default_data_root() / "mammograms"``.
        csv: the CSV file name inside ``data_root`` (or an absolute path). Default "labels.csv".
        image_size: side of the returned square images. Default 512.
        resize: "resize" (stretch to a square), "pad" (zero-pad to a square, then resize) or
            "crop" (centre crop at native resolution). Default "resize".
        skip_bad: False (default): a missing or unreadable file raises an error naming the file,
            its CSV line and the reason. True: such files are skipped with one warning that
            counts them (listed in ``bundle.info["skipped"]``).
        test_fraction, seed: the stratified split when the CSV has no ``split`` column.

    Extras: ``"path"`` (list of CSV paths), ``"lesion_type"`` (int64, when the CSV has it).
    """
    from ..core import paths

    image_size = _check_int("image_size", image_size, 8)
    resize = _check_choice("resize", resize, ("resize", "pad", "crop"))
    if not isinstance(skip_bad, bool):
        raise ValueError(f"skip_bad must be true or false, got {skip_bad!r}")
    test_fraction = _check_fraction("test_fraction", test_fraction, open_interval=True)
    seed = _check_int("seed", seed)
    root = paths.resolve(data_root) if data_root else paths.default_data_root() / "mammograms"
    if not root.is_dir():
        raise FileNotFoundError(f"mammo_folder: data_root {str(root)!r} is not a folder; put "
                                f"your images and {csv} there or pass data_root=...")
    csv_path = Path(csv) if Path(csv).is_absolute() else root / csv
    if not csv_path.is_file():
        raise FileNotFoundError(f"mammo_folder: label file {str(csv_path)!r} not found (columns "
                                f"path,label[,lesion_type][,split]; paths relative to data_root)")
    rows = _read_label_csv(csv_path)

    from ..core.runtime import progress

    images, kept, skipped = [], [], []
    for row in progress(rows, desc="mammo_folder", total=len(rows)):
        file = root / row["path"]
        try:
            images.append(_fit_square(_read_mammogram(file), image_size, resize))
            kept.append(row)
        except _BadImage as e:
            where = f"{row['path']!r} ({csv_path.name} line {row['line']}, {file})"
            if not skip_bad:
                cls = FileNotFoundError if str(e) == "file not found" else ValueError
                raise cls(f"mammo_folder: cannot load {where}: {e}") from None
            skipped.append({"path": row["path"], "line": row["line"], "reason": str(e)})
    if skipped:
        warnings.warn(f"mammo_folder: skipped {len(skipped)} of {len(rows)} files that could not "
                      f"be read (first: {skipped[0]['path']!r}: {skipped[0]['reason']}); "
                      f"see bundle.info['skipped']", stacklevel=3)
    if not kept:
        raise ValueError(f"mammo_folder: none of the {len(rows)} files in {csv_path} could be read")

    x = torch.stack(images)
    y = torch.tensor([r["label"] for r in kept], dtype=torch.long)
    if all("split" in r for r in kept):
        te = np.array([i for i, r in enumerate(kept) if r["split"] == "test"], dtype=np.int64)
        tr = np.array([i for i, r in enumerate(kept) if r["split"] == "train"], dtype=np.int64)
    else:
        tr, te = _stratified_split(y.numpy(), test_fraction, seed)
    extras: dict[str, Any] = {"path": [r["path"] for r in kept]}
    if all("lesion_type" in r for r in kept):
        extras["lesion_type"] = torch.tensor([r["lesion_type"] for r in kept], dtype=torch.long)
    full = Split(x, y, extras)
    n_cls = int(y.max()) + 1
    classes = ["normal", "lesion"] if n_cls <= 2 else [str(i) for i in range(n_cls)]
    spec = {"name": "mammo_folder", "data_root": str(root), "csv": str(csv_path),
            "csv_sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
            "image_size": image_size, "resize": resize, "skip_bad": skip_bad,
            "test_fraction": test_fraction, "seed": seed}
    return DataBundle(name="mammo_folder", spec=spec, train=full.subset(tr), test=full.subset(te),
                      classes=classes, info={"skipped": skipped, "n_listed": len(rows)})


# --------------------------------------------------------------------------------------------
# torchvision data sets under a data root: mnist, cifar10, gtsrb
# --------------------------------------------------------------------------------------------

_TV_LAYOUT = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "cifar10": "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)",
    "gtsrb": "gtsrb/GTSRB/Training/<class>/*.ppm, gtsrb/GTSRB/Final_Test/Images/*.ppm and "
             "gtsrb/GT-final_test.csv",
}


def _tv_open(name: str, factory: Callable[[], Any], root: Path, download: bool) -> Any:
    try:
        return factory()
    except RuntimeError as e:
        if "not found" not in str(e).lower():
            raise
        raise FileNotFoundError(
            f"{name}: data set not found under {str(root)!r} (expected {_TV_LAYOUT[name]}). "
            f"To get it, run once with download=True on a machine with internet access "
            f"(e.g. `--set download=true`, or data.load({name!r}, download=True)), or place "
            f"the files there yourself. The data root is data_root, else $STUDYLIB_DATA, else "
            f"~/.cache/studylib/data." + ("" if not download else f" (download failed: {e})")
        ) from None


def _subsample_index(n_total: int, n: int | None, seed: int, stream: int) -> np.ndarray:
    if n is None or n >= n_total:
        return np.arange(n_total)
    rng = np.random.default_rng([seed, stream, 0x7B])
    return np.sort(rng.permutation(n_total)[:n])


def _tv_bundle(name: str, train: tuple[Callable[[np.ndarray], torch.Tensor], np.ndarray],
               test: tuple[Callable[[np.ndarray], torch.Tensor], np.ndarray], names: list[str],
               image_size: int | None, n_train: int | None, n_test: int | None,
               classes: Sequence[Any] | None, seed: int) -> DataBundle:
    """Select classes, subsample and load the chosen rows, resize, and wrap in a DataBundle.

    ``train``/``test`` are ``(load_rows(index) -> uint8-or-float tensor (n,C,H,W), labels)``.
    """
    pos = _select_classes(classes, names, list(range(len(names))), name)
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[pos] = np.arange(len(pos))
    splits = []
    for stream, ((load_rows, labels), n) in enumerate(((train, n_train), (test, n_test))):
        labels = np.asarray(labels, dtype=np.int64)
        keep = np.flatnonzero(remap[labels] >= 0)
        keep = keep[_subsample_index(len(keep), n, seed, stream)]
        x = load_rows(keep)
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        if image_size is not None:
            x = _resize(x, image_size)
        splits.append(Split(x.contiguous(), torch.as_tensor(remap[labels[keep]]),
                            {"index": torch.as_tensor(keep)}))
    spec = {"name": name, "image_size": image_size, "n_train": n_train, "n_test": n_test,
            "classes": [names[i] for i in pos], "seed": seed}
    return DataBundle(name=name, spec=spec, train=splits[0], test=splits[1],
                      classes=[names[i] for i in pos],
                      info={"extras": {"index": "row in the original torchvision split"}})


def _tv_args(data_root, image_size, n_train, n_test, seed, download):
    from ..core import paths

    root = paths.resolve(data_root) if data_root else paths.default_data_root()
    if image_size is not None:
        image_size = _check_int("image_size", image_size, 2)
    n_train = None if n_train is None else _check_int("n_train", n_train, 1)
    n_test = None if n_test is None else _check_int("n_test", n_test, 1)
    seed = _check_int("seed", seed)
    if not isinstance(download, bool):
        raise ValueError(f"download must be true or false, got {download!r}")
    return root, image_size, n_train, n_test, seed


def _load_mnist(data_root: str | None = None, download: bool = False,
                image_size: int | None = None, n_train: int | None = None,
                n_test: int | None = None, classes: Sequence[Any] | None = None,
                seed: int = 0) -> DataBundle:
    """MNIST (torchvision) from ``data_root`` (default ``$STUDYLIB_DATA`` or
    ``~/.cache/studylib/data``), 1x28x28 in [0, 1].

    Args:
        data_root: folder holding ``MNIST/raw``; relative paths are from the repo root.
        download: let torchvision download it (needs internet). Default False.
        image_size: resize to this side (None keeps 28). n_train, n_test: seeded random
            subsets (None = all). classes: digits to keep (names "0".."9" or ints), relabelled
            in the given order. seed: of the subsets.

    ``data_root`` and ``download`` are not in ``spec`` (they do not change the pixels).
    Raises FileNotFoundError naming the data set, the path and how to get it when absent.
    """
    from torchvision.datasets import MNIST

    root, image_size, n_train, n_test, seed = _tv_args(data_root, image_size, n_train, n_test,
                                                       seed, download)
    parts = []
    for train in (True, False):
        ds = _tv_open("mnist", lambda t=train: MNIST(str(root), train=t, download=download),
                      root, download)
        parts.append((lambda idx, d=ds.data: d[torch.as_tensor(idx)].unsqueeze(1),
                      ds.targets.numpy()))
    return _tv_bundle("mnist", parts[0], parts[1], [str(i) for i in range(10)], image_size,
                      n_train, n_test, classes, seed)


def _load_cifar10(data_root: str | None = None, download: bool = False,
                  image_size: int | None = None, n_train: int | None = None,
                  n_test: int | None = None, classes: Sequence[Any] | None = None,
                  seed: int = 0) -> DataBundle:
    """CIFAR-10 (torchvision) from ``data_root``, 3x32x32 in [0, 1]; arguments as for mnist
    (classes by name, e.g. "cat", or index 0-9)."""
    from torchvision.datasets import CIFAR10

    root, image_size, n_train, n_test, seed = _tv_args(data_root, image_size, n_train, n_test,
                                                       seed, download)
    parts, names = [], None
    for train in (True, False):
        ds = _tv_open("cifar10", lambda t=train: CIFAR10(str(root), train=t, download=download),
                      root, download)
        names = list(ds.classes)
        parts.append((lambda idx, d=ds.data: torch.as_tensor(d[idx]).permute(0, 3, 1, 2),
                      np.asarray(ds.targets)))
    return _tv_bundle("cifar10", parts[0], parts[1], names, image_size, n_train, n_test,
                      classes, seed)


def _load_gtsrb(data_root: str | None = None, download: bool = False, image_size: int = 32,
                n_train: int | None = None, n_test: int | None = None,
                classes: Sequence[Any] | None = None, seed: int = 0) -> DataBundle:
    """GTSRB (torchvision) from ``data_root``, RGB resized to ``image_size`` (default 32).

    ``classes`` takes GTSRB class ids (e.g. ``[2, 25]``: speed limit 50 and road work) or names
    from :data:`GTSRB_CLASS_NAMES`; other arguments as for mnist. Images are decoded only for
    the selected rows.
    """
    from PIL import Image
    from torchvision.datasets import GTSRB

    from ..core.runtime import progress

    root, image_size, n_train, n_test, seed = _tv_args(data_root, image_size, n_train, n_test,
                                                       seed, download)
    size = image_size

    def loader(samples):
        def load_rows(idx):
            out = torch.zeros(len(idx), 3, size, size)
            for j, i in enumerate(progress(idx.tolist(), desc="gtsrb", total=len(idx))):
                with Image.open(samples[i][0]) as im:
                    arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
                out[j] = _resize(torch.from_numpy(arr).permute(2, 0, 1)[None], size)[0]
            return out
        return load_rows

    parts = []
    for split in ("train", "test"):
        ds = _tv_open("gtsrb", lambda s=split: GTSRB(str(root), split=s, download=download),
                      root, download)
        samples = ds._samples  # (path, class id) pairs; reading them avoids decoding everything
        parts.append((loader(samples), np.array([c for _, c in samples], dtype=np.int64)))
    return _tv_bundle("gtsrb", parts[0], parts[1], list(GTSRB_CLASS_NAMES), image_size,
                      n_train, n_test, classes, seed)


# --------------------------------------------------------------------------------------------
# Registry and entry point
# --------------------------------------------------------------------------------------------

_LOADERS: dict[str, Callable[..., DataBundle]] = {
    "digits": _load_digits,
    "signs": _load_signs,
    "mammo_phantom": _load_mammo_phantom,
    "mammo_folder": _load_mammo_folder,
    "mnist": _load_mnist,
    "cifar10": _load_cifar10,
    "gtsrb": _load_gtsrb,
}


def available() -> list[str]:
    """Names accepted by :func:`load`."""
    return list(_LOADERS)


def load(name: str, **kwargs: Any) -> DataBundle:
    """Load the data set ``name`` with keyword arguments ``kwargs``.

    Args:
        name: one of :func:`available`: ``"digits"``, ``"signs"``, ``"mammo_phantom"``,
            ``"mammo_folder"``, ``"mnist"``, ``"cifar10"``, ``"gtsrb"``.
        **kwargs: the named loader's arguments (see the module docstring and each loader).

    Raises:
        ValueError: an unknown ``name`` (the message lists the valid names), an unknown keyword
            (the message lists the valid keywords with their defaults) or a bad value.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown data set name {name!r}; valid names: {available()}")
    fn = _LOADERS[name]
    params = inspect.signature(fn).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        valid = ", ".join(
            f"{p.name}={p.default!r}" if p.default is not inspect.Parameter.empty else p.name
            for p in params.values()
        )
        raise ValueError(f"load({name!r}): unknown argument(s) {unknown}; valid arguments: {valid}")
    return fn(**kwargs)
