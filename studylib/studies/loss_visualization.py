"""Study 01 (Yu et al., IJCAI 2019): the claims, decided by ``studylib.stats``.

Each function takes the tables that ``studylib.techniques.landscape`` computes (one row per model and
seed, or per model, seed and setting) and returns a :class:`~studylib.stats.Claim`. Every
quantity gets the interval of its natural scale: crossing-step, margin, time and sharpness
ratios on the log scale (they are multiplicative), rank correlations through Fisher's z,
differences of taus as paired differences over seeds. A claim over several architectures or
model pairs must hold in each (:func:`~studylib.stats.claim_over_conditions`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ..stats import (
    Claim,
    Interval,
    Rule,
    claim_over_conditions,
    decide_condition,
    fisher_z_interval,
    log_ratio_interval,
    paired_difference,
    t_interval,
)
from ..techniques.landscape import rank_agreement_per_seed, ranking_stability_per_seed

PSI_SETTINGS = ("eps", "restarts", "n_points")
ATTACK_SETTINGS = ("attack", "eps", "steps")


def _per_seed(pairs: Mapping[int, float]) -> list[float]:
    return [float(v) for _, v in sorted(pairs.items())]


def _positive(values: Sequence[float], what: str) -> list[float]:
    bad = [v for v in values if not v > 0]
    if bad:
        raise ValueError(f"{what} must be positive to take its log, got {bad}")
    return list(values)


def claim_margin_crossing_adversarial_vs_random(summary, *, regime: str = "natural",
                                                threshold: float = 3.0) -> Claim:
    """Naturally trained models cross the decision boundary along ``d_adv`` at a much smaller
    step than along random directions: per architecture, the per-model median ratio
    (random / adversarial crossing step, :func:`~studylib.techniques.landscape.crossing_ratio_summary`)
    has a log-scale interval over seeds at or above ``threshold``."""
    sub = summary[summary.regime == regime]
    if sub.empty:
        raise ValueError(f"no models of regime {regime!r} in the crossing summary")
    rule = Rule("at_least", threshold)
    decisions, censored = [], {}
    for arch, g in sub.groupby("arch", sort=False):
        ratios = _positive(_per_seed(dict(zip(g.seed, g.ratio_median, strict=True))),
                           f"{arch} crossing-step ratios")
        decisions.append(decide_condition(str(arch), log_ratio_interval(ratios), rule))
        censored[str(arch)] = float(g.rand_censored.mean())
    return claim_over_conditions(
        "margin_crossing_adversarial_vs_random",
        "For naturally trained models the margin reaches 0 along d_adv at a much smaller step "
        f"than along random +-1 directions (median ratio of crossing steps >= {threshold:g} "
        "for every architecture)",
        decisions, details={"random_censored_fraction": censored})


def claim_robust_training_widens_margin(summary, *, natural: str = "natural",
                                        robust: Sequence[str] = ("pgd_small", "pgd_large")
                                        ) -> Claim:
    """PGD-trained models cross the boundary along ``d_adv`` at a larger step than natural
    models: per (architecture, robust regime), the ratio of median ``d_adv`` crossing steps
    (robust / natural, same architecture and seed) has a log-scale interval above 1."""
    rule = Rule("greater", 1.0)
    decisions = []
    for arch in summary.arch.unique():
        nat = summary[(summary.arch == arch) & (summary.regime == natural)].set_index("seed")
        for reg in robust:
            rob = summary[(summary.arch == arch) & (summary.regime == reg)].set_index("seed")
            seeds = sorted(set(nat.index) & set(rob.index))
            if not seeds:
                continue
            ratios = _positive([float(rob.adv_median[s] / nat.adv_median[s]) for s in seeds],
                               f"{arch}/{reg} step ratios")
            decisions.append(decide_condition(f"{arch}/{reg}", log_ratio_interval(ratios), rule))
    if not decisions:
        raise ValueError("no (natural, robust) pairs found in the crossing summary")
    return claim_over_conditions(
        "robust_training_widens_margin",
        "PGD-trained models cross the decision boundary along d_adv at a larger step than "
        "natural models of the same architecture (ratio > 1 per pair)", decisions)


def claim_metric_tracks_adversarial_accuracy(psi_scores, acc_scores, *,
                                             threshold: float = -0.8) -> Claim:
    """Across the models, Spearman rho between psi (column ``score``) and PGD accuracy (column
    ``accuracy``), one rho per seed, has a Fisher-z interval at or below ``threshold``."""
    rho = rank_agreement_per_seed(psi_scores, acc_scores, value_a="score", value_b="accuracy")
    d = decide_condition("all models", fisher_z_interval(_per_seed(rho)),
                         Rule("at_most", threshold))
    return claim_over_conditions(
        "metric_tracks_adversarial_accuracy",
        f"Across all models, Spearman rho between psi and PGD accuracy <= {threshold:g}", [d])


def claim_metric_stable_across_settings(psi_settings, acc_settings, *,
                                        threshold: float = 0.8) -> Claim:
    """The psi ranking is stable across metric settings (mean pairwise Kendall tau, Fisher-z
    interval over seeds, >= ``threshold``) and at least as stable as the ranking by adversarial
    accuracy across attack settings (paired difference of the taus >= 0)."""
    tau_psi = ranking_stability_per_seed(psi_settings, setting_cols=list(PSI_SETTINGS),
                                         value_col="score")
    tau_acc = ranking_stability_per_seed(acc_settings, setting_cols=list(ATTACK_SETTINGS),
                                         value_col="accuracy")
    seeds = sorted(set(tau_psi) & set(tau_acc))
    psi_vals = [tau_psi[s] for s in seeds]
    acc_vals = [tau_acc[s] for s in seeds]
    decisions = [
        decide_condition("psi ranking tau", fisher_z_interval(psi_vals), Rule("at_least", threshold)),
        decide_condition("psi tau - accuracy tau", paired_difference(psi_vals, acc_vals),
                         Rule("at_least", 0.0)),
    ]
    return claim_over_conditions(
        "metric_stable_across_settings",
        f"The ranking by psi is stable across metric settings (mean Kendall tau >= {threshold:g}) "
        "and at least as stable as the ranking by adversarial accuracy across attack settings",
        decisions,
        details={"tau_accuracy_per_seed": acc_vals,
                 "n_psi_settings": int(psi_settings[list(PSI_SETTINGS)].drop_duplicates().shape[0]),
                 "n_accuracy_settings": int(acc_settings[list(ATTACK_SETTINGS)]
                                            .drop_duplicates().shape[0])})


def claim_metric_cheaper_than_adversarial_testing(psi_subset, psi_full,
                                                  subset_seconds: Mapping[int, float],
                                                  grid_seconds: Mapping[int, float], *,
                                                  threshold: float = 0.8,
                                                  n_subset_points: int | None = None) -> Claim:
    """psi on a subset of points ranks the models like psi on the full test set (Kendall tau,
    Fisher-z interval, >= ``threshold``) in less wall time than the adversarial-accuracy grid
    (time ratio, log-scale interval, < 1)."""
    tau = rank_agreement_per_seed(psi_subset, psi_full, value_a="score", value_b="score",
                                  method="kendall")
    seeds = sorted(set(tau) & set(subset_seconds) & set(grid_seconds))
    ratios = _positive([subset_seconds[s] / grid_seconds[s] for s in seeds], "time ratios")
    decisions = [
        decide_condition("tau(subset, full)", fisher_z_interval([tau[s] for s in seeds]),
                         Rule("at_least", threshold)),
        decide_condition("time psi-subset / accuracy grid", log_ratio_interval(ratios),
                         Rule("less", 1.0)),
    ]
    pts = f"{n_subset_points} points" if n_subset_points else "a subset of points"
    return claim_over_conditions(
        "metric_cheaper_than_adversarial_testing",
        f"psi on {pts} ranks the models like psi on the full test set (Kendall tau >= "
        f"{threshold:g}) in less wall time than the adversarial-accuracy grid", decisions,
        details={"psi_subset_seconds": [float(subset_seconds[s]) for s in seeds],
                 "accuracy_grid_seconds": [float(grid_seconds[s]) for s in seeds]})


def claim_metric_invariant_to_reparameterization(table, *, layer: int = 0,
                                                 psi_tolerance: float = 0.01,
                                                 sharpness_factor: float = 2.0,
                                                 c: float = 10.0) -> Claim:
    """With ``layer`` rescaled by ``c`` (the next by 1/c), the largest relative psi change over
    the models (per seed; t-interval clipped at 0, as the change can be exactly 0) is <=
    ``psi_tolerance``, and per architecture
    the median sharpness change factor (log-scale interval) is > ``sharpness_factor``. Other
    layers in ``table`` are reported in the details, not judged."""
    t = table[table.layer == layer]
    if t.empty:
        raise ValueError(f"no rows for layer {layer} in the rescaling table")
    psi = _per_seed(t.groupby("seed").psi_rel_change.max().to_dict())
    decisions = [decide_condition("psi: largest relative change",
                                  t_interval(psi, bounds=(0.0, None)),
                                  Rule("at_most", psi_tolerance))]
    rule = Rule("greater", sharpness_factor)
    for arch, g in t.groupby("arch", sort=False):
        name = f"sharpness factor: {arch}"
        fac = [v for v in _per_seed(g.groupby("seed").sharpness_factor.median().to_dict())
               if math.isfinite(v)]
        if not fac:  # the perturbed loss did not rise before or after: nothing to compare
            decisions.append(decide_condition(
                name, Interval.undefined("no finite sharpness factor"), rule,
                uninformative="sharpness is 0 before or after rescaling in every seed"))
            continue
        decisions.append(decide_condition(name, log_ratio_interval(_positive(fac, name)), rule))
    other = {f"{arch}/layer{lay}": {"sharpness_factor_median": float(g.sharpness_factor.median()),
                                    "psi_max_rel_change": float(g.psi_rel_change.max())}
             for (arch, lay), g in table[table.layer != layer].groupby(["arch", "layer"],
                                                                       sort=False)}
    return claim_over_conditions(
        "metric_invariant_to_reparameterization",
        f"Rescaling a ReLU layer by c={c:g} (next layer by 1/c) leaves psi unchanged within "
        f"{psi_tolerance:.0%} while weight-space sharpness changes by more than "
        f"{sharpness_factor:g}x", decisions, details={"layer": layer, "other_layers": other})


CLAIMS = {
    "margin_crossing_adversarial_vs_random": claim_margin_crossing_adversarial_vs_random,
    "robust_training_widens_margin": claim_robust_training_widens_margin,
    "metric_tracks_adversarial_accuracy": claim_metric_tracks_adversarial_accuracy,
    "metric_stable_across_settings": claim_metric_stable_across_settings,
    "metric_cheaper_than_adversarial_testing": claim_metric_cheaper_than_adversarial_testing,
    "metric_invariant_to_reparameterization": claim_metric_invariant_to_reparameterization,
}
