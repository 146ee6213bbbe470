"""Study 01 (Yu et al., IJCAI 2019): decision surfaces in input space and the psi metric.

The study re-runs F. Yu, Z. Qin, C. Liu, L. Zhao, Y. Wang, X. Chen, "Interpreting and
Evaluating Neural Network Robustness" (IJCAI 2019, arXiv 1905.04270) on a family of models
(architectures x training regimes x seeds) with the methods of
:mod:`studylib.techniques.landscape`. This module is the study layer:

* :class:`Settings` -- every parameter of the notebook's parameters cell the study uses
  (:meth:`~studylib.core.settings.StudySettings.from_params`), the claims' thresholds included;
* :func:`run` -- trains the family and measures everything the claims and figures need,
  returning :class:`Records` (tables with one row per model and seed, or per model, seed and
  setting; typed records for the figures and the gradient-masking control);
* ``claim_<id>(records, settings)`` -- one function per claim, decided by ``studylib.stats``.
  Every quantity gets the interval of its natural scale: crossing-step, psi and sharpness
  ratios on the log scale (they are multiplicative), rank correlations through Fisher's z,
  differences of taus as paired differences over seeds (inside [-2, 2]). A claim over several
  architectures, model pairs or conditions must hold in each
  (:func:`~studylib.stats.claim_over_conditions`); a setting or seed that ranks nothing (no
  spread over the models) is left out and reported, never scored as a correlation of 0.

The ground truth psi is compared with is the robust accuracy: per point the minimum over
CE-PGD and margin-PGD with restarts (:func:`~studylib.techniques.landscape.robust_correct`),
so gradient masking that fools the cross-entropy does not fool it. Comparisons between models
use shared point sets (the points every model of a seed classifies correctly, or the same
evaluation points for every model and setting); the equal-budget comparison uses points
disjoint from the ground truth's. The psi tightness table measures psi against its exact value
on linear softmax models (:func:`~studylib.techniques.landscape.exact_psi_linear`).
* ``figure_*`` and ``table_*`` -- the figures and printed tables of the notebook.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..core.settings import StudySettings
from ..stats import (
    Claim,
    Interval,
    Rule,
    claim_over_conditions,
    decide_condition,
    fisher_z_interval,
    hierarchical_bootstrap,
    kendall_tau,
    log_ratio_interval,
    mean_pairwise_kendall_tau,
    paired_difference,
    spearman_rho,
    t_interval,
)
from ..techniques import landscape as L

PSI_SETTINGS = ("steps", "restarts")  # what the psi stability grid varies
ATTACK_SETTINGS = ("objective", "steps")  # what the adversarial-accuracy grid varies
MODEL_COLS = ("arch", "regime", "seed")
CUT_STEPS = 41  # points of the 1-D cuts over [-surface_span, surface_span]
CROSSING_BISECTIONS = 8  # bisection steps after the crossing grid search
MEASUREMENT_SEED = 0  # seeds random directions, psi's random starts and the attacks
ATTACK_OBJECTIVES = ("ce", "margin")  # the ground truth: per point, the minimum over both
TIGHTNESS_ARCH = "linear"  # label of the linear softmax models of the psi tightness table

ModelKey = tuple[str, str, int]  # (architecture label, regime label, seed)


# ============================================================================ settings


@dataclass(frozen=True)
class Settings(StudySettings):
    """The study's parameters, read from the notebook's parameters cell (no defaults here: the
    cell is their one source; see the cell's comments for each one's meaning)."""

    seeds: tuple[int, ...]
    dataset: str
    train_workers: int
    dataset_kwargs: Mapping[str, Any]
    architectures: Mapping[str, Mapping[str, Any]]
    regimes: Mapping[str, Mapping[str, Any]]
    natural_regime: str
    robust_regimes: tuple[str, ...]
    control_regime: Mapping[str, Any]
    control_arch: str
    epochs: int
    batch_size: int
    lr: float
    eps: float
    psi_steps: int
    psi_restarts: int
    psi_grid_steps: tuple[int, ...]
    psi_grid_restarts: tuple[int, ...]
    attack_grid_steps: tuple[int, ...]
    acc_steps: int
    acc_restarts: int
    n_eval_points: int
    cheap_budget: int
    n_cheap_points: int
    n_crossing_points: int
    n_random_directions: int
    max_step: float
    crossing_grid: int
    clip_inputs: bool
    surface_span: float
    surface_grid: int
    rescale_c: float
    rescale_layer: int
    sharpness_radius: float
    sharpness_samples: int
    n_sharpness_points: int
    logit_scale: float
    tightness_image_size: int
    n_tightness_points: int
    tightness_steps: tuple[int, ...]
    tightness_restarts: tuple[int, ...]
    # the claims' rules
    crossing_ratio_threshold: float
    rho_threshold: float
    stability_tau_threshold: float
    cheap_tau_margin: float
    psi_tolerance: float
    sharpness_factor_threshold: float
    masking_accuracy_margin: float


# ============================================================================ records


@dataclass(frozen=True)
class DataSummary:
    """The data set and the size of the model family."""

    name: str
    n_train: int
    n_test: int
    input_shape: tuple[int, ...]
    n_models: int
    n_controls: int

    def __str__(self) -> str:
        return (f"{self.name}: {self.n_train} train / {self.n_test} test, input "
                f"{self.input_shape}; {self.n_models} models + {self.n_controls} control(s)")


@dataclass(frozen=True)
class CutCurves:
    """Margin and loss along 1-D cuts of one model: rows = point (x direction), columns = the
    steps of :class:`SurfaceRecords`."""

    margin_adv: np.ndarray
    margin_rand: np.ndarray
    loss_adv: np.ndarray
    loss_rand: np.ndarray


@dataclass(frozen=True)
class SurfaceRecords:
    """The decision-surface figures' data for one architecture and seed: the natural model and
    the most robust PGD-trained one (``curves`` and ``surfaces`` keyed by display label)."""

    arch: str
    seed: int
    steps: np.ndarray  # the 1-D cut steps
    n_points: int  # points of the cuts: those both models classify correctly ...
    n_candidates: int  # ... of the first n_crossing_points test points
    curves: Mapping[str, CutCurves]
    grid: np.ndarray  # the 2-D surfaces' axis (a and b)
    surfaces: Mapping[str, np.ndarray]  # margin over (a, b) at the first such point


@dataclass(frozen=True)
class PsiRecords:
    """psi and the accuracy under attack of every model, on the first ``n_eval_points`` test
    points (the same points for every model and every setting).

    Attributes:
        grid: one row per model and psi setting (arch, regime, seed, steps, restarts, score);
            each setting draws its own random starts.
        accuracy_grid: one row per model and attack setting (arch, regime, seed, objective,
            steps, accuracy, seconds): single-restart PGD on the cross-entropy or the margin.
        base: psi at the base setting (arch, regime, seed, score, score_correct, seconds);
            ``score_correct`` is the mean over the points every ranked model of that seed
            classifies correctly (psi ignores labels: this is the label-aware variant).
        robust: the ground truth (arch, regime, seed, robust_accuracy, clean_accuracy,
            seconds): a point counts when clean, CE-PGD and margin-PGD (``acc_restarts``
            restarts of ``acc_steps`` steps each) all leave it correctly classified.
        n_correct: per seed, the points every ranked model classifies correctly.
    """

    grid: pd.DataFrame
    accuracy_grid: pd.DataFrame
    base: pd.DataFrame
    robust: pd.DataFrame
    n_correct: Mapping[int, int]


@dataclass(frozen=True)
class CostRecords:
    """psi and accuracy under CE-PGD at the same gradient budget per point, on points
    disjoint from the evaluation points.

    Attributes:
        psi: one row per model (arch, regime, seed, score, seconds): psi with ``budget``
            ascent steps and one start.
        accuracy: one row per model (arch, regime, seed, accuracy, seconds): CE-PGD with
            ``budget`` steps and one start.
        budget: input gradients per point of each.
        n_points: the points of each (test points ``n_eval_points`` onwards).
    """

    psi: pd.DataFrame
    accuracy: pd.DataFrame
    budget: int
    n_points: int


@dataclass(frozen=True)
class ModelDiagnostics:
    """What the gradient-masking control measures on one model."""

    clean_accuracy: float
    max_abs_logit: float
    psi: float
    pgd_ce_accuracy: float  # white-box PGD on the cross-entropy
    pgd_margin_accuracy: float  # white-box PGD on the margin (no softmax to saturate)
    zero_gradient_fraction: float  # points whose input gradient of the CE is exactly 0


@dataclass(frozen=True)
class MaskingReport:
    """The gradient-masking control of one seed: the control model, the natural model of the
    same architecture, and PGD transferred from the latter to the former."""

    seed: int
    control: ModelDiagnostics
    reference: ModelDiagnostics
    control_transfer_accuracy: float

    def flat(self) -> dict[str, float]:
        """``control_<field>``, ``reference_<field>``, ``control_transfer_accuracy`` (the
        names of the ``masking/...`` metrics)."""
        out = {f"{who}_{k}": v for who in ("control", "reference")
               for k, v in dataclasses.asdict(getattr(self, who)).items()}
        return {**out, "control_transfer_accuracy": self.control_transfer_accuracy}


@dataclass(frozen=True)
class Records:
    """Everything :func:`run` measures.

    Attributes:
        data: the data set and the family's size.
        clean_accuracy, control_accuracy: clean test accuracy (arch, regime, seed, accuracy)
            of the ranked family and of the gradient-masking controls.
        surfaces: the decision-surface figures' data, None when no point is classified
            correctly by both models shown.
        crossings: margin-crossing steps (arch, regime, seed, point, direction, k, step) of
            the natural and PGD-trained models, on the points all of them classify correctly
            (per seed); crossing_summary: one row per model (:func:`crossing_ratio_summary`).
        psi: psi, the attack grid and the ground truth; cost: the equal-budget comparison.
        rescaling: psi and sharpness before and after a ReLU rescaling, every layer
            (:func:`rescaling_table`); logit_scaling: psi before and after multiplying the
            logits by ``logit_scale`` (:func:`logit_scaling_table`).
        tightness: psi / exact maximum on linear softmax models (:func:`tightness_table`).
        masking: the gradient-masking control, one report per seed.
    """

    data: DataSummary
    clean_accuracy: pd.DataFrame
    control_accuracy: pd.DataFrame
    surfaces: SurfaceRecords | None
    crossings: pd.DataFrame
    crossing_summary: pd.DataFrame
    psi: PsiRecords
    cost: CostRecords
    rescaling: pd.DataFrame
    logit_scaling: pd.DataFrame
    tightness: pd.DataFrame
    masking: tuple[MaskingReport, ...]


# ============================================================================ model family


def _arch_kwargs(arch: str, spec: Mapping[str, Any], input_shape: Sequence[int],
                 num_classes: int) -> dict[str, Any]:
    c, h, w = (int(s) for s in input_shape)
    kw = dict(spec)
    name = kw.pop("model", arch)
    if name == "mlp":
        kw.setdefault("in_features", c * h * w)
    else:
        kw.setdefault("in_channels", c)
        kw.setdefault("image_size", h)
    kw.setdefault("num_classes", num_classes)
    return {"name": name, **kw}


def train_family(data: Any, architectures: Mapping[str, Mapping[str, Any]],
                 regimes: Mapping[str, Mapping[str, Any]], seeds: Iterable[int], config: Any, *,
                 device: str | torch.device = "cpu", progress: bool = True,
                 cache: bool = True, workers: int = 1) -> dict[ModelKey, nn.Module]:
    """Train one model per (architecture, regime, seed) through the checkpoint cache.

    Args:
        data: a ``studylib.data.DataBundle``.
        architectures: ``{label: {"model": <build_model name, default label>, **kwargs}}``,
            e.g. ``{"small_cnn": {"width": 8}, "mlp": {"hidden": [128]}}``; input size and
            class count are filled in from ``data``.
        regimes: ``{label: {"kind": <regime kind>, **params}}`` (see
            :func:`studylib.techniques.landscape.make_regime`).
        seeds: seeds; each seeds both the initial weights and the training.
        config: a ``studylib.training.TrainConfig``.
        device: where to train.
        progress: show a bar over the models.
        cache: read and write the checkpoint cache (default True).
        workers: on the CPU, train this many models side by side in worker processes (0: one
            per core; default 1, in this process). Every model trains with one torch thread
            either way (these networks are too small for a second intra-op thread to pay), so
            the weights do not depend on ``workers``. On a GPU the models train here.

    Returns:
        ``{(arch_label, regime_label, seed): trained model (eval mode)}``.
    """
    from ..core.runtime import cpu_worker_pool, cpu_workers, select_device, torch_threads
    from ..core.runtime import progress as progress_bar

    device = select_device(device)
    seeds = [int(s) for s in seeds]
    specs = [(arch, dict(architectures[arch]), reg, dict(regimes[reg]), seed)
             for arch, reg, seed in itertools.product(architectures, regimes, seeds)]
    n_workers = cpu_workers(workers, len(specs), device)
    out: dict[ModelKey, nn.Module] = {}
    if n_workers <= 1:
        with torch_threads(1 if device.type == "cpu" else None):
            for spec in (progress_bar(specs, desc="train family") if progress else specs):
                out[(spec[0], spec[2], spec[4])] = _fit_member(spec, data, config, device, cache)
        return out
    with cpu_worker_pool(n_workers) as pool:
        futures = [pool.submit(_fit_member_state, spec, data, config, cache) for spec in specs]
        for spec, f in zip(specs, progress_bar(futures, desc="train family") if progress
                           else futures, strict=True):
            model = _build_member(spec, data)
            model.load_state_dict(f.result())
            out[(spec[0], spec[2], spec[4])] = model.eval()
    return out


def _build_member(spec: tuple, data: Any) -> nn.Module:
    from ..models import build_model

    arch, arch_spec, _, _, seed = spec
    kw = _arch_kwargs(arch, arch_spec, data.input_shape, data.num_classes)
    name = kw.pop("name")
    return build_model(name, seed=seed, **kw)


def _fit_member(spec: tuple, data: Any, config: Any, device, cache: bool) -> nn.Module:
    """Train one family member (``(arch, arch spec, regime, regime spec, seed)``)."""
    from ..training import fit

    _, _, reg, rspec, seed = spec
    rspec = dict(rspec)
    regime = L.make_regime(rspec.pop("kind", reg), **rspec)
    return fit(_build_member(spec, data), data, config, seed=seed, device=device,
               loss_fn=regime.loss_fn, loss_id=regime.loss_id, progress=False, cache=cache)


def _fit_member_state(spec: tuple, data: Any, config: Any, cache: bool) -> dict:
    """:func:`_fit_member` on the CPU in a worker; returns the weights (CPU tensors)."""
    model = _fit_member(spec, data, config, torch.device("cpu"), cache)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


# ============================================================================ tables


def _key_cols(key: ModelKey) -> dict[str, Any]:
    arch, regime, seed = key
    return {"arch": arch, "regime": regime, "seed": int(seed)}


def clean_accuracy_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor,
                         y: torch.Tensor) -> pd.DataFrame:
    """Clean accuracy of every model on ``(x, y)`` (arch, regime, seed, accuracy)."""
    rows = [{**_key_cols(key), "accuracy": float((L.batched_logits(m, x).argmax(1) == y)
                                                 .float().mean())}
            for key, m in models.items()]
    return pd.DataFrame(rows, columns=[*MODEL_COLS, "accuracy"])


def shared_correct_points(models: Mapping[ModelKey, nn.Module], x: torch.Tensor,
                          y: torch.Tensor) -> dict[int, torch.Tensor]:
    """Per seed, the boolean mask ``(N,)`` of the points of ``x`` that every model of that seed
    classifies correctly (the shared point set of the seed's comparisons)."""
    out: dict[int, torch.Tensor] = {}
    for seed in sorted({k[2] for k in models}):
        out[int(seed)] = L.correctly_classified([m for k, m in models.items() if k[2] == seed],
                                                x, y)
    return out


def crossing_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, y: torch.Tensor, *,
                   n_random: int = 4, max_step: float = 1.0, n_grid: int = 64,
                   n_bisect: int = 10, clip: bool = False, seed: int = 0, shared: bool = True,
                   progress: bool = True) -> pd.DataFrame:
    """Margin-crossing steps along ``d_adv`` and ``n_random`` random +-1 directions.

    For every model, on the points of ``x`` that every model *of the same seed* classifies
    correctly (``shared=True``, the default: all models of a seed are compared on the same
    points) or that this model classifies correctly (``shared=False``), the crossing step
    (:func:`~studylib.techniques.landscape.crossing_step`) along the model's own ``d_adv`` and
    along ``n_random`` random sign directions (seeded by ``seed`` and the direction index, the
    same for every model).

    Returns:
        DataFrame with columns arch, regime, seed, point (index into ``x``), direction
        (``"adv"`` | ``"rand"``), k (random direction index; 0 for adv), step (``inf`` when
        censored at ``max_step``).
    """
    from ..core.runtime import progress as progress_bar

    rand = [L.random_sign_directions(x.shape, seed=seed * 1000 + k) for k in range(n_random)]
    masks = shared_correct_points(models, x, y) if shared else {}
    rows = []
    items = list(models.items())
    for key, model in (progress_bar(items, desc="crossings") if progress else items):
        mask = masks[key[2]] if shared else L.batched_logits(model, x).argmax(1) == y
        ok = mask.nonzero().flatten()
        if len(ok) == 0:
            continue
        xs, ys = x[ok], y[ok]
        dirs = [("adv", 0, L.adversarial_direction(model, xs, ys))]
        dirs += [("rand", k, r[ok]) for k, r in enumerate(rand)]
        for kind, k, d in dirs:
            steps = L.crossing_step(model, xs, ys, d, max_step=max_step, n_grid=n_grid,
                                    n_bisect=n_bisect, clip=clip)
            for p, s in zip(ok.tolist(), steps.tolist(), strict=True):
                rows.append({**_key_cols(key), "point": p, "direction": kind, "k": k,
                             "step": s})
    return pd.DataFrame(rows, columns=[*MODEL_COLS, "point", "direction", "k", "step"])


