"""Paths named once and imported everywhere.

Relative paths given to studylib (an ``output_dir`` parameter, ``$STUDYLIB_CACHE``,
``$STUDYLIB_DATA``) are taken relative to the repository root, so a notebook gives the same
result whether Papermill runs it with the repo root as working directory or nbval runs it from
``notebooks/``. A data set's own folder (a loader's ``data_root``) is the exception: a relative
one is taken from the data root (:func:`resolve_data`), where the data sets are.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = REPO_ROOT / "params"
OUTPUTS_DIR = REPO_ROOT / "outputs"


#: The environment variable naming the data root (``run --data-root`` sets it for the kernels
#: it starts, so every study reads its data sets from there without a parameter of its own).
DATA_ENV = "STUDYLIB_DATA"

#: The environment variable that lets loaders download a missing torchvision data set
#: (``run --download`` sets it to ``1`` for the kernels; off when unset).
DOWNLOAD_ENV = "STUDYLIB_DOWNLOAD"


def default_data_root() -> Path:
    """Where real data sets live: ``$STUDYLIB_DATA`` if set, else ``~/.cache/studylib/data``.

    Read when called, so the root a runner sets for its kernels is the one they see; a relative
    ``$STUDYLIB_DATA`` is taken from the repository root like every other path given to studylib.
    """
    env = os.environ.get(DATA_ENV)
    return resolve(env) if env else Path.home() / ".cache" / "studylib" / "data"


def resolve_data(path: str | os.PathLike | None, default: str | None = None) -> Path:
    """Where a data set's files are: ``path`` resolved against the data root.

    ``None`` gives ``default_data_root() / default`` (the root itself when ``default`` is None);
    an absolute path (or ``~/...``) is kept; a relative one is taken from the data root, not the
    repository, so ``data_root: mammograms`` in a profile means ``$STUDYLIB_DATA/mammograms``
    wherever the data root is.
    """
    if path is None or str(path) == "":
        root = default_data_root()
        return root / default if default else root
    p = Path(path).expanduser()
    return p if p.is_absolute() else default_data_root() / p


def download_default() -> bool:
    """Whether loaders may download a missing data set when not told: ``$STUDYLIB_DOWNLOAD``
    is ``1``/``true``/``yes`` (set by ``run --download``); off otherwise."""
    return os.environ.get(DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def resolve(path: str | os.PathLike) -> Path:
    """Return ``path`` as an absolute path; relative paths are relative to ``REPO_ROOT``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


#: The environment variable that moves the cache root (``--cache-dir`` of ``run`` and ``sweep``
#: sets it for the kernels they start).
CACHE_ENV = "STUDYLIB_CACHE"


def cache_root() -> Path:
    """Root of every cache (trained checkpoints, posteriors, pruning runs): ``$STUDYLIB_CACHE``
    when set, else ``outputs/cache`` in the repository.

    ``$STUDYLIB_CACHE`` moves it, for example to a scratch disk, or to an empty folder to
    rebuild everything without deleting the usual cache; a relative path is taken from the
    repository root, like every other path given to studylib. Read when called, so a process
    that sets the variable (the runner, for its kernels) sees the new value.
    """
    env = os.environ.get(CACHE_ENV)
    return resolve(env) if env else OUTPUTS_DIR / "cache"


# Read once at import: a notebook kernel's cache root is fixed for its lifetime (the runner
# sets $STUDYLIB_CACHE before it starts the kernel).
CACHE_DIR = cache_root()
CHECKPOINT_DIR = CACHE_DIR / "checkpoints"
