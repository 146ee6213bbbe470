"""studylib: the shared logic of the robustness and interpretability study kit.

Notebooks call this package (data -> model -> technique -> claims); the notebooks themselves
hold only glue, prose and figures. Public names most notebooks need are re-exported here;
technique modules (``studylib.attacks``, ``studylib.landscape`` ...) are imported by name.
"""

from .results import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Verdict,
    bootstrap_ci,
    combine_verdicts,
    mean_ci,
    verdict_at_least,
    verdict_at_most,
    verdict_from_bool,
    verdict_greater,
    verdict_less,
)
from .runtime import StudyContext, capture_parameters, progress, seed_everything, select_device

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
