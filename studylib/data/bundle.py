"""The containers every loader returns (:class:`Split`, :class:`DataBundle`) and the argument
checks and helpers the loaders share."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

# Bump when a procedural generator changes its output, so cached checkpoints keyed on
# ``spec`` are not reused for different pixels.
GENERATOR_VERSION = 2


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


@dataclass
class DataSetCheck:
    """Whether a data set that is read from disk is there, and what to do when it is not.

    Attributes:
        name: the data set (``"mnist"``, ``"mammo_folder"``, ...).
        path: the folder looked at.
        found: every file the loader needs is present (a modified copy still counts as found).
        problems: what is missing or unreadable, one line each (empty when ``found``).
        notes: what is present but deserves a look (a file that differs from the official
            release, a mask listed but absent); never a reason to fail.
        layout: the layout the loader expects under ``path``.
        how_to_get: how to obtain the data set.
    """

    name: str
    path: str
    found: bool
    problems: list[str]
    notes: list[str]
    layout: str
    how_to_get: str


def _content_digest(*parts: Any) -> str:
    """Hex SHA-256 of tensors, arrays and strings, in order (shape and dtype included), so that
    two data roots with different pixels give different cache keys."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.reshape(-1).view(np.uint8))
        else:
            h.update(repr(part).encode())
    return h.hexdigest()


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


