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
  Every quantity gets the interval of its natural scale: crossing-step, margin, time and
  sharpness ratios on the log scale (they are multiplicative), rank correlations through
  Fisher's z, differences of taus as paired differences over seeds. A claim over several
  architectures or model pairs must hold in each
  (:func:`~studylib.stats.claim_over_conditions`);
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
    kendall_tau,
    log_ratio_interval,
    mean_pairwise_kendall_tau,
    paired_difference,
    spearman_rho,
    t_interval,
)
from ..techniques import landscape as L

PSI_SETTINGS = ("eps", "restarts", "n_points")
ATTACK_SETTINGS = ("attack", "eps", "steps")
MODEL_COLS = ("arch", "regime", "seed")
CUT_STEPS = 41  # points of the 1-D cuts over [-surface_span, surface_span]
CROSSING_BISECTIONS = 8  # bisection steps after the crossing grid search
MEASUREMENT_SEED = 0  # seeds random directions, psi's random starts and the attacks

ModelKey = tuple[str, str, int]  # (architecture label, regime label, seed)


# ============================================================================ settings


@dataclass(frozen=True)
class Settings(StudySettings):
    """The study's parameters, read from the notebook's parameters cell (no defaults here: the
    cell is their one source; see the cell's comments for each one's meaning)."""

    seeds: tuple[int, ...]
    dataset: str
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
    eps_factors: tuple[float, ...]
    psi_steps: int
    psi_restarts: tuple[int, ...]
    psi_subset_points: int
    n_eval_points: int
    acc_pgd_steps: tuple[int, ...]
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
    # the claims' rules
    crossing_ratio_threshold: float
    rho_threshold: float
    stability_tau_threshold: float
    subset_tau_threshold: float
    psi_tolerance: float
    sharpness_factor_threshold: float
    masking_accuracy_margin: float

    @property
    def eps_grid(self) -> list[float]:
        """The eps of the psi and attack settings: ``eps`` times each of ``eps_factors``."""
        return [round(self.eps * f, 6) for f in self.eps_factors]


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
    """psi and adversarial accuracy of every model.

    Attributes:
        grid: one row per model and psi setting (arch, regime, seed, eps, restarts, n_points,
            score).
        accuracy_grid: one row per model and attack setting (arch, regime, seed, attack, eps,
            steps, accuracy, seconds).
        base: ``grid`` at the base setting (eps, the first restarts, all evaluation points).
        pgd_accuracy: ``accuracy_grid`` at PGD, eps and the last of ``acc_pgd_steps``.
    """

    grid: pd.DataFrame
    accuracy_grid: pd.DataFrame
    base: pd.DataFrame
    pgd_accuracy: pd.DataFrame