def crossing_ratio_summary(crossings: pd.DataFrame, *, max_step: float) -> pd.DataFrame:
    """Per model: median crossing step along d_adv and along random directions and the median
    over points of ``rand / adv`` (random crossings first take their median over the random
    directions of a point; censored values count as ``max_step``, so the ratio is a lower
    bound where random directions never cross). Also the censored fraction of each.

    Returns a DataFrame (arch, regime, seed, adv_median, rand_median, ratio_median,
    adv_censored, rand_censored, n_points).
    """
    rows = []
    for (arch, regime, seed), g in crossings.groupby(list(MODEL_COLS), sort=False):
        adv = g[g.direction == "adv"].set_index("point")["step"]
        rnd = g[g.direction == "rand"].groupby("point")["step"]
        rand_cens = float(np.isinf(g[g.direction == "rand"]["step"]).mean())
        rnd_med = rnd.apply(lambda s: float(np.median(np.minimum(s.to_numpy(), max_step))))
        adv_c = np.minimum(adv.to_numpy(), max_step)
        both = pd.concat([pd.Series(adv_c, index=adv.index, name="adv"), rnd_med.rename("rand")],
                         axis=1).dropna()
        pos = both[both.adv > 0]
        ratio = (pos.rand / pos.adv).to_numpy()
        rows.append({"arch": arch, "regime": regime, "seed": int(seed),
                     "adv_median": float(np.median(adv_c)) if len(adv_c) else math.nan,
                     "rand_median": float(rnd_med.median()) if len(rnd_med) else math.nan,
                     "ratio_median": float(np.median(ratio)) if len(ratio) else math.nan,
                     "adv_censored": float(np.isinf(adv.to_numpy()).mean()) if len(adv) else
                     math.nan,
                     "rand_censored": rand_cens, "n_points": int(len(adv))})
    return pd.DataFrame(rows)




