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
from dataclasses import dataclass, field
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
    hierarchical_bootstrap,
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
    estimate_scores,
    loss_vs_removed,
    minibatches,
    prune_iteratively,
    rank_correlations,
    split_half_reliability,
    torch_pruning_taylor_scores,
    train_like_pruning,
)

FO_AT_BN = "taylor_fo@bn"
"""Taylor FO restricted to the channels that have a BatchNorm (the fair comparison with
``bn_scale``, which exists only there)."""

FO_ON_ORACLE_BATCHES = "taylor_fo@oracle_batches"
"""Taylor FO averaged over the oracle's (and the exact second order's) minibatches only: the
comparison with ``taylor_so`` on the same data."""


# ============================================================================ settings


_SETUP_REQUIRED = ("model", "dataset", "epochs", "lr")
_SETUP_OPTIONAL: Mapping[str, Any] = {"model_kwargs": {}, "data_kwargs": {}, "schedule": "none",
                                      "n_seeds": 0, "score_batch_size": 0}

@dataclass(frozen=True)
class Setup:
    """One model/data setup: the dense model and how it is trained.

    Built from one entry of the ``setups`` parameter (:meth:`from_mapping`); pruning and
    fine-tuning use the study's ``finetune_lr``, not ``lr``.

    Attributes:
        model, model_kwargs: :func:`studylib.models.build_model` name and arguments.
        dataset, data_kwargs: :func:`studylib.data.load` name and arguments.
        epochs, lr, schedule: training of the dense model (Adam; ``"none"`` | ``"cosine"``).
        n_seeds: run the first ``n_seeds`` of the study's seeds (0: all of them).
        score_batch_size: minibatch size of the scoring (0: the study's ``score_batch_size``).
    """

    model: str
    model_kwargs: Mapping[str, Any]
    dataset: str
    data_kwargs: Mapping[str, Any]
    epochs: int
    lr: float
    schedule: str
    n_seeds: int = 0
    score_batch_size: int = 0

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
                   schedule=str(full["schedule"]), n_seeds=int(full["n_seeds"]),
                   score_batch_size=int(full["score_batch_size"]))


