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


# ``$STUDYLIB_CACHE`` moves the cache of trained models (for example to a scratch disk, or to
# an empty folder to retrain everything without deleting the usual cache); a relative path is
# taken from the repository root, like every other path given to studylib.
CACHE_DIR = resolve(os.environ["STUDYLIB_CACHE"]) if os.environ.get("STUDYLIB_CACHE") \
    else OUTPUTS_DIR / "cache"
CHECKPOINT_DIR = CACHE_DIR / "checkpoints"
