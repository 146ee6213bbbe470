"""Shared fixtures for the runner, report and sweep tests.

The fixture notebooks under ``tests/fixtures/`` are tiny stand-ins for studies (no training):
``fx1_raises`` divides by its ``divisor`` parameter (0 by default, so it raises) and ``fx2_ok``
records a metric and a claim through ``StudyContext`` and can be told to fail on purpose.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"

# Kernels started by Papermill inherit these: no progress bars, no GUI backend.
os.environ.setdefault("STUDYLIB_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "agg")


@pytest.fixture
def one_thread():
    """Run a test with one torch thread, then restore the setting. For modules of tiny tensors:
    a second thread only adds synchronisation cost (large on a busy machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def fixtures_dir() -> Path:
    """Folder of the fixture notebooks (``fx1_raises``, ``fx2_ok``)."""
    return FIXTURES_DIR


def write_params(params_dir: Path, study: str, profile: str, values: dict) -> Path:
    """Write ``params_dir/<study>/<profile>.yaml`` holding ``values``; return its path."""
    path = params_dir / study / f"{profile}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def params_dir(tmp_path: Path) -> Path:
    """A params folder with a ``default`` profile for both fixtures."""
    d = tmp_path / "params"
    write_params(d, "fx1_raises", "default", {"divisor": 0})
    write_params(d, "fx2_ok", "default", {"seeds": [0, 1], "scale": 2.0})
    return d


def temp_leftovers(root: Path) -> list[Path]:
    """Files under ``root`` that look like unfinished atomic writes (``.<name>.*.tmp``)."""
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def notebook_parameters(study: str) -> dict:
    """The parameters cell of ``notebooks/<study>.ipynb``, evaluated: its names and default
    values (every statement there is ``name = literal  # help``, so ``ast.literal_eval``
    reads it without executing anything)."""
    import ast
    import json

    nb = json.loads((Path(__file__).resolve().parent.parent / "notebooks"
                     / f"{study}.ipynb").read_text())
    (cell,) = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    tree = ast.parse("".join(cell["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body}