@dataclass(frozen=True)
class Settings(StudySettings):
    """Every parameter of study 06 (the notebook's parameters cell is their one source).

    Attributes:
        setups: setup name -> :class:`Setup` (given as plain mappings; converted here).
        batch_size: training minibatch (training, pruning, fine-tuning).
        score_batches, score_batch_size: the minibatches on which the criteria are computed
            (the correlation study; one backward each).
        oracle_batches: the first this many of them also carry the oracle and the exact
            second-order score (one pass per channel each).
        score_momentum: 0 averages the per-minibatch scores; in (0, 1) the reference's
            exponential moving average instead.
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
    oracle_batches: int
    score_momentum: float
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
    target_flops_reduction: float
    prune_optimizer: str
    snapshot_eval_examples: int
    seed_workers: int

    def __post_init__(self) -> None:
        if not self.setups:
            raise ValueError("setups names no setup")
        object.__setattr__(self, "setups", {
            name: s if isinstance(s, Setup) else Setup.from_mapping(name, s)
            for name, s in self.setups.items()})
        if "taylor_fo" not in self.prune_criteria:
            raise ValueError("prune_criteria must include 'taylor_fo': the accuracy and timing "
                             f"claims are decided on its pruned model (got {self.prune_criteria})")
        if not 1 <= self.oracle_batches <= self.score_batches:
            raise ValueError(f"oracle_batches must lie in [1, score_batches], got "
                             f"{self.oracle_batches} (score_batches {self.score_batches})")
        for what in ("target_param_reduction", "target_flops_reduction"):
            if not 0 < getattr(self, what) < 1:
                raise ValueError(f"{what} must lie in (0, 1), got {getattr(self, what)}")
        if self.prune_optimizer not in ("adam", "sgd"):
            raise ValueError(f"prune_optimizer must be 'adam' or 'sgd', got "
                             f"{self.prune_optimizer!r}")
        if self.seed_workers < 0:
            raise ValueError(f"seed_workers must be >= 0 (0: one per CPU core), got "
                             f"{self.seed_workers}")
        if self.snapshot_eval_examples < 0:
            raise ValueError(f"snapshot_eval_examples must be >= 0 (0: the whole test split), "
                             f"got {self.snapshot_eval_examples}")


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
class MatchedComparison:
    """The accuracy test of one Taylor FO snapshot against its dense control, per test image.

    The snapshot is the first one (in the order pruning reaches them) that removes at least
    the target share of parameters (``match="parameters"``) or of FLOPs (``"flops"``); the
    control is the dense model trained for the same ``minibatches`` with the same optimizer
    and data order (:func:`~studylib.techniques.pruning.train_like_pruning`) and fine-tuned on
    the same schedule, so the two differ only by the channels removed.

    Attributes:
        match, target: what was matched and the share of it to remove.
        reached: whether some snapshot removes ``target`` (else ``fraction`` etc. describe the
            last snapshot, and the claim leaves this condition out).
        fraction, reduction, minibatches: the snapshot's share of channels off, its reduction
            of the matched quantity, and the training minibatches it had before fine-tuning.
        pruned_correct, control_correct, dense_correct: per test image (the whole test split),
            whether the pruned-and-fine-tuned, the control and the untouched dense model
            classify it correctly.
    """

    match: str
    target: float
    reached: bool
    fraction: float
    reduction: float
    minibatches: int
    pruned_correct: np.ndarray
    control_correct: np.ndarray
    dense_correct: np.ndarray

    def difference_points(self) -> np.ndarray:
        """Per image, 100 * (pruned correct - control correct): its mean is the accuracy
        difference in points, paired by image."""
        return 100.0 * (self.pruned_correct.astype(float) - self.control_correct.astype(float))


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
            gap to the oracle curve in log-loss.
        dense_flops, dense_params: of the dense network.
        pruning: criterion -> one :class:`PruningRow` per snapshot.
        claim_row: the claims' pruned model: the first ``taylor_fo`` snapshot that removes at
            least ``target_param_reduction`` of the parameters (the last one if none does).
        timing: dense vs ``claim_row``'s physically pruned network.
        phase_seconds, phase_cpu_seconds: wall and CPU (this process) time per phase.
        reliability: criterion (and ``oracle``) -> split-half reliability of its scores
            (Spearman rho of the even- against the odd-minibatch estimate).
        images_scored: criterion (and ``oracle``) -> images its estimate averages over.
        matched: ``"parameters"`` / ``"flops"`` -> :class:`MatchedComparison` (the accuracy
            claim's per-image test against the dense control).
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
    reliability: Mapping[str, float] = field(default_factory=dict)
    images_scored: Mapping[str, int] = field(default_factory=dict)
    matched: Mapping[str, MatchedComparison] = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return int(sum(self.layer_widths))

    def rho(self, criterion: str) -> float:
        """Spearman rho of ``criterion`` with the oracle, over all gated channels."""
        return self.correlations[criterion].spearman

    def within_layer_rho(self, criterion: str) -> float:
        """Mean over gates of the within-gate Spearman rho of ``criterion`` with the oracle
        (gates where it is undefined left out; NaN if none is defined)."""
        vals = [c.spearman for c in self.correlations[criterion].per_layer.values()
                if np.isfinite(c.spearman)]
        return float(np.mean(vals)) if vals else float("nan")


@dataclass(frozen=True)
class Records:
    """What :func:`run` returns: setup name -> one :class:`SeedRecord` per seed (a setup may
    run only the first few of the study's seeds, ``Setup.n_seeds``)."""

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


_BUNDLES: dict[str, Any] = {}


def _load_bundle(data_mod, dataset: str, kwargs: Mapping[str, Any]):
    """``data.load(dataset, **kwargs)``, generated once per process and reused by every seed
    (the procedural signs take seconds per thousand images; the data do not depend on the
    seed). Only the most recent data set is kept."""
    import json

    key = json.dumps([dataset, dict(kwargs)], sort_keys=True, default=str)
    if key not in _BUNDLES:
        _BUNDLES.clear()
        _BUNDLES[key] = data_mod.load(dataset, **kwargs)
    return _BUNDLES[key]


def _correct(model: nn.Module, split: Any, device) -> np.ndarray:
    """Per test image, whether ``model`` classifies it correctly (bool array)."""
    from ..training import predict_logits

    return (predict_logits(model, split.x, device).argmax(1) == split.y.cpu()).numpy()


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
    bundle = _load_bundle(data_mod, setup.dataset, setup.data_kwargs)
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
    dense_correct = _correct(model, bundle.test, device)
    trained_state = _state_copy(model)
    n_eval = settings.snapshot_eval_examples or len(bundle.test.y)
    eval_split = type(bundle.test)(x=bundle.test.x[:n_eval], y=bundle.test.y[:n_eval])
    example = bundle.train.x[:2].to(device)
    gates = ChannelGates(model, example)
    names = [g.name for g in gates.gates]

    # -- criteria vs oracle on the same minibatches
    batches = minibatches(bundle.train.x, bundle.train.y,
                          setup.score_batch_size or settings.score_batch_size,
                          settings.score_batches, seed=seed, device=device)
    if len(batches) < settings.score_batches:
        raise ValueError(f"setup {name!r}: the training split gives {len(batches)} scoring "
                         f"minibatches, score_batches asks for {settings.score_batches}")
    est = estimate_scores(model, gates, batches, CRITERIA, oracle=True,
                          expensive_batches=settings.oracle_batches,
                          momentum=settings.score_momentum, seed=seed, progress=progress)
    scores = dict(est.scores)
    scores[FO_ON_ORACLE_BATCHES] = estimate_scores(
        model, gates, batches[:settings.oracle_batches], ["taylor_fo"], oracle=False,
        momentum=settings.score_momentum).scores["taylor_fo"]
    reliability = split_half_reliability(est.halves)
    clock.lap("scores_and_oracle")
    raw = rank_correlations({k: scores[k] for k in list(CRITERIA) + [FO_ON_ORACLE_BATCHES]},
                            scores["oracle"], gates.layer_index(), names)
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
    gaps = {k: curve_gap(np.log(curves[k]), np.log(curves["oracle"]), counts) for k in CRITERIA}
    clock.lap("curves_and_tp")

    # -- iterative pruning + fine-tuning per criterion
    dense_flops, dense_params = count_flops_params(gates.pruned_copy(), example[:1])
    runs: dict[str, tuple[PruningRow, ...]] = {}
    claim_row: PruningRow | None = None
    claim_model: nn.Module | None = None
    ft_cfg = TrainConfig(epochs=settings.finetune_epochs, batch_size=settings.batch_size,
                         lr=settings.finetune_lr, optimizer=settings.prune_optimizer)
    targets = {"parameters": settings.target_param_reduction,
               "flops": settings.target_flops_reduction}
    fo_snaps: list[tuple[dict[str, Any], PruningRow, tuple[dict, torch.Tensor]]] = []
    for criterion in settings.prune_criteria:
        gates.reset()
        model.load_state_dict(trained_state)
        cfg = PruneConfig(criterion=criterion, frequency=settings.frequency,
                          neurons_per_step=settings.neurons_per_step, momentum=settings.momentum,
                          snapshot_fractions=tuple(settings.snapshot_fractions),
                          batch_size=settings.batch_size, lr=settings.finetune_lr,
                          optimizer=settings.prune_optimizer)
        snaps = prune_iteratively(model, gates, bundle.train, cfg, seed=seed, device=device,
                                  cache=cache, progress=progress)
        clock.lap("prune")
        rows = []
        for snap in snaps:
            model.load_state_dict(snap["state_dict"])
            gates.set_values(snap["gate_values"])
            before_ft = evaluate(model, eval_split, device)["accuracy"]
            fit(model, bundle, ft_cfg, seed=seed, device=device, cache=cache, progress=False,
                loss_id=f"taylor_finetune(mask={gates.mask_digest()})",
                loss_fn=cross_entropy_loss)
            acc = evaluate(model, eval_split, device)["accuracy"]
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
            if criterion == "taylor_fo":  # the accuracy test's candidates, scored below
                fo_snaps.append((snap, row, (_state_copy(model), gates.values().clone())))
            clock.lap("finetune_and_count")
            if (criterion == "taylor_fo" and claim_row is None
                    and row.param_reduction >= settings.target_param_reduction):
                claim_row, claim_model = row, pruned
        runs[criterion] = tuple(rows)
        if criterion == "taylor_fo" and claim_row is None:  # never reached the target
            claim_row, claim_model = rows[-1], pruned
    assert claim_row is not None and claim_model is not None  # Settings requires taylor_fo

    # -- the accuracy test: each matched FO snapshot against the dense model trained for the
    # same minibatches (same optimizer and data order) and fine-tuned on the same schedule
    controls: dict[int, np.ndarray] = {}
    matched = {}
    for match, target in targets.items():
        red = "param_reduction" if match == "parameters" else "flops_reduction"
        hits = [t for t in fo_snaps if getattr(t[1], red) >= target]
        snap, row, (state, gate_values) = hits[0] if hits else fo_snaps[-1]
        model.load_state_dict(state)
        gates.set_values(gate_values)
        correct = _correct(model, bundle.test, device)
        n_mb = int(snap["minibatches"])
        if n_mb not in controls:
            gates.reset()
            model.load_state_dict(trained_state)
            with gates.suspended():
                control = copy.deepcopy(model)
            train_like_pruning(control, bundle.train, PruneConfig(
                criterion="taylor_fo", batch_size=settings.batch_size, lr=settings.finetune_lr,
                optimizer=settings.prune_optimizer), n_mb, seed=seed, device=device)
            fit(control, bundle, ft_cfg, seed=seed, device=device, cache=cache, progress=False,
                loss_id=f"taylor_finetune(dense_control,minibatches={n_mb})",
                loss_fn=cross_entropy_loss)
            controls[n_mb] = _correct(control, bundle.test, device)
        matched[match] = MatchedComparison(
            match=match, target=float(target), reached=bool(hits), fraction=row.fraction,
            reduction=float(getattr(row, red)), minibatches=n_mb, pruned_correct=correct,
            control_correct=controls[n_mb], dense_correct=dense_correct)
    clock.lap("dense_control")

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
        phase_seconds=clock.wall, phase_cpu_seconds=clock.cpu, reliability=reliability,
        images_scored=dict(est.n_images), matched=matched)
    gates.remove()
    return record


