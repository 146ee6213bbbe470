"""Study 03 (Pang et al. 2021, against Feng et al. 2024): are Bayesian networks more robust?

The study layer of ``notebooks/03_bayesian_robustness.ipynb``: :class:`Settings` (from the
notebook's parameters cell), :func:`run` (train the five models per seed, attack and perturb
them, score their uncertainty) returning typed :class:`Records`, one ``claim_<id>`` per claim
decided with :mod:`studylib.stats`, the tables and figures of the notebook, and ``CLAIMS``.
The methods themselves (Bayesian networks, SVI, MC dropout, EOT-PGD on a posterior,
uncertainty scores) are :mod:`studylib.techniques.bayes`.

How the claims are decided. An accuracy is a proportion, and two models are compared on the
same seed's data, attacks and posterior samples, so every comparison is a difference of
accuracies paired by seed, with a t-interval over seeds clipped to its range [-1, 1]. A
condition (an attack and eps, a perturbation) where both compared models sit at the floor
(accuracy 0) or the ceiling (1) in every seed cannot tell the models apart: it is left out of
the claim and reported (at PGD eps 0.3 every model is at 0). "Suffices" is a non-inferiority
with the margin ``head_margin``; "the advantage survives" asks for a gain of at least
``whitebox_min_gain``, so that "the gain vanished" (Feng et al.) is a verdict, not an
inconclusive. Detection AUCs are statistics of test images within each seed: their interval is
a hierarchical bootstrap over seeds, then images.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.formatting import fmt
from ..core.runtime import progress as progress_bar
from ..core.settings import StudySettings
from ..data import load
from ..stats import (
    Claim,
    ConditionDecision,
    Interval,
    Rule,
    at_floor_or_ceiling,
    claim_over_conditions,
    decide_condition,
    hierarchical_bootstrap,
    logit_interval,
    paired_difference,
    roc_auc,
)
from ..techniques import bayes
from ..techniques.perturbations import SIGNAL_PERTURBATIONS, apply_signal_perturbation

MODEL_NAMES = ("cnn_ref", "cnn_control", "bayes_head", "bayes_full", "mc_dropout")
BNNS = ("bayes_head", "bayes_full")
DETECTORS = ("bayes_head", "bayes_full", "mc_dropout")  # the models whose uncertainty is scored
ATTACKS = ("fgsm", "pgd")


# ============================================================================ settings


@dataclass(frozen=True)
class Settings(StudySettings):
    """Study 03's parameters, every one from the notebook's parameters cell (its comments say
    what each means; ``params/03_bayesian_robustness/*.yaml`` override them). The seeds and the
    device are the :class:`~studylib.core.runtime.StudyContext`'s."""

    dataset: str
    data_kwargs: dict[str, Any]
    cnn_width: int
    cnn_hidden: int
    cnn_epochs: int
    cnn_lr: float
    batch_size: int
    dropout: float
    prior_scale: float
    kl_weight: float
    head_init: str
    vi_epochs: int
    vi_lr: float
    vi_init_scale: float
    n_posterior_samples: int
    n_eval: int
    eps_grid: tuple[float, ...]
    pgd_steps: int
    eot_samples: int
    perturbation_grid: dict[str, list[float]]
    n_boot: int
    head_margin: float
    whitebox_min_gain: float
    auc_threshold: float
    clean_gap_warning: float

    @property
    def positive_eps(self) -> tuple[float, ...]:
        return tuple(sorted(float(e) for e in self.eps_grid if e > 0))

    @property
    def middle_eps(self) -> float:
        """"The middle eps" of the positive grid (upper middle for an even count): where the
        control comparison, the white-box attacks and the detection AUCs are measured."""
        pos = self.positive_eps
        if not pos:
            raise ValueError(f"eps_grid needs at least one eps > 0, got {list(self.eps_grid)}")
        return pos[len(pos) // 2]

    def perturbations(self) -> dict[str, tuple[float, ...]]:
        """Severities per signal perturbation: the suggested grids of
        :data:`~studylib.techniques.perturbations.SIGNAL_PERTURBATIONS`, overridden by
        ``perturbation_grid``."""
        unknown = set(self.perturbation_grid) - set(SIGNAL_PERTURBATIONS)
        if unknown:
            raise ValueError(f"perturbation_grid names unknown perturbations {sorted(unknown)}; "
                             f"valid: {sorted(SIGNAL_PERTURBATIONS)}")
        return {k: tuple(float(s) for s in self.perturbation_grid.get(k, grid))
                for k, (_, grid) in SIGNAL_PERTURBATIONS.items()}


# ============================================================================ records


@dataclass(frozen=True)
class DetectionScores:
    """One model's per-image uncertainty in one seed (numpy, one value per evaluation image):
    mutual information on the clean images, on their PGD versions transferred from
    ``cnn_ref`` at the middle eps, and on the model's own white-box attack; predictive entropy
    on the clean and transferred images."""

    mi_clean: np.ndarray
    mi_transfer: np.ndarray
    mi_whitebox: np.ndarray
    entropy_clean: np.ndarray
    entropy_transfer: np.ndarray


@dataclass(frozen=True)
class SeedRecord:
    """Everything measured with one seed's five models (accuracies are in [0, 1]).

    Attributes:
        seed: the model seed.
        clean: model -> accuracy on the whole test split.
        transfer: ``(attack, eps)`` -> model -> accuracy on examples crafted on ``cnn_ref``
            (``eps = 0``: the clean evaluation images).
        perturbation: ``(perturbation, severity)`` -> model -> accuracy.
        whitebox: model -> accuracy under its own white-box attack at the middle eps (PGD for
            the deterministic models, EOT-PGD for the stochastic ones).
        detection: model (of :data:`DETECTORS`) -> its uncertainty scores.
        svi_history: VI model -> per-epoch SVI loss per example.
    """

    seed: int
    clean: Mapping[str, float]
    transfer: Mapping[tuple[str, float], Mapping[str, float]]
    perturbation: Mapping[tuple[str, float], Mapping[str, float]]
    whitebox: Mapping[str, float]
    detection: Mapping[str, DetectionScores] = dataclasses.field(default_factory=dict)
    svi_history: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Records:
    """The study's measurements: one :class:`SeedRecord` per seed, and the data set used
    (``data``: its name, split sizes and input shape, for the notebook's setup line)."""

    seeds: tuple[SeedRecord, ...]
    data: str = ""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("records need at least one seed")


# ============================================================================ the five models


def train_models(data: Any, seed: int, settings: Settings, *, device: str | torch.device = "cpu",
                 progress: bool = True) -> dict[str, bayes.StochasticClassifier]:
    """The five models of study 03 for one seed, all with the same ``SmallCNN`` architecture.

    - ``cnn_ref``: initialised and trained with ``seed`` (the attack source);
    - ``cnn_control``: the same with seed ``seed + 10000`` (plain transfer control);
    - ``bayes_full``: every layer Bayesian; guide means start at a ``seed + 20000`` init;
    - ``mc_dropout``: ``SmallCNN(dropout=settings.dropout)``, seed ``seed + 30000``, dropout
      kept on at test time;
    - ``bayes_head``: ``cnn_ref``'s features, frozen, + a Bayesian classifier whose guide means
      start at ``cnn_ref``'s trained classifier (``head_init="cnn_ref"``) or at a fresh init
      with seed ``seed + 40000`` (``head_init="fresh"``; on digits 28x28 this optimised poorly:
      clean accuracy 0.63-0.88 after 40 epochs, against 0.97 from the trained head).

    Every model but ``bayes_head`` (which shares ``cnn_ref``'s extractor by design) starts from
    its own initialisation: a model started from ``cnn_ref``'s initial weights tends to end
    near ``cnn_ref`` and to inherit its adversarial examples. Deterministic networks train with
    ``studylib.training.fit`` and VI with :func:`~studylib.techniques.bayes.fit_vi`, both cached.
    Returns ``{name: StochasticClassifier}`` in :data:`MODEL_NAMES` order.
    """
    from ..models import build_model
    from ..training import TrainConfig, fit

    if not 0 < settings.dropout < 1:
        raise ValueError(f"dropout must be in (0, 1), got {settings.dropout}")
    if settings.head_init not in ("cnn_ref", "fresh"):
        raise ValueError(f"head_init must be 'cnn_ref' or 'fresh', got {settings.head_init!r}")
    in_channels, height, _ = data.input_shape
    kw = {"in_channels": in_channels, "num_classes": data.num_classes, "image_size": height,
          "width": settings.cnn_width, "hidden": settings.cnn_hidden}
    config = TrainConfig(epochs=settings.cnn_epochs, batch_size=settings.batch_size,
                         lr=settings.cnn_lr)

    def cnn(init_seed: int, p: float, desc: str) -> nn.Module:
        net = build_model("small_cnn", **kw, dropout=p, seed=init_seed)
        return fit(net, data, config, seed=init_seed, device=device, progress=progress,
                   desc=desc)

    ref = cnn(seed, 0.0, f"cnn_ref s{seed}")
    control = cnn(seed + 10_000, 0.0, f"cnn_control s{seed}")
    drop = cnn(seed + 30_000, float(settings.dropout), f"mc_dropout s{seed}")
    vi = {"epochs": settings.vi_epochs, "batch_size": settings.batch_size, "lr": settings.vi_lr,
          "init_scale": settings.vi_init_scale, "kl_weight": settings.kl_weight, "seed": seed,
          "device": device, "progress": progress}
    reinit = None if settings.head_init == "cnn_ref" else seed + 40_000
    head = bayes.fit_vi(bayes.bayesian_head(ref, prior_scale=settings.prior_scale,
                                            reinit_seed=reinit),
                        data, desc=f"bayes_head s{seed}", **vi)
    full = bayes.fit_vi(bayes.bayesian_cnn(**kw, prior_scale=settings.prior_scale,
                                           seed=seed + 20_000),
                        data, desc=f"bayes_full s{seed}", **vi)
    return {"cnn_ref": bayes.DeterministicClassifier(ref),
            "cnn_control": bayes.DeterministicClassifier(control),
            "bayes_head": head, "bayes_full": full,
            "mc_dropout": bayes.MCDropoutPosterior(drop)}


# ============================================================================ the sweeps
# Every model is evaluated on the same inputs with the same posterior samples across conditions
# (common random numbers), so differences between conditions are not blurred by sampling noise.


def transfer_sweep(source: nn.Module, targets: Mapping[str, bayes.StochasticClassifier],
                   x: torch.Tensor, y: torch.Tensor, eps_grid: Sequence[float], *,
                   attacks: Sequence[str] = ATTACKS, pgd_steps: int = 10, n_samples: int = 30,
                   seed: int = 0, progress: bool = True
                   ) -> tuple[dict[tuple[str, float], dict[str, float]],
                              dict[tuple[str, float], torch.Tensor]]:
    """Accuracy of every target on attacks crafted on ``source``, per attack and eps.

    Returns ``({(attack, eps): {model: accuracy}}, {(attack, eps): x_adv})``; ``eps = 0`` is
    the clean input. Every target uses the posterior samples of ``seed`` in every condition.
    """
    table: dict[tuple[str, float], dict[str, float]] = {}
    adversarial: dict[tuple[str, float], torch.Tensor] = {}
    grid = [(a, float(e)) for a in attacks for e in eps_grid]
    for attack, eps in (progress_bar(grid, desc="transfer attacks") if progress else grid):
        xa = x if eps == 0 else bayes.craft_transfer(source, x, y, attack, eps,
                                                     pgd_steps=pgd_steps, seed=seed)
        adversarial[(attack, eps)] = xa
        table[(attack, eps)] = {name: bayes.predictive_accuracy(clf, xa, y, n_samples, seed=seed)
                                for name, clf in targets.items()}
    return table, adversarial


def perturbation_sweep(targets: Mapping[str, bayes.StochasticClassifier], x: torch.Tensor,
                       y: torch.Tensor, perturbations: Mapping[str, Sequence[float]], *,
                       n_samples: int = 30, seed: int = 0, progress: bool = True
                       ) -> dict[tuple[str, float], dict[str, float]]:
    """Accuracy of every target under each signal perturbation and severity
    (``{(perturbation, severity): {model: accuracy}}``); random perturbations use ``seed``,
    severity 0 is the clean input (evaluated once)."""
    grid = [(p, float(s)) for p, sev in perturbations.items() for s in sev]
    table: dict[tuple[str, float], dict[str, float]] = {}
    clean: dict[str, float] = {}
    for pert, sev in (progress_bar(grid, desc="perturbations") if progress else grid):
        xp = x if sev == 0 else apply_signal_perturbation(pert, x, sev, seed=seed)
        row = {}
        for name, clf in targets.items():
            if sev == 0 and name in clean:
                row[name] = clean[name]
                continue
            row[name] = bayes.predictive_accuracy(clf, xp, y, n_samples, seed=seed)
            if sev == 0:
                clean[name] = row[name]
        table[(pert, sev)] = row
    return table


def whitebox_sweep(targets: Mapping[str, bayes.StochasticClassifier], x: torch.Tensor,
                   y: torch.Tensor, eps: float, *, steps: int = 10, eot_samples: int = 10,
                   n_samples: int = 30, seed: int = 0, progress: bool = True
                   ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """:func:`~studylib.techniques.bayes.whitebox_attack` on every target (PGD for a
    deterministic one, EOT-PGD for a stochastic one), accuracy measured with posterior samples
    independent of the attack's (seed ``seed + 1``). Returns ``({model: accuracy},
    {model: x_adv})``."""
    accuracy: dict[str, float] = {}
    adversarial: dict[str, torch.Tensor] = {}
    items = list(targets.items())
    for name, clf in (progress_bar(items, desc="white-box") if progress else items):
        xa = bayes.whitebox_attack(clf, x, y, eps, steps=steps, eot_samples=eot_samples,
                                   seed=seed)
        adversarial[name] = xa
        accuracy[name] = bayes.predictive_accuracy(clf, xa, y, n_samples, seed=seed + 1)
    return accuracy, adversarial


def run(settings: Settings, ctx: Any, *, progress: bool = True) -> Records:
    """Train the five models for every seed of ``ctx``, measure them, return the records.

    Per seed: clean test accuracy; accuracy on FGSM and PGD examples crafted on ``cnn_ref`` at
    every eps of ``eps_grid``; accuracy under every signal perturbation and severity; accuracy
    under each model's own white-box attack at the middle eps; the uncertainty scores of
    :data:`DETECTORS` on clean, transferred-PGD and white-box inputs (posterior samples of seed
    ``seed + 7``). Robustness is measured on the first ``n_eval`` test images. Records the
    metrics ``clean_accuracy_<model>`` (mean over seeds) in ``ctx``.
    """
    bundle = load(settings.dataset, **settings.data_kwargs)
    x_eval, y_eval = bundle.test.x[:settings.n_eval], bundle.test.y[:settings.n_eval]
    mid, s_post = settings.middle_eps, settings.n_posterior_samples
    perturbations = settings.perturbations()
    # phase by phase over the seeds, in the order the study has always run
    models = {s: train_models(bundle, s, settings, device=ctx.device, progress=progress)
              for s in ctx.seeds}
    clean = {s: {m: bayes.predictive_accuracy(clf, bundle.test.x, bundle.test.y, s_post, seed=s)
                 for m, clf in models[s].items()} for s in ctx.seeds}
    transfer, transfer_adv = {}, {}
    for s in ctx.seeds:
        transfer[s], transfer_adv[s] = transfer_sweep(
            models[s]["cnn_ref"].net, models[s], x_eval, y_eval, settings.eps_grid,
            pgd_steps=settings.pgd_steps, n_samples=s_post, seed=s, progress=progress)
    perturbation = {s: perturbation_sweep(models[s], x_eval, y_eval, perturbations,
                                          n_samples=s_post, seed=s, progress=progress)
                    for s in ctx.seeds}
    whitebox, white_adv = {}, {}
    for s in ctx.seeds:
        whitebox[s], white_adv[s] = whitebox_sweep(
            models[s], x_eval, y_eval, mid, steps=settings.pgd_steps,
            eot_samples=settings.eot_samples, n_samples=s_post, seed=s, progress=progress)
    records = []
    for s in ctx.seeds:
        detection = {}
        for m in DETECTORS:
            score = {key: bayes.uncertainty_scores(models[s][m], xs, s_post, seed=s + 7)
                     for key, xs in (("clean", x_eval), ("transfer", transfer_adv[s][("pgd", mid)]),
                                     ("whitebox", white_adv[s][m]))}
            detection[m] = DetectionScores(
                score["clean"]["mutual_information"], score["transfer"]["mutual_information"],
                score["whitebox"]["mutual_information"], score["clean"]["predictive_entropy"],
                score["transfer"]["predictive_entropy"])
        history = {m: tuple(clf.history) for m, clf in models[s].items()
                   if isinstance(clf, bayes.VIPosterior)}
        records.append(SeedRecord(s, clean[s], transfer[s], perturbation[s], whitebox[s],
                                  detection, history))
    out = Records(tuple(records), f"{bundle.name}: train {len(bundle.train.y)}, test "
                                  f"{len(bundle.test.y)} (robustness on {len(y_eval)}), input "
                                  f"{bundle.input_shape}")
    for m in MODEL_NAMES:
        ctx.record_metric(f"clean_accuracy_{m}", float(np.mean(_values(out, "clean", None, m))))
    return out


# ============================================================================ claims


def _values(records: Records, table: str, condition: tuple[str, float] | None,
            model: str) -> list[float]:
    """One accuracy per seed: ``record.<table>[condition][model]`` (``condition`` None for the
    per-model tables ``clean`` and ``whitebox``)."""
    out = []
    for r in records.seeds:
        t = getattr(r, table)
        out.append(float(t[model] if condition is None else t[condition][model]))
    return out


def _accuracy_difference(a: Sequence[float], b: Sequence[float]) -> Interval:
    """``a - b`` paired by seed, its t-interval kept inside [-1, 1], the range of a
    difference of two accuracies (the true value lies inside it, so clipping keeps the
    coverage)."""
    return paired_difference(a, b, bounds=(-1.0, 1.0))


def _compare(records: Records, table: str, condition: tuple[str, float] | None, a: str, b: str,
             rule: Rule, name: str) -> ConditionDecision:
    """The decision on ``accuracy(a) - accuracy(b)`` in one condition, paired by seed; left out
    when both models sit at accuracy 0 (or 1) in every seed: no room to tell them apart."""
    va, vb = _values(records, table, condition, a), _values(records, table, condition, b)
    where = at_floor_or_ceiling(va + vb)
    reason = (f"{where}: {a} and {b} at accuracy {0 if where == 'floor' else 1} in every seed"
              if where else None)
    return decide_condition(name, _accuracy_difference(va, vb), rule, uninformative=reason)


def _transfer_conditions(records: Records, eps: float | None = None) -> list[tuple[str, float]]:
    """The transferred-attack conditions with eps > 0 (or only ``eps``), in grid order."""
    keys = list(records.seeds[0].transfer)
    return [k for k in keys if k[1] > 0 and (eps is None or math.isclose(k[1], eps))]


def _clean_details(records: Records, settings: Settings) -> dict[str, Any]:
    """The clean-accuracy caveat every robustness claim carries: cnn_ref minus each BNN (mean
    over seeds), and whether it exceeds ``clean_gap_warning``."""
    gap = {m: float(np.mean(_values(records, "clean", None, "cnn_ref"))
                    - np.mean(_values(records, "clean", None, m))) for m in BNNS}
    return {"clean_gap_vs_cnn_ref": gap,
            "clean_below_cnn_ref_by_more_than_warning": {m: g > settings.clean_gap_warning
                                                         for m, g in gap.items()}}


def claim_bnn_more_robust_to_transferred_attacks(records: Records, settings: Settings) -> Claim:
    """Pang et al.: a BNN is far more robust than the CNN to adversarial examples crafted on
    the CNN. Per BNN, attack and eps > 0: accuracy(BNN) - accuracy(cnn_ref) on the examples
    crafted on cnn_ref, paired by seed, is > 0; conditions at the floor are left out."""
    rule = Rule("greater", 0.0)
    decisions = [_compare(records, "transfer", k, m, "cnn_ref", rule,
                          f"{m} - cnn_ref, {k[0]} eps={k[1]:g}")
                 for m in BNNS for k in _transfer_conditions(records)]
    return claim_over_conditions(
        "bnn_more_robust_to_transferred_attacks",
        "bayes_full and bayes_head have higher accuracy than cnn_ref on FGSM and PGD examples "
        "crafted on cnn_ref, at every informative eps > 0 (difference paired by seed > 0)",
        decisions, details=_clean_details(records, settings))


def claim_bnn_gain_beyond_transfer_control(records: Records, settings: Settings) -> Claim:
    """The gain is more than plain transfer loss: at the middle eps, accuracy(BNN) -
    accuracy(cnn_control) on the same examples crafted on cnn_ref, paired by seed, is > 0 for
    both BNNs and both attacks."""
    mid = settings.middle_eps
    rule = Rule("greater", 0.0)
    decisions = [_compare(records, "transfer", k, m, "cnn_control", rule,
                          f"{m} - cnn_control, {k[0]} eps={k[1]:g}")
                 for m in BNNS for k in _transfer_conditions(records, mid)]
    if not decisions:
        raise ValueError(f"the records hold no transferred attack at the middle eps {mid}")
    return claim_over_conditions(
        "bnn_gain_beyond_transfer_control",
        f"bayes_full and bayes_head beat cnn_control on the same transferred FGSM and PGD "
        f"examples at the middle eps {mid:g} (difference paired by seed > 0)",
        decisions, details=_clean_details(records, settings))


def claim_bayesian_head_suffices(records: Records, settings: Settings) -> Claim:
    """Pang et al.: a stochastic classifier after a deterministic extractor is enough. A
    non-inferiority: accuracy(bayes_head) - accuracy(bayes_full) on the transferred examples,
    paired by seed, is >= -``head_margin`` at every informative attack and eps > 0."""
    rule = Rule("non_inferior", 0.0, margin=settings.head_margin)
    decisions = [_compare(records, "transfer", k, "bayes_head", "bayes_full", rule,
                          f"bayes_head - bayes_full, {k[0]} eps={k[1]:g}")
                 for k in _transfer_conditions(records)]
    return claim_over_conditions(
        "bayesian_head_suffices",
        f"bayes_head's accuracy on transferred FGSM and PGD examples is not below bayes_full's "
        f"by more than {settings.head_margin:g} at any informative eps > 0 (non-inferiority)",
        decisions, details=_clean_details(records, settings))


def claim_bnn_robust_to_signal_interference(records: Records, settings: Settings) -> Claim:
    """Under each signal perturbation at its largest severity, accuracy(BNN) -
    accuracy(cnn_ref), paired by seed, is >= 0, for both BNNs (conditions at the floor or
    ceiling left out)."""
    rule = Rule("at_least", 0.0)
    keys = list(records.seeds[0].perturbation)
    largest = {}
    for p, sev in keys:
        largest[p] = max(largest.get(p, sev), sev)
    decisions = [_compare(records, "perturbation", (p, sev), m, "cnn_ref", rule,
                          f"{m} - cnn_ref, {p} {sev:g}")
                 for m in BNNS for p, sev in largest.items()]
    return claim_over_conditions(
        "bnn_robust_to_signal_interference",
        "under Gaussian noise, salt-and-pepper, Gaussian blur and brightness/contrast at the "
        "largest severity, BNN accuracy >= cnn_ref accuracy (difference paired by seed >= 0)",
        decisions, details=_clean_details(records, settings))


def _auc_items(clean: np.ndarray, attacked: np.ndarray) -> np.ndarray:
    """Rows ``(score, label)``: clean images label 0, attacked ones label 1."""
    clean, attacked = np.asarray(clean, float).ravel(), np.asarray(attacked, float).ravel()
    return np.column_stack([np.concatenate([clean, attacked]),
                            np.concatenate([np.zeros(clean.size), np.ones(attacked.size)])])


def _auc_of_items(items: np.ndarray) -> float:
    """ROC AUC of the score column for the label column (NaN for a one-class resample)."""
    pos, neg = items[items[:, 1] == 1, 0], items[items[:, 1] == 0, 0]
    return roc_auc(neg, pos) if pos.size and neg.size else math.nan


def detection_auc(records: Records, model: str, attacked: str = "mi_transfer",
                  clean: str = "mi_clean", *, n_boot: int = 1000) -> Interval:
    """Mean over seeds of the ROC AUC of one score telling clean from attacked images, with a
    hierarchical bootstrap interval (seeds, then images within each drawn seed)."""
    per_seed = [_auc_items(getattr(r.detection[model], clean), getattr(r.detection[model], attacked))
                for r in records.seeds]
    return hierarchical_bootstrap(per_seed, _auc_of_items, n_boot=n_boot, seed=0,
                                  bounds=(0.0, 1.0))


def claim_uncertainty_flags_attacks(records: Records, settings: Settings) -> Claim:
    """Pang et al.: the posterior's spread signals an attack. The ROC AUC of mutual information
    for telling the clean evaluation images from their transferred PGD versions (middle eps),
    mean over seeds with a hierarchical bootstrap interval, is >= ``auc_threshold`` for both
    BNNs."""
    rule = Rule("at_least", settings.auc_threshold)
    decisions = [decide_condition(f"{m}: AUC(mutual information, clean vs PGD)",
                                  detection_auc(records, m, n_boot=settings.n_boot), rule)
                 for m in BNNS]
    others = {f"{m}/{score}": {"auc": iv.estimate, "ci95": list(iv.ci95)}
              for m in DETECTORS if all(m in r.detection for r in records.seeds)
              for score, iv in (
                  ("predictive_entropy", detection_auc(records, m, "entropy_transfer",
                                                       "entropy_clean", n_boot=settings.n_boot)),
                  ("mutual_information_whitebox", detection_auc(records, m, "mi_whitebox",
                                                                n_boot=settings.n_boot)))}
    return claim_over_conditions(
        "uncertainty_flags_attacks",
        f"mutual information separates clean from PGD inputs (transferred from cnn_ref, "
        f"eps={settings.middle_eps:g}) with ROC AUC >= {settings.auc_threshold:g}, for "
        "bayes_head and bayes_full", decisions,
        details={"other_scores": others, **_clean_details(records, settings)})


def claim_bnn_advantage_survives_whitebox(records: Records, settings: Settings) -> Claim:
    """Feng et al.'s test: attacked through their own randomness (EOT-PGD at the middle eps),
    the BNNs keep an advantage over cnn_ref under its own white-box PGD: accuracy(BNN) -
    accuracy(cnn_ref), paired by seed, is at least ``whitebox_min_gain``. Not reproduced when
    the interval lies below that gain (the advantage vanished, as Feng et al. expect)."""
    rule = Rule("at_least", settings.whitebox_min_gain)
    decisions = [_compare(records, "whitebox", None, m, "cnn_ref", rule,
                          f"{m} (EOT-PGD) - cnn_ref (PGD)") for m in BNNS]
    return claim_over_conditions(
        "bnn_advantage_survives_whitebox",
        f"under white-box EOT-PGD at the middle eps ({settings.middle_eps:g}), BNN accuracy "
        f"exceeds cnn_ref's under white-box PGD by at least {settings.whitebox_min_gain:g}",
        decisions, details={"eps": settings.middle_eps, "eot_samples": settings.eot_samples,
                            "steps": settings.pgd_steps, **_clean_details(records, settings)})


# ============================================================================ tables and figures


def _rows(records: Records, table: str, keys: tuple[str, str] = ("condition", "level")
          ) -> list[dict[str, Any]]:
    """Long-form rows ``{seed, <keys>, model, accuracy}`` of one table of the records."""
    out = []
    for r in records.seeds:
        t = getattr(r, table)
        if table in ("clean", "whitebox"):
            out += [{"seed": r.seed, "model": m, "accuracy": float(a)} for m, a in t.items()]
        else:
            out += [{"seed": r.seed, keys[0]: c, keys[1]: lvl, "model": m, "accuracy": float(a)}
                    for (c, lvl), row in t.items() for m, a in row.items()]
    return out


def summarize(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> Any:
    """A pandas DataFrame: per ``keys`` group, the mean accuracy over seeds with its logit
    interval (``lo``, ``hi``, inside [0, 1]; NaN from one seed) and ``n``."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    out = []
    for cond, g in df.groupby(list(keys), sort=False):
        cond = cond if isinstance(cond, tuple) else (cond,)
        iv = logit_interval(g["accuracy"].to_numpy(dtype=float))
        out.append({**dict(zip(keys, cond, strict=True)), "mean": iv.estimate, "lo": iv.lo,
                    "hi": iv.hi, "n": iv.n})
    return pd.DataFrame(out)


def clean_table(records: Records) -> Any:
    """Clean test accuracy per model: mean over seeds, logit interval, seeds."""
    return summarize(_rows(records, "clean"), ("model",)).set_index("model")


def clean_caveats(records: Records, settings: Settings) -> list[str]:
    """One line per BNN: its clean accuracy against cnn_ref's, and whether it lies more than
    ``clean_gap_warning`` below (a robustness gain bought by a worse clean model is no gain)."""
    gap = _clean_details(records, settings)["clean_gap_vs_cnn_ref"]
    ref = float(np.mean(_values(records, "clean", None, "cnn_ref")))
    return [f"{m}: clean accuracy {fmt(ref - g)} vs cnn_ref {fmt(ref)} ({fmt(-g, plus=True)}) -> "
            + (f"MORE than {fmt(settings.clean_gap_warning)} below cnn_ref: every robustness "
               "number of this model carries this caveat" if g > settings.clean_gap_warning
               else f"not more than {fmt(settings.clean_gap_warning)} below cnn_ref")
            for m, g in gap.items()]


def transfer_table(records: Records) -> Any:
    """Mean accuracy over seeds: rows (attack, eps), columns the models."""
    s = summarize(_rows(records, "transfer", ("attack", "eps")), ("attack", "eps", "model"))
    return s.pivot_table(index=["attack", "eps"], columns="model", values="mean")[list(MODEL_NAMES)]


def perturbation_table(records: Records) -> Any:
    """Mean accuracy over seeds at each perturbation's largest severity: rows perturbations,
    columns the models."""
    rows = _rows(records, "perturbation", ("perturbation", "severity"))
    largest = {}
    for r in rows:
        largest[r["perturbation"]] = max(largest.get(r["perturbation"], r["severity"]),
                                         r["severity"])
    s = summarize([r for r in rows if r["severity"] == largest[r["perturbation"]]],
                  ("perturbation", "model"))
    return s.pivot_table(index="perturbation", columns="model", values="mean")[list(MODEL_NAMES)]


def whitebox_table(records: Records, settings: Settings) -> Any:
    """Per model: accuracy on PGD transferred from cnn_ref and under its own white-box attack at
    the middle eps (means over seeds)."""
    import pandas as pd

    mid = settings.middle_eps
    key = next(k for k in records.seeds[0].transfer if k[0] == "pgd" and math.isclose(k[1], mid))
    return pd.DataFrame({"transferred PGD": [float(np.mean(_values(records, "transfer", key, m)))
                                             for m in MODEL_NAMES],
                         "white-box": [float(np.mean(_values(records, "whitebox", None, m)))
                                       for m in MODEL_NAMES]}, index=list(MODEL_NAMES))


def detection_table(records: Records, settings: Settings) -> Any:
    """ROC AUC (mean over seeds) with its hierarchical-bootstrap interval, per detector and
    score: mutual information and predictive entropy on transferred PGD, mutual information
    on each model's own white-box attack."""
    import pandas as pd

    rows = []
    for m in DETECTORS:
        for name, attacked, clean in (("MI, transferred PGD", "mi_transfer", "mi_clean"),
                                      ("entropy, transferred PGD", "entropy_transfer",
                                       "entropy_clean"),
                                      ("MI, white-box", "mi_whitebox", "mi_clean")):
            iv = detection_auc(records, m, attacked, clean, n_boot=settings.n_boot)
            rows.append({"model": m, "score": name, "auc": iv.estimate, "lo": iv.lo,
                         "hi": iv.hi})
    return pd.DataFrame(rows).set_index(["model", "score"])


def _model_colors(models: Sequence[str]) -> dict[str, Any]:
    from ..core.plotting import palette

    return dict(zip(models, palette(len(models)), strict=True))


def _accuracy_curves(rows: Sequence[Mapping[str, Any]], x: str, panel: str, *,
                     xlabel: str | None = None, ncols: int | None = None):
    """One panel per value of ``panel``; accuracy (mean over seeds, logit-interval band) vs
    ``x``, one line per model."""
    import matplotlib.pyplot as plt

    s = summarize(rows, (panel, x, "model"))
    panels = list(dict.fromkeys(s[panel]))
    ncols = ncols or len(panels)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False,
                             sharey=True)
    colors = _model_colors(MODEL_NAMES)
    for ax, p in zip(axes.flat, panels, strict=False):
        sp = s[s[panel] == p]
        for m in MODEL_NAMES:
            d = sp[sp["model"] == m].sort_values(x)
            if d.empty:
                continue
            ax.plot(d[x], d["mean"], marker="o", ms=3, color=colors[m], label=m)
            lo, hi = d["lo"].to_numpy(float), d["hi"].to_numpy(float)
            if np.isfinite(lo).all():
                ax.fill_between(d[x], lo, hi, color=colors[m], alpha=0.15, lw=0)
        ax.set_title(str(p))
        ax.set_xlabel(xlabel or x)
        ax.set_ylim(-0.02, 1.02)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def _bars(rows: Sequence[Mapping[str, Any]], group: str, *, title: str = ""):
    """Grouped bars (mean over seeds, logit-interval whiskers): x = ``group``, one bar per
    model."""
    import matplotlib.pyplot as plt

    s = summarize(rows, (group, "model"))
    groups = list(dict.fromkeys(s[group]))
    present = [m for m in MODEL_NAMES if m in set(s["model"])]
    colors = _model_colors(MODEL_NAMES)
    width = 0.8 / max(1, len(present))
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(groups) + 0.3 * len(present), 3.2))
    for j, m in enumerate(present):
        d = s[s["model"] == m].set_index(group).reindex(groups)
        xs = np.arange(len(groups)) + (j - (len(present) - 1) / 2) * width
        mean = d["mean"].to_numpy(float)
        err = np.vstack([mean - d["lo"].to_numpy(float), d["hi"].to_numpy(float) - mean])
        err = np.where(np.isfinite(err), err, 0.0)
        ax.bar(xs, mean, width, color=colors[m], label=m, yerr=err, capsize=2)
        for xi, mi in zip(xs, mean, strict=True):
            if np.isfinite(mi):
                ax.text(xi, mi + 0.02, f"{mi:.2f}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([str(g) for g in groups])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="upper right", bbox_to_anchor=(1.0, -0.12))
    fig.tight_layout()
    return fig


def plot_svi_loss(records: Records):
    """Per-epoch SVI loss per example of every VI posterior (one panel per model, one line per
    seed): ``(NLL / kl_weight + KL) / n``; shows how far SVI got in its budget."""
    import matplotlib.pyplot as plt

    names = [m for m in MODEL_NAMES if any(m in r.svi_history for r in records.seeds)]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.6 * max(1, len(names)), 2.8),
                             squeeze=False)
    for ax, m in zip(axes[0], names, strict=False):
        for r in records.seeds:
            h = r.svi_history.get(m, ())
            if h:
                ax.plot(range(1, len(h) + 1), h, label=f"seed {r.seed}")
        ax.set_title(m)
        ax.set_xlabel("SVI epoch")
    axes[0, 0].set_ylabel("SVI loss per example")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_clean_accuracy(records: Records, settings: Settings, data_name: str = ""):
    """Clean test accuracy of every model (bars over seeds)."""
    rows = [{**r, "set": "clean test"} for r in _rows(records, "clean")]
    return _bars(rows, "set", title=f"clean accuracy ({data_name or settings.dataset}, "
                                    f"S={settings.n_posterior_samples})")


def plot_transferred_attacks(records: Records):
    """Accuracy vs eps on FGSM and PGD examples crafted on cnn_ref, one panel per attack."""
    return _accuracy_curves(_rows(records, "transfer", ("attack", "eps")), "eps", "attack",
                            xlabel="eps (L-inf), crafted on cnn_ref")


def plot_signal_interference(records: Records):
    """Accuracy vs severity, one panel per signal perturbation."""
    return _accuracy_curves(_rows(records, "perturbation", ("perturbation", "severity")),
                            "severity", "perturbation", ncols=4)


def plot_whitebox_vs_transfer(records: Records, settings: Settings):
    """Bars: accuracy on transferred PGD vs under each model's own white-box attack, middle
    eps."""
    mid = settings.middle_eps
    rows = ([{**r, "setting": f"transferred PGD eps={mid:g}"}
             for r in _rows(records, "transfer", ("attack", "eps"))
             if r["attack"] == "pgd" and math.isclose(r["eps"], mid)]
            + [{**r, "setting": f"white-box eps={mid:g}"} for r in _rows(records, "whitebox")])
    return _bars(rows, "setting", title="transferred vs white-box (EOT-PGD for stochastic models)")


def plot_detection(records: Records):
    """Per detector, histograms of mutual information on clean vs transferred-PGD images
    (pooled over seeds), titled with the mean AUC over seeds."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DETECTORS), figsize=(3.4 * len(DETECTORS), 2.8),
                             squeeze=False)
    for ax, m in zip(axes[0], DETECTORS, strict=True):
        clean = np.concatenate([r.detection[m].mi_clean for r in records.seeds])
        att = np.concatenate([r.detection[m].mi_transfer for r in records.seeds])
        hi = float(max(clean.max(initial=0), att.max(initial=0))) or 1e-6
        bins = np.linspace(0, hi, 30)
        ax.hist(clean, bins=bins, alpha=0.6, label="clean", density=True)
        ax.hist(att, bins=bins, alpha=0.6, label="attacked", density=True)
        auc = np.mean([roc_auc(r.detection[m].mi_clean, r.detection[m].mi_transfer)
                       for r in records.seeds])
        ax.set_title(f"{m}: AUC {auc:.3f} (PGD)", fontsize=9)
        ax.set_xlabel("mutual information (nats)")
    axes[0, 0].set_ylabel("density")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


CLAIMS = {
    "bnn_more_robust_to_transferred_attacks": claim_bnn_more_robust_to_transferred_attacks,
    "bnn_gain_beyond_transfer_control": claim_bnn_gain_beyond_transfer_control,
    "bayesian_head_suffices": claim_bayesian_head_suffices,
    "bnn_robust_to_signal_interference": claim_bnn_robust_to_signal_interference,
    "uncertainty_flags_attacks": claim_uncertainty_flags_attacks,
    "bnn_advantage_survives_whitebox": claim_bnn_advantage_survives_whitebox,
}
