"""``mnist``, ``cifar10``, ``gtsrb``: torchvision data sets read from a data root.

One module for the three: each is a thin wrapper over the same opening, subsampling and
conversion helpers, which would otherwise be imported across three files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bundle import DataBundle, Split, _check_int, _resize
from .signs import GTSRB_CLASS_NAMES, _select_classes

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