def _run_seed_job(job: tuple[str, Setup, int], settings: Settings, device: str) -> SeedRecord:
    name, setup, seed = job
    return run_seed(name, setup, seed, settings, device=device, progress=False)


def run_seeds(jobs: Sequence[tuple[str, Setup, int]], settings: Settings, *,
              device: str | torch.device = "cpu") -> list[SeedRecord]:
    """:func:`run_seed` for every ``(setup name, setup, seed)`` of ``jobs``, in that order.

    On the CPU every seed runs with one torch thread (these networks are too small for a
    second intra-op thread to pay: measured), so ``seed_workers`` processes can run seeds side
    by side, one per core, and a seed's numbers do not depend on how many run at once. On a
    GPU (or with ``seed_workers = 1``; 0 means one worker per CPU core) the seeds run one
    after another in this process. Workers come from
    :func:`~studylib.core.runtime.cpu_worker_pool`; an error in any seed is raised here.
    """
    from ..core.runtime import cpu_worker_pool, cpu_workers, select_device, torch_threads
    from ..core.runtime import progress as progress_bar

    device = select_device(device)
    workers = cpu_workers(settings.seed_workers, len(jobs), device)
    if workers <= 1:
        with torch_threads(1 if device.type == "cpu" else None):
            return [run_seed(n, su, sd, settings, device=device)
                    for n, su, sd in progress_bar(jobs, desc="06 seeds")]
    with cpu_worker_pool(workers) as pool:
        # interleave the setups (first seed of each, then the second, ...) so that a setup
        # with few, slow seeds does not run alone at the end while the other cores idle
        rank = {name: i for i, name in enumerate(dict.fromkeys(n for n, _, _ in jobs))}
        nth = [sum(1 for m, _, _ in jobs[:i] if m == n) for i, (n, _, _) in enumerate(jobs)]
        order = sorted(range(len(jobs)), key=lambda i: (nth[i], rank[jobs[i][0]]))
        futures = {i: pool.submit(_run_seed_job, jobs[i], settings, "cpu") for i in order}
        for i in progress_bar(order, desc="06 seeds"):
            futures[i].result()
        return [futures[i].result() for i in range(len(jobs))]


