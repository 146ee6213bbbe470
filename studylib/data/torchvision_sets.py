"""``mnist``, ``cifar10``, ``gtsrb``: torchvision data sets read from a data root.

One module for the three: each is a thin wrapper over the same layout checks, opening,
subsampling and conversion helpers, which would otherwise be imported across three files.

Before anything is opened, :func:`check_torchvision` compares the files under the data root with
the layout torchvision reads, so a missing file is named (with the layout expected and how to get
it) instead of surfacing as torchvision's "Dataset not found" or a bare FileNotFoundError. CIFAR-10
is read from its pickles here rather than through ``torchvision.datasets.CIFAR10``: a copy whose
checksums differ from the official release (a modified or re-packed copy) is read with a warning
instead of being reported as absent. Every bundle's ``spec`` holds ``content_sha256``, a digest of
the selected images and labels, so the checkpoint caches tell two data roots apart.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bundle import DataBundle, DataSetCheck, Split, _check_int, _content_digest, _resize
from .signs import GTSRB_CLASS_NAMES, _select_classes

TORCHVISION_SETS = ("mnist", "cifar10", "gtsrb")

_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("test_batch",)
_CIFAR_META = "batches.meta"
_GTSRB_N_CLASSES = len(GTSRB_CLASS_NAMES)

_TV_LAYOUT = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "cifar10": f"{_CIFAR_FOLDER}/ (data_batch_1..5, test_batch, batches.meta)",
    "gtsrb": "gtsrb/GTSRB/Training/00000..00042/*.ppm, gtsrb/GTSRB/Final_Test/Images/*.ppm and "
             "gtsrb/GT-final_test.csv (';'-separated, columns Filename and ClassId)",
}

_HOW_TO_GET = ("run `python -m studylib data prepare` once on a machine with internet access "
               "(or data.load({name!r}, download=True); `run --download` lets the studies do it), "
               "or place the files there yourself")


def _how_to_get(name: str) -> str:
    return _HOW_TO_GET.format(name=name)


def _cifar_checksums() -> dict[str, str]:
    """File name -> md5 of the official CIFAR-10 python release (torchvision's own list)."""
    from torchvision.datasets import CIFAR10

    sums = {f: md5 for f, md5 in (*CIFAR10.train_list, *CIFAR10.test_list)}
    sums[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    return sums


def check_torchvision(name: str, data_root: str | None = None, *,
                      verify_checksums: bool = True) -> DataSetCheck:
    """Whether ``name`` (mnist, cifar10, gtsrb) is laid out under ``data_root`` as its loader
    reads it. Looks at files only (nothing is downloaded or decoded).

    Args:
        name: ``"mnist"``, ``"cifar10"`` or ``"gtsrb"``.
        data_root: the data root (default ``$STUDYLIB_DATA``, else ``~/.cache/studylib/data``;
            a relative path is taken from the data root).
        verify_checksums: compare CIFAR-10's files with the official md5 sums; a mismatch is a
            note, not a problem (default True).
    """
    from ..core import paths

    if name not in TORCHVISION_SETS:
        raise ValueError(f"not a torchvision data set: {name!r}; expected one of "
                         f"{list(TORCHVISION_SETS)}")
    root = paths.resolve_data(data_root)
    problems: list[str] = []
    notes: list[str] = []
    if name == "mnist":
        problems = [f"missing {Path('MNIST', 'raw', f)}" for f in _MNIST_FILES
                    if not (root / "MNIST" / "raw" / f).is_file()]
    elif name == "cifar10":
        folder = root / _CIFAR_FOLDER
        files = (*_CIFAR_TRAIN, *_CIFAR_TEST, _CIFAR_META)
        problems = [f"missing {Path(_CIFAR_FOLDER, f)}" for f in files if not (folder / f).is_file()]
        if not problems and verify_checksums:
            from torchvision.datasets.utils import calculate_md5

            for f, md5 in _cifar_checksums().items():
                got = calculate_md5(str(folder / f))
                if got != md5:
                    notes.append(f"{Path(_CIFAR_FOLDER, f)} differs from the official release "
                                 f"(md5 {got}, expected {md5}): a modified or corrupt copy")
    else:
        base = root / "gtsrb"
        train = base / "GTSRB" / "Training"
        if not train.is_dir():
            problems.append(f"missing folder {Path('gtsrb', 'GTSRB', 'Training')}")
        else:
            want = [f"{c:05d}" for c in range(_GTSRB_N_CLASSES)]
            absent = [c for c in want if not (train / c).is_dir()]
            if absent:
                # torchvision numbers the class folders in sorted order: with one missing,
                # every later class would get the wrong label
                problems.append(f"{Path('gtsrb', 'GTSRB', 'Training')} lacks "
                                f"{len(absent)} of {_GTSRB_N_CLASSES} class folders "
                                f"({', '.join(absent[:5])}{', ...' if len(absent) > 5 else ''})")
        if not (base / "GTSRB" / "Final_Test" / "Images").is_dir():
            problems.append(f"missing folder {Path('gtsrb', 'GTSRB', 'Final_Test', 'Images')}")
        if not (base / "GT-final_test.csv").is_file():
            problems.append(f"missing {Path('gtsrb', 'GT-final_test.csv')} (the test split's "
                            f"ground truth, in GTSRB_Final_Test_GT.zip)")
    return DataSetCheck(name=name, path=str(root), found=not problems, problems=problems,
                        notes=notes, layout=_TV_LAYOUT[name], how_to_get=_how_to_get(name))


def download_torchvision(name: str, data_root: str | None = None) -> Path:
    """Download ``name`` (mnist, cifar10, gtsrb) into ``data_root`` with torchvision, both
    splits; files already there and intact are kept. Needs internet access. Returns the root."""
    from torchvision import datasets

    from ..core import paths

    root = paths.resolve_data(data_root)
    root.mkdir(parents=True, exist_ok=True)
    if name == "mnist":
        for train in (True, False):
            datasets.MNIST(str(root), train=train, download=True)
    elif name == "cifar10":
        for train in (True, False):
            datasets.CIFAR10(str(root), train=train, download=True)
    elif name == "gtsrb":
        for split in ("train", "test"):
            datasets.GTSRB(str(root), split=split, download=True)
    else:
        raise ValueError(f"not a torchvision data set: {name!r}; expected one of "
                         f"{list(TORCHVISION_SETS)}")
    return root


def _require(name: str, root: Path, download: bool) -> None:
    """Download ``name`` when allowed and absent, then fail clearly if files are still missing."""
    check = check_torchvision(name, str(root), verify_checksums=False)
    failure = ""
    if not check.found and download:
        try:
            download_torchvision(name, str(root))
        except Exception as e:  # noqa: BLE001 - reported with the layout and how to get it
            failure = f" (download failed: {type(e).__name__}: {e})"
        check = check_torchvision(name, str(root), verify_checksums=False)
    if not check.found:
        raise FileNotFoundError(
            f"{name}: data set not found under {str(root)!r}: {'; '.join(check.problems)} "
            f"(expected {check.layout}). To get it, {check.how_to_get}. The data root is "
            f"data_root, else `run --data-root`, else $STUDYLIB_DATA, else ~/.cache/studylib/data."
            + failure)


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
    ``spec["content_sha256"]`` digests the loaded rows and their labels, both splits.
    """
    pos = _select_classes(classes, names, list(range(len(names))), name)
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[pos] = np.arange(len(pos))
    splits, digest_parts = [], []
    for stream, ((load_rows, labels), n) in enumerate(((train, n_train), (test, n_test))):
        labels = np.asarray(labels, dtype=np.int64)
        keep = np.flatnonzero(remap[labels] >= 0)
        keep = keep[_subsample_index(len(keep), n, seed, stream)]
        x = load_rows(keep)
        digest_parts += [x, labels[keep]]
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        if image_size is not None:
            x = _resize(x, image_size)
        splits.append(Split(x.contiguous(), torch.as_tensor(remap[labels[keep]]),
                            {"index": torch.as_tensor(keep)}))
    spec = {"name": name, "image_size": image_size, "n_train": n_train, "n_test": n_test,
            "classes": [names[i] for i in pos], "seed": seed,
            "content_sha256": _content_digest(*digest_parts)}
    return DataBundle(name=name, spec=spec, train=splits[0], test=splits[1],
                      classes=[names[i] for i in pos],
                      info={"extras": {"index": "row in the original torchvision split"}})


def _tv_args(data_root, image_size, n_train, n_test, seed, download):
    from ..core import paths

    root = paths.resolve_data(data_root)
    if image_size is not None:
        image_size = _check_int("image_size", image_size, 2)
    n_train = None if n_train is None else _check_int("n_train", n_train, 1)
    n_test = None if n_test is None else _check_int("n_test", n_test, 1)
    seed = _check_int("seed", seed)
    if download is None:
        download = paths.download_default()
    if not isinstance(download, bool):
        raise ValueError(f"download must be true or false, got {download!r}")
    return root, image_size, n_train, n_test, seed, download


_COMMON_ARGS = """
    Args:
        data_root: the data root holding the files (default: ``$STUDYLIB_DATA``, which ``run
            --data-root`` sets, else ``~/.cache/studylib/data``); a relative path is taken from
            the data root.
        download: let torchvision download a missing data set (needs internet). Default None:
            ``$STUDYLIB_DOWNLOAD`` (``run --download``), else False.
        image_size: resize to this side. n_train, n_test: seeded random subsets (None = all).
        classes: classes to keep, relabelled in the given order. seed: of the subsets.

    ``data_root`` and ``download`` are not in ``spec``; ``content_sha256`` (a digest of the
    selected images and labels) is. Raises FileNotFoundError naming the data set, the missing
    files, the layout expected and how to get it when files are absent.
"""


def _load_mnist(data_root: str | None = None, download: bool | None = None,
                image_size: int | None = None, n_train: int | None = None,
                n_test: int | None = None, classes: Sequence[Any] | None = None,
                seed: int = 0) -> DataBundle:
    from torchvision.datasets import MNIST

    root, image_size, n_train, n_test, seed, download = _tv_args(
        data_root, image_size, n_train, n_test, seed, download)
    _require("mnist", root, download)
    parts = []
    for train in (True, False):
        ds = MNIST(str(root), train=train, download=False)
        parts.append((lambda idx, d=ds.data: d[torch.as_tensor(idx)].unsqueeze(1),
                      ds.targets.numpy()))
    return _tv_bundle("mnist", parts[0], parts[1], [str(i) for i in range(10)], image_size,
                      n_train, n_test, classes, seed)


_load_mnist.__doc__ = ("MNIST (torchvision's raw IDX files), 1x28x28 in [0, 1]; classes as "
                       "names \"0\"..\"9\" or ints.\n" + _COMMON_ARGS)


def _read_cifar(folder: Path, files: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels of CIFAR-10 pickle batches, as torchvision
    reads them (``data`` rows are channel-major 3x32x32)."""
    xs, ys = [], []
    for f in files:
        try:
            with open(folder / f, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry["labels"] if "labels" in entry else entry["fine_labels"],
                                 dtype=np.int64))
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file, named
            raise ValueError(f"cifar10: {folder / f} is not a readable CIFAR-10 batch "
                             f"({type(e).__name__}: {e}); re-download it with "
                             f"`python -m studylib data prepare`") from None
    return np.concatenate(xs), np.concatenate(ys)


def _load_cifar10(data_root: str | None = None, download: bool | None = None,
                  image_size: int | None = None, n_train: int | None = None,
                  n_test: int | None = None, classes: Sequence[Any] | None = None,
                  seed: int = 0) -> DataBundle:
    root, image_size, n_train, n_test, seed, download = _tv_args(
        data_root, image_size, n_train, n_test, seed, download)
    _require("cifar10", root, download)
    for note in check_torchvision("cifar10", str(root)).notes:
        warnings.warn(f"cifar10: {note}; results are not comparable with the paper's",
                      stacklevel=3)
    folder = root / _CIFAR_FOLDER
    with open(folder / _CIFAR_META, "rb") as fh:
        names = list(pickle.load(fh, encoding="latin1")["label_names"])
    parts = []
    for files in (_CIFAR_TRAIN, _CIFAR_TEST):
        data, labels = _read_cifar(folder, files)
        parts.append((lambda idx, d=data: torch.as_tensor(d[idx]), labels))
    return _tv_bundle("cifar10", parts[0], parts[1], names, image_size, n_train, n_test,
                      classes, seed)


_load_cifar10.__doc__ = ("CIFAR-10 (the python pickles), 3x32x32 in [0, 1]; classes by name "
                         "(\"cat\") or index 0-9. A copy whose md5 sums differ from the official "
                         "release is read with a warning.\n" + _COMMON_ARGS)


def _load_gtsrb(data_root: str | None = None, download: bool | None = None, image_size: int = 32,
                n_train: int | None = None, n_test: int | None = None,
                classes: Sequence[Any] | None = None, seed: int = 0) -> DataBundle:
    from PIL import Image
    from torchvision.datasets import GTSRB

    from ..core.runtime import progress

    root, image_size, n_train, n_test, seed, download = _tv_args(
        data_root, image_size, n_train, n_test, seed, download)
    _require("gtsrb", root, download)
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
        ds = GTSRB(str(root), split=split, download=False)
        samples = ds._samples  # (path, class id) pairs; reading them avoids decoding everything
        parts.append((loader(samples), np.array([c for _, c in samples], dtype=np.int64)))
    return _tv_bundle("gtsrb", parts[0], parts[1], list(GTSRB_CLASS_NAMES), image_size,
                      n_train, n_test, classes, seed)


_load_gtsrb.__doc__ = ("GTSRB (torchvision's layout), RGB resized to ``image_size`` (default 32); "
                       "``classes`` takes GTSRB class ids (``[2, 25]``: speed limit 50 and road "
                       "work) or names from :data:`GTSRB_CLASS_NAMES`. Images are decoded only "
                       "for the selected rows.\n" + _COMMON_ARGS)
