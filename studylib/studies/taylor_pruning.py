"""Study 06 (Molchanov et al., CVPR 2019): Taylor-expansion importance for structural pruning.

The study layer on top of :mod:`studylib.techniques.pruning` (the gates, criteria, oracle,
iterative pruning and removal):

- :class:`Settings`: every parameter of the study, filled from the notebook's parameters
  cell (:meth:`~studylib.core.settings.StudySettings.from_params`), no defaults here.
- :func:`run`: for each setup and seed, :func:`run_seed` trains the network, scores every
  criterion and the oracle on the same minibatches, draws the loss-vs-removed curves without
  fine-tuning, prunes iteratively with each criterion, fine-tunes and physically prunes each
  snapshot, and times the claim's pruned model against the dense one. It returns
  :class:`Records` (one :class:`SeedRecord` per setup and seed).
- ``claim_<id>(records, settings) -> Claim``, decided by :mod:`studylib.stats` on every setup:
  correlations with the oracle through Fisher's z; comparisons between criteria as
  differences paired by seed (the same seed's model, data order and oracle); "SO matches FO"
  as an equivalence within ``so_tolerance`` and "small accuracy loss" as a non-inferiority
  margin of ``max_accuracy_drop_points``; the timing ratio on the log scale.
- the tables the notebook prints (pandas DataFrames, printed through ``fmt_table``) and its
  figures.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..core.formatting import fmt
from ..core.settings import StudySettings
from ..stats import (
    Claim,
    ConditionDecision,
    Interval,
    PaperValue,
    Rule,
    claim_over_conditions,
    decide_condition,
    fisher_z_interval,
    log_ratio_interval,
    logit_interval,
    paired_difference,
)
from ..techniques.pruning import (
    CRITERIA,
    ChannelGates,
    PruneConfig,
    compare_inference_time,
    count_flops_params,
    curve_gap,
    loss_vs_removed,
    minibatches,
    prune_iteratively,
    rank_correlations,
    score_minibatches,
    torch_pruning_taylor_scores,
)

FO_AT_BN = "taylor_fo@bn"
"""Taylor FO restricted to the channels that have a BatchNorm (the fair comparison with
``bn_scale``, which exists only there)."""


# ============================================================================ settings


_SETUP_REQUIRED = ("model", "dataset", "epochs", "lr")
_SETUP_OPTIONAL: Mapping[str, Any] = {"model_kwargs": {}, "data_kwargs": {}, "schedule": "none"}

@dataclass(frozen=True)
class Setup:
    """One model/data setup: the dense model and how it is trained.

    Built from one entry of the ``setups`` parameter (:meth:`from_mapping`); pruning and
    fine-tuning use the study's ``finetune_lr``, not ``lr``.

    Attributes:
        model, model_kwargs: :func:`studylib.models.build_model` name and arguments.
        dataset, data_kwargs: :func:`studylib.data.load` name and arguments.
        epochs, lr, schedule: training of the dense model (Adam; ``"none"`` | ``"cosine"``).
    """

    model: str
    model_kwargs: Mapping[str, Any]
    dataset: str
    data_kwargs: Mapping[str, Any]
    epochs: int
    lr: float
    schedule: str

    @classmethod
    def from_mapping(cls, name: str, spec: Mapping[str, Any]) -> Setup:
        """A setup from its parameters entry. ``model_kwargs`` / ``data_kwargs`` may be left
        out (no extra arguments), and ``schedule`` (no schedule); every other key is needed,
        and an unknown key is an error naming it (a typo would otherwise be ignored)."""
        known = set(_SETUP_REQUIRED) | set(_SETUP_OPTIONAL)
        unknown = sorted(set(spec) - known)
        missing = [k for k in _SETUP_REQUIRED if k not in spec]
        if unknown or missing:
            raise ValueError(f"setup {name!r}: unknown keys {unknown}, missing keys {missing} "
                             f"(keys: {sorted(known)})")
        full = {**_SETUP_OPTIONAL, **spec}
        return cls(model=str(full["model"]), model_kwargs=dict(full["model_kwargs"]),
                   dataset=str(full["dataset"]), data_kwargs=dict(full["data_kwargs"]),
                   epochs=int(full["epochs"]), lr=float(full["lr"]),
                   schedule=str(full["schedule"]))


@dataclass(frozen=True)
class Settings(StudySettings):
    """Every parameter of study 06 (the notebook's parameters cell is their one source).

    Attributes:
        setups: setup name -> :class:`Setup` (given as plain mappings; converted here).
        batch_size: training minibatch (training, pruning, fine-tuning).
        score_batches, score_batch_size: the minibatches on which every criterion and the
            oracle are computed (the correlation study).
        curve_points, curve_max_fraction, curve_examples: the loss-vs-removed curves (no
            fine-tuning) go from 0 to ``curve_max_fraction`` of the channels in
            ``curve_points`` steps, the loss measured on the first ``curve_examples`` test
            images.
        prune_criteria: criteria run through iterative pruning + fine-tuning (must include
            ``taylor_fo``, the claims' criterion).
        frequency, neurons_per_step, momentum, snapshot_fractions: the pruning schedule.
        finetune_epochs, finetune_lr: fine-tuning of each snapshot; the training between
            pruning steps uses ``finetune_lr`` too.
        timing_repeats, timing_batch: CPU inference timing (median of the repeats).
        rho_threshold: ``taylor_fo_correlates_with_oracle`` needs rho at least this.
        so_tolerance: ``second_order_matches_first``'s equivalence margin on rho(SO) - rho(FO).
        target_param_reduction: the first ``taylor_fo`` snapshot that removes at least this
            fraction of parameters is the claims' pruned model, and the fraction that
            ``prune_30pct_params_small_accuracy_loss`` needs.
        max_accuracy_drop_points: that claim's non-inferiority margin, in accuracy points.
    """

    setups: Mapping[str, Setup]
    batch_size: int
    score_batches: int
    score_batch_size: int
    curve_points: int
    curve_max_fraction: float
    curve_examples: int
    prune_criteria: tuple[str, ...]
    frequency: int
    neurons_per_step: int
    momentum: float
    snapshot_fractions: tuple[float, ...]
    finetune_epochs: int
    finetune_lr: float
    timing_repeats: int
    timing_batch: int
    rho_threshold: float
    so_tolerance: float
    target_param_reduction: float
    max_accuracy_drop_points: float

    def __post_init__(self) -> None:
        if not self.setups:
            raise ValueError("setups names no setup")
        object.__setattr__(self, "setups", {
            name: s if isinstance(s, Setup) else Setup.from_mapping(name, s)
            for name, s in self.setups.items()})
        if "taylor_fo" not in self.prune_criteria:
            raise ValueError("prune_criteria must include 'taylor_fo': the accuracy and timing "
                             f"claims are decided on its pruned model (got {self.prune_criteria})")
        if not 0 < self.target_param_reduction < 1:
            raise ValueError(f"target_param_reduction must lie in (0, 1), got "
                             f"{self.target_param_reduction}")


# ============================================================================ records


@dataclass(frozen=True)
class Correlation:
    """Rank agreement of one criterion's scores with a reference (the oracle), over the
    channels where both are finite (``n``); ``per_layer`` holds the same per gate."""

    spearman: float
    kendall: float
    n: int
    per_layer: Mapping[str, Correlation]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Correlation:
        """From an entry of :func:`~studylib.techniques.pruning.rank_correlations`."""
        return cls(spearman=float(d["spearman"]), kendall=float(d["kendall"]), n=int(d["n"]),
                   per_layer={k: cls.from_dict(v) for k, v in d.get("per_layer", {}).items()})


@dataclass(frozen=True)
class PruningRow:
    """One snapshot of iterative pruning with one criterion, after fine-tuning.

    Attributes:
        fraction, removed: the snapshot's target fraction of channels and the channels off.
        accuracy_before_finetune, accuracy: test accuracy (0-1) before and after fine-tuning.
        flops, params: of the physically pruned network (torch-pruning's count; MACs).
        flops_reduction, param_reduction: ``1 - pruned / dense``.
        max_abs_diff_pruned_vs_gated: largest output difference between the physically
            pruned network and the gated one on 256 test images (float noise when correct).
        kept: gate name -> channels kept.
    """

    fraction: float
    removed: int
    accuracy_before_finetune: float
    accuracy: float
    flops: int
    params: int
    flops_reduction: float
    param_reduction: float
    max_abs_diff_pruned_vs_gated: float
    kept: Mapping[str, int]


@dataclass(frozen=True)
class Timing:
    """CPU inference time of the dense and the physically pruned network: the medians of
    ``repeats`` alternating repetitions on the same batch."""

    dense_s: float
    pruned_s: float
    repeats: int

    @property
    def ratio(self) -> float:
        """pruned / dense (< 1: the pruned network is faster)."""
        return self.pruned_s / self.dense_s


@dataclass(frozen=True)
class SeedRecord:
    """Everything study 06 measures for one setup and one seed.

    Attributes:
        setup, seed: which run.
        base_accuracy, base_loss: the dense model on the test split.
        layers, layer_widths, n_shared: the gates (name, channels, places sharing the gate).
        scores: criterion (and ``oracle``, ``oracle_signed``) -> one score per gated channel.
        correlations: criterion (and :data:`FO_AT_BN` where BatchNorms exist) -> its
            :class:`Correlation` with the oracle.
        tp_taylor_vs_fo, tp_taylor_vs_oracle: torch-pruning's ``TaylorImportance`` against our
            Taylor FO gate scores and against the oracle.
        curve_counts, curves, curve_gaps: channels removed, the test loss at each count per
            criterion and for the oracle (no fine-tuning), and each criterion's mean vertical
            gap to the oracle curve.
        dense_flops, dense_params: of the dense network.
        pruning: criterion -> one :class:`PruningRow` per snapshot.
        claim_row: the claims' pruned model: the first ``taylor_fo`` snapshot that removes at
            least ``target_param_reduction`` of the parameters (the last one if none does).
        timing: dense vs ``claim_row``'s physically pruned network.
        phase_seconds, phase_cpu_seconds: wall and CPU (this process) time per phase.
    """

    setup: str
    seed: int
    base_accuracy: float
    base_loss: float
    layers: tuple[str, ...]
    layer_widths: tuple[int, ...]
    n_shared: tuple[int, ...]
    scores: Mapping[str, np.ndarray]
    correlations: Mapping[str, Correlation]
    tp_taylor_vs_fo: Correlation
    tp_taylor_vs_oracle: Correlation
    curve_counts: tuple[int, ...]
    curves: Mapping[str, np.ndarray]
    curve_gaps: Mapping[str, float]
    dense_flops: int
    dense_params: int
    pruning: Mapping[str, tuple[PruningRow, ...]]
    claim_row: PruningRow
    timing: Timing
    phase_seconds: Mapping[str, float]
    phase_cpu_seconds: Mapping[str, float]

    @property
    def n_channels(self) -> int:
        return int(sum(self.layer_widths))

    def rho(self, criterion: str) -> float:
        """Spearman rho of ``criterion`` with the oracle, over all gated channels."""
        return self.correlations[criterion].spearman


@dataclass(frozen=True)
class Records:
    """What :func:`run` returns: setup name -> one :class:`SeedRecord` per seed (same seeds,
    same order, in every setup)."""

    by_setup: Mapping[str, tuple[SeedRecord, ...]]

    def __post_init__(self) -> None:
        if not self.by_setup or any(not recs for recs in self.by_setup.values()):
            raise ValueError("records need at least one setup with at least one seed")
        object.__setattr__(self, "by_setup",
                           {name: tuple(recs) for name, recs in self.by_setup.items()})

    def items(self) -> Iterator[tuple[str, tuple[SeedRecord, ...]]]:
        return iter(self.by_setup.items())

    @property
    def setups(self) -> list[str]:
        return list(self.by_setup)

    def first_seed(self) -> dict[str, SeedRecord]:
        """Setup -> its first seed's record (for the figures of one model)."""
        return {name: recs[0] for name, recs in self.items()}


# ============================================================================ run


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class _PhaseClock:
    """Wall and CPU seconds per phase (CPU: this process only), added up by name."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._last = (time.perf_counter(), time.process_time())

    def lap(self, name: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall[name] = self.wall.get(name, 0.0) + now[0] - self._last[0]
        self.cpu[name] = self.cpu.get(name, 0.0) + now[1] - self._last[1]
        self._last = now


def run_seed(name: str, setup: Setup, seed: int, settings: Settings, *,
             device: str | torch.device = "cpu", progress: bool = True,
             cache: bool = True) -> SeedRecord:
    """Everything study 06 measures for one setup and one seed.

    Steps: train (checkpoint cache) -> gates -> every criterion and the oracle on the same
    minibatches -> rank correlations (global, per layer) and agreement with torch-pruning's
    ``TaylorImportance`` -> loss-vs-removed curves without fine-tuning -> iterative pruning per
    criterion, each snapshot fine-tuned, physically pruned, counted (FLOPs, params) and checked
    against the gated model -> CPU timing of the claims' pruned model vs the dense one.

    Args:
        name: the setup's name (recorded).
        setup: the model, data and training of the dense model.
        seed: model initialisation, minibatch order, random scores.
        settings: the study's :class:`Settings`.
        device: where to train and score (timing always runs on the CPU).
        progress: progress bars (off anyway under ``STUDYLIB_PROGRESS=0``).
        cache: use the checkpoint caches (training, pruning, fine-tuning).
    """
    from .. import data as data_mod
    from ..core.runtime import select_device
    from ..models import build_model
    from ..training import TrainConfig, cross_entropy_loss, evaluate, fit

    device = select_device(device)
    clock = _PhaseClock()
    bundle = data_mod.load(setup.dataset, **setup.data_kwargs)
    c, h, _ = bundle.input_shape
    model = build_model(setup.model, seed=seed, in_channels=c, num_classes=bundle.num_classes,
                        image_size=h, **setup.model_kwargs)
    train_cfg = TrainConfig(epochs=setup.epochs, batch_size=settings.batch_size, lr=setup.lr,
                            schedule=setup.schedule)
    clock.lap("data")
    fit(model, bundle, train_cfg, seed=seed, device=device, cache=cache, progress=progress,
        desc=f"train {setup.model} s{seed}")
    clock.lap("train")
    base = evaluate(model, bundle.test, device)
    trained_state = _state_copy(model)
    example = bundle.train.x[:2].to(device)
    gates = ChannelGates(model, example)
    names = [g.name for g in gates.gates]

    # -- criteria vs oracle on the same minibatches
    batches = minibatches(bundle.train.x, bundle.train.y, settings.score_batch_size,
                          settings.score_batches, seed=seed, device=device)
    scores = score_minibatches(model, gates, batches, CRITERIA, oracle=True, seed=seed,
                               progress=progress)
    clock.lap("scores_and_oracle")
    raw = rank_correlations({k: scores[k] for k in CRITERIA}, scores["oracle"],
                            gates.layer_index(), names)
    bn_ok = np.isfinite(scores["bn_scale"])
    if bn_ok.any():  # first order on the channels that have a BatchNorm (fair vs bn_scale)
        raw[FO_AT_BN] = rank_correlations({"x": scores["taylor_fo"][bn_ok]},
                                          scores["oracle"][bn_ok])["x"]
    tp_scores = torch_pruning_taylor_scores(model, gates, batches)
    tp_vs_fo = rank_correlations({"tp": tp_scores}, scores["taylor_fo"])["tp"]
    tp_vs_oracle = rank_correlations({"tp": tp_scores}, scores["oracle"])["tp"]

    # -- loss vs channels removed, no fine-tuning (ranking fixed once)
    counts = np.unique(np.linspace(0, settings.curve_max_fraction * gates.n_channels,
                                   settings.curve_points).round().astype(int)).tolist()
    xc, yc = bundle.test.x[:settings.curve_examples], bundle.test.y[:settings.curve_examples]
    curves = {k: loss_vs_removed(model, gates, scores[k], xc, yc, counts)
              for k in list(CRITERIA) + ["oracle"]}
    gaps = {k: curve_gap(curves[k], curves["oracle"], counts) for k in CRITERIA}
    clock.lap("curves_and_tp")

    # -- iterative pruning + fine-tuning per criterion
    dense_flops, dense_params = count_flops_params(gates.pruned_copy(), example[:1])
    runs: dict[str, tuple[PruningRow, ...]] = {}
    claim_row: PruningRow | None = None
    claim_model: nn.Module | None = None
    for criterion in settings.prune_criteria:
        gates.reset()
        model.load_state_dict(trained_state)
        cfg = PruneConfig(criterion=criterion, frequency=settings.frequency,
                          neurons_per_step=settings.neurons_per_step, momentum=settings.momentum,
                          snapshot_fractions=tuple(settings.snapshot_fractions),
                          batch_size=settings.batch_size, lr=settings.finetune_lr)
        snaps = prune_iteratively(model, gates, bundle.train, cfg, seed=seed, device=device,
                                  cache=cache, progress=progress)
        clock.lap("prune")
        rows = []
        for snap in snaps:
            model.load_state_dict(snap["state_dict"])
            gates.set_values(snap["gate_values"])
            before_ft = evaluate(model, bundle.test, device)["accuracy"]
            ft_cfg = TrainConfig(epochs=settings.finetune_epochs, batch_size=settings.batch_size,
                                 lr=settings.finetune_lr)
            fit(model, bundle, ft_cfg, seed=seed, device=device, cache=cache, progress=False,
                loss_id=f"taylor_finetune(mask={gates.mask_digest()})",
                loss_fn=cross_entropy_loss)
            acc = evaluate(model, bundle.test, device)["accuracy"]
            pruned = gates.pruned_copy().eval()
            flops, params = count_flops_params(pruned, example[:1])
            with torch.no_grad():
                xb = bundle.test.x[:256].to(device)
                diff = float((pruned(xb) - model.eval()(xb)).abs().max())
            row = PruningRow(fraction=float(snap["fraction"]), removed=int(snap["removed"]),
                             accuracy_before_finetune=before_ft, accuracy=acc, flops=flops,
                             params=params, flops_reduction=1 - flops / dense_flops,
                             param_reduction=1 - params / dense_params,
                             max_abs_diff_pruned_vs_gated=diff, kept=gates.kept_per_layer())
            rows.append(row)
            clock.lap("finetune_and_count")
            if (criterion == "taylor_fo" and claim_row is None
                    and row.param_reduction >= settings.target_param_reduction):
                claim_row, claim_model = row, pruned
        runs[criterion] = tuple(rows)
        if criterion == "taylor_fo" and claim_row is None:  # never reached the target
            claim_row, claim_model = rows[-1], pruned
    assert claim_row is not None and claim_model is not None  # Settings requires taylor_fo

    # -- CPU inference time: dense vs physically pruned (the claims' model)
    gates.reset()
    model.load_state_dict(trained_state)
    with gates.suspended():
        dense = copy.deepcopy(model).cpu().eval()
    xt = bundle.test.x[:settings.timing_batch].cpu()
    t = compare_inference_time(dense, claim_model.cpu().eval(), xt,
                               repeats=settings.timing_repeats)
    clock.lap("timing")
    record = SeedRecord(
        setup=name, seed=int(seed), base_accuracy=base["accuracy"], base_loss=base["loss"],
        layers=tuple(names), layer_widths=tuple(g.channels for g in gates.gates),
        n_shared=tuple(g.n_shared for g in gates.gates), scores=scores,
        correlations={k: Correlation.from_dict(v) for k, v in raw.items()},
        tp_taylor_vs_fo=Correlation.from_dict(tp_vs_fo),
        tp_taylor_vs_oracle=Correlation.from_dict(tp_vs_oracle),
        curve_counts=tuple(counts), curves=curves, curve_gaps=gaps,
        dense_flops=dense_flops, dense_params=dense_params, pruning=runs, claim_row=claim_row,
        timing=Timing(dense_s=t["median_a_s"], pruned_s=t["median_b_s"], repeats=t["repeats"]),
        phase_seconds=clock.wall, phase_cpu_seconds=clock.cpu)
    gates.remove()
    return record


def run(settings: Settings, ctx) -> Records:
    """Run every setup for every seed of ``ctx`` (a :class:`~studylib.core.runtime.StudyContext`)
    on its device, and record the study's metrics in ``ctx``: per setup, the dense model's mean
    clean accuracy, the number of gated channels, and the mean Spearman rho of torch-pruning's
    ``TaylorImportance`` with our Taylor FO and with the oracle."""
    records = Records({name: tuple(run_seed(name, setup, seed, settings, device=ctx.device)
                                   for seed in ctx.seeds)
                       for name, setup in settings.setups.items()})
    for name, recs in records.items():
        ctx.record_metric(f"{name}_clean_accuracy_mean",
                          float(np.mean([r.base_accuracy for r in recs])))
        ctx.record_metric(f"{name}_gated_channels", recs[0].n_channels)
    for name, recs in records.items():
        ctx.record_metric(f"{name}_tp_taylor_vs_fo_spearman",
                          float(np.mean([r.tp_taylor_vs_fo.spearman for r in recs])))
        ctx.record_metric(f"{name}_tp_taylor_vs_oracle_spearman",
                          float(np.mean([r.tp_taylor_vs_oracle.spearman for r in recs])))
    return records


# ============================================================================ claims


def _rhos(recs: Sequence[SeedRecord], criterion: str) -> list[float]:
    return [r.rho(criterion) for r in recs]


def _on_every_setup(records: Records, interval_of: Callable[[Sequence[SeedRecord]], Interval],
                    rule: Rule) -> list[ConditionDecision]:
    """One condition per setup: ``interval_of(that setup's records)`` judged by ``rule``."""
    return [decide_condition(name, interval_of(recs), rule) for name, recs in records.items()]


def claim_taylor_fo_correlates_with_oracle(records: Records, settings: Settings) -> Claim:
    """Spearman rho between the Taylor FO gate scores and the oracle (the loss change when a
    channel is removed), Fisher-z interval over seeds, is at least ``rho_threshold`` on every
    setup."""
    t = settings.rho_threshold
    decisions = _on_every_setup(records, lambda recs: fisher_z_interval(_rhos(recs, "taylor_fo")),
                                Rule("at_least", t))
    return claim_over_conditions(
        "taylor_fo_correlates_with_oracle",
        f"Spearman rho(Taylor FO gate score, oracle) >= {t:g} over all layers", decisions,
        paper_value=PaperValue("> 93% correlation with the oracle", "abstract"))


def claim_taylor_beats_magnitude_and_random(records: Records, settings: Settings) -> Claim:
    """Taylor FO ranks channels more like the oracle than weight magnitude and random scores
    do, and (where the network has BatchNorm) FO at the BN gates more than the BN scale: each
    rho difference, paired by seed, is > 0 on every setup. (No threshold to set: the
    comparison is with 0.)"""
    rule = Rule("greater", 0.0)
    decisions = []
    for name, recs in records.items():
        fo = _rhos(recs, "taylor_fo")
        for other in ("weight_magnitude", "random"):
            decisions.append(decide_condition(f"{name}: FO - {other}",
                                              paired_difference(fo, _rhos(recs, other)), rule))
        if FO_AT_BN in recs[0].correlations:
            decisions.append(decide_condition(
                f"{name}: FO@bn - bn_scale",
                paired_difference(_rhos(recs, FO_AT_BN), _rhos(recs, "bn_scale")), rule))
    return claim_over_conditions(
        "taylor_beats_magnitude_and_random",
        "Spearman rho with the oracle: Taylor FO > weight magnitude and random (and FO at the BN "
        "gates > BN scale), each difference paired by seed", decisions)


def claim_second_order_matches_first(records: Records, settings: Settings) -> Claim:
    """The second-order Taylor criterion ranks like the first-order one: rho(SO) - rho(FO),
    paired by seed, lies within +-``so_tolerance`` on every setup (an equivalence)."""
    tol = settings.so_tolerance
    decisions = _on_every_setup(
        records, lambda recs: paired_difference(_rhos(recs, "taylor_so"), _rhos(recs, "taylor_fo")),
        Rule("equivalent", 0.0, margin=tol))
    return claim_over_conditions(
        "second_order_matches_first",
        f"rho(Taylor SO) - rho(Taylor FO) lies within +-{tol:g}", decisions)


def claim_pruning_curve_tracks_oracle(records: Records, settings: Settings) -> Claim:
    """Without fine-tuning, the area between the Taylor FO loss curve and the oracle curve is
    smaller than that of weight magnitude: the difference of the two gaps, paired by seed,
    is < 0 on every setup."""
    decisions = _on_every_setup(
        records, lambda recs: paired_difference([r.curve_gaps["taylor_fo"] for r in recs],
                                                [r.curve_gaps["weight_magnitude"] for r in recs]),
        Rule("less", 0.0))
    return claim_over_conditions(
        "pruning_curve_tracks_oracle",
        "Without fine-tuning, the area between the Taylor FO loss curve and the oracle curve is "
        "smaller than that of weight magnitude (difference < 0)", decisions)


def claim_prune_30pct_params_small_accuracy_loss(records: Records, settings: Settings) -> Claim:
    """After Taylor FO pruning and fine-tuning, at least ``target_param_reduction`` of the
    parameters are gone (logit interval over seeds) and the test accuracy, in points, is not
    worse than the dense model's by more than ``max_accuracy_drop_points`` (pruned - dense,
    paired by seed: a non-inferiority margin), on every setup."""
    target, drop = settings.target_param_reduction, settings.max_accuracy_drop_points
    loss_rule = Rule("non_inferior", 0.0, margin=drop)
    decisions = []
    for name, recs in records.items():
        decisions.append(decide_condition(
            f"{name}: accuracy pruned - dense (points)",
            paired_difference([100 * r.claim_row.accuracy for r in recs],
                              [100 * r.base_accuracy for r in recs]), loss_rule))
        decisions.append(decide_condition(
            f"{name}: parameters removed",
            logit_interval([r.claim_row.param_reduction for r in recs]),
            Rule("at_least", target)))
    gap = {name: max(row.max_abs_diff_pruned_vs_gated for r in recs
                     for rows in r.pruning.values() for row in rows)
           for name, recs in records.items()}
    flops = {name: [r.claim_row.flops_reduction for r in recs] for name, recs in records.items()}
    return claim_over_conditions(
        "prune_30pct_params_small_accuracy_loss",
        f"After Taylor FO pruning and fine-tuning, removing >= {100 * target:.0f}% "
        f"of parameters costs <= {drop:g} point of test accuracy", decisions,
        paper_value=PaperValue("30% fewer parameters and 40% fewer FLOPs for a 0.02% top-1 "
                               "loss (ResNet-101, ImageNet)", "abstract"),
        details={"max_abs_diff_pruned_vs_gated": gap, "flops_reduction_per_seed": flops})


def claim_pruned_model_is_faster(records: Records, settings: Settings) -> Claim:
    """The physically pruned model's CPU inference time is below the dense model's: the
    per-seed ratio pruned / dense (median of the timing repetitions) has a log-scale interval
    below 1 on every setup."""
    decisions = _on_every_setup(
        records, lambda recs: log_ratio_interval([r.timing.ratio for r in recs]),
        Rule("less", 1.0))
    return claim_over_conditions(
        "pruned_model_is_faster",
        "The physically pruned model's CPU inference time is below the dense model's "
        "(ratio pruned/dense < 1, median of the timing repetitions)", decisions)


# ============================================================================ tables


def _correlation_keys(rec: SeedRecord) -> list[str]:
    return list(CRITERIA) + ([FO_AT_BN] if FO_AT_BN in rec.correlations else [])


def overview_table(records: Records) -> pd.DataFrame:
    """Per setup: the dense model's clean test accuracy (%, mean and logit interval over
    seeds), its gates, parameters and FLOPs (MACs)."""
    rows = {}
    for name, recs in records.items():
        acc = logit_interval([r.base_accuracy for r in recs])
        r0 = recs[0]
        rows[name] = {"clean accuracy (%)": 100 * float(np.mean([r.base_accuracy for r in recs])),
                      "95% CI low": 100 * acc.lo, "95% CI high": 100 * acc.hi,
                      "gated channels": r0.n_channels, "gates": len(r0.layers),
                      "parameters": r0.dense_params, "FLOPs (MACs)": r0.dense_flops}
    return pd.DataFrame.from_dict(rows, orient="index")


def gate_table(records: Records) -> pd.DataFrame:
    """One row per setup and gate: its channels and how many places share it (a residual
    stage's channels share one gate)."""
    rows = [{"setup": name, "gate": layer, "channels": width, "places sharing": shared}
            for name, r in records.first_seed().items()
            for layer, width, shared in zip(r.layers, r.layer_widths, r.n_shared, strict=True)]
    return pd.DataFrame(rows).set_index(["setup", "gate"])


def correlation_table(records: Records) -> pd.DataFrame:
    """Spearman rho and Kendall tau of each criterion with the oracle, over all gated channels
    (mean over seeds); rows (setup, statistic), one column per criterion."""
    rows = {}
    for name, recs in records.items():
        for stat in ("spearman", "kendall"):
            rows[(name, stat)] = {k: float(np.mean([getattr(r.correlations[k], stat)
                                                    for r in recs]))
                                  for k in _correlation_keys(recs[0])}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["setup", "statistic"])


def per_layer_table(records: Records, criterion: str = "taylor_fo") -> pd.DataFrame:
    """Per-layer Spearman rho and Kendall tau of ``criterion`` with the oracle, first seed
    (layers with fewer than 3 channels give n/a)."""
    rows = [{"setup": name, "gate": layer, "spearman": c.spearman, "kendall": c.kendall,
             "channels": c.n}
            for name, r in records.first_seed().items()
            for layer, c in r.correlations[criterion].per_layer.items()]
    return pd.DataFrame(rows).set_index(["setup", "gate"])


def pruning_table(records: Records) -> pd.DataFrame:
    """After iterative pruning and fine-tuning, per setup, criterion and snapshot (the
    fraction of channels removed, as a label): parameters and FLOPs removed and test accuracy
    before and after fine-tuning, all in %, mean over seeds."""
    rows = []
    for name, recs in records.items():
        for criterion, snapshots in recs[0].pruning.items():
            for i, first in enumerate(snapshots):
                snap = [r.pruning[criterion][i] for r in recs]
                rows.append({
                    "setup": name, "criterion": criterion,
                    "channels removed (%)": fmt(100 * first.fraction),
                    "params removed (%)": 100 * np.mean([s.param_reduction for s in snap]),
                    "FLOPs removed (%)": 100 * np.mean([s.flops_reduction for s in snap]),
                    "accuracy before FT (%)":
                        100 * np.mean([s.accuracy_before_finetune for s in snap]),
                    "accuracy after FT (%)": 100 * np.mean([s.accuracy for s in snap])})
    return pd.DataFrame(rows).set_index(["setup", "criterion", "channels removed (%)"])


def torch_pruning_table(records: Records) -> pd.DataFrame:
    """Spearman rho of torch-pruning's ``TaylorImportance`` ranking with our Taylor FO gate
    scores and with the oracle, per setup (mean over seeds)."""
    return pd.DataFrame.from_dict({
        name: {"rho(tp, our FO)": float(np.mean([r.tp_taylor_vs_fo.spearman for r in recs])),
               "rho(tp, oracle)": float(np.mean([r.tp_taylor_vs_oracle.spearman for r in recs]))}
        for name, recs in records.items()}, orient="index")


# ============================================================================ figures


_LABELS = {"taylor_fo": "Taylor FO (gate)", "taylor_so": "Taylor SO (gate)",
           "taylor_fo_weight": "Taylor FO (weights)", "weight_magnitude": "weight magnitude",
           "bn_scale": "BN |gamma|", "random": "random", "oracle": "oracle"}


def plot_criteria_vs_oracle(records: Records, criteria: Sequence[str] = CRITERIA):
    """Scatter of each criterion against the oracle (log-log), one row per setup (first seed),
    coloured by layer, with each panel's rho."""
    import matplotlib.pyplot as plt

    first = records.first_seed()
    fig, axes = plt.subplots(len(first), len(criteria), squeeze=False,
                             figsize=(2.6 * len(criteria), 2.6 * len(first)))
    for row, (setup, rec) in enumerate(first.items()):
        oracle = np.asarray(rec.scores["oracle"])
        li = np.repeat(np.arange(len(rec.layers)), rec.layer_widths)
        for col, c in enumerate(criteria):
            ax = axes[row][col]
            s = np.asarray(rec.scores[c], dtype=float)
            ok = np.isfinite(s) & (s > 0) & (oracle > 0)
            ax.scatter(oracle[ok], s[ok], c=li[ok], cmap="viridis", s=8, alpha=0.7)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_title(f"{_LABELS.get(c, c)}\nrho = {rec.rho(c):.2f}", fontsize=9)
            ax.tick_params(labelsize=7)
            if col == 0:
                ax.set_ylabel(f"{setup}\ncriterion", fontsize=9)
            if row == len(first) - 1:
                ax.set_xlabel("oracle |dL|", fontsize=9)
    fig.suptitle("Criteria vs oracle (first seed; colour = layer)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_loss_curves(records: Records, criteria: Sequence[str] = CRITERIA):
    """Test loss vs channels removed (no fine-tuning), mean over seeds, oracle dashed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(records.setups), squeeze=False,
                             figsize=(5.2 * len(records.setups), 3.8))
    for ax, (setup, recs) in zip(axes[0], records.items(), strict=True):
        for c in list(criteria) + ["oracle"]:
            m = np.mean([r.curves[c] for r in recs], axis=0)
            ax.plot(recs[0].curve_counts, m, label=_LABELS.get(c, c),
                    ls="--" if c == "oracle" else "-", lw=2.2 if c == "oracle" else 1.4,
                    color="k" if c == "oracle" else None)
        ax.set_yscale("log")
        ax.set_xlabel(f"channels removed (of {recs[0].n_channels})")
        ax.set_ylabel("test loss, no fine-tuning")
        ax.set_title(setup)
    axes[0][-1].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_pareto(records: Records, settings: Settings):
    """Accuracy after fine-tuning vs FLOPs and vs parameters (fraction kept), per criterion,
    mean over seeds; the dotted line is the dense accuracy less ``max_accuracy_drop_points``."""
    import matplotlib.pyplot as plt

    drop = settings.max_accuracy_drop_points
    fig, axes = plt.subplots(len(records.setups), 2, squeeze=False,
                             figsize=(10, 3.6 * len(records.setups)))
    for row, (setup, recs) in enumerate(records.items()):
        base = np.mean([r.base_accuracy for r in recs])
        dense = {"flops": recs[0].dense_flops, "params": recs[0].dense_params}
        for col, (key, label) in enumerate([("flops", "FLOPs kept"),
                                            ("params", "parameters kept")]):
            ax = axes[row][col]
            for c in recs[0].pruning:
                xs = np.mean([[getattr(p, key) / dense[key] for p in r.pruning[c]] for r in recs],
                             axis=0)
                ys = np.mean([[p.accuracy for p in r.pruning[c]] for r in recs], axis=0)
                ax.plot(np.r_[1.0, xs], 100 * np.r_[base, ys], marker="o",
                        label=_LABELS.get(c, c))
            ax.axhline(100 * base - drop, color="grey", ls=":", lw=1,
                       label=f"dense - {drop:g} point")
            ax.set_xlabel(f"{label} (fraction of dense)")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(setup)
            ax.invert_xaxis()
        axes[row][1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_kept_per_layer(records: Records):
    """Channels kept per layer in the claims' Taylor-FO pruned model (mean over seeds)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(records.setups), squeeze=False,
                             figsize=(5.5 * len(records.setups), 4.0))
    for ax, (setup, recs) in zip(axes[0], records.items(), strict=True):
        layers = recs[0].layers
        kept = np.mean([[r.claim_row.kept[n] for n in layers] for r in recs], axis=0)
        pos = np.arange(len(layers))
        ax.barh(pos, recs[0].layer_widths, color="lightgrey", label="dense")
        ax.barh(pos, kept, color="tab:blue", label="kept (Taylor FO)")
        ax.set_yticks(pos, [n if len(n) < 28 else n[:25] + "..." for n in layers], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("channels")
        ax.set_title(f"{setup}: {100 * recs[0].claim_row.fraction:.0f}% of channels removed",
                     fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


CLAIMS = {
    "taylor_fo_correlates_with_oracle": claim_taylor_fo_correlates_with_oracle,
    "taylor_beats_magnitude_and_random": claim_taylor_beats_magnitude_and_random,
    "second_order_matches_first": claim_second_order_matches_first,
    "pruning_curve_tracks_oracle": claim_pruning_curve_tracks_oracle,
    "prune_30pct_params_small_accuracy_loss": claim_prune_30pct_params_small_accuracy_loss,
    "pruned_model_is_faster": claim_pruned_model_is_faster,
}
