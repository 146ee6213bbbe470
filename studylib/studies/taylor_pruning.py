"""Study 06 (Molchanov et al., CVPR 2019): the claims, decided by ``studylib.stats``.

Each function takes ``records``: setup name (e.g. ``"lenet_digits"``) -> one record per seed,
as :func:`studylib.techniques.pruning.run_study_seed` returns them, and returns a
:class:`~studylib.stats.Claim` that must hold on every setup. Correlations with the oracle are
judged through Fisher's z; comparisons between criteria as differences paired by seed (the same
seed's model, data order and oracle); "matches" as an equivalence and "small accuracy loss" as a
non-inferiority margin; the timing ratio on the log scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..stats import (
    Claim,
    PaperValue,
    Rule,
    claim_over_conditions,
    decide_condition,
    fisher_z_interval,
    log_ratio_interval,
    logit_interval,
    paired_difference,
)

Records = Mapping[str, Sequence[Mapping[str, Any]]]


def _field(recs: Sequence[Mapping[str, Any]], *keys: str) -> list[float]:
    """One number per seed: ``record[keys[0]][keys[1]]...`` of every record."""
    out = []
    for r in recs:
        for k in keys:
            r = r[k]
        out.append(float(r))
    return out


def _rho(recs: Sequence[Mapping[str, Any]], criterion: str) -> list[float]:
    return _field(recs, "correlations", criterion, "spearman")


def _on_every_setup(records: Records, interval_of, rule: Rule) -> list:
    """One condition per setup: ``interval_of(that setup's records)`` judged by ``rule``."""
    return [decide_condition(name, interval_of(recs), rule) for name, recs in records.items()]


def claim_taylor_fo_correlates_with_oracle(records: Records, *, threshold: float = 0.9) -> Claim:
    """Spearman rho between the Taylor FO gate scores and the oracle (the loss change when a
    channel is removed), Fisher-z interval over seeds, is at least ``threshold`` on every
    setup."""
    decisions = _on_every_setup(records, lambda recs: fisher_z_interval(_rho(recs, "taylor_fo")),
                                Rule("at_least", threshold))
    return claim_over_conditions(
        "taylor_fo_correlates_with_oracle",
        f"Spearman rho(Taylor FO gate score, oracle) >= {threshold:g} over all layers", decisions,
        paper_value=PaperValue("> 93% correlation with the oracle", "abstract"))


def claim_taylor_beats_magnitude_and_random(records: Records) -> Claim:
    """Taylor FO ranks channels more like the oracle than weight magnitude and random scores
    do, and (where the network has BatchNorm) FO at the BN gates more than the BN scale: each
    rho difference, paired by seed, is > 0 on every setup."""
    rule = Rule("greater", 0.0)
    decisions = []
    for name, recs in records.items():
        fo = _rho(recs, "taylor_fo")
        for other in ("weight_magnitude", "random"):
            decisions.append(decide_condition(f"{name}: FO - {other}",
                                              paired_difference(fo, _rho(recs, other)), rule))
        if "taylor_fo@bn" in recs[0]["correlations"]:
            decisions.append(decide_condition(
                f"{name}: FO@bn - bn_scale",
                paired_difference(_rho(recs, "taylor_fo@bn"), _rho(recs, "bn_scale")), rule))
    return claim_over_conditions(
        "taylor_beats_magnitude_and_random",
        "Spearman rho with the oracle: Taylor FO > weight magnitude and random (and FO at the BN "
        "gates > BN scale), each difference paired by seed", decisions)


def claim_second_order_matches_first(records: Records, *, tolerance: float = 0.05) -> Claim:
    """The second-order Taylor criterion ranks like the first-order one: rho(SO) - rho(FO),
    paired by seed, lies within +-``tolerance`` on every setup (an equivalence)."""
    decisions = _on_every_setup(
        records, lambda recs: paired_difference(_rho(recs, "taylor_so"), _rho(recs, "taylor_fo")),
        Rule("equivalent", 0.0, margin=tolerance))
    return claim_over_conditions(
        "second_order_matches_first",
        f"rho(Taylor SO) - rho(Taylor FO) lies within +-{tolerance:g}", decisions)


def claim_pruning_curve_tracks_oracle(records: Records) -> Claim:
    """Without fine-tuning, the area between the Taylor FO loss curve and the oracle curve is
    smaller than that of weight magnitude: the difference of the two gaps, paired by seed,
    is < 0 on every setup."""
    decisions = _on_every_setup(
        records, lambda recs: paired_difference(_field(recs, "curve_gap", "taylor_fo"),
                                                _field(recs, "curve_gap", "weight_magnitude")),
        Rule("less", 0.0))
    return claim_over_conditions(
        "pruning_curve_tracks_oracle",
        "Without fine-tuning, the area between the Taylor FO loss curve and the oracle curve is "
        "smaller than that of weight magnitude (difference < 0)", decisions)


def claim_prune_30pct_params_small_accuracy_loss(records: Records, *,
                                                 target_param_reduction: float = 0.3,
                                                 max_accuracy_drop_points: float = 1.0) -> Claim:
    """After Taylor FO pruning and fine-tuning, at least ``target_param_reduction`` of the
    parameters are gone (logit interval over seeds) and the test accuracy, in points, is not
    worse than the dense model's by more than ``max_accuracy_drop_points`` (pruned - dense,
    paired by seed: a non-inferiority margin), on every setup."""
    loss_rule = Rule("non_inferior", 0.0, margin=max_accuracy_drop_points)
    decisions = []
    for name, recs in records.items():
        decisions.append(decide_condition(
            f"{name}: accuracy pruned - dense (points)",
            paired_difference([100 * v for v in _field(recs, "claim", "accuracy")],
                              [100 * v for v in _field(recs, "base_accuracy")]), loss_rule))
        decisions.append(decide_condition(
            f"{name}: parameters removed",
            logit_interval(_field(recs, "claim", "param_reduction")),
            Rule("at_least", target_param_reduction)))
    gap = {name: max(row["max_abs_diff_pruned_vs_gated"] for r in recs
                     for rows in r["pruning"].values() for row in rows)
           for name, recs in records.items()}
    return claim_over_conditions(
        "prune_30pct_params_small_accuracy_loss",
        f"After Taylor FO pruning and fine-tuning, removing >= {100 * target_param_reduction:.0f}% "
        f"of parameters costs <= {max_accuracy_drop_points:g} point of test accuracy", decisions,
        details={"max_abs_diff_pruned_vs_gated": gap})


def claim_pruned_model_is_faster(records: Records) -> Claim:
    """The physically pruned model's CPU inference time is below the dense model's: the
    per-seed ratio pruned / dense (median of the timing repetitions) has a log-scale interval
    below 1 on every setup."""
    decisions = _on_every_setup(
        records, lambda recs: log_ratio_interval(_field(recs, "timing", "ratio_b_over_a")),
        Rule("less", 1.0))
    return claim_over_conditions(
        "pruned_model_is_faster",
        "The physically pruned model's CPU inference time is below the dense model's "
        "(ratio pruned/dense < 1, median of the timing repetitions)", decisions)


CLAIMS = {
    "taylor_fo_correlates_with_oracle": claim_taylor_fo_correlates_with_oracle,
    "taylor_beats_magnitude_and_random": claim_taylor_beats_magnitude_and_random,
    "second_order_matches_first": claim_second_order_matches_first,
    "pruning_curve_tracks_oracle": claim_pruning_curve_tracks_oracle,
    "prune_30pct_params_small_accuracy_loss": claim_prune_30pct_params_small_accuracy_loss,
    "pruned_model_is_faster": claim_pruned_model_is_faster,
}
