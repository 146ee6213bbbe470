"""The one home of every confidence interval, rank correlation, ROC AUC and verdict rule (see
``intervals``, ``ranking``, ``auc`` and ``verdicts``). Studies build their claims from these and
nothing else."""

from .auc import bootstrap_auc, roc_auc
from .intervals import (
    Interval,
    bonferroni_ci,
    bootstrap_interval,
    clopper_pearson_interval,
    fisher_z_interval,
    hierarchical_bootstrap,
    log_ratio_interval,
    logit_interval,
    paired_difference,
    percentile_interval,
    seeds_needed,
    sign_test_seeds,
    small_sample_factor,
    t_interval,
    wilson_interval,
)
from .ranking import kendall_tau, mean_pairwise_kendall_tau, spearman_rho, spearman_rows
from .verdicts import (
    CLAIM_SCHEMA,
    Claim,
    ConditionDecision,
    PaperValue,
    Rule,
    Verdict,
    at_floor_or_ceiling,
    claim_over_conditions,
    decide_condition,
    in_every_condition,
    in_some_group,
    make_claim,
    power_line,
)

__all__ = [
    "CLAIM_SCHEMA", "Claim", "ConditionDecision", "Interval", "PaperValue", "Rule", "Verdict",
    "at_floor_or_ceiling", "claim_over_conditions", "clopper_pearson_interval", "decide_condition", "fisher_z_interval",
    "hierarchical_bootstrap", "small_sample_factor", "in_every_condition", "in_some_group", "log_ratio_interval", "logit_interval",
    "make_claim", "paired_difference", "power_line", "seeds_needed", "t_interval",
    "wilson_interval", "bootstrap_auc", "roc_auc", "kendall_tau", "mean_pairwise_kendall_tau",
    "spearman_rho", "spearman_rows", "percentile_interval", "sign_test_seeds", "bootstrap_interval",
    "bonferroni_ci",
]