def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def psi_grid_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, *, eps: float,
                   steps_values: Sequence[int], restarts_values: Sequence[int], seed: int = 0,
                   progress: bool = True) -> pd.DataFrame:
    """psi of every model at every (steps, restarts) setting on the same points ``x``.

    Setting ``j`` (in the order of ``itertools.product(steps_values, restarts_values)``) draws
    its random starts from ``seed + 1000 * (j + 1)``, so no two settings share a start (a
    setting is not a prefix of another). Returns a DataFrame (arch, regime, seed, steps,
    restarts, score, seconds): ``score`` is the mean psi over ``x``.
    """
    from ..core.runtime import progress as progress_bar

    settings = list(itertools.product([int(s) for s in steps_values],
                                      [int(r) for r in restarts_values]))
    jobs = list(itertools.product(models.items(), enumerate(settings)))
    rows = []
    for (key, model), (j, (steps, restarts)) in (progress_bar(jobs, desc="psi grid")
                                                 if progress else jobs):
        vals, sec = _timed(lambda m=model, s=steps, r=restarts, j=j: L.psi_per_point(
            m, x, eps, steps=s, restarts=r, seed=seed + 1000 * (j + 1)))
        rows.append({**_key_cols(key), "steps": steps, "restarts": restarts,
                     "score": float(vals.double().mean()), "seconds": sec})
    return pd.DataFrame(rows, columns=[*MODEL_COLS, "steps", "restarts", "score", "seconds"])


def accuracy_grid_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, y: torch.Tensor,
                        *, eps: float, steps_values: Sequence[int],
                        objectives: Sequence[str] = ATTACK_OBJECTIVES, seed: int = 0,
                        progress: bool = True) -> pd.DataFrame:
    """Accuracy under single-restart PGD for every (objective, steps) setting on the same
    points (setting ``j`` seeded by ``seed + 1000 * (j + 1)``, as :func:`psi_grid_table`).
    Returns a DataFrame (arch, regime, seed, objective, steps, accuracy, seconds)."""
    from ..core.runtime import progress as progress_bar

    settings = list(itertools.product(list(objectives), [int(s) for s in steps_values]))
    jobs = list(itertools.product(models.items(), enumerate(settings)))
    rows = []
    for (key, model), (j, (obj, steps)) in (progress_bar(jobs, desc="accuracy grid")
                                            if progress else jobs):
        ok, sec = _timed(lambda m=model, o=obj, s=steps, j=j: L.robust_correct(
            m, x, y, eps=eps, steps=s, restarts=1, objectives=(o,), seed=seed + 1000 * (j + 1)))
        rows.append({**_key_cols(key), "objective": obj, "steps": steps,
                     "accuracy": float(ok.float().mean()), "seconds": sec})
    return pd.DataFrame(rows, columns=[*MODEL_COLS, "objective", "steps", "accuracy",
                                       "seconds"])


def robust_accuracy_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor,
                          y: torch.Tensor, *, eps: float, steps: int, restarts: int,
                          seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """The ground truth: robust accuracy of every model, the per-point minimum over CE-PGD and
    margin-PGD with ``restarts`` restarts (:func:`~studylib.techniques.landscape.robust_correct`)
    and clean accuracy beside it. Returns a DataFrame (arch, regime, seed, robust_accuracy,
    clean_accuracy, seconds)."""
    from ..core.runtime import progress as progress_bar

    rows = []
    items = list(models.items())
    for key, model in (progress_bar(items, desc="robust accuracy") if progress else items):
        ok, sec = _timed(lambda m=model: L.robust_correct(m, x, y, eps=eps, steps=steps,
                                                          restarts=restarts, seed=seed))
        clean = float((L.batched_logits(model, x).argmax(1) == y).float().mean())
        rows.append({**_key_cols(key), "robust_accuracy": float(ok.float().mean()),
                     "clean_accuracy": clean, "seconds": sec})
    return pd.DataFrame(rows, columns=[*MODEL_COLS, "robust_accuracy", "clean_accuracy",
                                       "seconds"])


def psi_base_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, *, eps: float,
                   steps: int, restarts: int, correct: Mapping[int, torch.Tensor],
                   seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """psi at the base setting: the mean over ``x`` (``score``) and over the points of ``x``
    that every model of the seed classifies correctly (``score_correct``, NaN when there is
    none; ``correct`` maps seed -> mask). Returns (arch, regime, seed, score, score_correct,
    seconds)."""
    from ..core.runtime import progress as progress_bar

    rows = []
    items = list(models.items())
    for key, model in (progress_bar(items, desc="psi") if progress else items):
        vals, sec = _timed(lambda m=model: L.psi_per_point(m, x, eps, steps=steps,
                                                           restarts=restarts, seed=seed))
        v = vals.double()
        mask = correct[key[2]]
        rows.append({**_key_cols(key), "score": float(v.mean()),
                     "score_correct": float(v[mask].mean()) if bool(mask.any()) else math.nan,
                     "seconds": sec})
    return pd.DataFrame(rows, columns=[*MODEL_COLS, "score", "score_correct", "seconds"])


def equal_budget_tables(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, y: torch.Tensor,
                        *, eps: float, budget: int, seed: int = 0,
                        progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """psi (``budget`` ascent steps, one start) and CE-PGD accuracy (``budget`` steps, one
    start) of every model on ``x``: both spend ``budget`` input gradients per point, timed.
    Returns (psi: arch, regime, seed, score, seconds; accuracy: ..., accuracy, seconds)."""
    from ..core.runtime import progress as progress_bar

    psi_rows, acc_rows = [], []
    items = list(models.items())
    for key, model in (progress_bar(items, desc="equal budget") if progress else items):
        vals, s_psi = _timed(lambda m=model: L.psi_per_point(m, x, eps, steps=budget,
                                                             restarts=1, seed=seed))
        ok, s_acc = _timed(lambda m=model: L.robust_correct(m, x, y, eps=eps, steps=budget,
                                                            restarts=1, objectives=("ce",),
                                                            seed=seed))
        psi_rows.append({**_key_cols(key), "score": float(vals.double().mean()),
                         "seconds": s_psi})
        acc_rows.append({**_key_cols(key), "accuracy": float(ok.float().mean()),
                         "seconds": s_acc})
    return (pd.DataFrame(psi_rows, columns=[*MODEL_COLS, "score", "seconds"]),
            pd.DataFrame(acc_rows, columns=[*MODEL_COLS, "accuracy", "seconds"]))


def tightness_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, *, eps: float,
                    steps_values: Sequence[int], restarts_values: Sequence[int],
                    seed: int = 0) -> pd.DataFrame:
    """psi against its exact value on linear softmax models (one ``nn.Linear`` each, inputs
    flattened to ``d <= 16``; :func:`~studylib.techniques.landscape.exact_psi_linear`).

    For every model and (steps, restarts): the mean psi found by the ascent, the mean exact
    maximum, ``ratio`` = their quotient (<= 1 up to rounding: psi is a lower bound), and
    ``worst`` = the 5% quantile over points of the per-point ratio (points whose exact value
    is below 1e-9 are left out of it). Returns (arch, regime, seed, steps, restarts, psi,
    exact, ratio, worst).
    """
    rows = []
    for key, model in models.items():
        layers = L.parametric_layers(model)
        if len(layers) != 1 or not isinstance(layers[0][1], nn.Linear):
            raise ValueError(f"{key}: the tightness table needs a linear softmax model")
        exact = L.exact_psi_linear(layers[0][1], x.flatten(1), eps).numpy()
        keep = exact > 1e-9
        for steps, restarts in itertools.product(steps_values, restarts_values):
            found = L.psi_per_point(model, x, eps, steps=int(steps), restarts=int(restarts),
                                    seed=seed).double().numpy()
            per = found[keep] / exact[keep]
            rows.append({**_key_cols(key), "steps": int(steps), "restarts": int(restarts),
                         "psi": float(found.mean()), "exact": float(exact.mean()),
                         "ratio": float(found.mean() / exact.mean()),
                         "worst": float(np.quantile(per, 0.05)) if per.size else math.nan})
    return pd.DataFrame(rows)


