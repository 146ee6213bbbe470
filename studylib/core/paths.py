"""Paths named once and imported everywhere.

Relative paths given to studylib (an ``output_dir`` parameter, a data root in a YAML file) are
taken relative to the repository root, so a notebook gives the same result whether Papermill
runs it with the repo root as working directory or nbval runs it from ``notebooks/``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = REPO_ROOT / "params"
OUTPUTS_DIR = REPO_ROOT / "outputs"


def default_data_root() -> Path:
    """Where real data sets live: ``$STUDYLIB_DATA`` if set, else ``~/.cache/studylib/data``."""
    env = os.environ.get("STUDYLIB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "studylib" / "data"


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