@dataclass(frozen=True)
class CostRecords:
    """psi on a subset of points vs on the whole test split, and what each costs.

    Attributes:
        subset, full: one row per model (arch, regime, seed, score, seconds).
        subset_seconds: per seed, the wall time of psi on the subset, summed over the models.
        grid_seconds: per seed, the wall time of the adversarial-accuracy grid.
        n_subset_points: the points of the subset.
    """

    subset: pd.DataFrame
    full: pd.DataFrame
    subset_seconds: Mapping[int, float]
    grid_seconds: Mapping[int, float]
    n_subset_points: int


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
            the natural and PGD-trained models; crossing_summary: one row per model
            (:func:`crossing_ratio_summary`).
        psi: psi and adversarial accuracy; cost: psi on a subset vs the full test split.
        rescaling: psi and sharpness before and after a ReLU rescaling
            (:func:`rescaling_table`).
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
                 cache: bool = True) -> dict[ModelKey, nn.Module]:
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

    Returns:
        ``{(arch_label, regime_label, seed): trained model (eval mode)}``.
    """
    from ..core.runtime import progress as progress_bar
    from ..models import build_model
    from ..training import fit

    seeds = [int(s) for s in seeds]
    jobs = list(itertools.product(architectures, regimes, seeds))
    out: dict[ModelKey, nn.Module] = {}
    for arch, reg, seed in (progress_bar(jobs, desc="train family") if progress else jobs):
        kw = _arch_kwargs(arch, architectures[arch], data.input_shape, data.num_classes)
        name = kw.pop("name")
        model = build_model(name, seed=seed, **kw)
        rspec = dict(regimes[reg])
        regime = L.make_regime(rspec.pop("kind", reg), **rspec)
        out[(arch, reg, seed)] = fit(model, data, config, seed=seed, device=device,
                                     loss_fn=regime.loss_fn, loss_id=regime.loss_id,
                                     progress=False, cache=cache)
    return out


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


def crossing_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, y: torch.Tensor, *,
                   n_random: int = 4, max_step: float = 1.0, n_grid: int = 64,
                   n_bisect: int = 10, clip: bool = False, seed: int = 0,
                   progress: bool = True) -> pd.DataFrame:
    """Margin-crossing steps along ``d_adv`` and ``n_random`` random +-1 directions.

    For every model and every point of ``x`` correctly classified by that model, the crossing
    step (:func:`~studylib.techniques.landscape.crossing_step`) along the model's own ``d_adv``
    and along ``n_random`` random sign directions (seeded by ``seed`` and the direction index,
    the same for every model).

    Returns:
        DataFrame with columns arch, regime, seed, point (index into ``x``), direction
        (``"adv"`` | ``"rand"``), k (random direction index; 0 for adv), step (``inf`` when
        censored at ``max_step``).
    """
    from ..core.runtime import progress as progress_bar

    rand = [L.random_sign_directions(x.shape, seed=seed * 1000 + k) for k in range(n_random)]
    rows = []
    items = list(models.items())
    for key, model in (progress_bar(items, desc="crossings") if progress else items):
        ok = (L.batched_logits(model, x).argmax(1) == y).nonzero().flatten()
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


def psi_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor, *,
              eps_values: Sequence[float], restarts_values: Sequence[int] = (1,),
              steps: int = 20, seed: int = 0, n_boot: int = 1000,
              progress: bool = True) -> pd.DataFrame:
    """psi of every model for every (eps, restarts) setting
    (:func:`~studylib.techniques.landscape.psi_score`).

    Returns a DataFrame with columns arch, regime, seed, eps, restarts, psi (np.ndarray of the
    per-point values over ``x``), psi_mean, psi_ci95 and seconds (the psi search's wall time).
    """
    from ..core.runtime import progress as progress_bar

    jobs = list(itertools.product(models.items(), eps_values, restarts_values))
    rows = []
    for (key, model), eps, restarts in (progress_bar(jobs, desc="psi") if progress else jobs):
        res = L.psi_score(model, x, float(eps), steps=steps, restarts=int(restarts), seed=seed,
                          n_boot=n_boot)
        rows.append({**_key_cols(key), "eps": float(eps), "restarts": int(restarts),
                     "psi": res.per_point, "psi_mean": res.mean, "psi_ci95": list(res.ci95),
                     "seconds": res.seconds})
    return pd.DataFrame(rows)


def psi_subset_scores(per_point: pd.DataFrame, n_points_values: Sequence[int]) -> pd.DataFrame:
    """Expand :func:`psi_table` output to settings (eps, restarts, n_points): the model's psi
    is the mean over the first ``n_points`` points (the test points come in a fixed random
    order, so the first n are a random subset). Returns a DataFrame with column ``score``."""
    rows = []
    n_points_values = sorted({int(n) for n in n_points_values})
    for _, r in per_point.iterrows():
        for n in n_points_values:
            n = min(int(n), len(r.psi))
            rows.append({"arch": r.arch, "regime": r.regime, "seed": r.seed, "eps": r.eps,
                         "restarts": r.restarts, "n_points": n,
                         "score": float(np.mean(r.psi[:n]))})
    return pd.DataFrame(rows)


def adversarial_accuracy_table(models: Mapping[ModelKey, nn.Module], x: torch.Tensor,
                               y: torch.Tensor, *, eps_values: Sequence[float],
                               pgd_steps: Sequence[int] = (10,), include_fgsm: bool = True,
                               restarts: int = 1, seed: int = 0,
                               progress: bool = True) -> pd.DataFrame:
    """The conventional baseline: adversarial accuracy over a grid of attacks x eps x steps.

    Settings: FGSM at each eps (if ``include_fgsm``) and PGD with each number of steps at each
    eps. Returns a DataFrame (arch, regime, seed, attack, eps, steps, accuracy, seconds).
    """
    from ..core.runtime import progress as progress_bar

    settings = [("fgsm", float(e), 1) for e in eps_values] if include_fgsm else []
    settings += [("pgd", float(e), int(s)) for e in eps_values for s in pgd_steps]
    jobs = list(itertools.product(models.items(), settings))
    rows = []
    for (key, model), (attack, eps, steps) in (progress_bar(jobs, desc="adv. accuracy")
                                               if progress else jobs):
        t0 = time.perf_counter()
        acc = L.adversarial_accuracy(model, x, y, attack=attack, eps=eps, steps=steps,
                                     restarts=restarts, seed=seed)
        rows.append({**_key_cols(key), "attack": attack, "eps": eps, "steps": steps,
                     "accuracy": acc, "seconds": time.perf_counter() - t0})
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


# ============================================================================ rankings


def ranking_stability_per_seed(df: pd.DataFrame, *, setting_cols: Sequence[str], value_col: str,
                               model_cols: Sequence[str] = ("arch", "regime")) -> dict[int, float]:
    """For each seed: :func:`~studylib.stats.mean_pairwise_kendall_tau` of the models' scores
    (``value_col``) across the settings (distinct values of ``setting_cols``)."""
    out = {}
    for seed, g in df.groupby("seed"):
        wide = g.pivot_table(index=list(setting_cols), columns=list(model_cols),
                             values=value_col, aggfunc="mean")
        out[int(seed)] = mean_pairwise_kendall_tau(wide.to_numpy())
    return out


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
    gradient-masking control per seed. The measurements, in this order: clean accuracy; 1-D
    cuts and 2-D surfaces; margin-crossing steps of the natural and PGD-trained models; psi
    over its settings grid and adversarial accuracy over the attack grid (the first
    ``n_eval_points`` test points); psi on ``psi_subset_points`` points and on the whole test
    split, timed; the ReLU rescaling; the masking control. ``ctx`` gives the device and records
    the metrics (``clean_accuracy/<arch>/<regime>``, ``psi/...``, ``pgd_accuracy/...`` as means
    over seeds, ``masking/<name>`` as the mean over seeds of :meth:`MaskingReport.flat`).
    """
    from ..data import load
    from ..training import TrainConfig

    s = settings
    bundle = load(s.dataset, **dict(s.dataset_kwargs))
    config = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr)
    models = train_family(bundle, s.architectures, s.regimes, s.seeds, config,
                          device=ctx.device)
    controls = train_family(bundle, {s.control_arch: s.architectures[s.control_arch]},
                            {"masked": s.control_regime}, s.seeds, config, device=ctx.device)
    test_x, test_y = bundle.test.x, bundle.test.y
    eval_x, eval_y = test_x[:s.n_eval_points], test_y[:s.n_eval_points]
    clean = clean_accuracy_table(models, test_x, test_y)
    control_clean = clean_accuracy_table(controls, test_x, test_y)

    surfaces = _surfaces(models, test_x, test_y, s)

    cx, cy = test_x[:s.n_crossing_points], test_y[:s.n_crossing_points]
    crossing_models = {k: m for k, m in models.items()
                       if k[1] in (s.natural_regime, *s.robust_regimes)}
    crossings = crossing_table(crossing_models, cx, cy, n_random=s.n_random_directions,
                               max_step=s.max_step, n_grid=s.crossing_grid,
                               n_bisect=CROSSING_BISECTIONS, clip=s.clip_inputs,
                               seed=MEASUREMENT_SEED)

    per_point = psi_table(models, eval_x, eps_values=s.eps_grid,
                          restarts_values=s.psi_restarts, steps=s.psi_steps,
                          seed=MEASUREMENT_SEED)
    grid = psi_subset_scores(per_point, [s.psi_subset_points, s.n_eval_points])
    acc_grid = adversarial_accuracy_table(models, eval_x, eval_y, eps_values=s.eps_grid,
                                          pgd_steps=s.acc_pgd_steps, seed=MEASUREMENT_SEED)
    eps = round(s.eps, 6)
    psi = PsiRecords(grid=grid, accuracy_grid=acc_grid,
                     base=_at(grid, eps=eps, restarts=s.psi_restarts[0],
                              n_points=min(s.n_eval_points, len(eval_x))),
                     pgd_accuracy=_at(acc_grid, attack="pgd", eps=eps,
                                      steps=s.acc_pgd_steps[-1]))

    def timed_psi(x: torch.Tensor) -> pd.DataFrame:
        t = psi_table(models, x, eps_values=[s.eps], restarts_values=s.psi_restarts[:1],
                      steps=s.psi_steps, seed=MEASUREMENT_SEED)
        return t.rename(columns={"psi_mean": "score"})[[*MODEL_COLS, "score", "seconds"]]

    subset, full = timed_psi(test_x[:s.psi_subset_points]), timed_psi(test_x)
    cost = CostRecords(subset=subset, full=full,
                       subset_seconds=subset.groupby("seed").seconds.sum().to_dict(),
                       grid_seconds=acc_grid.groupby("seed").seconds.sum().to_dict(),
                       n_subset_points=min(s.psi_subset_points, len(test_x)))

    sx, sy = test_x[:s.n_sharpness_points], test_y[:s.n_sharpness_points]
    n_layers = max(len(L.parametric_layers(m)) for m in models.values())
    rescaling = rescaling_table(models, sx, sy, eps=s.eps, c=s.rescale_c,
                                layers=sorted({s.rescale_layer, *range(n_layers - 1)}),
                                psi_steps=s.psi_steps, radius=s.sharpness_radius,
                                n_samples=s.sharpness_samples, seed=MEASUREMENT_SEED)

    masking = tuple(gradient_masking_report(
        controls[(s.control_arch, "masked", seed)], models[(s.control_arch, s.natural_regime,
                                                            seed)],
        eval_x, eval_y, eps=s.eps, steps=s.acc_pgd_steps[-1], psi_steps=s.psi_steps,
        seed=MEASUREMENT_SEED) for seed in s.seeds)

    records = Records(
        data=DataSummary(name=bundle.name, n_train=len(bundle.train.y), n_test=len(test_y),
                         input_shape=tuple(int(v) for v in bundle.input_shape),
                         n_models=len(models), n_controls=len(controls)),
        clean_accuracy=clean, control_accuracy=control_clean, surfaces=surfaces,
        crossings=crossings, crossing_summary=crossing_ratio_summary(crossings,
                                                                     max_step=s.max_step),
        psi=psi, cost=cost, rescaling=rescaling, masking=masking)
    _record_metrics(records, ctx)
    return records