def rescaling_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, y: torch.Tensor, *,
                    eps: float, c: float = 10.0, layers: Sequence[int] = (0,),
                    psi_steps: int = 10, radius: float = 1.0, n_samples: int = 10,
                    seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """psi and weight sharpness of every model before and after
    :func:`~studylib.techniques.landscape.rescale_relu_layer` (``c``, each layer of ``layers``
    that the model has). The psi search uses the same seed on both, the sharpness the same
    weight perturbations. Returns a DataFrame (arch, regime, seed, layer, psi, psi_rescaled,
    psi_rel_change, sharpness, sharpness_rescaled, sharpness_factor, max_logit_diff);
    ``sharpness_factor = max(s'/s, s/s')`` (NaN unless both are > 0). A layer that cannot be
    rescaled without changing the function is skipped with a warning."""
    from ..core.runtime import progress as progress_bar

    rows = []
    items = list(models.items())
    for key, model in (progress_bar(items, desc="rescaling") if progress else items):
        psi0 = float(L.psi_per_point(model, x, eps, steps=psi_steps, seed=seed).double().mean())
        s0 = L.weight_sharpness(model, x, y, radius=radius, n_samples=n_samples, seed=seed)
        n_layers = len(L.parametric_layers(model))
        for layer in layers:
            if layer >= n_layers - 1:
                continue
            try:
                r = L.rescale_relu_layer(model, c=c, layer=layer)
            except ValueError as exc:  # e.g. BatchNorm after the layer: not function-preserving
                warnings.warn(f"{key}: layer {layer} skipped ({exc})", stacklevel=2)
                continue
            psi1 = float(L.psi_per_point(r, x, eps, steps=psi_steps, seed=seed).double().mean())
            s1 = L.weight_sharpness(r, x, y, radius=radius, n_samples=n_samples, seed=seed)
            fac = max(s1 / s0, s0 / s1) if (s0 > 0 and s1 > 0) else math.nan
            rows.append({**_key_cols(key), "layer": int(layer), "psi": psi0,
                         "psi_rescaled": psi1,
                         "psi_rel_change": abs(psi1 - psi0) / max(abs(psi0), 1e-12),
                         "sharpness": s0, "sharpness_rescaled": s1, "sharpness_factor": fac,
                         "max_logit_diff": L.max_output_difference(model, r, x)})
    return pd.DataFrame(rows)


def _diagnostics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int,
                 psi_steps: int, seed: int) -> ModelDiagnostics:
    from .. import attacks

    logits = L.batched_logits(model, x)
    psi = float(L.psi_per_point(model, x, eps, steps=psi_steps, seed=seed).double().mean())
    pgd_ce = L.adversarial_accuracy(model, x, y, attack="pgd", eps=eps, steps=steps, seed=seed)
    dev = L.model_device(model)
    xa = attacks.pgd(model, x.to(dev), y.to(dev), eps, steps=steps, seed=seed,
                     objective="margin")
    with torch.no_grad():
        pgd_margin = float((model(xa).argmax(1).cpu() == y).float().mean())
    d = L.adversarial_direction(model, x, y)
    return ModelDiagnostics(
        clean_accuracy=float((logits.argmax(1) == y).float().mean()),
        max_abs_logit=float(logits.abs().max()), psi=psi, pgd_ce_accuracy=pgd_ce,
        pgd_margin_accuracy=pgd_margin,
        zero_gradient_fraction=float((d.flatten(1).abs().sum(1) == 0).float().mean()))


def gradient_masking_report(control: nn.Module, reference: nn.Module, x: torch.Tensor,
                            y: torch.Tensor, *, eps: float, steps: int = 20,
                            psi_steps: int = 10, seed: int = 0) -> MaskingReport:
    """The gradient-masking control of one seed: :class:`ModelDiagnostics` of the ``control``
    model (e.g. trained at a large softmax temperature, evaluated at T = 1) and of a
    ``reference`` model of the same architecture (natural training), and the control's
    accuracy under PGD transferred from the reference."""
    diag = {name: _diagnostics(m, x, y, eps=eps, steps=steps, psi_steps=psi_steps, seed=seed)
            for name, m in (("control", control), ("reference", reference))}
    return MaskingReport(seed=seed, control=diag["control"], reference=diag["reference"],
                         control_transfer_accuracy=L.transfer_accuracy(
                             reference, control, x, y, eps=eps, steps=steps, seed=seed))




def logit_scaling_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, *, eps: float,
                        scale: float, steps: int = 10, restarts: int = 1, seed: int = 0,
                        progress: bool = True) -> pd.DataFrame:
    """psi of every model before and after multiplying its logits by ``scale``
    (:class:`~studylib.techniques.landscape.LogitScaled`: every decision is unchanged, the
    softmax is not), with the same random starts. Returns (arch, regime, seed, psi,
    psi_scaled, ratio = psi_scaled / psi, same_decisions = share of ``x`` with the same
    argmax, 1 by construction)."""
    from ..core.runtime import progress as progress_bar

    rows = []
    items = list(models.items())
    for key, model in (progress_bar(items, desc="logit scaling") if progress else items):
        scaled = L.LogitScaled(model, scale).eval()
        psi0 = float(L.psi_per_point(model, x, eps, steps=steps, restarts=restarts,
                                     seed=seed).double().mean())
        psi1 = float(L.psi_per_point(scaled, x, eps, steps=steps, restarts=restarts,
                                     seed=seed).double().mean())
        same = float((L.batched_logits(model, x).argmax(1)
                      == L.batched_logits(scaled, x).argmax(1)).float().mean())
        rows.append({**_key_cols(key), "psi": psi0, "psi_scaled": psi1,
                     "ratio": psi1 / psi0 if psi0 > 0 else math.nan, "same_decisions": same})
    return pd.DataFrame(rows, columns=[*MODEL_COLS, "psi", "psi_scaled", "ratio",
                                       "same_decisions"])


# ============================================================================ rankings


def ranking_stability_per_seed(df: pd.DataFrame, *, setting_cols: Sequence[str], value_col: str,
                               model_cols: Sequence[str] = ("arch", "regime")
                               ) -> tuple[dict[int, float], dict[int, list[str]]]:
    """For each seed: :func:`~studylib.stats.mean_pairwise_kendall_tau` of the models' scores
    (``value_col``) across the settings (distinct values of ``setting_cols``).

    A setting whose scores do not vary over the models (every model at 0% accuracy, say)
    ranks nothing: it is left out, not scored as tau = 0, and named in the second return
    value. A seed with fewer than two informative settings gets no tau (it is absent from the
    first return value).

    Returns:
        ``({seed: tau}, {seed: [left-out settings]})``.
    """
    taus: dict[int, float] = {}
    left_out: dict[int, list[str]] = {}
    for seed, g in df.groupby("seed"):
        wide = g.pivot_table(index=list(setting_cols), columns=list(model_cols),
                             values=value_col, aggfunc="mean")
        arr = wide.to_numpy()
        flat = np.ptp(arr, axis=1) == 0
        left_out[int(seed)] = [str(i) for i, f in zip(wide.index, flat, strict=True) if f]
        if (~flat).sum() >= 2:
            taus[int(seed)] = mean_pairwise_kendall_tau(arr[~flat])
    return taus, left_out


def rank_agreement_per_seed(df_a: pd.DataFrame, df_b: pd.DataFrame, *, value_a: str,
                            value_b: str, model_cols: Sequence[str] = ("arch", "regime"),
                            method: str = "spearman") -> dict[int, float]:
    """For each seed: rank correlation (``"spearman"`` | ``"kendall"``) between the models'
    ``value_a`` in ``df_a`` and ``value_b`` in ``df_b`` (one row per model and seed each)."""
    if method not in ("spearman", "kendall"):
        raise ValueError(f"method must be 'spearman' or 'kendall', got {method!r}")
    fn = spearman_rho if method == "spearman" else kendall_tau
    cols = list(model_cols)
    out = {}
    for seed in sorted(set(df_a.seed) & set(df_b.seed)):
        a = df_a[df_a.seed == seed].set_index(cols)[value_a]
        b = df_b[df_b.seed == seed].set_index(cols)[value_b]
        common = a.index.intersection(b.index)
        out[int(seed)] = fn(a.loc[common].to_numpy(), b.loc[common].to_numpy())
    return out


