"""One module per study: its claims (``claim_<id>(records, ...) -> Claim``), built on
``studylib.stats`` and the technique modules. ``CLAIMS`` lists every claim function of the
studies moved here so far; ``tests/test_claims_registry.py`` requires three hand-built cases
(reproduced, not reproduced, inconclusive) for each.

Moved so far: 01 (``loss_visualization``) and 06 (``taylor_pruning``). The other four studies
still decide their claims in their technique modules and notebook cells (issue "Claims you
can trust").
"""

from __future__ import annotations

from . import (
    bayesian_robustness,
    bnn_verification,
    loss_visualization,
    saliency_baselines,
    taylor_pruning,
)

CLAIMS = {
    "01_loss_visualization": loss_visualization.CLAIMS,
    "03_bayesian_robustness": bayesian_robustness.CLAIMS,
    "04_saliency_baselines": saliency_baselines.CLAIMS,
    "05_bnn_verification": bnn_verification.CLAIMS,
    "06_taylor_pruning": taylor_pruning.CLAIMS,
}

__all__ = ["CLAIMS", "bayesian_robustness", "bnn_verification", "loss_visualization",
           "saliency_baselines", "taylor_pruning"]
