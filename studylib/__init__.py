"""studylib: the shared logic of the robustness and interpretability study kit.

Notebooks call this package (data -> model -> technique -> claims); the notebooks themselves
hold only glue, prose and figures. Public names most notebooks need are re-exported here;
modules (``studylib.attacks``, ``studylib.techniques.landscape`` ...) are imported by name.

Layers, each importing only those above it: ``core`` (paths, io, runtime, plotting,
formatting, the results contract), ``stats`` (every interval and rule), ``data``, ``models`` /
``training`` / ``attacks``, ``techniques`` (the methods), ``studies`` (one module per study:
settings, run, claims, figures), ``cli`` (the command line, runner, sweep, report).
"""

import importlib
import warnings
from typing import Any

# captum and pyro import tqdm.auto, which warns ("IProgress not found") in a notebook kernel
# without ipywidgets. The kit's own bars are plain text (studylib.core.runtime.progress) so that
# notebooks render statically; the warning would only print an absolute path into the
# committed notebooks.
warnings.filterwarnings("ignore", message="IProgress not found")

# Public names re-exported lazily (PEP 562), so `python -m studylib list` or `report` does not
# pay for importing torch and seaborn before it needs them.
_EXPORTS = {
    "Claim": "stats", "Rule": "stats", "Verdict": "stats",
    "StudyContext": "core.runtime", "capture_parameters": "core.runtime",
    "progress": "core.runtime", "seed_everything": "core.runtime",
    "select_device": "core.runtime", "fmt": "core.formatting", "fmt_table": "core.formatting",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'studylib' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Claim",
    "Rule",
    "StudyContext",
    "Verdict",
    "capture_parameters",
    "fmt",
    "fmt_table",
    "progress",
    "seed_everything",
    "select_device",
]