# ============================================================================ run


def cut_curves(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: Sequence[float], *,
               n_random: int = 1, seed: int = 0, clip: bool = False) -> CutCurves:
    """Margin and loss along ``d_adv`` and ``n_random`` random sign directions for every point
    (rows = point x direction, columns = ``steps``)."""
    dirs = [("adv", L.adversarial_direction(model, x, y))]
    dirs += [("rand", L.random_sign_directions(x.shape, seed=seed * 1000 + k))
             for k in range(n_random)]
    out: dict[str, list[np.ndarray]] = {f"{q}_{kind}": [] for q in L.QUANTITIES
                                        for kind in ("adv", "rand")}
    for kind, d in dirs:
        for q in L.QUANTITIES:
            out[f"{q}_{kind}"].append(L.line_cut(model, x, y, d, steps, quantity=q,
                                                 clip=clip).numpy())
    return CutCurves(**{k: np.concatenate(v) for k, v in out.items()})


def _surfaces(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, y: torch.Tensor,
              settings: Settings) -> SurfaceRecords | None:
    """1-D cuts and 2-D margin surfaces of the first architecture and seed: the natural model
    and the last (most robust) PGD regime, over the test points both classify correctly."""
    arch, seed = next(iter(settings.architectures)), settings.seeds[0]
    shown = {reg: models[(arch, reg, seed)]
             for reg in (settings.natural_regime, settings.robust_regimes[-1])}
    steps = np.linspace(-settings.surface_span, settings.surface_span, CUT_STEPS)
    cx, cy = x[:settings.n_crossing_points], y[:settings.n_crossing_points]
    both = L.correctly_classified(shown.values(), cx, cy)
    if not bool(both.any()):
        return None
    curves = {f"{arch} / {reg}": cut_curves(m, cx[both], cy[both], steps, seed=seed,
                                            clip=settings.clip_inputs)
              for reg, m in shown.items()}
    grid = np.linspace(-settings.surface_span, settings.surface_span, settings.surface_grid)
    first = int(both.nonzero()[0, 0])
    px, py = cx[first:first + 1], cy[first:first + 1]
    surfaces = {}
    for reg, m in shown.items():
        d_adv = L.adversarial_direction(m, px, py)
        d_rand = L.random_sign_directions(px.shape, seed=seed)
        surfaces[f"{arch} / {reg}: margin"] = L.surface_2d(
            m, px, py, d_adv, d_rand, grid, grid, clip=settings.clip_inputs)[0].numpy()
    return SurfaceRecords(arch=arch, seed=seed, steps=steps, n_points=int(both.sum()),
                          n_candidates=len(cy), curves=curves, grid=grid, surfaces=surfaces)


def _at(df: pd.DataFrame, **values: Any) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for col, v in values.items():
        mask &= (df[col] == v).to_numpy()
    return df[mask]




def run(settings: Settings, ctx) -> Records:
    """Train the family and measure everything the claims and figures need.

    Every (architecture, regime, seed) is trained once through the checkpoint cache, plus one
    gradient-masking control per seed and the linear softmax models of the tightness table.
    The measurements, in this order: clean accuracy; 1-D cuts and 2-D surfaces;
    margin-crossing steps of the natural and PGD-trained models on the points all of a seed's
    models classify correctly; on the first ``n_eval_points`` test points the ground truth
    (robust accuracy), psi at the base setting, the psi grid and the attack grid; psi and
    CE-PGD at an equal gradient budget on the next ``n_cheap_points`` test points; the ReLU
    rescaling (every layer); the logit scaling; the psi tightness table; the masking control.
    ``ctx`` gives the device and records the metrics (means over seeds).
    """
    from ..data import load
    from ..training import TrainConfig

    s = settings
    bundle = load(s.dataset, **dict(s.dataset_kwargs))
    config = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr)
    models = train_family(bundle, s.architectures, s.regimes, s.seeds, config,
                          device=ctx.device, workers=s.train_workers)
    controls = train_family(bundle, {s.control_arch: s.architectures[s.control_arch]},
                            {"masked": s.control_regime}, s.seeds, config, device=ctx.device,
                            workers=s.train_workers)
    test_x, test_y = bundle.test.x, bundle.test.y
    n_eval = min(s.n_eval_points, len(test_y))
    eval_x, eval_y = test_x[:n_eval], test_y[:n_eval]
    cheap_x, cheap_y = (test_x[n_eval:n_eval + s.n_cheap_points],
                        test_y[n_eval:n_eval + s.n_cheap_points])
    if len(cheap_y) < 2:
        raise ValueError(f"the test split ({len(test_y)} points) leaves no points after the "
                         f"{n_eval} evaluation points for the equal-budget comparison")
    clean = clean_accuracy_table(models, test_x, test_y)
    control_clean = clean_accuracy_table(controls, test_x, test_y)

    surfaces = _surfaces(models, test_x, test_y, s)

    cx, cy = test_x[:s.n_crossing_points], test_y[:s.n_crossing_points]
    crossing_models = {k: m for k, m in models.items()
                       if k[1] in (s.natural_regime, *s.robust_regimes)}
    crossings = crossing_table(crossing_models, cx, cy, n_random=s.n_random_directions,
                               max_step=s.max_step, n_grid=s.crossing_grid,
                               n_bisect=CROSSING_BISECTIONS, clip=s.clip_inputs,
                               seed=MEASUREMENT_SEED, shared=True)

    correct = shared_correct_points(models, eval_x, eval_y)
    robust = robust_accuracy_table(models, eval_x, eval_y, eps=s.eps, steps=s.acc_steps,
                                   restarts=s.acc_restarts, seed=MEASUREMENT_SEED)
    base = psi_base_table(models, eval_x, eps=s.eps, steps=s.psi_steps,
                          restarts=s.psi_restarts, correct=correct, seed=MEASUREMENT_SEED)
    grid = psi_grid_table(models, eval_x, eps=s.eps, steps_values=s.psi_grid_steps,
                          restarts_values=s.psi_grid_restarts, seed=MEASUREMENT_SEED)
    acc_grid = accuracy_grid_table(models, eval_x, eval_y, eps=s.eps,
                                   steps_values=s.attack_grid_steps, seed=MEASUREMENT_SEED)
    psi = PsiRecords(grid=grid, accuracy_grid=acc_grid, base=base, robust=robust,
                     n_correct={k: int(v.sum()) for k, v in correct.items()})

    cheap_psi, cheap_acc = equal_budget_tables(models, cheap_x, cheap_y, eps=s.eps,
                                               budget=s.cheap_budget, seed=MEASUREMENT_SEED)
    cost = CostRecords(psi=cheap_psi, accuracy=cheap_acc, budget=s.cheap_budget,
                       n_points=len(cheap_y))

    sx, sy = test_x[:s.n_sharpness_points], test_y[:s.n_sharpness_points]
    n_layers = max(len(L.parametric_layers(m)) for m in models.values())
    rescaling = rescaling_table(models, sx, sy, eps=s.eps, c=s.rescale_c,
                                layers=sorted({s.rescale_layer, *range(n_layers - 1)}),
                                psi_steps=s.psi_steps, radius=s.sharpness_radius,
                                n_samples=s.sharpness_samples, seed=MEASUREMENT_SEED)
    logit_scaling = logit_scaling_table(models, sx, eps=s.eps, scale=s.logit_scale,
                                        steps=s.psi_steps, restarts=s.psi_restarts,
                                        seed=MEASUREMENT_SEED)

    tight = load(s.dataset, **{**dict(s.dataset_kwargs), "image_size": s.tightness_image_size})
    linear = train_family(tight, {TIGHTNESS_ARCH: {"model": "mlp", "hidden": []}},
                          {r: s.regimes[r] for r in (s.natural_regime, *s.robust_regimes)},
                          s.seeds, config, device="cpu")
    tightness = tightness_table(linear, tight.test.x[:s.n_tightness_points], eps=s.eps,
                                steps_values=s.tightness_steps,
                                restarts_values=s.tightness_restarts, seed=MEASUREMENT_SEED)

    masking = tuple(gradient_masking_report(
        controls[(s.control_arch, "masked", seed)], models[(s.control_arch, s.natural_regime,
                                                            seed)],
        eval_x, eval_y, eps=s.eps, steps=s.acc_steps, psi_steps=s.psi_steps,
        seed=MEASUREMENT_SEED) for seed in s.seeds)

    records = Records(
        data=DataSummary(name=bundle.name, n_train=len(bundle.train.y), n_test=len(test_y),
                         input_shape=tuple(int(v) for v in bundle.input_shape),
                         n_models=len(models), n_controls=len(controls)),
        clean_accuracy=clean, control_accuracy=control_clean, surfaces=surfaces,
        crossings=crossings, crossing_summary=crossing_ratio_summary(crossings,
                                                                     max_step=s.max_step),
        psi=psi, cost=cost, rescaling=rescaling, logit_scaling=logit_scaling,
        tightness=tightness, masking=masking)
    _record_metrics(records, ctx)
    return records