def _record_metrics(records: Records, ctx) -> None:
    acc = pd.concat([records.control_accuracy, records.clean_accuracy])
    for (arch, reg), v in acc.groupby(["arch", "regime"], sort=False).accuracy.mean().items():
        ctx.record_metric(f"clean_accuracy/{arch}/{reg}", v)
    for (arch, reg), row in _psi_vs_pgd(records).iterrows():
        ctx.record_metric(f"psi/{arch}/{reg}", row.score)
        ctx.record_metric(f"pgd_accuracy/{arch}/{reg}", row.accuracy)
    for name, v in masking_means(records).items():
        ctx.record_metric(f"masking/{name}", v)


# ============================================================================ tables shown


def _psi_vs_pgd(records: Records) -> pd.DataFrame:
    merged = records.psi.base.merge(records.psi.pgd_accuracy, on=list(MODEL_COLS))
    return merged.groupby(["arch", "regime"])[["score", "accuracy"]].mean()


def table_clean_accuracy(records: Records) -> pd.DataFrame:
    """Clean test accuracy, mean over seeds: one row per architecture, a column per regime."""
    return records.clean_accuracy.pivot_table(index="arch", columns="regime", values="accuracy")


def table_crossings(records: Records) -> pd.DataFrame:
    """Median crossing steps, their ratio and the censored fraction, mean over seeds."""
    return records.crossing_summary.groupby(["arch", "regime"])[
        ["adv_median", "rand_median", "ratio_median", "rand_censored"]].mean()