def run(settings: Settings, ctx) -> Records:
    """Run every setup for every seed of ``ctx`` (a :class:`~studylib.core.runtime.StudyContext`)
    on its device, and record the study's metrics in ``ctx``: per setup, the dense model's mean
    clean accuracy, the number of gated channels, and the mean Spearman rho of torch-pruning's
    ``TaylorImportance`` with our Taylor FO and with the oracle."""
    jobs = [(name, setup, seed) for name, setup in settings.setups.items()
            for seed in (ctx.seeds[:setup.n_seeds] if setup.n_seeds else ctx.seeds)]
    done = run_seeds(jobs, settings, device=ctx.device)
    records = Records({name: tuple(r for (n, _, _), r in zip(jobs, done, strict=True) if n == name)
                       for name in settings.setups})
    for name, recs in records.items():
        ctx.record_metric(f"{name}_clean_accuracy_mean",
                          float(np.mean([r.base_accuracy for r in recs])))
        ctx.record_metric(f"{name}_gated_channels", recs[0].n_channels)
        ctx.record_metric(f"{name}_taylor_fo_within_layer_rho_mean",
                          float(np.nanmean([r.within_layer_rho("taylor_fo") for r in recs])))
        for k in ("taylor_fo", "taylor_so", "oracle"):
            ctx.record_metric(f"{name}_{k}_split_half_reliability",
                              float(np.nanmean([r.reliability[k] for r in recs])))
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
    paired by seed, lies within +-``so_tolerance`` on every setup (an equivalence). FO is
    taken on the same minibatches as SO (:data:`FO_ON_ORACLE_BATCHES`) where recorded."""
    tol = settings.so_tolerance

    def fo_key(recs: Sequence[SeedRecord]) -> str:  # FO on the same minibatches as SO
        return FO_ON_ORACLE_BATCHES if FO_ON_ORACLE_BATCHES in recs[0].correlations \
            else "taylor_fo"
    decisions = _on_every_setup(
        records, lambda recs: paired_difference(_rhos(recs, "taylor_so"),
                                                _rhos(recs, fo_key(recs))),
        Rule("equivalent", 0.0, margin=tol))
    return claim_over_conditions(
        "second_order_matches_first",
        f"rho(Taylor SO) - rho(Taylor FO) lies within +-{tol:g}", decisions)


def claim_pruning_curve_tracks_oracle(records: Records, settings: Settings) -> Claim:
    """Without fine-tuning, the area between the Taylor FO log-loss curve and the oracle's is
    smaller than that of weight magnitude: the difference of the two mean gaps (in log-loss,
    so the explosive tail does not dominate), paired by seed, is < 0 on every setup."""
    decisions = _on_every_setup(
        records, lambda recs: paired_difference([r.curve_gaps["taylor_fo"] for r in recs],
                                                [r.curve_gaps["weight_magnitude"] for r in recs]),
        Rule("less", 0.0))
    return claim_over_conditions(
        "pruning_curve_tracks_oracle",
        "Without fine-tuning, the mean gap between the Taylor FO log-loss curve and the "
        "oracle's is smaller than that of weight magnitude (difference < 0)", decisions)


def _matched_decision(name: str, recs: Sequence[SeedRecord], match: str, rule: Rule,
                      boot_seed: int):
    """One condition of the accuracy claim: pruned - dense control in points, paired by test
    image, hierarchical bootstrap over seeds then images; left out when some seed never
    reaches the target reduction."""
    cmp = [r.matched[match] for r in recs]
    label = f"{name}: accuracy pruned - dense control (points), {match} matched"
    iv = hierarchical_bootstrap([c.difference_points() for c in cmp], n_boot=_N_BOOT,
                                seed=boot_seed, bounds=(-100.0, 100.0))
    missed = [r.seed for r, c in zip(recs, cmp, strict=True) if not c.reached]
    why = (f"seed(s) {missed}: no Taylor FO snapshot removes >= {100 * cmp[0].target:.0f}% of "
           f"the {match} (largest {100 * max(c.reduction for c in cmp):.0f}%)") if missed else None
    return decide_condition(label, iv, rule, uninformative=why)


_N_BOOT = 2000


def claim_prune_30pct_params_small_accuracy_loss(records: Records, settings: Settings) -> Claim:
    """After Taylor FO pruning and fine-tuning, at least ``target_param_reduction`` of the
    parameters are gone (logit interval over seeds) and the test accuracy is not worse than
    that of the dense control by more than ``max_accuracy_drop_points`` (non-inferiority), on
    every setup, at matched parameters and at matched FLOPs.

    The control is the dense model given the same training minibatches and the same
    fine-tuning as the pruned one (:class:`MatchedComparison`), so extra training is not
    credited to pruning. The difference is paired by test image (the same images, correct or
    not under each model), its interval a hierarchical bootstrap over seeds then images. The
    FLOPs-matched condition is left out (and reported) when some seed's pruning never removes
    ``target_flops_reduction`` of the FLOPs."""
    target, drop = settings.target_param_reduction, settings.max_accuracy_drop_points
    loss_rule = Rule("non_inferior", 0.0, margin=drop)
    decisions = []
    for k, (name, recs) in enumerate(records.items()):
        for m, match in enumerate(("parameters", "flops")):
            decisions.append(_matched_decision(name, recs, match, loss_rule, 600 + 10 * k + m))
        decisions.append(decide_condition(
            f"{name}: parameters removed",
            logit_interval([r.matched["parameters"].reduction for r in recs]),
            Rule("at_least", target)))
    gap = {name: max(row.max_abs_diff_pruned_vs_gated for r in recs
                     for rows in r.pruning.values() for row in rows)
           for name, recs in records.items()}
    details = {"max_abs_diff_pruned_vs_gated": gap}
    for name, recs in records.items():
        for match in ("parameters", "flops"):
            cmp = [r.matched[match] for r in recs]
            details[f"{name}/{match}"] = {
                "reduction_per_seed": [c.reduction for c in cmp],
                "channels_removed_per_seed": [c.fraction for c in cmp],
                "pruned_minus_control_points_per_seed": [
                    float(c.difference_points().mean()) for c in cmp],
                "pruned_minus_untouched_dense_points_per_seed": [
                    100.0 * float(c.pruned_correct.mean() - c.dense_correct.mean()) for c in cmp],
                "control_minus_untouched_dense_points_per_seed": [
                    100.0 * float(c.control_correct.mean() - c.dense_correct.mean())
                    for c in cmp],
                "n_test": int(cmp[0].pruned_correct.size)}
    return claim_over_conditions(
        "prune_30pct_params_small_accuracy_loss",
        f"After Taylor FO pruning and fine-tuning, removing >= {100 * target:.0f}% of parameters "
        f"(and, separately, >= {100 * settings.target_flops_reduction:.0f}% of FLOPs) costs <= "
        f"{drop:g} point of test accuracy against the dense model trained and fine-tuned on the "
        "same schedule (paired by test image)", decisions,
        paper_value=PaperValue("30% fewer parameters and 40% fewer FLOPs for a 0.02% top-1 "
                               "loss (ResNet-101, ImageNet)", "abstract"),
        details=details)


# ============================================================================ tables


def _correlation_keys(rec: SeedRecord) -> list[str]:
    return list(CRITERIA) + ([FO_AT_BN] if FO_AT_BN in rec.correlations else [])


def scoring_table(records: Records) -> pd.DataFrame:
    """Per setup and score: images its estimate averages over, and its split-half reliability
    (Spearman rho of the even- against the odd-minibatch estimate; mean and range over
    seeds). ``weight_magnitude`` and ``bn_scale`` do not depend on the data (reliability 1)."""
    rows = {}
    for name, recs in records.items():
        for k in list(CRITERIA) + ["oracle"]:
            rel = [r.reliability.get(k, float("nan")) for r in recs]
            rows[(name, k)] = {"images scored": recs[0].images_scored.get(k, 0),
                               "split-half rho (mean)": float(np.nanmean(rel)),
                               "min": float(np.nanmin(rel)), "max": float(np.nanmax(rel))}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["setup", "score"])


def within_layer_table(records: Records) -> pd.DataFrame:
    """Per setup and criterion: the global Spearman rho with the oracle beside the mean of the
    within-gate rhos (both mean over seeds), and the within-gate rho of each gate (mean over
    seeds) for Taylor FO."""
    rows = {}
    for name, recs in records.items():
        for k in ("taylor_fo", "taylor_so", "taylor_fo_weight", "weight_magnitude"):
            rows[(name, k, "global")] = float(np.mean(_rhos(recs, k)))
            rows[(name, k, "mean within gates")] = float(np.nanmean(
                [r.within_layer_rho(k) for r in recs]))
        for layer in recs[0].layers:
            vals = [r.correlations["taylor_fo"].per_layer[layer].spearman for r in recs]
            rows[(name, "taylor_fo", f"gate {layer}")] = float(np.nanmean(vals)) \
                if np.isfinite(vals).any() else float("nan")
    return pd.Series(rows, name="spearman rho").rename_axis(
        ["setup", "criterion", "over"]).to_frame()


def accuracy_test_table(records: Records) -> pd.DataFrame:
    """Per setup and match (parameters, FLOPs): the matched Taylor FO snapshot's channels off
    and reduction, and the accuracy differences in points on the whole test split (mean over
    seeds): pruned - dense control (the claim), pruned - untouched dense, and control -
    untouched dense (what the extra training alone gives)."""
    rows = {}
    for name, recs in records.items():
        for match in ("parameters", "flops"):
            cmp = [r.matched[match] for r in recs]
            rows[(name, match)] = {
                "target": cmp[0].target,
                "reached (seeds)": f"{sum(c.reached for c in cmp)}/{len(cmp)}",
                "channels off": float(np.mean([c.fraction for c in cmp])),
                "reduction": float(np.mean([c.reduction for c in cmp])),
                "pruned - control": float(np.mean([c.difference_points().mean() for c in cmp])),
                "pruned - untouched": 100 * float(np.mean(
                    [c.pruned_correct.mean() - c.dense_correct.mean() for c in cmp])),
                "control - untouched": 100 * float(np.mean(
                    [c.control_correct.mean() - c.dense_correct.mean() for c in cmp])),
                "test images": int(cmp[0].pruned_correct.size)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["setup", "matched"])


def timing_table(records: Records) -> pd.DataFrame:
    """CPU inference time of the dense and the claims' pruned network (medians of the timing
    repetitions), and their ratio (geometric mean and range over seeds): a measurement on
    whatever machine ran the study, not a claim."""
    rows = {}
    for name, recs in records.items():
        ratios = np.array([r.timing.ratio for r in recs])
        rows[name] = {"dense (ms)": 1e3 * float(np.median([r.timing.dense_s for r in recs])),
                      "pruned (ms)": 1e3 * float(np.median([r.timing.pruned_s for r in recs])),
                      "ratio pruned/dense (geo. mean)": float(np.exp(np.log(ratios).mean())),
                      "min": float(ratios.min()), "max": float(ratios.max())}
    return pd.DataFrame.from_dict(rows, orient="index")


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
}