def _record_metrics(records: Records, ctx) -> None:
    acc = pd.concat([records.control_accuracy, records.clean_accuracy])
    for (arch, reg), v in acc.groupby(["arch", "regime"], sort=False).accuracy.mean().items():
        ctx.record_metric(f"clean_accuracy/{arch}/{reg}", v)
    for (arch, reg), row in _psi_vs_robust(records).iterrows():
        ctx.record_metric(f"psi/{arch}/{reg}", row.score)
        ctx.record_metric(f"robust_accuracy/{arch}/{reg}", row.robust_accuracy)
    for name, v in masking_means(records).items():
        ctx.record_metric(f"masking/{name}", v)


# ============================================================================ tables shown


def _psi_vs_robust(records: Records) -> pd.DataFrame:
    merged = records.psi.base.merge(records.psi.robust, on=list(MODEL_COLS))
    return merged.groupby(["arch", "regime"])[
        ["clean_accuracy", "robust_accuracy", "score", "score_correct"]].mean()


def table_clean_accuracy(records: Records) -> pd.DataFrame:
    """Clean test accuracy, mean over seeds: one row per architecture, a column per regime."""
    return records.clean_accuracy.pivot_table(index="arch", columns="regime", values="accuracy")


def table_crossings(records: Records) -> pd.DataFrame:
    """Median crossing steps, their ratio, the censored fraction and the shared points, mean
    over seeds, with the models' clean accuracy beside them."""
    t = records.crossing_summary.merge(records.clean_accuracy, on=list(MODEL_COLS), how="left")
    return t.groupby(["arch", "regime"])[
        ["accuracy", "adv_median", "rand_median", "ratio_median", "rand_censored",
         "n_points"]].mean().rename(columns={"accuracy": "clean_accuracy"})


def table_psi_vs_accuracy(records: Records, settings: Settings) -> pd.DataFrame:
    """Clean accuracy, robust accuracy (the ground truth), psi at the base setting on all
    evaluation points and on the points every model classifies correctly, mean over seeds,
    sorted by psi."""
    return _psi_vs_robust(records).rename(columns={
        "score": f"psi(eps={settings.eps:g})", "score_correct": "psi on shared correct points",
        "robust_accuracy": f"robust accuracy (CE+margin PGD-{settings.acc_steps} x "
                           f"{settings.acc_restarts})"}).sort_values(
        f"psi(eps={settings.eps:g})")


def table_rescaling(records: Records) -> pd.DataFrame:
    """Median psi change and sharpness before and after rescaling, per architecture and
    layer (every layer that can be rescaled)."""
    return records.rescaling.groupby(["arch", "layer"])[
        ["psi_rel_change", "sharpness", "sharpness_rescaled", "sharpness_factor"]].median()


def table_logit_scaling(records: Records) -> pd.DataFrame:
    """psi before and after the logit scaling and their ratio, per architecture and regime
    (mean over seeds; the ratio's mean is geometric)."""
    t = records.logit_scaling.copy()
    t["log_ratio"] = np.log(t["ratio"])
    g = t.groupby(["arch", "regime"]).agg(psi=("psi", "mean"), psi_scaled=("psi_scaled", "mean"),
                                          log_ratio=("log_ratio", "mean"),
                                          same_decisions=("same_decisions", "min"))
    g["ratio"] = np.exp(g.pop("log_ratio"))
    return g


def table_tightness(records: Records) -> pd.DataFrame:
    """psi / exact maximum on the linear softmax models: rows = ascent steps, columns =
    restarts; the mean over models and seeds of the ratio of means."""
    return records.tightness.pivot_table(index="steps", columns="restarts", values="ratio",
                                         aggfunc="mean")


def table_tightness_worst(records: Records) -> pd.DataFrame:
    """As :func:`table_tightness` for the worst model and seed of the 5%-quantile per-point
    ratio (how far psi can sit below the maximum on the hardest points)."""
    return records.tightness.pivot_table(index="steps", columns="restarts", values="worst",
                                         aggfunc="min")


def tightness_at(records: Records, steps: int, restarts: int) -> dict[str, float]:
    """The tightness table at one setting: mean ratio and worst 5%-quantile ratio."""
    t = records.tightness
    t = t[(t.steps == steps) & (t.restarts == restarts)]
    if t.empty:
        return {"ratio": math.nan, "worst": math.nan}
    return {"ratio": float(t.ratio.mean()), "worst": float(t.worst.min())}


def surface_lines(records: Records) -> list[str]:
    """What the surface figures show in words: points of the cuts, and per 2-D surface the
    margin at its origin and the share of the plane on the wrong side of the boundary."""
    from ..core.formatting import fmt

    s = records.surfaces
    if s is None:
        return ["no evaluation point is classified correctly by both models shown: no cuts"]
    mid = len(s.grid) // 2
    return [f"1-D cuts over the {s.n_points} of {s.n_candidates} points both models classify "
            "correctly"] + [
        f"{label}: margin at the origin {fmt(v[mid, mid])}, share of the plane on the wrong "
        f"side {fmt(float((v <= 0).mean()))}" for label, v in s.surfaces.items()]


def masking_means(records: Records) -> pd.Series:
    """The gradient-masking control's numbers (:meth:`MaskingReport.flat`), mean over seeds."""
    return pd.DataFrame([r.flat() for r in records.masking]).mean()


@dataclass(frozen=True)
class MaskingSummary:
    """The control's three answers (reported, not a claim of the paper): is white-box PGD on
    the cross-entropy fooled by the masking (control PGD accuracy above the reference's by more
    than the margin), does transferred PGD break the control harder than white-box PGD (by more
    than the margin), and does psi rank the control as more robust than the natural model."""

    pgd_fooled: bool
    transfer_breaks: bool
    psi_says_robust: bool

    def __str__(self) -> str:
        return (f"white-box PGD (CE) is fooled by the masking: {self.pgd_fooled}; transferred "
                f"PGD breaks the control harder than white-box PGD: {self.transfer_breaks}; psi "
                f"ranks the control as more robust than the natural model: "
                f"{self.psi_says_robust}")


def masking_summary(records: Records, settings: Settings) -> MaskingSummary:
    """:class:`MaskingSummary` from the means over seeds; the margin is
    ``settings.masking_accuracy_margin``."""
    m, margin = masking_means(records), settings.masking_accuracy_margin
    return MaskingSummary(
        pgd_fooled=bool(m["control_pgd_ce_accuracy"] > m["reference_pgd_ce_accuracy"] + margin),
        transfer_breaks=bool(m["control_transfer_accuracy"]
                             < m["control_pgd_ce_accuracy"] - margin),
        psi_says_robust=bool(m["control_psi"] < m["reference_psi"]))



# ============================================================================ claims


def _per_seed(pairs: Mapping[int, float]) -> list[float]:
    return [float(v) for _, v in sorted(pairs.items())]


def _positive(values: Sequence[float], what: str) -> list[float]:
    bad = [v for v in values if not v > 0]
    if bad:
        raise ValueError(f"{what} must be positive to take its log, got {bad}")
    return list(values)


def claim_margin_crossing_adversarial_vs_random(records: Records, settings: Settings) -> Claim:
    """Naturally trained models cross the decision boundary along ``d_adv`` at a much smaller
    step than along random directions: per architecture, the per-model median ratio
    (random / adversarial crossing step, :func:`crossing_ratio_summary`) has a log-scale
    interval over seeds at or above ``settings.crossing_ratio_threshold``."""
    regime, threshold = settings.natural_regime, settings.crossing_ratio_threshold
    summary = records.crossing_summary
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




def claim_robust_training_widens_margin(records: Records, settings: Settings) -> Claim:
    """PGD-trained models cross the boundary along ``d_adv`` at a larger step than natural
    models: per (architecture, robust regime of ``settings.robust_regimes``), the ratio of
    median ``d_adv`` crossing steps (robust / natural, same architecture and seed, both on the
    points every model of the seed classifies correctly) has a log-scale interval above 1.
    The details give each pair's clean accuracies (a robust model of lower clean accuracy is
    compared on the points it does get right)."""
    summary = records.crossing_summary
    clean = (records.clean_accuracy.set_index(list(MODEL_COLS)).accuracy
             if not records.clean_accuracy.empty else pd.Series(dtype=float))
    rule = Rule("greater", 1.0)
    decisions, accuracy = [], {}
    for arch in summary.arch.unique():
        nat = summary[(summary.arch == arch)
                      & (summary.regime == settings.natural_regime)].set_index("seed")
        for reg in settings.robust_regimes:
            rob = summary[(summary.arch == arch) & (summary.regime == reg)].set_index("seed")
            seeds = sorted(set(nat.index) & set(rob.index))
            if not seeds:
                continue
            ratios = _positive([float(rob.adv_median[s] / nat.adv_median[s]) for s in seeds],
                               f"{arch}/{reg} step ratios")
            decisions.append(decide_condition(f"{arch}/{reg}", log_ratio_interval(ratios), rule))
            accuracy[f"{arch}/{reg}"] = {
                who: [float(clean.get((arch, r, s), math.nan)) for s in seeds]
                for who, r in (("natural", settings.natural_regime), ("robust", reg))}
    if not decisions:
        raise ValueError("no (natural, robust) pairs found in the crossing summary")
    n_points = ({int(s): int(v) for s, v in summary.groupby("seed").n_points.min().items()}
                if "n_points" in summary else {})
    return claim_over_conditions(
        "robust_training_widens_margin",
        "PGD-trained models cross the decision boundary along d_adv at a larger step than "
        "natural models of the same architecture, on the points every model of the seed "
        "classifies correctly (ratio > 1 per pair)", decisions,
        details={"clean_accuracy": accuracy, "shared_points_per_seed": n_points})


