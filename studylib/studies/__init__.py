"""One module per study: ``Settings.from_params``, ``run(settings, ctx) -> Records`` (typed
records), one ``claim_<id>(records, settings) -> Claim`` per claim built on ``studylib.stats``,
tables and figures. ``CLAIMS`` lists every claim function of every study;
``tests/test_claims_registry.py`` requires three hand-built cases (reproduced, not reproduced,
inconclusive) for each.
"""

from __future__ import annotations

from . import (
    bayesian_robustness,
    bnn_verification,
    loss_visualization,
    mammogram_perturbation,
    saliency_baselines,
    taylor_pruning,
)

CLAIMS = {
    "01_loss_visualization": loss_visualization.CLAIMS,
    "02_mammogram_perturbation": mammogram_perturbation.CLAIMS,
    "03_bayesian_robustness": bayesian_robustness.CLAIMS,
    "04_saliency_baselines": saliency_baselines.CLAIMS,
    "05_bnn_verification": bnn_verification.CLAIMS,
    "06_taylor_pruning": taylor_pruning.CLAIMS,
}

__all__ = ["CLAIMS", "bayesian_robustness", "bnn_verification", "loss_visualization",
           "mammogram_perturbation", "saliency_baselines", "taylor_pruning"]
