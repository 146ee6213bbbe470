"""studylib: the shared logic of the robustness and interpretability study kit.

Notebooks call this package (data -> model -> technique -> claims); the notebooks themselves
hold only glue, prose and figures. Public names most notebooks need are re-exported here;
technique modules (``studylib.attacks``, ``studylib.landscape`` ...) are imported by name.
"""

import importlib
import warnings
from typing import Any

# captum and pyro import tqdm.auto, which warns ("IProgress not found") in a notebook kernel
# without ipywidgets. The kit's own bars are plain text (studylib.runtime.progress) so that
# notebooks render statically; the warning would only print an absolute path into the
# committed notebooks.
warnings.filterwarnings("ignore", message="IProgress not found")

# Public names re-exported lazily (PEP 562), so `python -m studylib list` or `report` does not
# pay for importing torch and seaborn before it needs them.
_EXPORTS = {
    "INCONCLUSIVE": "results", "NOT_REPRODUCED": "results", "REPRODUCED": "results",
    "Verdict": "results", "bootstrap_ci": "results", "combine_verdicts": "results",
    "mean_ci": "results", "verdict_at_least": "results", "verdict_at_most": "results",
    "verdict_from_bool": "results", "verdict_greater": "results", "verdict_less": "results",
    "StudyContext": "runtime", "capture_parameters": "runtime", "progress": "runtime",
    "seed_everything": "runtime", "select_device": "runtime",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'studylib' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "INCONCLUSIVE",
    "NOT_REPRODUCED",
    "REPRODUCED",
    "StudyContext",
    "Verdict",
    "bootstrap_ci",
    "capture_parameters",
    "combine_verdicts",
    "mean_ci",
    "progress",
    "seed_everything",
    "select_device",
    "verdict_at_least",
    "verdict_at_most",
    "verdict_from_bool",
    "verdict_greater",
    "verdict_less",
]