def claim_metric_tracks_adversarial_accuracy(records: Records, settings: Settings) -> Claim:
    """Across the models, Spearman rho between psi at the base setting and the robust accuracy
    (per point the minimum over CE-PGD and margin-PGD with restarts), one rho per seed, has a
    Fisher-z interval at or below ``settings.rho_threshold``. The details give the same rho
    for psi on the points every model classifies correctly, rho(psi, clean accuracy) (psi
    ignores labels) and a bootstrap over (seed, model)."""
    threshold = settings.rho_threshold
    base, robust = records.psi.base, records.psi.robust
    rho = rank_agreement_per_seed(base, robust, value_a="score", value_b="robust_accuracy")
    d = decide_condition("all models", fisher_z_interval(_per_seed(rho)),
                         Rule("at_most", threshold))
    merged = base.merge(robust, on=list(MODEL_COLS))
    per_seed = [g[["score", "robust_accuracy"]].to_numpy() for _, g in merged.groupby("seed")]
    boot = None
    if per_seed and all(len(a) >= 2 for a in per_seed):
        with warnings.catch_warnings():  # a resample of identical models has no ranking
            warnings.simplefilter("ignore")
            boot = hierarchical_bootstrap(per_seed, lambda a: spearman_rho(a[:, 0], a[:, 1]),
                                          n_boot=1000, seed=MEASUREMENT_SEED,
                                          bounds=(-1.0, 1.0))
    correct = (rank_agreement_per_seed(base.dropna(subset=["score_correct"]), robust,
                                       value_a="score_correct", value_b="robust_accuracy")
               if "score_correct" in base else {})
    vs_clean = rank_agreement_per_seed(base, robust, value_a="score", value_b="clean_accuracy")
    clean_vs_robust = rank_agreement_per_seed(robust, robust, value_a="clean_accuracy",
                                              value_b="robust_accuracy")
    return claim_over_conditions(
        "metric_tracks_adversarial_accuracy",
        f"Across all models, Spearman rho between psi and robust accuracy (per point the "
        f"minimum over CE- and margin-PGD) <= {threshold:g}", [d],
        details={"n_models_per_seed": int(base.groupby("seed").size().min()),
                 "bootstrap_seed_model": None if boot is None else
                 {"estimate": boot.estimate, "ci95": list(boot.ci95)},
                 "rho_psi_on_correct_points_per_seed": _per_seed(correct),
                 "rho_psi_vs_clean_accuracy_per_seed": _per_seed(vs_clean),
                 "rho_clean_vs_robust_accuracy_per_seed": _per_seed(clean_vs_robust)})


def claim_metric_stable_across_settings(records: Records, settings: Settings) -> Claim:
    """The psi ranking is stable across psi's own settings (ascent steps x restarts: mean
    pairwise Kendall tau, Fisher-z interval over seeds, >= ``settings.stability_tau_threshold``)
    and at least as stable as the ranking by accuracy under attack across the attack's own
    settings (objective x steps; paired difference of the taus >= 0). Both grids are on the
    same points; a setting that ranks nothing (no spread over the models) is left out and
    reported, and a seed with fewer than two informative settings on either side too."""
    threshold = settings.stability_tau_threshold
    psi_grid, acc_grid = records.psi.grid, records.psi.accuracy_grid
    tau_psi, out_psi = ranking_stability_per_seed(psi_grid, setting_cols=list(PSI_SETTINGS),
                                                  value_col="score")
    tau_acc, out_acc = ranking_stability_per_seed(acc_grid, setting_cols=list(ATTACK_SETTINGS),
                                                  value_col="accuracy")
    all_seeds = sorted(set(out_psi) | set(out_acc))
    seeds = sorted(set(tau_psi) & set(tau_acc))
    psi_vals = [tau_psi[s] for s in seeds]
    acc_vals = [tau_acc[s] for s in seeds]
    dropped = [s for s in all_seeds if s not in seeds]
    why = f"seeds {dropped} have fewer than two settings that rank the models" if dropped else None
    if seeds:
        decisions = [
            decide_condition("psi ranking tau", fisher_z_interval(psi_vals),
                             Rule("at_least", threshold)),
            decide_condition("psi tau - accuracy tau",
                             paired_difference(psi_vals, acc_vals, bounds=(-2.0, 2.0)),
                             Rule("at_least", 0.0)),
        ]
    else:
        decisions = [decide_condition("psi ranking tau", Interval.undefined(
            "no seed with two informative settings", (-1.0, 1.0)), Rule("at_least", threshold),
            uninformative=why or "no settings")]
    return claim_over_conditions(
        "metric_stable_across_settings",
        f"The ranking by psi is stable across its own settings (steps x restarts; mean Kendall "
        f"tau >= {threshold:g}) and at least as stable as the ranking by accuracy under attack "
        "across the attack's own settings (objective x steps)",
        decisions,
        details={"seeds_used": seeds, "seeds_left_out": dropped,
                 "tau_accuracy_per_seed": acc_vals,
                 "psi_settings_left_out": {str(k): v for k, v in out_psi.items() if v},
                 "accuracy_settings_left_out": {str(k): v for k, v in out_acc.items() if v},
                 "n_psi_settings": int(psi_grid[list(PSI_SETTINGS)].drop_duplicates().shape[0]),
                 "n_accuracy_settings": int(acc_grid[list(ATTACK_SETTINGS)]
                                            .drop_duplicates().shape[0])})


def claim_metric_cheaper_than_adversarial_testing(records: Records, settings: Settings) -> Claim:
    """At an equal budget of input gradients per point (``settings.cheap_budget``: psi with
    that many ascent steps, CE-PGD with that many steps, one start each), on points disjoint
    from the ground truth's, psi ranks the models by the ground truth (robust accuracy) at
    least as well as the cheap accuracy does: the per-seed difference of the Kendall taus
    with the ground-truth ranking (psi's sign flipped: low psi = robust) is non-inferior with
    margin ``settings.cheap_tau_margin``. A seed where either cheap measure has no spread over
    the models ranks nothing: left out and reported."""
    cost, robust, margin = records.cost, records.psi.robust, settings.cheap_tau_margin
    flipped = cost.psi.assign(neg_score=-cost.psi["score"])
    tau_psi = rank_agreement_per_seed(flipped, robust, value_a="neg_score",
                                      value_b="robust_accuracy", method="kendall")
    tau_acc = rank_agreement_per_seed(cost.accuracy, robust, value_a="accuracy",
                                      value_b="robust_accuracy", method="kendall")

    def spread(df: pd.DataFrame, col: str) -> dict[int, bool]:
        return {int(s): bool(np.ptp(g[col].to_numpy()) > 0) for s, g in df.groupby("seed")}

    sp_psi, sp_acc = spread(cost.psi, "score"), spread(cost.accuracy, "accuracy")
    seeds = [s for s in sorted(set(tau_psi) & set(tau_acc)) if sp_psi.get(s) and sp_acc.get(s)]
    dropped = sorted((set(tau_psi) | set(tau_acc)) - set(seeds))
    rule = Rule("non_inferior", 0.0, margin)
    name = f"tau(psi) - tau(accuracy) at {cost.budget} gradients per point"
    if seeds:
        d = decide_condition(name, paired_difference([tau_psi[s] for s in seeds],
                                                     [tau_acc[s] for s in seeds],
                                                     bounds=(-2.0, 2.0)), rule)
    else:
        d = decide_condition(name, Interval.undefined("no seed where both measures rank",
                                                      (-2.0, 2.0)), rule,
                             uninformative="a cheap measure has no spread in every seed")
    sec_psi = cost.psi.groupby("seed").seconds.sum()
    sec_acc = cost.accuracy.groupby("seed").seconds.sum()
    return claim_over_conditions(
        "metric_cheaper_than_adversarial_testing",
        f"At an equal budget of {cost.budget} input gradients per point, on {cost.n_points} "
        "points disjoint from the ground truth's, psi ranks the models by robust accuracy at "
        f"least as well as CE-PGD accuracy does (Kendall tau, non-inferiority margin {margin:g})",
        [d],
        details={"seeds_left_out": dropped,
                 "tau_psi_per_seed": [tau_psi[s] for s in seeds],
                 "tau_accuracy_per_seed": [tau_acc[s] for s in seeds],
                 "psi_seconds_per_seed": [float(v) for v in sec_psi.to_numpy()],
                 "accuracy_seconds_per_seed": [float(v) for v in sec_acc.to_numpy()],
                 "budget": cost.budget})