def table_psi_vs_accuracy(records: Records, settings: Settings) -> pd.DataFrame:
    """psi at the base setting and PGD accuracy at the same eps, mean over seeds."""
    return _psi_vs_pgd(records).rename(columns={
        "score": f"psi(eps={settings.eps})",
        "accuracy": f"PGD-{settings.acc_pgd_steps[-1]} accuracy"})


def table_rescaling(records: Records) -> pd.DataFrame:
    """Median psi change and sharpness before and after rescaling, per architecture and
    layer."""
    return records.rescaling.groupby(["arch", "layer"])[
        ["psi_rel_change", "sharpness", "sharpness_rescaled", "sharpness_factor"]].median()


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
    median ``d_adv`` crossing steps (robust / natural, same architecture and seed) has a
    log-scale interval above 1."""
    summary = records.crossing_summary
    rule = Rule("greater", 1.0)
    decisions = []
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
    if not decisions:
        raise ValueError("no (natural, robust) pairs found in the crossing summary")
    return claim_over_conditions(
        "robust_training_widens_margin",
        "PGD-trained models cross the decision boundary along d_adv at a larger step than "
        "natural models of the same architecture (ratio > 1 per pair)", decisions)


def claim_metric_tracks_adversarial_accuracy(records: Records, settings: Settings) -> Claim:
    """Across the models, Spearman rho between psi at the base setting and PGD accuracy, one
    rho per seed, has a Fisher-z interval at or below ``settings.rho_threshold``."""
    threshold = settings.rho_threshold
    rho = rank_agreement_per_seed(records.psi.base, records.psi.pgd_accuracy, value_a="score",
                                  value_b="accuracy")
    d = decide_condition("all models", fisher_z_interval(_per_seed(rho)),
                         Rule("at_most", threshold))
    return claim_over_conditions(
        "metric_tracks_adversarial_accuracy",
        f"Across all models, Spearman rho between psi and PGD accuracy <= {threshold:g}", [d])


def claim_metric_stable_across_settings(records: Records, settings: Settings) -> Claim:
    """The psi ranking is stable across metric settings (mean pairwise Kendall tau, Fisher-z
    interval over seeds, >= ``settings.stability_tau_threshold``) and at least as stable as the
    ranking by adversarial accuracy across attack settings (paired difference of the taus
    >= 0)."""
    threshold = settings.stability_tau_threshold
    psi_grid, acc_grid = records.psi.grid, records.psi.accuracy_grid
    tau_psi = ranking_stability_per_seed(psi_grid, setting_cols=list(PSI_SETTINGS),
                                         value_col="score")
    tau_acc = ranking_stability_per_seed(acc_grid, setting_cols=list(ATTACK_SETTINGS),
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
                 "n_psi_settings": int(psi_grid[list(PSI_SETTINGS)].drop_duplicates().shape[0]),
                 "n_accuracy_settings": int(acc_grid[list(ATTACK_SETTINGS)]
                                            .drop_duplicates().shape[0])})


def claim_metric_cheaper_than_adversarial_testing(records: Records, settings: Settings) -> Claim:
    """psi on a subset of points ranks the models like psi on the full test set (Kendall tau,
    Fisher-z interval, >= ``settings.subset_tau_threshold``) in less wall time than the
    adversarial-accuracy grid (time ratio, log-scale interval, < 1)."""
    threshold, cost = settings.subset_tau_threshold, records.cost
    tau = rank_agreement_per_seed(cost.subset, cost.full, value_a="score", value_b="score",
                                  method="kendall")
    seeds = sorted(set(tau) & set(cost.subset_seconds) & set(cost.grid_seconds))
    ratios = _positive([cost.subset_seconds[s] / cost.grid_seconds[s] for s in seeds],
                       "time ratios")
    decisions = [
        decide_condition("tau(subset, full)", fisher_z_interval([tau[s] for s in seeds]),
                         Rule("at_least", threshold)),
        decide_condition("time psi-subset / accuracy grid", log_ratio_interval(ratios),
                         Rule("less", 1.0)),
    ]
    return claim_over_conditions(
        "metric_cheaper_than_adversarial_testing",
        f"psi on {cost.n_subset_points} points ranks the models like psi on the full test set "
        f"(Kendall tau >= {threshold:g}) in less wall time than the adversarial-accuracy grid",
        decisions,
        details={"psi_subset_seconds": [float(cost.subset_seconds[s]) for s in seeds],
                 "accuracy_grid_seconds": [float(cost.grid_seconds[s]) for s in seeds]})


def claim_metric_invariant_to_reparameterization(records: Records, settings: Settings) -> Claim:
    """With layer ``settings.rescale_layer`` rescaled by ``settings.rescale_c`` (the next by
    1/c), the largest relative psi change over the models (per seed; t-interval clipped at 0,
    as the change can be exactly 0) is <= ``settings.psi_tolerance``, and per architecture the
    median sharpness change factor (log-scale interval) is >
    ``settings.sharpness_factor_threshold``. Other layers in the table are reported in the
    details, not judged."""
    table, layer = records.rescaling, settings.rescale_layer
    tolerance, factor, c = (settings.psi_tolerance, settings.sharpness_factor_threshold,
                            settings.rescale_c)
    t = table[table.layer == layer]
    if t.empty:
        raise ValueError(f"no rows for layer {layer} in the rescaling table")
    psi = _per_seed(t.groupby("seed").psi_rel_change.max().to_dict())
    decisions = [decide_condition("psi: largest relative change",
                                  t_interval(psi, bounds=(0.0, None)),
                                  Rule("at_most", tolerance))]
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
        f"Rescaling a ReLU layer by c={c:g} (next layer by 1/c) leaves psi unchanged within "
        f"{tolerance:.0%} while weight-space sharpness changes by more than "
        f"{factor:g}x", decisions, details={"layer": layer, "other_layers": other})


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
    """Figure: psi (log scale) against PGD accuracy, one point per model and seed, colour =
    regime, marker = architecture; the title gives the mean Spearman rho over seeds."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from ..core.formatting import fmt

    rho = rank_agreement_per_seed(records.psi.base, records.psi.pgd_accuracy, value_a="score",
                                  value_b="accuracy")
    df = records.psi.base.merge(records.psi.pgd_accuracy, on=list(MODEL_COLS))
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    sns.scatterplot(data=df, x="accuracy", y="score", hue="regime", style="arch", s=60, ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("PGD accuracy")
    ax.set_ylabel("psi (mean max KL; lower = more robust)")
    ax.set_title(f"psi vs PGD accuracy at eps={settings.eps} "
                 f"(mean rho {fmt(float(np.mean(list(rho.values()))), sig=2)})")
    ax.legend(fontsize="x-small", loc="best")
    fig.tight_layout()
    return fig


def figure_ranking_stability(records: Records, *, seed: int):
    """Figure: the rank of each model (1 = most robust) under every psi setting (left) and
    every adversarial-accuracy setting (right), for one seed."""
    import matplotlib.pyplot as plt

    short = {"eps": "eps", "restarts": "r", "n_points": "n", "attack": "", "steps": "k"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, df, cols, col, asc, name in (
            (axes[0], records.psi.grid, list(PSI_SETTINGS), "score", True, "psi"),
            (axes[1], records.psi.accuracy_grid, list(ATTACK_SETTINGS), "accuracy", False,
             "adversarial accuracy")):
        g = df[df.seed == seed].copy()
        g["model"] = g.arch + "/" + g.regime
        g["setting"] = g[cols].apply(lambda r, cols=cols: " ".join(
            f"{short[c]}={r[c]:g}" if short[c] else str(r[c]) for c in cols), axis=1)
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
    axes[1].legend(fontsize="x-small", bbox_to_anchor=(1.02, 1), loc="upper left")
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
