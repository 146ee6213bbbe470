"""The one home of every confidence interval and verdict rule (see ``intervals`` and
``verdicts``). Studies build their claims from these and nothing else."""

from .intervals import (
    Interval,
    clopper_pearson_interval,
    fisher_z_interval,
    hierarchical_bootstrap,
    log_ratio_interval,
    logit_interval,
    paired_difference,
    seeds_needed,
    t_interval,
    wilson_interval,
)
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
    make_claim,
    power_line,
)

__all__ = [
    "CLAIM_SCHEMA", "Claim", "ConditionDecision", "Interval", "PaperValue", "Rule", "Verdict",
    "at_floor_or_ceiling", "claim_over_conditions", "clopper_pearson_interval", "decide_condition", "fisher_z_interval",
    "hierarchical_bootstrap", "in_every_condition", "log_ratio_interval", "logit_interval",
    "make_claim", "paired_difference", "power_line", "seeds_needed", "t_interval",
    "wilson_interval",
]