def claim_metric_invariant_to_reparameterization(records: Records, settings: Settings) -> Claim:
    """psi is a function of the input-output map, not of the weights, and weight sharpness is
    not. Conditions, all judged:

    * sanity check -- with layer ``settings.rescale_layer`` rescaled by ``settings.rescale_c``
      (the next by 1/c; the function is unchanged), the largest relative psi change over the
      models (per seed; t-interval clipped at 0) is <= ``settings.psi_tolerance``;
    * the control psi can fail -- multiplying the logits by ``settings.logit_scale`` < 1
      keeps every decision but softens the softmax, so psi must fall: the geometric mean over
      the models of psi(scaled) / psi (per seed; log-scale interval) < 1;
    * per architecture, the median sharpness change factor at ``settings.rescale_layer``
      (log-scale interval) > ``settings.sharpness_factor_threshold``.

    The other layers are reported in the details, not judged."""
    table, layer = records.rescaling, settings.rescale_layer
    tolerance, factor, c = (settings.psi_tolerance, settings.sharpness_factor_threshold,
                            settings.rescale_c)
    scale = settings.logit_scale
    if not 0 < scale < 1:
        raise ValueError(f"logit_scale must lie in (0, 1): only there is psi's direction known "
                         f"in advance (psi -> 0 as the logits shrink), got {scale}")
    t = table[table.layer == layer]
    if t.empty:
        raise ValueError(f"no rows for layer {layer} in the rescaling table")
    psi = _per_seed(t.groupby("seed").psi_rel_change.max().to_dict())
    decisions = [decide_condition("psi: largest relative change under the ReLU rescaling",
                                  t_interval(psi, bounds=(0.0, None)),
                                  Rule("at_most", tolerance))]
    ls = records.logit_scaling
    name = f"psi ratio under logit scaling x{scale:g}"
    if ls.empty or not (ls.ratio > 0).any():
        decisions.append(decide_condition(name, Interval.undefined("no psi > 0", (0, math.inf)),
                                          Rule("less", 1.0),
                                          uninformative="psi is 0 for every model"))
    else:
        geo = _per_seed(ls[ls.ratio > 0].groupby("seed").ratio.apply(
            lambda r: float(np.exp(np.log(r).mean()))).to_dict())
        decisions.append(decide_condition(name, log_ratio_interval(geo), Rule("less", 1.0)))
    rule = Rule("greater", factor)
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
        f"psi follows the function, not the weights: a ReLU rescaling by c={c:g} (next layer "
        f"1/c) leaves it within {tolerance:.0%}, a decision-preserving logit scaling by "
        f"{scale:g} lowers it, while weight-space sharpness changes by more than {factor:g}x "
        f"under the rescaling of layer {layer}", decisions,
        details={"layer": layer, "other_layers": other, "logit_scale": scale})


# ============================================================================ figures


def figure_cuts(records: Records):
    """Figure: rows margin / loss, one column per model shown; median over points with the
    inter-quartile band, adversarial vs random direction; the decision boundary D = 0 dashed.
    None without cuts (:attr:`Records.surfaces` is None)."""
    import matplotlib.pyplot as plt

    from ..core.plotting import palette

    if records.surfaces is None:
        return None
    s = records.surfaces
    cols = list(s.curves)
    fig, axes = plt.subplots(2, len(cols), figsize=(3.4 * len(cols), 5.6), sharex=True,
                             squeeze=False)
    colors = palette(2)
    for j, label in enumerate(cols):
        for i, q in enumerate(L.QUANTITIES):
            ax = axes[i, j]
            for c, kind, name in ((colors[0], "adv", "d_adv"), (colors[1], "rand", "d_rand")):
                v = getattr(s.curves[label], f"{q}_{kind}")
                lo, med, hi = np.quantile(v, [0.25, 0.5, 0.75], axis=0)
                ax.plot(s.steps, med, color=c, label=name)
                ax.fill_between(s.steps, lo, hi, color=c, alpha=0.2)
            if q == "margin":
                ax.axhline(0, color="k", ls="--", lw=0.8)
                ax.set_title(label)
            ax.set_ylabel("margin D" if q == "margin" else "cross-entropy")
            if i == 1:
                ax.set_xlabel("step a along direction")
    axes[0, 0].legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def figure_surfaces(records: Records):
    """Figure: one heat map of the margin per model shown, x axis ``a`` along d_adv, y axis
    ``b`` along d_rand, the decision boundary D = 0 as a black contour. None without
    surfaces."""
    import matplotlib.pyplot as plt

    if records.surfaces is None:
        return None
    s = records.surfaces
    labels = list(s.surfaces)
    fig, axes = plt.subplots(1, len(labels), figsize=(3.6 * len(labels), 3.3), squeeze=False)
    lim = max(float(np.abs(v).max()) for v in s.surfaces.values())
    for ax, label in zip(axes[0], labels, strict=True):
        v = np.asarray(s.surfaces[label]).T  # rows = b, columns = a
        im = ax.pcolormesh(s.grid, s.grid, v, cmap="RdBu", vmin=-lim, vmax=lim, shading="auto")
        if v.min() < 0 < v.max():
            ax.contour(s.grid, s.grid, v, levels=[0.0], colors="k", linewidths=1.2)
        ax.set_title(label)
        ax.set_xlabel("a (adversarial direction)")
        ax.set_ylabel("b (random direction)")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def figure_crossing_steps(records: Records, settings: Settings):
    """Figure: distribution of margin-crossing steps (censored at ``max_step``) along d_adv and
    random directions, per architecture and regime."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = records.crossings.copy()
    df["step"] = np.minimum(df["step"].to_numpy(), settings.max_step)
    archs = list(df.arch.unique())
    fig, axes = plt.subplots(1, len(archs), figsize=(4.6 * len(archs), 3.6), sharey=True,
                             squeeze=False)
    for ax, arch in zip(axes[0], archs, strict=True):
        sns.boxplot(data=df[df.arch == arch], x="regime", y="step", hue="direction", ax=ax,
                    fliersize=1)
        ax.set_yscale("log")
        ax.set_title(arch)
        ax.set_ylabel("step where margin reaches 0")
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return fig




def figure_psi_vs_accuracy(records: Records, settings: Settings):
    """Figure: psi (log scale) against robust accuracy (left) and against clean accuracy
    (right), one point per model and seed, colour = regime, marker = architecture; the titles
    give the mean Spearman rho over seeds."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from ..core.formatting import fmt

    df = records.psi.base.merge(records.psi.robust, on=list(MODEL_COLS))
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.0), sharey=True)
    for ax, col, name in ((axes[0], "robust_accuracy", "robust accuracy"),
                          (axes[1], "clean_accuracy", "clean accuracy")):
        rho = rank_agreement_per_seed(records.psi.base, records.psi.robust, value_a="score",
                                      value_b=col)
        sns.scatterplot(data=df, x=col, y="score", hue="regime", style="arch", s=50, ax=ax,
                        legend=ax is axes[1])
        ax.set_yscale("log")
        ax.set_xlabel(name)
        ax.set_title(f"psi vs {name} at eps={settings.eps:g} "
                     f"(mean rho {fmt(float(np.mean(list(rho.values()))), sig=2)})")
    axes[0].set_ylabel("psi (mean max KL; lower = more robust)")
    axes[1].legend(fontsize="x-small", bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


def figure_ranking_stability(records: Records, *, seed: int):
    """Figure: the rank of each model (1 = most robust) under every psi setting (left) and
    every attack setting (right), for one seed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, df, cols, col, asc, name in (
            (axes[0], records.psi.grid, list(PSI_SETTINGS), "score", True, "psi"),
            (axes[1], records.psi.accuracy_grid, list(ATTACK_SETTINGS), "accuracy", False,
             "accuracy under attack")):
        g = df[df.seed == seed].copy()
        g["model"] = g.arch + "/" + g.regime
        g["setting"] = g[cols].apply(lambda r, cols=cols: " ".join(
            f"{c}={r[c]}" for c in cols), axis=1)
        wide = g.pivot_table(index="setting", columns="model", values=col, aggfunc="mean")
        order = list(dict.fromkeys(g["setting"]))
        ranks = wide.loc[order].rank(axis=1, ascending=asc, method="average")
        for m in ranks.columns:
            ax.plot(range(len(order)), ranks[m].to_numpy(), marker="o", ms=3, label=m)
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(order, rotation=70, fontsize="x-small")
        ax.set_title(f"ranking by {name} (seed {seed})")
        ax.invert_yaxis()
    axes[0].set_ylabel("rank (1 = most robust)")
    axes[1].legend(fontsize="xx-small", bbox_to_anchor=(1.02, 1), loc="upper left", ncol=2)
    fig.tight_layout()
    return fig


CLAIMS = {
    "margin_crossing_adversarial_vs_random": claim_margin_crossing_adversarial_vs_random,
    "robust_training_widens_margin": claim_robust_training_widens_margin,
    "metric_tracks_adversarial_accuracy": claim_metric_tracks_adversarial_accuracy,
    "metric_stable_across_settings": claim_metric_stable_across_settings,
    "metric_cheaper_than_adversarial_testing": claim_metric_cheaper_than_adversarial_testing,
    "metric_invariant_to_reparameterization": claim_metric_invariant_to_reparameterization,
}
