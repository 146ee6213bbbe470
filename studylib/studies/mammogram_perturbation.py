"""Study 02 (Oleszkiewicz, Makino, Jastrzebski et al., 2020): a screening classifier under four
perturbations, and what low-pass filtering does to microcalcifications.

:func:`run` trains one classifier per seed (``studylib.techniques.perturbations``'
``screening_classifier``), scores the test images under every level of Gaussian noise, a Fourier
low-pass, a Fourier high-pass and PGD, measures the contrast-to-noise ratio (CNR) of every
calcification speck and mass under low-pass filtering, and retrains on low-pass filtered images.
It returns typed :class:`Records`; one function per claim decides it with ``studylib.stats``.
Masses are measured by a centre-surround d' against lesion-free images
(``perturbations.npw_dprime``), the visibility index suited to their 1/f^3 background, and the
phantom's mass contrast is calibrated from :func:`mass_visibility`'s table.

- every AUC-based quantity is a statistic of test images measured within each seed, so its
  interval is a hierarchical bootstrap (seeds, then images within each drawn seed, the clean and
  perturbed scores of an image resampled together): an AUC lies in [0, 1], an AUC drop in
  [-1, 1], a difference of two drops in [-2, 2], and a percentile interval of replicates of such
  a statistic stays inside that range. One seed holds no training variation, so with fewer than
  two seeds the interval is left undefined and the claim is inconclusive (as the earlier rule,
  which also needed an interval over seeds);
- the share of detectable specks (or masses) that stay detectable is a property of the images,
  not of the models: its interval is a bootstrap over images (the objects of one image resampled
  together), inside [0, 1].

The figure functions take the records; the ``*_table`` functions return the text the notebook
prints, every number through :func:`studylib.core.formatting.fmt`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.formatting import fmt
from ..core.settings import StudySettings
from ..stats import (
    Claim,
    Interval,
    Rule,
    Verdict,
    bootstrap_auc,
    claim_over_conditions,
    decide_condition,
    hierarchical_bootstrap,
    in_every_condition,
    in_some_group,
    make_claim,
    percentile_interval,
    roc_auc,
    wilson_interval,
)
from ..techniques import perturbations as P

STUDY = "02_mammogram_perturbation"
#: perturbation -> (claim id, what it is, axis label of the figures)
PERTURBATIONS = {
    "gaussian_noise": ("sensitive_to_gaussian_noise", "Gaussian noise",
                       "noise std / dynamic range"),
    "lowpass": ("sensitive_to_lowpass", "a Gaussian low-pass filter", "low-pass r / Nyquist"),
    "highpass": ("sensitive_to_highpass", "a Gaussian high-pass filter (renormalised)",
                 "high-pass r / Nyquist"),
    "pgd": ("sensitive_to_adversarial", "untargeted PGD", "PGD eps (L-inf)"),
}
CALCIFICATION, MASS = 1, 2  # lesion_type codes of the data sets
#: The visibility index of each lesion kind: the ring CNR for specks (small objects, for which
#: the ring's pixels are the background an observer sees them against), the centre-surround d'
#: against lesion-free images for masses (large objects on a 1/f^3 background).
_INDEX = {"specks": "CNR", "masses": "d'"}
# Natural ranges: an AUC or a share of objects, a difference of two AUCs, of two AUC drops.
AUC, SHARE, AUC_DIFFERENCE, DROP_DIFFERENCE = (0.0, 1.0), (0.0, 1.0), (-1.0, 1.0), (-2.0, 2.0)
# Seeds of the bootstrap resampling, one per analysis, fixed so a rerun gives the same interval.
_BOOT_SEED = {"gaussian_noise": 11, "lowpass": 12, "highpass": 13, "pgd": 14, "curves": 1,
              "specks": 2, "masses": 3, "subgroups": 4, "hurts": 5, "training": 6, "clean": 7}


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings(StudySettings):
    """The notebook's parameters that the study uses (names, types and defaults live in the
    parameters cell; :meth:`~studylib.core.settings.StudySettings.from_params` fills these)."""

    seeds: tuple[int, ...]
    dataset: str
    data_kwargs: Mapping[str, Any]
    image_size: int
    n_train: int
    n_test: int
    data_seed: int
    calc_contrast: float
    mass_contrast: float
    mass_texture: float
    visibility_contrasts: tuple[float, ...]
    visibility_seed: int
    visibility_target: float
    n_background_images: int
    pool: int
    stem_channels: int
    widths: tuple[int, ...]
    epochs: int
    batch_size: int
    lr: float
    noise_levels: tuple[float, ...]
    lowpass_levels: tuple[float, ...]
    highpass_levels: tuple[float, ...]
    pgd_eps: tuple[float, ...]
    pgd_steps: int
    n_pgd: int
    cnr_threshold: float
    calc_ring: tuple[int, ...]
    mass_ring: tuple[int, ...]
    n_cnr_images: int
    ssim_min: float
    psnr_min: float
    sensitivity_min_drop: float
    retrain_levels: tuple[float, ...]
    retrain_seeds: int
    n_boot: int
    retained_share: float
    mass_recovery_margin: float
    calc_gap_min: float

    @property
    def grids(self) -> dict[str, tuple[float, ...]]:
        """Perturbation name -> its levels (without the clean level)."""
        return {"gaussian_noise": self.noise_levels, "lowpass": self.lowpass_levels,
                "highpass": self.highpass_levels, "pgd": self.pgd_eps}


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SeedScores:
    """One seed's classifiers: positive-class probabilities on the test images.

    Attributes:
        seed: the model seed.
        clean: (N,) the clean-trained model on the clean test images.
        perturbed: perturbation name -> (L, N_p) the same model under each level of its grid
            (PGD attacks the first ``n_pgd`` images only, so ``N_p = n_pgd`` there).
        clean_model_filtered: (R, N) the clean-trained model on low-pass filtered test images,
            one row per level of ``retrain_levels``; None for a seed not retrained (only the
            first ``retrain_seeds`` seeds are).
        filtered_model_filtered: (R, N) per retraining level, a model retrained on training
            images low-pass filtered at that level, on the test images filtered alike; None
            for a seed not retrained.
    """

    seed: int
    clean: np.ndarray
    perturbed: Mapping[str, np.ndarray]
    clean_model_filtered: np.ndarray | None
    filtered_model_filtered: np.ndarray | None


@dataclass(frozen=True)
class ObjectLevel:
    """Objects of one lesion type under one low-pass level.

    Attributes:
        r_fraction: the low-pass radius as a fraction of Nyquist.
        kept: (M,) per analysed image, the objects detectable unfiltered that are still
            detectable after the filter.
        median_cnr: median CNR of all the objects after the filter.
        ssim_mean, psnr_mean: whole-image SSIM and PSNR of these images against the
            unfiltered ones (for the figure).
    """

    r_fraction: float
    kept: np.ndarray
    median_cnr: float
    ssim_mean: float
    psnr_mean: float


@dataclass(frozen=True)
class LesionObjects:
    """The calcification specks (or the masses) of the analysed test images.

    Attributes:
        kind: ``"specks"`` or ``"masses"``.
        image_index: (M,) indices of the analysed test images.
        cnr_clean: the visibility index of every object unfiltered (`_INDEX`: the ring CNR for
            specks, d' for masses; the `*cnr*` names are kept for both).
        detectable: (M,) per image, the objects detectable unfiltered (CNR >= threshold).
        levels: one :class:`ObjectLevel` per low-pass level, in ``lowpass_levels`` order.
    """

    kind: str
    image_index: np.ndarray
    cnr_clean: np.ndarray
    detectable: np.ndarray
    levels: tuple[ObjectLevel, ...]

    @property
    def n_objects(self) -> int:
        return int(self.cnr_clean.size)

    @property
    def detectable_fraction(self) -> float:
        """Share of all objects detectable unfiltered (nan with no objects)."""
        return float(self.detectable.sum() / self.n_objects) if self.n_objects else math.nan


@dataclass(frozen=True)
class ZoomIns:
    """Crops around calcification clusters, unfiltered and at every other low-pass level."""

    crops: tuple[tuple[np.ndarray, ...], ...]
    col_titles: tuple[str, ...]
    row_titles: tuple[str, ...]


@dataclass(frozen=True)
class Records:
    """Everything the claims, tables and figures of study 02 read.

    Attributes:
        dataset, train_shape, test_shape: what was loaded.
        y: (N,) test labels (1 = lesion present); lesion_type: (N,) 0 none, 1 calcification,
            2 mass (all 0 when the data set has no lesion types).
        grids: perturbation name -> levels (without the clean level).
        seeds: one :class:`SeedScores` per model seed.
        lowpass_ssim: mean whole-image SSIM of the analysed images at each low-pass level (the
            gate that says which levels are mild).
        specks, masses: the lesion objects, or None when the data set has no lesion masks.
        retrain_levels: the low-pass levels of the retraining (rows of the seeds'
            ``*_filtered`` scores).
        visibility: the mass-contrast calibration table (:func:`mass_visibility`; empty for a
            data set other than the phantoms).
        example_rows: perturbation -> one test image at each level, clean first (the figure).
        zoom: crops for the zoom-in figure, or None.
        budget: perturbation -> per level (mildest first) the mean (SSIM, PSNR in dB) of the
            perturbed against the clean test images (the first ``n_cnr_images``; PGD: the
            first seed's adversarial images of the scores, the first ``n_pgd``): the perceptual
            budget of the ``sensitive_to_*`` claims.
    """

    dataset: str
    train_shape: tuple[int, ...]
    test_shape: tuple[int, ...]
    y: np.ndarray
    lesion_type: np.ndarray
    grids: Mapping[str, tuple[float, ...]]
    seeds: tuple[SeedScores, ...]
    lowpass_ssim: tuple[float, ...]
    specks: LesionObjects | None
    masses: LesionObjects | None
    retrain_levels: tuple[float, ...]
    example_rows: Mapping[str, tuple[np.ndarray, ...]] = dataclasses.field(default_factory=dict)
    zoom: ZoomIns | None = None
    budget: Mapping[str, tuple[tuple[float, float], ...]] = dataclasses.field(default_factory=dict)
    visibility: tuple[VisibilityRow, ...] = ()

    def scores(self, name: str) -> np.ndarray:
        """(L + 1, S, N_p) probabilities under perturbation ``name``, level 0 = clean."""
        n = self.seeds[0].perturbed[name].shape[1]
        return np.stack([np.stack([s.clean[:n]] + list(s.perturbed[name])) for s in self.seeds],
                        axis=1)

    def subgroup(self, lesion_type: int) -> np.ndarray:
        """Labels for "positives of ``lesion_type`` vs all negatives" (others -1, left out)."""
        return P.subgroup_labels(self.y, self.lesion_type, lesion_type)


# ----------------------------------------------------------------------------- run


def run(settings: Settings, ctx) -> Records:
    """Train, perturb, measure; record the study's metrics in ``ctx``; return the records.

    The steps and their seeds are those of the notebook before the claims moved here: one
    classifier per seed on clean images, its probabilities under every perturbation level (noise
    seeded by ``data_seed``, PGD against each seed's own model), the CNR of every speck and the
    d' of every mass (against ``n_background_images`` test negatives) of the first
    ``n_cnr_images`` lesion images of each type under each low-pass level, the mass-contrast
    calibration table (phantoms only), and for each of the first ``retrain_seeds`` seeds one
    classifier per level of ``retrain_levels`` retrained on images low-pass filtered there.
    """
    from .. import data
    from ..training import TrainConfig, fit

    s = settings
    if s.dataset == "mammo_phantom":
        bundle = data.load("mammo_phantom", n_train=s.n_train, n_test=s.n_test,
                           image_size=s.image_size, calc_contrast=s.calc_contrast,
                           mass_contrast=s.mass_contrast, mass_texture=s.mass_texture,
                           seed=s.data_seed, **dict(s.data_kwargs))
    else:
        bundle = data.load(s.dataset, image_size=s.image_size, **dict(s.data_kwargs))
    train, test = bundle.train, bundle.test
    # without lesion types every positive counts as type 0 (no subgroup analysis possible)
    lesion_type = np.asarray(test.extras.get("lesion_type", np.zeros(len(test), dtype=np.int64)))
    has_objects = "mask" in test.extras and ("specks" in test.extras or "calc_mask" in test.extras)
    config = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr)
    in_ch, size = bundle.input_shape[0], bundle.input_shape[1]

    def classifier(seed: int):
        return P.screening_classifier(in_channels=in_ch, image_size=size, pool=s.pool,
                                      stem_channels=s.stem_channels, widths=s.widths, seed=seed)

    models = [fit(classifier(seed), bundle, config, seed=seed, device=ctx.device,
                  desc=f"train seed {seed}") for seed in s.seeds]
    grids = {k: tuple(v) for k, v in s.grids.items()}
    example = int(np.flatnonzero(lesion_type == CALCIFICATION)[0]) \
        if (lesion_type == CALCIFICATION).any() else 0
    x_ex, y_ex = test.x[example:example + 1], test.y[example:example + 1]
    rows = {name: tuple(P.perturb(name, x_ex, lvl, model=models[0], y=y_ex,
                                  pgd_steps=s.pgd_steps, device=ctx.device)[0, 0].numpy()
                        for lvl in [None] + list(levels))
            for name, levels in grids.items()}
    adversarial: dict[float, Any] = {}
    scores = P.sensitivity_scores(models, test.x, test.y, grids, pgd_steps=s.pgd_steps,
                                  pgd_subset=s.n_pgd, device=ctx.device, seed=s.data_seed,
                                  first_model_pgd=adversarial)

    specks = masses = None
    if has_objects:
        specks = _lesion_objects(test, "calcification", "specks", s.calc_ring, s, _BOOT_SEED["specks"])
        masses = _lesion_objects(test, "mass", "masses", s.mass_ring, s, _BOOT_SEED["masses"],
                                 backgrounds=_backgrounds(test, s.n_background_images))
        ssim_images = test.x[np.r_[specks.image_index, masses.image_index]]
    else:
        ssim_images = test.x[:s.n_cnr_images]
    lowpass_ssim = tuple(float(P.ssim_psnr(ssim_images, P.perturb("lowpass", ssim_images, lvl))[0]
                               .mean()) for lvl in s.lowpass_levels)
    zoom = _zoom_ins(test, specks, s) if specks is not None else None
    budget = _perceptual_budget(test, grids, adversarial, s)

    visibility = mass_visibility(s) if s.dataset == "mammo_phantom" else ()

    # retraining: per level of retrain_levels, one model per retrained seed (the first
    # retrain_seeds) on filtered training images
    n_re = min(int(s.retrain_seeds), len(s.seeds))
    clean_f = np.zeros((n_re, len(s.retrain_levels), len(test)))
    retrained_f = np.zeros_like(clean_f)
    for j, level in enumerate(s.retrain_levels):
        filtered_train = type(train)(x=P.perturb("lowpass", train.x, level), y=train.y)
        x_test_f = P.perturb("lowpass", test.x, level)
        for k, (seed, m) in enumerate(zip(s.seeds[:n_re], models[:n_re], strict=True)):
            fm = fit(classifier(seed), filtered_train, config, seed=seed, device=ctx.device,
                     desc=f"filtered r={level:g} seed {seed}")
            clean_f[k, j] = P.positive_probability(m, x_test_f, device=ctx.device)
            retrained_f[k, j] = P.positive_probability(fm, x_test_f, device=ctx.device)
        del filtered_train
    per_seed = tuple(
        SeedScores(seed=seed, clean=scores["gaussian_noise"][0, k],
                   perturbed={name: scores[name][1:, k] for name in grids},
                   clean_model_filtered=clean_f[k] if k < n_re else None,
                   filtered_model_filtered=retrained_f[k] if k < n_re else None)
        for k, seed in enumerate(s.seeds))
    records = Records(dataset=s.dataset, train_shape=tuple(train.x.shape),
                      test_shape=tuple(test.x.shape), y=test.y.numpy(), lesion_type=lesion_type,
                      grids=grids, seeds=per_seed, lowpass_ssim=lowpass_ssim, specks=specks,
                      masses=masses, retrain_levels=tuple(float(v) for v in s.retrain_levels),
                      example_rows=rows, zoom=zoom, budget=budget, visibility=visibility)
    for name, value in metrics(records).items():
        ctx.record_metric(name, value)
    return records


def _perceptual_budget(test, grids: Mapping[str, Sequence[float]], adversarial: Mapping[float, Any],
                       s: Settings) -> dict[str, tuple[tuple[float, float], ...]]:
    """Mean SSIM and PSNR (dB) of each perturbation level against the clean test image, on the
    first ``n_cnr_images`` test images (the reference the classifier is scored against: the
    phantom keeps no noise-free render); for PGD the first seed's adversarial images of the
    scores (``adversarial``: eps -> the first ``n_pgd`` images), not a second attack."""
    n = min(int(s.n_cnr_images), len(test))
    x = test.x[:n]
    out = {}
    for name, levels in grids.items():
        per = []
        for lvl in levels:
            if name == "pgd":
                xp = adversarial[float(lvl)]
                ssim, psnr = P.ssim_psnr(test.x[:xp.shape[0]], xp)
            else:
                ssim, psnr = P.ssim_psnr(x, P.perturb(name, x, lvl, seed=s.data_seed))
            per.append((float(ssim.mean()), float(np.mean(np.minimum(psnr, 100.0)))))
        out[name] = tuple(per)
    return out


def _lesion_objects(test, lesion: str, kind: str, ring: Sequence[int], s: Settings,
                    boot_seed: int, backgrounds=None) -> LesionObjects:
    """The objects of the first ``n_cnr_images`` images of one lesion type under every
    low-pass level: the ring CNR, or with ``backgrounds`` (lesion-free images) the d'
    (:func:`~studylib.techniques.perturbations.npw_dprime`)."""
    idx, regions = P.lesion_regions(test, lesion, gap=ring[0], width=ring[1])
    idx, regions = idx[:s.n_cnr_images], regions[:s.n_cnr_images]
    vis = P.lowpass_object_visibility(test.x[idx], regions, s.lowpass_levels,
                                      threshold=s.cnr_threshold, n_boot=s.n_boot, seed=boot_seed,
                                      backgrounds=backgrounds)
    levels = tuple(ObjectLevel(r_fraction=d["r_fraction"], kept=np.asarray(d["kept_per_image"]),
                               median_cnr=d["median_cnr"], ssim_mean=d["ssim_mean"],
                               psnr_mean=d["psnr_mean"]) for d in vis["per_r"])
    return LesionObjects(kind=kind, image_index=np.asarray(idx), cnr_clean=np.asarray(vis["cnr_clean"]),
                         detectable=np.asarray(vis["detectable_per_image"]), levels=levels)


def _zoom_ins(test, specks: LesionObjects, s: Settings) -> ZoomIns | None:
    """Crops around the first three calcification clusters, unfiltered and at every other
    low-pass level, on one grey scale per row."""
    levels = list(s.lowpass_levels[::2])
    crops, titles = [], []
    h, w = test.x.shape[-2:]
    half = max(8, s.image_size // 8)
    for i in specks.image_index[:3]:
        i = int(i)
        sp = np.asarray(test.extras["specks"][i]) if "specks" in test.extras else None
        cy, cx = sp[:, :2].mean(0) if sp is not None and len(sp) else np.array([h, w]) / 2
        y0 = int(np.clip(round(cy) - half, 0, h - 2 * half))
        x0 = int(np.clip(round(cx) - half, 0, w - 2 * half))
        imgs = [test.x[i:i + 1]] + [P.perturb("lowpass", test.x[i:i + 1], lvl) for lvl in levels]
        crops.append(tuple(im[0, 0, y0:y0 + 2 * half, x0:x0 + 2 * half].numpy() for im in imgs))
        titles.append(f"test image {i}")
    if not crops:
        return None
    return ZoomIns(tuple(crops), tuple(["unfiltered"] + [f"r = {v:g} Nyq" for v in levels]),
                   tuple(titles))


# ----------------------------------------------------------------------------- visibility


@dataclass(frozen=True)
class VisibilityRow:
    """Visibility of one lesion type at one contrast, unfiltered (the calibration table).

    Attributes:
        kind: ``"masses"`` or ``"specks"``; contrast: the generator's mean amplitude.
        n_objects: objects measured; share: Wilson interval of the share with d' >= threshold
            (each object counted once: one mass per image; specks of an image are correlated,
            so for specks the interval is only indicative); median_dprime: median
            :func:`~studylib.techniques.perturbations.npw_dprime`; share_cnr, median_cnr: the
            same with the ring CNR, for comparison.
    """

    kind: str
    contrast: float
    n_objects: int
    share: Interval
    median_dprime: float
    share_cnr: float
    median_cnr: float


def _backgrounds(test, n: int) -> Any:
    """The first ``n`` lesion-free test images: the ensemble of the mass d'."""
    lt = np.asarray(test.extras["lesion_type"])
    return test.x[np.flatnonzero(lt == 0)[:n]]


def lesion_visibility(x, regions, backgrounds, threshold: float, kind: str,
                      contrast: float) -> VisibilityRow:
    """One :class:`VisibilityRow` from images, their object regions and lesion-free images."""
    d = P.npw_dprime(x, regions, backgrounds)
    c = P.batch_cnr(x, regions)
    k = int(np.sum(d >= threshold))
    return VisibilityRow(kind, float(contrast), int(d.size), wilson_interval(k, int(d.size)),
                         float(np.nanmedian(d)), float(np.mean(c >= threshold)),
                         float(np.nanmedian(c)))


def mass_visibility(settings: Settings, contrasts: Sequence[float] | None = None,
                    *, image_size: int | None = None) -> tuple[VisibilityRow, ...]:
    """Visibility of phantom masses (and, as a check, specks) against the mass contrast.

    Phantoms of the calibration seed ``visibility_seed`` (not the study's data): for each
    contrast of ``visibility_contrasts``, ``n_cnr_images`` mass-only test images (the same
    backgrounds and mass geometry at every contrast, since the generator draws them before the
    amplitude), their d' against ``n_background_images`` lesion-free images of another stream;
    then the specks of as many calcification-only images at ``calc_contrast``. Both with the
    study's texture, rings and threshold. Nothing here depends on a model or a verdict.
    """
    from .. import data

    s = settings
    size = int(image_size or s.image_size)
    common = dict(n_train=1, image_size=size, calc_contrast=s.calc_contrast,
                  mass_texture=s.mass_texture)
    bg = data.load("mammo_phantom", n_test=s.n_background_images, lesion_fraction=0.0,
                   mass_contrast=s.mass_contrast, seed=s.visibility_seed + 1, **common).test.x
    rows = []
    for c in (s.visibility_contrasts if contrasts is None else contrasts):
        test = data.load("mammo_phantom", n_test=s.n_cnr_images, lesion_fraction=1.0,
                         calc_fraction=0.0, mass_contrast=float(c), seed=s.visibility_seed,
                         **common).test
        idx, regions = P.lesion_regions(test, "mass", gap=s.mass_ring[0], width=s.mass_ring[1])
        rows.append(lesion_visibility(test.x[idx], regions, bg, s.cnr_threshold, "masses", c))
    test = data.load("mammo_phantom", n_test=s.n_cnr_images, lesion_fraction=1.0,
                     calc_fraction=1.0, mass_contrast=s.mass_contrast, seed=s.visibility_seed,
                     **common).test
    idx, regions = P.lesion_regions(test, "calcification", gap=s.calc_ring[0], width=s.calc_ring[1])
    rows.append(lesion_visibility(test.x[idx], regions, bg, s.cnr_threshold, "specks",
                                  s.calc_contrast))
    return tuple(rows)


def calibrated_contrast(rows: Sequence[VisibilityRow], target: float) -> float | None:
    """The smallest mass contrast whose share visible (d' >= threshold) is >= ``target``;
    None when no contrast of the table reaches it."""
    ok = [r.contrast for r in rows if r.kind == "masses" and r.share.estimate >= target]
    return min(ok) if ok else None


def mass_visibility_table(rows: Sequence[VisibilityRow], settings: Settings) -> str:
    """The calibration table as text: per contrast, share visible by d' (Wilson 95%) and by
    the ring CNR, medians; then the contrast the rule picks at this image size."""
    thr = fmt(settings.cnr_threshold)
    lines = [f"{'':7s}{'contrast':>9s}  n    visible d'>={thr} [95%]      median d'  "
             f"visible CNR>={thr}  median CNR"]
    for r in rows:
        lines.append(f"{r.kind:7s}{fmt(r.contrast):>9s}  {r.n_objects:<4d} {fmt(r.share.estimate):>5s} "
                     f"{fmt(list(r.share.ci95)):16s}  {fmt(r.median_dprime):>9s}  "
                     f"{fmt(r.share_cnr):>16s}  {fmt(r.median_cnr):>10s}")
    pick = calibrated_contrast(rows, settings.visibility_target)
    lines.append(f"smallest mass contrast with >= {fmt(settings.visibility_target)} visible: "
                 f"{fmt(pick) if pick is not None else 'none in the grid'} (this table's image "
                 f"size); the study uses mass_contrast = {fmt(settings.mass_contrast)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- statistics


def _auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for labels ``y`` (1 positive, 0 negative, -1 left out); nan when
    a resample holds no positive or no negative."""
    pos, neg = scores[y == 1], scores[y == 0]
    return roc_auc(neg, pos) if pos.size and neg.size else math.nan


def _has_both_classes(y: np.ndarray) -> bool:
    return bool((y == 1).any() and (y == 0).any())


def _over_seeds_and_images(per_seed: Sequence[np.ndarray], statistic: Callable[[np.ndarray], float],
                           *, bounds: tuple[float, float], n_boot: int, seed: int) -> Interval:
    """The seed mean of ``statistic`` (a function of one seed's image rows) with a hierarchical
    bootstrap interval over seeds, then images within each drawn seed.

    Each row holds one image's label(s) and scores, so the scores an image gets in the
    conditions compared (clean and perturbed, or two models of one seed) are resampled together.
    With fewer than two seeds the interval is undefined: an interval over one seed's images holds
    the test-set variation only, not the training variation a claim about the classifier needs.
    ``bounds`` is the statistic's natural range ((0, 1) for an AUC, (-1, 1) for a drop).
    """
    if len(per_seed) < 2:
        values = tuple(float(statistic(g)) for g in per_seed)
        return Interval(float(np.mean(values)), math.nan, math.nan,
                        f"hierarchical bootstrap over seeds x images: needs >= 2 seeds, has "
                        f"{len(per_seed)}", len(per_seed), values, math.nan, "bootstrap", bounds)
    return hierarchical_bootstrap(per_seed, statistic, n_boot=n_boot, seed=seed, bounds=bounds)


def _retained_interval(objects: LesionObjects, level: int, *, n_boot: int, seed: int) -> Interval:
    """Share of the objects detectable unfiltered that stay detectable at ``level``: a bootstrap
    over the images holding at least one (an image's objects are resampled together, as they
    share the background and the filter), inside [0, 1]."""
    keep = objects.detectable > 0
    if not keep.any():
        return Interval.undefined(f"no {objects.kind} detectable unfiltered", SHARE)
    rows = np.column_stack([objects.levels[level].kept[keep], objects.detectable[keep]])
    frac = float(rows[:, 0].sum() / rows[:, 1].sum())
    method = f"bootstrap over {int(keep.sum())} images ({objects.kind} of an image together)"
    if rows.shape[0] < 2:
        return Interval(frac, math.nan, math.nan, method, 1, (frac,), math.nan, "bootstrap", SHARE)
    iv = hierarchical_bootstrap([rows], lambda r: float(r[:, 0].sum() / r[:, 1].sum()),
                                n_boot=n_boot, seed=seed, bounds=SHARE)
    return dataclasses.replace(iv, method=method)


def _drop(rows: np.ndarray) -> float:
    """AUC(clean) - AUC(perturbed) of one seed's rows ``[y, clean, perturbed]``."""
    return _auc(rows[:, 0], rows[:, 1]) - _auc(rows[:, 0], rows[:, 2])


def _gain(rows: np.ndarray) -> float:
    """AUC(second score) - AUC(first score) of rows ``[y, first, second]``."""
    return -_drop(rows)


def _drop_difference(rows: np.ndarray) -> float:
    """(calcification AUC drop) - (mass AUC drop) of rows ``[y_calc, y_mass, clean, pert]``."""
    return (_drop(rows[:, [0, 2, 3]]) - _drop(rows[:, [1, 2, 3]]))


def mild_levels(records: Records, settings: Settings) -> list[int]:
    """Indices of the low-pass levels whose mean whole-image SSIM is >= ``ssim_min``."""
    return [i for i, v in enumerate(records.lowpass_ssim) if v >= settings.ssim_min]


def r_star_index(records: Records, settings: Settings) -> int | None:
    """The strongest mild low-pass level (smallest r with SSIM >= ``ssim_min``), chosen from the
    images alone before any AUC is looked at; None when no level is mild."""
    mild = mild_levels(records, settings)
    return min(mild, key=lambda i: settings.lowpass_levels[i]) if mild else None


def budget_index(records: Records, settings: Settings, name: str) -> int | None:
    """The strongest level of perturbation ``name`` inside the perceptual budget: the last level
    (grids run mildest first) whose mean SSIM against the clean images is >= ``ssim_min`` or
    whose mean PSNR is >= ``psnr_min``, every milder level inside it too; None when the mildest
    level is already outside it or the budget was not measured."""
    per = records.budget.get(name)
    if not per:
        return None
    k = None
    for i, (ssim, psnr) in enumerate(per):
        if not (ssim >= settings.ssim_min or psnr >= settings.psnr_min):
            break
        k = i
    return k


def _inconclusive(claim_id: str, statement: str, rule: Rule, reason: str,
                  bounds: tuple[float, float], details: Mapping[str, Any] | None = None) -> Claim:
    """A claim with nothing to decide: inconclusive, with ``reason`` as its power line."""
    claim = make_claim(claim_id, statement, Interval.undefined(reason, bounds), rule,
                       details={"reason": reason, **dict(details or {})})
    return dataclasses.replace(claim, power=reason)


# ----------------------------------------------------------------------------- claims


def _claim_sensitive(records: Records, settings: Settings, name: str) -> Claim:
    """At the perceptual budget of perturbation ``name`` (:func:`budget_index`, fixed by SSIM and
    PSNR of the images before any AUC is looked at), the AUC drop exceeds
    ``sensitivity_min_drop``: hierarchical bootstrap over seeds and images (the clean and
    perturbed score of an image together). Not reproduced when the interval lies at or below it
    (a classifier insensitive within the budget)."""
    claim_id, what, _ = PERTURBATIONS[name]
    n = records.seeds[0].perturbed[name].shape[1]
    y = records.y[:n]
    delta = settings.sensitivity_min_drop
    statement = (f"within a perceptual budget (mean SSIM >= {settings.ssim_min:g} or PSNR >= "
                 f"{settings.psnr_min:g} dB against the clean image), {what} at its strongest such level "
                 f"lowers AUC by more than {delta:g} (interval over seeds and test images)")
    rule = Rule("greater", delta)
    i = budget_index(records, settings, name)
    if i is None:
        return _inconclusive(claim_id, statement, rule,
                             "no level of the grid stays inside the perceptual budget "
                             "(or the budget was not measured)", AUC_DIFFERENCE,
                             {"budget": [list(v) for v in records.budget.get(name, ())]})
    level = records.grids[name][i]
    if not _has_both_classes(y):
        return _inconclusive(claim_id, statement, rule, "the test images hold one class only",
                             AUC_DIFFERENCE)
    rows = [np.column_stack([y, s.clean[:n], s.perturbed[name][i]]) for s in records.seeds]
    iv = _over_seeds_and_images(rows, _drop, bounds=AUC_DIFFERENCE, n_boot=settings.n_boot,
                                seed=_BOOT_SEED[name])
    d = decide_condition(f"{name} at {level:g} (budget)", iv, rule)
    ssim, psnr = records.budget[name][i]
    return claim_over_conditions(claim_id, statement, [d], details={
        "budget_level": level, "budget_ssim": ssim, "budget_psnr_db": psnr,
        "strongest_level": records.grids[name][-1], "n_images": int(n),
        "auc_clean": float(np.mean([_auc(y, s.clean[:n]) for s in records.seeds])),
        "auc_at_budget": float(np.mean([_auc(y, s.perturbed[name][i]) for s in records.seeds])),
        "dose_response_auc": [float(np.mean([_auc(y, s.clean[:n]) for s in records.seeds]))]
        + [float(np.mean([_auc(y, s.perturbed[name][j]) for s in records.seeds]))
           for j in range(len(records.grids[name]))],
        "flip_fraction": float(np.mean([P.flip_fraction(s.clean[:n], s.perturbed[name][i])
                                        for s in records.seeds]))})


def claim_sensitive_to_gaussian_noise(records: Records, settings: Settings) -> Claim:
    """The classifier's AUC falls under Gaussian noise within the perceptual budget."""
    return _claim_sensitive(records, settings, "gaussian_noise")


def claim_sensitive_to_lowpass(records: Records, settings: Settings) -> Claim:
    """The classifier's AUC falls under a low-pass filter within the perceptual budget."""
    return _claim_sensitive(records, settings, "lowpass")


def claim_sensitive_to_highpass(records: Records, settings: Settings) -> Claim:
    """The classifier's AUC falls under a high-pass filter within the perceptual budget."""
    return _claim_sensitive(records, settings, "highpass")


def claim_sensitive_to_adversarial(records: Records, settings: Settings) -> Claim:
    """The classifier's AUC falls under PGD within the perceptual budget (first n_pgd images)."""
    return _claim_sensitive(records, settings, "pgd")


def claim_lowpass_erases_microcalcifications(records: Records, settings: Settings) -> Claim:
    """At some low-pass level whose whole-image SSIM is >= ``ssim_min``, fewer than
    ``retained_share`` of the specks detectable unfiltered stay detectable (interval below it)
    while more than ``retained_share`` of the detectable masses do (interval above it).

    When no mass (or no speck) is detectable unfiltered the claim is inconclusive with that
    reason, as the rule states, whatever the other half shows: the claim is a contrast of the
    two. Otherwise, per mild level both halves must hold (a half that fails decides the level);
    over the mild levels, the claim holds at some level (:func:`in_some_group`). The intervals
    are bootstraps over images: CNR depends on the images, not on the models.
    """
    share = settings.retained_share
    statement = (f"at some low-pass r with whole-image SSIM >= {settings.ssim_min:g}, fewer than "
                 f"{share:g} of the specks detectable unfiltered (ring CNR >= "
                 f"{settings.cnr_threshold:g}) remain detectable, while more than {share:g} of the "
                 f"detectable masses (d' >= {settings.cnr_threshold:g} against lesion-free images) do")
    claim_id = "lowpass_erases_microcalcifications"
    speck_rule, mass_rule = Rule("less", share), Rule("greater", share)
    if records.specks is None or records.masses is None:
        return _inconclusive(claim_id, statement, speck_rule,
                             "the data set has no lesion masks: no CNR to measure", SHARE)
    mild = mild_levels(records, settings)
    if not mild:
        return _inconclusive(claim_id, statement, speck_rule,
                             f"no low-pass level keeps SSIM >= {settings.ssim_min:g}", SHARE,
                             {"ssim_by_level": list(records.lowpass_ssim)})
    for obj, other in ((records.masses, "speck"), (records.specks, "mass")):
        if not obj.detectable.any():
            finite = obj.cnr_clean[np.isfinite(obj.cnr_clean)]
            top = fmt(float(finite.max())) if finite.size else "n/a"
            noun = "mass" if obj is records.masses else "speck"
            reason = (f"no {noun} is detectable "
                      f"unfiltered (0 of {obj.n_objects}, largest CNR {top} < "
                      f"{settings.cnr_threshold:g}): the claim contrasts specks with masses, so "
                      f"without them it is inconclusive, whatever the {other} half shows")
            return _inconclusive(claim_id, statement, mass_rule if obj is records.masses
                                 else speck_rule, reason, SHARE, {
                                     "speck_detectable_unfiltered": records.specks.detectable_fraction,
                                     "mass_detectable_unfiltered": records.masses.detectable_fraction,
                                     "n_specks": records.specks.n_objects,
                                     "n_masses": records.masses.n_objects})
    groups = []
    for i in mild:
        r = settings.lowpass_levels[i]
        groups.append([
            decide_condition(f"r={r:g}: specks kept", _retained_interval(
                records.specks, i, n_boot=settings.n_boot, seed=_BOOT_SEED["specks"]), speck_rule),
            decide_condition(f"r={r:g}: masses kept", _retained_interval(
                records.masses, i, n_boot=settings.n_boot, seed=_BOOT_SEED["masses"]), mass_rule)])
    verdict, k = in_some_group(groups)
    levels = [{"r_fraction": settings.lowpass_levels[i], "ssim_mean": records.lowpass_ssim[i],
               "verdict": in_every_condition(g)[0].value,
               **{d.condition.split(": ")[1]: {"estimate": d.interval.estimate,
                                               "ci95": list(d.interval.ci95)} for d in g}}
              for i, g in zip(mild, groups, strict=True)]
    claim = claim_over_conditions(claim_id, statement, groups[k], details={
        "levels_with_ssim_above_min": levels,
        "speck_detectable_unfiltered": records.specks.detectable_fraction,
        "mass_detectable_unfiltered": records.masses.detectable_fraction,
        "n_specks": records.specks.n_objects, "n_masses": records.masses.n_objects,
        "note": "CNR is a property of the images, not of the models: intervals are over images"})
    assert claim.verdict == verdict, "the decisive level carries the claim's verdict"
    if verdict == Verdict.INCONCLUSIVE:
        undefined = [d.condition for d in groups[k] if not d.interval.defined]
        claim = dataclasses.replace(claim, power=(
            f"undecided: {', '.join(undefined)} has no interval (nothing detectable unfiltered)"
            if undefined else "more lesion images (n_cnr_images) would narrow the intervals"))
    return claim


def claim_lowpass_hurts_calcifications_more_than_masses(records: Records,
                                                        settings: Settings) -> Claim:
    """At r* (the strongest mild low-pass level, chosen from SSIM before any AUC), the AUC drop
    of calcification cases vs all negatives exceeds that of mass cases vs all negatives: the
    difference of the two drops, hierarchical bootstrap over seeds and images, is > 0."""
    claim_id = "lowpass_hurts_calcifications_more_than_masses"
    statement = ("at r* the AUC drop for calcification cases exceeds that for mass cases "
                 "(difference of the drops > 0, interval over seeds and test images)")
    rule = Rule("greater", 0.0)
    i = r_star_index(records, settings)
    if i is None:
        return _inconclusive(claim_id, statement, rule,
                             f"no low-pass level keeps SSIM >= {settings.ssim_min:g}: no r*",
                             DROP_DIFFERENCE)
    y_calc, y_mass = records.subgroup(CALCIFICATION), records.subgroup(MASS)
    r = settings.lowpass_levels[i]
    cond = f"calcification drop - mass drop at r={r:g}"
    if not (_has_both_classes(y_calc) and _has_both_classes(y_mass)):
        d = decide_condition(cond, Interval.undefined("no subgroup", DROP_DIFFERENCE), rule,
                             uninformative="no calcification or no mass cases among the test images")
        return claim_over_conditions(claim_id, statement, [d], details={"r_star": r})
    rows = [np.column_stack([y_calc, y_mass, s.clean, s.perturbed["lowpass"][i]])
            for s in records.seeds]
    iv = _over_seeds_and_images(rows, _drop_difference, bounds=DROP_DIFFERENCE,
                                n_boot=settings.n_boot, seed=_BOOT_SEED["hurts"])
    return claim_over_conditions(claim_id, statement, [decide_condition(cond, iv, rule)], details={
        "r_star": r,
        "calc_auc_drop": float(np.mean([_drop(g[:, [0, 2, 3]]) for g in rows])),
        "mass_auc_drop": float(np.mean([_drop(g[:, [1, 2, 3]]) for g in rows]))})


def speck_share_at(records: Records, settings: Settings, level: float) -> float:
    """Share of the specks detectable unfiltered that stay detectable at low-pass ``level``
    (nan when the speck table has no such level or no speck is detectable unfiltered)."""
    if records.specks is None:
        return math.nan
    at = [lv for lv in records.specks.levels if math.isclose(lv.r_fraction, level)]
    keep = records.specks.detectable > 0
    if not at or not keep.any():
        return math.nan
    return float(at[0].kept[keep].sum() / records.specks.detectable[keep].sum())


def claim_lowpass_training_cannot_restore_calcifications(records: Records,
                                                         settings: Settings) -> Claim:
    """At every retraining level where the specks are erased, a model retrained on images
    low-pass filtered at that level (tested on test images filtered alike) recovers mass AUC
    (retrained AUC - clean-model AUC on clean images, non-inferior within
    ``mass_recovery_margin``) but not calcification AUC (clean - retrained >= ``calc_gap_min``).

    A level of ``retrain_levels`` counts only where the run's speck table keeps fewer than
    ``retained_share`` of the detectable specks (:func:`speck_share_at`, a property of the
    images); the others are left out with that reason. Over the counted levels every one of the
    2 x L halves must hold (:func:`~studylib.stats.claim_over_conditions`); each half is a
    hierarchical bootstrap over seeds (the clean and the retrained model of one seed paired)
    and images. Not reproduced when any half lies wholly on the wrong side.
    """
    claim_id = "lowpass_training_cannot_restore_calcifications"
    share = settings.retained_share
    statement = (f"at every low-pass level of retrain_levels where fewer than {share:g} of the "
                 f"detectable specks remain, a model trained on images filtered at that level "
                 f"recovers mass AUC to within {settings.mass_recovery_margin:g} of clean, but "
                 f"its calcification AUC stays at least {settings.calc_gap_min:g} below clean")
    halves = (("mass: retrained AUC - clean AUC", MASS, _gain,
               Rule("non_inferior", 0.0, margin=settings.mass_recovery_margin)),
              ("calcification: clean AUC - retrained AUC", CALCIFICATION, _drop,
               Rule("at_least", settings.calc_gap_min)))
    if not retrained_seeds(records) or not records.retrain_levels:
        return _inconclusive(claim_id, statement, halves[1][3],
                             "no model was retrained on filtered images", AUC_DIFFERENCE)
    decisions, per_level = [], []
    for j, level in enumerate(records.retrain_levels):
        kept = speck_share_at(records, settings, level)
        erased = bool(kept < share)  # nan (not measured) is not erased
        per_level.append({"r_fraction": level, "speck_share_kept": kept, "counted": erased})
        for cond, kind, stat, rule in halves:
            name = f"r={level:g}: {cond}"
            y = records.subgroup(kind)
            why = None
            if not erased:
                why = (f"the specks are not erased at r={level:g} (share kept "
                       f"{fmt(kept)}, not < {share:g})" if math.isfinite(kept) else
                       f"no speck table at r={level:g} (not in lowpass_levels, or no "
                       f"detectable speck)")
            elif not _has_both_classes(y):
                why = "no such cases among the test images"
            if why:
                decisions.append(decide_condition(
                    name, Interval.undefined(why, AUC_DIFFERENCE), rule, uninformative=why))
                continue
            rows = [np.column_stack([y, s.clean, s.filtered_model_filtered[j]])
                    for s in retrained_seeds(records)]
            decisions.append(decide_condition(name, _over_seeds_and_images(
                rows, stat, bounds=AUC_DIFFERENCE, n_boot=settings.n_boot,
                seed=_BOOT_SEED["training"] + 10 * j + kind), rule))
    return claim_over_conditions(claim_id, statement, decisions, details={
        "retrain_levels": per_level, "retrained_seeds": [s.seed for s in retrained_seeds(records)],
        "auc": retraining_aucs(records)})


def retraining_aucs(records: Records) -> dict[str, dict[str, list[float]]]:
    """Per subgroup (``"calcification"``, ``"mass"``) the seed-mean AUCs: ``"clean"`` (clean
    model, clean images; one value), and per level of ``retrain_levels``
    ``"clean_model_filtered"`` and ``"retrained"`` (filtered test images). Subgroups without
    cases are absent."""
    out = {}
    seeds = retrained_seeds(records)
    for label, kind in (("calcification", CALCIFICATION), ("mass", MASS)):
        y = records.subgroup(kind)
        if not _has_both_classes(y) or not seeds:
            continue
        out[label] = {
            "clean": [float(np.mean([_auc(y, s.clean) for s in seeds]))],
            "clean_model_filtered": [float(np.mean([_auc(y, s.clean_model_filtered[j])
                                                    for s in seeds]))
                                     for j in range(len(records.retrain_levels))],
            "retrained": [float(np.mean([_auc(y, s.filtered_model_filtered[j]) for s in seeds]))
                          for j in range(len(records.retrain_levels))]}
    return out


def retrained_seeds(records: Records) -> list[SeedScores]:
    """The seeds whose models were retrained on filtered images (the first ``retrain_seeds``)."""
    return [s for s in records.seeds if s.filtered_model_filtered is not None]


# ----------------------------------------------------------------------------- metrics, tables


@dataclass(frozen=True)
class Curve:
    """AUC against perturbation level (level 0 = clean) for the figures and tables.

    ``auc_ci95`` is the percentile bootstrap over images of the seed-mean AUC (one resample
    shared by every level and seed: :func:`studylib.stats.bootstrap_auc`); ``flip`` is the
    seed-mean fraction of decisions (threshold 0.5) that differ from the clean ones."""

    levels: tuple[float, ...]
    auc_per_seed: np.ndarray  # (L + 1, S)
    auc_ci95: np.ndarray      # (L + 1, 2)
    flip: np.ndarray          # (L + 1,)

    @property
    def auc_mean(self) -> np.ndarray:
        return self.auc_per_seed.mean(1)


def auc_curve(y: np.ndarray, scores: np.ndarray, levels: Sequence[float], *, n_boot: int,
              seed: int) -> Curve:
    """:class:`Curve` of ``scores`` (L + 1, S, N) with labels ``y`` (1, 0, -1 = left out)."""
    lv, s, n = scores.shape
    auc, reps = bootstrap_auc(y, scores.reshape(lv * s, n), n_boot=n_boot, seed=seed)
    reps = reps.reshape(-1, lv, s).mean(2)
    used = y >= 0
    flip = np.array([np.mean([P.flip_fraction(scores[0, k, used], scores[i, k, used])
                              for k in range(s)]) for i in range(lv)])
    return Curve(tuple(levels), auc.reshape(lv, s),
                 np.array([list(percentile_interval(reps[:, i])) for i in range(lv)]), flip)


def auc_curves(records: Records, settings: Settings) -> dict[str, Curve]:
    """One :class:`Curve` per perturbation, all test images (PGD: the first ``n_pgd``)."""
    out = {}
    for name, levels in records.grids.items():
        sc = records.scores(name)
        out[name] = auc_curve(records.y[:sc.shape[2]], sc, levels, n_boot=settings.n_boot,
                              seed=_BOOT_SEED["curves"])
    return out


def metrics(records: Records) -> dict[str, float | None]:
    """The scalar metrics results.json records (names as before the claims moved here)."""
    y = records.y
    out: dict[str, float | None] = {
        "clean_auc_mean": float(np.mean([_auc(y, s.clean) for s in records.seeds])),
        "clean_accuracy_mean": float(np.mean([((s.clean >= 0.5) == y).mean()
                                              for s in records.seeds]))}
    for name in records.grids:
        n = records.seeds[0].perturbed[name].shape[1]
        out[f"auc_{name}_strongest"] = float(np.mean([_auc(y[:n], s.perturbed[name][-1])
                                                      for s in records.seeds]))
        out[f"flip_fraction_{name}_strongest"] = float(np.mean([
            P.flip_fraction(s.clean[:n], s.perturbed[name][-1]) for s in records.seeds]))
    if records.specks is not None and records.masses is not None:
        out["speck_detectable_unfiltered"] = records.specks.detectable_fraction
        out["mass_detectable_unfiltered"] = records.masses.detectable_fraction
    aucs = retraining_aucs(records)
    for label in ("calcification", "mass"):
        for level, v in zip(records.retrain_levels, aucs.get(label, {}).get("retrained", []),
                            strict=False):
            out[f"retrained_r{level:g}_{label}_auc"] = v
    return out


def _level_labels(levels: Sequence[float]) -> list[str]:
    return ["clean"] + [f"{v:g}" for v in levels]


def data_table(records: Records, settings: Settings) -> str:
    """What was loaded: shapes, test images by lesion type, the phantom's contrasts."""
    counts = np.bincount(records.lesion_type, minlength=3).tolist()
    lines = [f"{records.dataset}: train {records.train_shape}, test {records.test_shape}",
             f"test images by lesion type (none, calcification, mass): {counts}"]
    if records.specks is None:
        lines.append("no lesion masks in this data set: the CNR analysis is skipped "
                     "(its claim is inconclusive)")
    if records.dataset == "mammo_phantom":
        lines.append(f"calc_contrast = {fmt(settings.calc_contrast)}, "
                     f"mass_contrast = {fmt(settings.mass_contrast)}, "
                     f"mass_texture = {fmt(settings.mass_texture)}")
    return "\n".join(lines)


def clean_table(records: Records, settings: Settings) -> str:
    """Clean AUC and accuracy of every seed's model, and the seed mean with its hierarchical
    interval (undefined with one seed)."""
    y = records.y
    lines = [f"seed {s.seed}: clean AUC {fmt(_auc(y, s.clean))}, accuracy "
             f"{fmt(float(((s.clean >= 0.5) == y).mean()))}" for s in records.seeds]
    iv = _over_seeds_and_images([np.column_stack([y, s.clean]) for s in records.seeds],
                                lambda r: _auc(r[:, 0], r[:, 1]), bounds=AUC,
                                n_boot=settings.n_boot, seed=_BOOT_SEED["clean"])
    lines.append(f"mean over seeds: clean AUC {fmt(iv.estimate)} {fmt(list(iv.ci95))} ({iv.method})")
    return "\n".join(lines)


def sensitivity_table(curves: Mapping[str, Curve], records: Records | None = None,
                      settings: Settings | None = None) -> str:
    """The dose-response curves: seed-mean AUC and flip fraction at every level of every
    perturbation; with ``records`` and ``settings`` also the mean SSIM and PSNR against the
    clean images and the budget level the ``sensitive_to_*`` claims are judged at."""
    lines = []
    for name, c in curves.items():
        lines += [f"{name:15s} level: " + "  ".join(_level_labels(c.levels)),
                  f"{'':15s} AUC:   " + "  ".join(fmt(v) for v in c.auc_mean),
                  f"{'':15s} flips: " + "  ".join(fmt(v) for v in c.flip)]
        if records is not None and settings is not None and records.budget.get(name):
            per = records.budget[name]
            lines += [f"{'':15s} SSIM:  -  " + "  ".join(fmt(v[0]) for v in per),
                      f"{'':15s} PSNR:  -  " + "  ".join(fmt(v[1]) for v in per)]
            i = budget_index(records, settings, name)
            lines.append(f"{'':15s} budget level: "
                         f"{c.levels[i] if i is not None else 'none inside the budget'}")
    return "\n".join(lines)


def visibility_table(records: Records, settings: Settings) -> str:
    """Per lesion type and low-pass level: the share of detectable objects kept (bootstrap over
    images, the interval the claim uses), the median CNR, SSIM and PSNR; then the gate."""
    lines = []
    for obj in (records.specks, records.masses):
        if obj is None:
            continue
        index = _INDEX[obj.kind]
        lines.append(f"{obj.kind}: {obj.n_objects} in {len(obj.image_index)} images; median {index} "
                     f"unfiltered {fmt(float(np.nanmedian(obj.cnr_clean)))}; detectable "
                     f"unfiltered ({index} >= {settings.cnr_threshold:g}): {fmt(obj.detectable_fraction)}")
        none = not obj.detectable.any()
        if none:
            lines.append("   none detectable unfiltered: the share kept is undefined at every "
                         "level (so the claim is inconclusive)")
        for i, lvl in enumerate(obj.levels):
            kept = ""
            if not none:
                iv = _retained_interval(obj, i, n_boot=settings.n_boot, seed=_BOOT_SEED[obj.kind])
                kept = f" still detectable {fmt(iv.estimate)} {fmt(list(iv.ci95))} "
            lines.append(f"   r/Nyquist {lvl.r_fraction:<6g}{kept} median {index} {fmt(lvl.median_cnr)}"
                         f"  SSIM {fmt(lvl.ssim_mean)}  PSNR {fmt(lvl.psnr_mean)} dB")
    lines.append("mean SSIM by level: " + fmt(dict(zip(settings.lowpass_levels,
                                                        records.lowpass_ssim, strict=True))))
    i = r_star_index(records, settings)
    lines.append(f"r* (strongest low-pass with SSIM >= {settings.ssim_min:g}): "
                 f"{settings.lowpass_levels[i] if i is not None else None}")
    return "\n".join(lines)


def _retraining_intervals(records: Records, settings: Settings) -> dict[str, list[Interval]]:
    """Per subgroup, per level of ``retrain_levels``: the retrained model's AUC on filtered
    images, seed mean with its hierarchical interval (seeds, then images), inside [0, 1]."""
    out = {}
    for label, kind in (("calcification", CALCIFICATION), ("mass", MASS)):
        y = records.subgroup(kind)
        if not _has_both_classes(y) or not retrained_seeds(records):
            continue
        out[label] = [_over_seeds_and_images(
            [np.column_stack([y, s.filtered_model_filtered[j]]) for s in retrained_seeds(records)],
            lambda r: _auc(r[:, 0], r[:, 1]), bounds=AUC, n_boot=settings.n_boot,
            seed=_BOOT_SEED["training"] + 100 + 10 * j + kind)
            for j in range(len(records.retrain_levels))]
    return out


def training_table(records: Records, settings: Settings) -> str:
    """Per retraining level: the share of detectable specks kept, and per subgroup the seed-mean
    AUC of the clean model on clean images, of the clean model on the filtered images and of
    the retrained model on them (with its interval over seeds and images)."""
    aucs = retraining_aucs(records)
    ivs = _retraining_intervals(records, settings)
    lines = ["r/Nyquist  specks kept  subgroup       clean model/clean  clean model/filtered  "
             "retrained/filtered [95%]"]
    for j, level in enumerate(records.retrain_levels):
        kept = fmt(speck_share_at(records, settings, level))
        for label in ("calcification", "mass"):
            if label not in aucs:
                lines.append(f"{level:<10g} {kept:>11s}  {label:13s}  no cases among the test images")
                continue
            a, iv = aucs[label], ivs[label][j]
            lines.append(f"{level:<10g} {kept:>11s}  {label:13s}  {fmt(a['clean'][0]):>17s}  "
                         f"{fmt(a['clean_model_filtered'][j]):>20s}  {fmt(iv.estimate)} "
                         f"{fmt(list(iv.ci95))}")
    return "\n".join(lines)


def plot_retraining(records: Records, settings: Settings):
    """Calcification and mass AUC against the retraining level (strongest filter on the right):
    the retrained model on filtered images (95% band over seeds and images; none with one seed)
    and the clean model on the same filtered images (dashed), the clean AUC dotted. Returns the
    figure, or None without subgroups."""
    import matplotlib.pyplot as plt

    aucs = retraining_aucs(records)
    if not aucs:
        return None
    ivs = _retraining_intervals(records, settings)
    r = np.array(records.retrain_levels, dtype=float)
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for k, label in enumerate(("calcification", "mass")):
        if label not in aucs:
            continue
        col = f"C{k}"
        ax.plot(r, [iv.estimate for iv in ivs[label]], marker="o", color=col,
                label=f"{label}: retrained")
        if all(iv.defined for iv in ivs[label]):
            ax.fill_between(r, [iv.lo for iv in ivs[label]], [iv.hi for iv in ivs[label]],
                            color=col, alpha=0.2)
        ax.plot(r, aucs[label]["clean_model_filtered"], marker="s", ls="--", color=col,
                label=f"{label}: clean model")
        ax.axhline(aucs[label]["clean"][0], color=col, ls=":", lw=1.0)
    ax.axhline(0.5, color="k", ls=":", lw=0.8)
    ax.set_xticks(r)
    ax.set_xticklabels([f"{v:g}" for v in r], fontsize=8)
    ax.invert_xaxis()
    ax.set_xlabel("low-pass radius r / Nyquist of train and test images (stronger ->)")
    ax.set_ylabel("ROC AUC (dotted: clean model, clean images)")
    ax.set_ylim(0.3, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- figures


def plot_perturbation_grid(records: Records):
    """One test image under every perturbation (rows) at every level (columns, clean first).

    Every panel is on one grey scale, [0, 1] (the high-pass output is renormalised onto the
    input's range, so it shares it); the panel title gives the level. Returns the figure.
    """
    import matplotlib.pyplot as plt

    rows = records.example_rows
    names = list(rows)
    ncol = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(names), ncol, figsize=(1.6 * ncol, 1.75 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        labels = _level_labels(records.grids[name])
        for j in range(ncol):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if j >= len(rows[name]):
                ax.axis("off")
                continue
            ax.imshow(np.asarray(rows[name][j]), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_title(labels[j], fontsize=8)
        axes[i, 0].set_ylabel(PERTURBATIONS[name][2], fontsize=9)
    fig.tight_layout()
    return fig


def plot_auc_curves(curves: Mapping[str, Curve]):
    """One panel per perturbation: seed-mean AUC with its 95% bootstrap band over images and
    each seed's curve (thin), against the perturbation level (clean first). Returns the figure."""
    import matplotlib.pyplot as plt

    names = list(curves)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        c = curves[name]
        pos = np.arange(len(c.auc_mean))
        for k in range(c.auc_per_seed.shape[1]):
            ax.plot(pos, c.auc_per_seed[:, k], color="0.6", lw=0.8, alpha=0.7)
        ax.plot(pos, c.auc_mean, marker="o", color="C0", label="mean over seeds")
        ax.fill_between(pos, c.auc_ci95[:, 0], c.auc_ci95[:, 1], color="C0", alpha=0.25,
                        label="95% CI (images)")
        ax.axhline(0.5, color="k", ls=":", lw=0.8)
        ax.set_xticks(pos)
        ax.set_xticklabels(_level_labels(c.levels), rotation=45, fontsize=8)
        ax.set_xlabel(PERTURBATIONS[name][2], fontsize=9)
        ax.set_ylim(0.3, 1.02)
        ax.set_title(name, fontsize=10)
    axes[0, 0].set_ylabel("ROC AUC")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_lowpass_objects(records: Records, settings: Settings):
    """Three panels against the low-pass radius r (fraction of Nyquist, strongest filter on the
    right): share of unfiltered-detectable specks / masses still detectable (95% bootstrap band
    over images), median CNR, and whole-image SSIM and PSNR. Returns the figure, or None when
    the data set has no lesion masks."""
    import matplotlib.pyplot as plt

    if records.specks is None or records.masses is None:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.4))
    r = np.array(settings.lowpass_levels, dtype=float)
    for obj, col in ((records.specks, "C3"), (records.masses, "C0")):
        ivs = [_retained_interval(obj, i, n_boot=settings.n_boot, seed=_BOOT_SEED[obj.kind])
               for i in range(len(obj.levels))]
        axes[0].plot(r, [iv.estimate for iv in ivs], marker="o", color=col, label=obj.kind)
        axes[0].fill_between(r, [iv.lo for iv in ivs], [iv.hi for iv in ivs], color=col, alpha=0.2)
        axes[1].plot(r, [lv.median_cnr for lv in obj.levels], marker="o", color=col, label=obj.kind)
        axes[1].axhline(float(np.nanmedian(obj.cnr_clean)), color=col, ls="--", lw=0.8)
        axes[2].plot(r, [lv.ssim_mean for lv in obj.levels], marker="o", color=col,
                     label=f"SSIM, {obj.kind}")
    ax2 = axes[2].twinx()
    ax2.grid(False)
    ax2.plot(r, [lv.psnr_mean for lv in records.specks.levels], marker="s", ls="--", color="0.4",
             label="PSNR (dB), specks' images")
    ax2.set_ylabel("PSNR (dB)")
    ax2.legend(fontsize=7, loc="lower right")
    thr = settings.cnr_threshold
    axes[0].set_ylabel(f"still detectable (specks CNR, masses d' >= {thr:g})", fontsize=8)
    axes[0].axhline(settings.retained_share, color="k", ls=":", lw=0.8)
    axes[1].set_ylabel("median CNR (specks) or d' (masses); dashed: unfiltered", fontsize=8)
    axes[1].axhline(thr, color="k", ls=":", lw=0.8)
    axes[2].set_ylabel("SSIM vs unfiltered")
    axes[2].axhline(settings.ssim_min, color="k", ls=":", lw=0.8)
    i = r_star_index(records, settings)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(r)
        ax.set_xticklabels([f"{v:g}" for v in r], fontsize=8)
        ax.minorticks_off()
        ax.invert_xaxis()
        ax.set_xlabel("low-pass radius r / Nyquist (stronger ->)")
        if i is not None:
            ax.axvline(settings.lowpass_levels[i], color="C2", lw=1.0, alpha=0.7)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_zoomins(records: Records):
    """A grid of crops (rows: calcification images, columns: low-pass levels) on one grey scale
    per row, so the loss of speck contrast is visible. Returns the figure, or None."""
    import matplotlib.pyplot as plt

    z = records.zoom
    if z is None:
        return None
    nr, nc = len(z.crops), len(z.col_titles)
    fig, axes = plt.subplots(nr, nc, figsize=(1.9 * nc, 1.9 * nr), squeeze=False)
    for i in range(nr):
        lo = min(float(np.min(c)) for c in z.crops[i])
        hi = max(float(np.max(c)) for c in z.crops[i])
        for j in range(nc):
            ax = axes[i, j]
            ax.imshow(np.asarray(z.crops[i][j]), cmap="gray", vmin=lo, vmax=hi,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if i == 0:
                ax.set_title(z.col_titles[j], fontsize=8)
        axes[i, 0].set_ylabel(z.row_titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def plot_subgroup_curves(records: Records, settings: Settings):
    """AUC against low-pass level for calcification cases and mass cases (each vs all
    negatives, 95% bands over images), with crosses at the AUC of the models retrained at each
    level of ``retrain_levels``. Returns the figure."""
    import matplotlib.pyplot as plt

    sc = records.scores("lowpass")
    levels = records.grids["lowpass"]
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    pos = np.arange(len(levels) + 1)
    for k, (label, kind) in enumerate((("calcification", CALCIFICATION), ("mass", MASS))):
        y = records.subgroup(kind)
        if not _has_both_classes(y):
            continue
        c = auc_curve(y, sc, levels, n_boot=settings.n_boot, seed=_BOOT_SEED["subgroups"])
        ax.plot(pos, c.auc_mean, marker="o", color=f"C{k}", label=f"{label} vs negatives")
        ax.fill_between(pos, c.auc_ci95[:, 0], c.auc_ci95[:, 1], color=f"C{k}", alpha=0.2)
        retrained = retraining_aucs(records)[label]["retrained"]
        at = [(list(levels).index(v) + 1, a) for v, a in zip(records.retrain_levels, retrained,
                                                            strict=True) if v in levels]
        if at:
            ax.plot([p for p, _ in at], [a for _, a in at], ls="none", marker="x", ms=8,
                    color=f"C{k}", label=f"{label}, retrained at that level")
    ax.axhline(0.5, color="k", ls=":", lw=0.8)
    ax.set_xticks(pos)
    ax.set_xticklabels(_level_labels(levels), rotation=45, fontsize=8)
    ax.set_xlabel("low-pass radius r / Nyquist")
    ax.set_ylabel("ROC AUC")
    ax.set_ylim(0.3, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


CLAIMS = {
    "sensitive_to_gaussian_noise": claim_sensitive_to_gaussian_noise,
    "sensitive_to_lowpass": claim_sensitive_to_lowpass,
    "sensitive_to_highpass": claim_sensitive_to_highpass,
    "sensitive_to_adversarial": claim_sensitive_to_adversarial,
    "lowpass_erases_microcalcifications": claim_lowpass_erases_microcalcifications,
    "lowpass_hurts_calcifications_more_than_masses":
        claim_lowpass_hurts_calcifications_more_than_masses,
    "lowpass_training_cannot_restore_calcifications":
        claim_lowpass_training_cannot_restore_calcifications,
}
