"""The registry: :func:`available` names the data sets, :func:`load` loads one by name,
:func:`check` says whether one that is read from disk is there."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .bundle import DataBundle, DataSetCheck
from .digits import _load_digits
from .mammo_folder import _load_mammo_folder, check_mammo_folder
from .mammo_phantom import _load_mammo_phantom
from .signs import _load_signs
from .torchvision_sets import (
    TORCHVISION_SETS,
    _load_cifar10,
    _load_gtsrb,
    _load_mnist,
    check_torchvision,
    download_torchvision,
)

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



#: Data sets that are generated or bundled with the kit: always there, nothing to check.
EMBEDDED = ("digits", "signs", "mammo_phantom")

#: Data sets read from a data root.
ON_DISK = ("mammo_folder", *TORCHVISION_SETS)


def check(name: str, data_root: str | None = None, **kwargs: Any) -> DataSetCheck | None:
    """Whether the on-disk data set ``name`` is where its loader looks (files only: nothing is
    decoded or downloaded); None for an embedded data set, which is always there.

    Args:
        name: one of :func:`available`.
        data_root: as the loader's ``data_root`` (default: the data root).
        **kwargs: ``csv`` for ``mammo_folder``; other loader arguments are accepted and ignored,
            so a study's ``data_kwargs`` can be passed as they are.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown data set name {name!r}; valid names: {available()}")
    if name in EMBEDDED:
        return None
    if name == "mammo_folder":
        return check_mammo_folder(data_root, csv=kwargs.get("csv", "labels.csv"))
    return check_torchvision(name, data_root)


def download(name: str, data_root: str | None = None) -> bool:
    """Download ``name`` into the data root when torchvision can (mnist, cifar10, gtsrb);
    returns False for a data set that cannot be downloaded (embedded, mammo_folder)."""
    if name not in TORCHVISION_SETS:
        return False
    download_torchvision(name, data_root)
    return True
