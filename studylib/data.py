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
]

# Bump when a procedural generator changes its output, so cached checkpoints keyed on
# ``spec`` are not reused for different pixels.
GENERATOR_VERSION = 1


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
    from sklearn.datasets import load_digits

    image_size = _check_int("image_size", image_size, 2)
    test_fraction = _check_fraction("test_fraction", test_fraction, open_interval=True)
    seed = _check_int("seed", seed)
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
# Registry and entry point
# --------------------------------------------------------------------------------------------

_LOADERS: dict[str, Callable[..., DataBundle]] = {
    "digits": _load_digits,
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
