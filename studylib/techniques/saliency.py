"""Input-perturbation saliency maps, their baselines, their evaluation and their agreement.

Study ``04_saliency_baselines`` (Brunke, Agrawal, George, "Evaluating Input Perturbation Methods
for Interpreting CNNs and Saliency Map Comparison", ECCV 2020 Workshops, arXiv 2101.10977).

Everything here works on a *score function* ``f(x) -> (B, K)`` (for example
:func:`probability_forward` of a classifier) and returns maps of shape ``(N, H, W)`` (one value
per pixel; channel information is pooled as each method's docstring says).

Contents
--------
- Baselines (the "neutral" images that replace removed evidence): :data:`BASELINES`,
  :func:`make_baseline`, :func:`make_baselines`, :func:`baseline_output_stats`.
- Saliency generators: :func:`occlusion_maps` (captum ``Occlusion``, batched with
  ``perturbations_per_eval``), :class:`RISE` (own batched implementation, see its docstring),
  :func:`gradient_maps` (captum ``Saliency``), :func:`integrated_gradients_maps` (captum
  ``IntegratedGradients`` with the same baselines), :func:`random_maps` (control).
- Saliency metrics: :func:`perturbation_curve` (MoRF / LeRF region perturbation, deletion,
  insertion), :func:`aopc`, :func:`curve_auc`.
- Agreement between maps: :func:`spearman_per_image`, :func:`topk_intersection`,
  :func:`ssim_per_image`, :func:`pointing_game`, :func:`mass_inside`,
  :func:`pairwise_agreement`, :func:`pooled_median`, :func:`ranking_kendall_tau`,
  :func:`rank_position`.

The study that uses them (every map, metric and agreement number of one trained model, the
claims and the figures) is :mod:`studylib.studies.saliency_baselines`. The blur baseline is
:func:`studylib.techniques.perturbations.gaussian_blur`, the kit's one Gaussian blur.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..stats.ranking import kendall_tau, spearman_rows
from .perturbations import gaussian_blur

ScoreFn = Callable[[torch.Tensor], torch.Tensor]

BASELINES: tuple[str, ...] = (
    "black",
    "white",
    "dataset_mean",
    "image_mean",
    "blur",
    "uniform_noise",
    "gaussian_noise",
)
"""Names accepted by :func:`make_baseline`, in the order figures and tables use."""


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _check_images(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a float tensor (N, C, H, W), got {shape}")
    return x


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def _as_targets(target: torch.Tensor | Sequence[int] | int, n: int) -> torch.Tensor:
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if t.numel() == 1 and n != 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target must be an int or have one entry per image ({n}), got {t.numel()}")
    return t


def _expand_baseline(baseline: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    b = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    if b.ndim == 0:
        return b.expand_as(x)
    if b.ndim == 3:  # one image for all
        b = b.unsqueeze(0)
    if b.ndim != 4:
        raise ValueError(f"baseline must be a scalar, (C,H,W) or (N,C,H,W) tensor, got {tuple(b.shape)}")
    return b.expand_as(x)


def probability_forward(model: nn.Module, *, channels_last: bool = False) -> ScoreFn:
    """Wrap a classifier returning logits into ``x -> softmax(model(x))`` (the score RISE,
    occlusion and the perturbation metrics read). The model is put in eval mode.

    ``channels_last=True`` runs a copy of the model (the caller's model is untouched) in
    channels-last memory format: on a CPU the small convolution and max-pool layers of the
    kit's CNNs run about 2x faster that way (torch.profiler: ``max_pool2d_with_indices`` is
    half of the NCHW forward time; ``make bench``, cases 2 and 3). Outputs are equal up to
    float32 rounding (about 1e-6).
    """
    if channels_last:
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    model.eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(x), dim=1)

    return forward


@torch.no_grad()
def batched_scores(forward: ScoreFn, x: torch.Tensor, target: torch.Tensor | None = None, *,
                   batch_size: int = 2048) -> torch.Tensor:
    """``forward`` applied in chunks of ``batch_size`` rows of ``x``; with ``target`` (N,) the
    score of that class per row (N,), else the full output (N, K)."""
    outs = []
    for i in range(0, x.shape[0], batch_size):
        out = forward(x[i:i + batch_size])
        if target is not None:
            out = out.gather(1, target[i:i + batch_size].to(out.device).view(-1, 1)).squeeze(1)
        outs.append(out)
    return torch.cat(outs) if outs else torch.empty(0)


def scale_size(size: int, image_size: int, reference: int = 32) -> int:
    """A patch size or stride given for ``reference``-pixel images, scaled to ``image_size``
    (rounded, at least 1). ``scale_size(8, 16) == 4``, ``scale_size(8, 224) == 56``."""
    return max(1, int(round(size * image_size / reference)))


# --------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------


def make_baseline(x: torch.Tensor, kind: str, *, dataset_mean: torch.Tensor | Sequence[float] | None = None,
                  blur_sigma: float | None = None, noise_std: float = 0.2, seed: int = 0) -> torch.Tensor:
    """The baseline image(s) of ``kind`` for images ``x`` (N, C, H, W) in [0, 1].

    Args:
        x: the images to explain.
        kind: one of :data:`BASELINES`:
            ``"black"`` (0), ``"white"`` (1), ``"dataset_mean"`` (per-channel mean of the
            training set, given as ``dataset_mean``), ``"image_mean"`` (each image's own
            per-channel mean colour), ``"blur"`` (Gaussian blur of the image, ``blur_sigma``
            pixels, default ``H / 8``, by :func:`~studylib.techniques.perturbations.gaussian_blur`),
            ``"uniform_noise"`` (i.i.d. U(0, 1) pixels),
            ``"gaussian_noise"`` (i.i.d. N(0.5, ``noise_std``^2) pixels clipped to [0, 1]).
        dataset_mean: (C,) channel means; required for ``"dataset_mean"``.
        blur_sigma: blur standard deviation in pixels (default ``H / 8``: 4 px at 32 px).
        noise_std: standard deviation of the Gaussian-noise baseline (default 0.2).
        seed: seed of the noise baselines (one independent noise image per input image).

    Returns:
        A tensor shaped like ``x`` (a fresh tensor, never a view of ``x``).
    """
    x = _check_images(x)
    _check_choice("kind", kind, BASELINES)
    n, c, h, w = x.shape
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "white":
        return torch.ones_like(x)
    if kind == "dataset_mean":
        if dataset_mean is None:
            raise ValueError("dataset_mean (per-channel means, shape (C,)) is required for kind='dataset_mean'")
        m = torch.as_tensor(dataset_mean, dtype=x.dtype, device=x.device).reshape(1, c, 1, 1)
        return m.expand_as(x).clone()
    if kind == "image_mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if kind == "blur":
        sigma = h / 8 if blur_sigma is None else float(blur_sigma)
        return gaussian_blur(x, sigma)
    g = _generator(seed)
    if kind == "uniform_noise":
        return torch.rand(x.shape, generator=g, dtype=x.dtype).to(x.device)
    # gaussian_noise
    z = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    return (0.5 + float(noise_std) * z).clamp(0, 1)


def make_baselines(x: torch.Tensor, kinds: Sequence[str] = BASELINES, **kwargs: Any) -> dict[str, torch.Tensor]:
    """``{kind: make_baseline(x, kind, **kwargs)}`` for every kind in ``kinds``."""
    return {k: make_baseline(x, k, **kwargs) for k in kinds}


@torch.no_grad()
def baseline_output_stats(forward: ScoreFn, baseline: torch.Tensor, *, batch_size: int = 2048
                          ) -> dict[str, float]:
    """How "neutral" a baseline image is to the model: its output distribution ``p``.

    Returns the mean over the baseline images of ``max_prob`` (max class probability),
    ``max_prob_over_uniform`` (``max_prob * K``; 1 = perfectly neutral), ``kl_from_uniform``
    (``KL(p || U) = sum p log(p K)`` in nats; 0 = neutral) and ``top_class_share`` (fraction of
    the baseline images given the most frequent top class).
    """
    p = batched_scores(forward, baseline, batch_size=batch_size).double()
    k = p.shape[1]
    maxp = p.max(dim=1).values
    kl = (p * torch.log(p.clamp_min(1e-12) * k)).sum(dim=1)
    top = p.argmax(dim=1)
    share = torch.bincount(top, minlength=k).max().item() / len(top)
    return {"max_prob": float(maxp.mean()), "max_prob_over_uniform": float(maxp.mean() * k),
            "kl_from_uniform": float(kl.mean()), "top_class_share": float(share)}


# --------------------------------------------------------------------------------------------
# saliency generators
# --------------------------------------------------------------------------------------------


def occlusion_maps(forward: ScoreFn, x: torch.Tensor, target: torch.Tensor | Sequence[int] | int,
                   baseline: torch.Tensor | float, *, patch: int, stride: int,
                   perturbations_per_eval: int | None = None, image_batch: int = 64,
                   offset: int = 0) -> torch.Tensor:
    """Sliding-window occlusion maps through captum's :class:`captum.attr.Occlusion`.

    attribution(pixel) = mean over the windows covering the pixel of
    ``f_c(x) - f_c(x with the window replaced by the baseline)``; the window spans all channels,
    so every channel gets the same value and the map is that value per pixel.

    Args:
        forward: score function ``x -> (B, K)`` (e.g. :func:`probability_forward`).
        x: images (N, C, H, W).
        target: class per image (N,) or one int.
        baseline: what the window is replaced by: scalar, (C,H,W) or (N,C,H,W) (see
            :func:`make_baseline`).
        patch: window side in pixels; stride: step in pixels (both >= 1, patch <= H, W).
        perturbations_per_eval: how many window positions go through one forward call
            (captum batches ``image_batch * perturbations_per_eval`` images per call; 1 is
            captum's default, one window per call). Same maps for any value. ``None``
            (default): ``512 // image_batch`` (at least 1), i.e. about 512 images per call;
            on a CPU a much larger call is slower (its activations fall out of cache: 64 x 64
            images per call ran 2x slower than 64 calls of 64 in ``make bench``, case 2).
        image_batch: images per :meth:`attribute` call (bounds memory).
        offset: shift of the window grid in pixels (0 <= offset < stride; default 0, captum's
            grid). With ``offset > 0`` the image is padded by ``offset`` on the top and left
            (and on the bottom and right as far as a window needs) with the baseline itself,
            so a window that overhangs the image occludes only its part inside; the model sees
            the image crop only. Two maps of one image at offsets 0 and ``stride // 2`` differ
            only by where the windows fall: their agreement is the occlusion map's noise
            ceiling (it has no Monte-Carlo noise, but it has this grid arbitrariness).

    Returns:
        (N, H, W) float tensor. Pixels no window covers (when ``(H - patch) % stride != 0``)
        get 0.
    """
    from captum.attr import Occlusion

    x = _check_images(x)
    n, c, h, w = x.shape
    if not (1 <= int(patch) <= min(h, w)):
        raise ValueError(f"patch must be in [1, {min(h, w)}], got {patch}")
    if int(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if int(image_batch) < 1:
        raise ValueError(f"image_batch must be >= 1, got {image_batch}")
    if perturbations_per_eval is None:
        perturbations_per_eval = max(1, 512 // min(int(image_batch), n))
    if int(perturbations_per_eval) < 1:
        raise ValueError(f"perturbations_per_eval must be >= 1, got {perturbations_per_eval}")
    t = _as_targets(target, n).to(x.device)
    b = _expand_baseline(baseline, x)
    o = int(offset)
    if not 0 <= o < int(stride):
        raise ValueError(f"offset must be in [0, stride = {stride}), got {offset}")
    if o:
        return _shifted_occlusion(forward, x, t, b, patch=int(patch), stride=int(stride),
                                  offset=o, perturbations_per_eval=perturbations_per_eval,
                                  image_batch=image_batch)
    occ = Occlusion(forward)
    out = []
    for i in range(0, n, image_batch):
        with torch.no_grad():
            a = occ.attribute(x[i:i + image_batch], sliding_window_shapes=(c, int(patch), int(patch)),
                              strides=(c, int(stride), int(stride)),
                              baselines=b[i:i + image_batch].contiguous(), target=t[i:i + image_batch],
                              perturbations_per_eval=int(perturbations_per_eval))
        out.append(a.mean(dim=1))
    return torch.cat(out).detach()


def _shifted_occlusion(forward: ScoreFn, x: torch.Tensor, t: torch.Tensor, b: torch.Tensor, *,
                       patch: int, stride: int, offset: int, perturbations_per_eval: int | None,
                       image_batch: int) -> torch.Tensor:
    """Occlusion on a window grid shifted by ``offset`` (see :func:`occlusion_maps`)."""
    n, c, h, w = x.shape

    def tail(size: int) -> int:  # padding after the image so the last window reaches its end
        span = size + offset - patch
        return (-span) % stride if span > 0 else 0

    pad = (offset, tail(w), offset, tail(h))
    b_pad = F.pad(b, pad, mode="replicate")
    x_pad = b_pad.clone()
    x_pad[..., offset:offset + h, offset:offset + w] = x

    def cropped(z: torch.Tensor) -> torch.Tensor:
        return forward(z[..., offset:offset + h, offset:offset + w])

    maps = occlusion_maps(cropped, x_pad, t, b_pad, patch=patch, stride=stride,
                          perturbations_per_eval=perturbations_per_eval, image_batch=image_batch)
    return maps[:, offset:offset + h, offset:offset + w].contiguous()


def block_pool(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Means over ``size x size`` blocks of maps (N, H, W) (the last block of a side may be
    smaller): two maps made at different resolutions compared at the coarser one's."""
    if int(size) <= 1:
        return maps
    return F.avg_pool2d(maps.unsqueeze(1).float(), int(size), int(size), ceil_mode=True,
                        count_include_pad=False).squeeze(1)


class RISE:
    """RISE saliency (Petsiuk, Das, Saenko, BMVC 2018) with an explicit baseline, batched.

    ``S_c(x) = 1 / (N p) * sum_n f_c(x * M_n + b * (1 - M_n)) * M_n`` over ``N`` masks ``M_n``:
    each mask is an ``s x s`` grid of independent Bernoulli(``p``) cells, bilinearly upsampled to
    ``(s + 1) * ceil(H / s)`` pixels and cropped at a random shift in ``[0, ceil(H / s))`` (the
    same for width), as in the authors' reference code. ``b`` is the baseline image (the paper's
    RISE uses ``b = 0``).

    Why our own implementation: captum 0.9 has no RISE (a request, captum issue #1150, is open
    and unmerged); the authors' repository (eclique/RISE) is a research script with a fixed
    black baseline, no seeding and no installable package; xplique and mindspore-xai implement
    it for TensorFlow / MindSpore. Here masks are drawn from a seeded generator, shared by all
    images (and all baselines: common random numbers, so maps made with different baselines
    differ by the baseline only), and ``batch_size`` masked images go through each forward
    call. The per-mask scores are kept, so the maps for every prefix ``N' <= N`` of the mask
    sequence (``n_checkpoints``) cost nothing extra.

    Args:
        forward: score function ``x -> (B, K)`` (probabilities, as in the paper).
        n_masks: ``N`` (>= 1).
        grid_size: ``s`` (>= 1), cells per side.
        keep_prob: ``p`` in (0, 1], probability that a cell is kept (shows the image).
        seed: seed of the masks.
        batch_size: masked images per forward call (default 512; on a CPU larger batches
            run slower because their intermediates fall out of cache, see outputs/bench).

    Example:
        >>> rise = RISE(probability_forward(model), n_masks=1000, grid_size=7, keep_prob=0.5)
        >>> maps = rise.attribute(x, target=y, baseline=torch.zeros_like(x))  # (N, H, W)
    """

    def __init__(self, forward: ScoreFn, *, n_masks: int, grid_size: int = 7, keep_prob: float = 0.5,
                 seed: int = 0, batch_size: int = 512) -> None:
        if int(n_masks) < 1:
            raise ValueError(f"n_masks must be >= 1, got {n_masks}")
        if int(grid_size) < 1:
            raise ValueError(f"grid_size must be >= 1, got {grid_size}")
        if not 0.0 < float(keep_prob) <= 1.0:
            raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.forward = forward
        self.n_masks = int(n_masks)
        self.grid_size = int(grid_size)
        self.keep_prob = float(keep_prob)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self._masks: torch.Tensor | None = None
        self._mask_hw: tuple[int, int] | None = None

    @staticmethod
    def generate_masks(n_masks: int, grid_size: int, keep_prob: float, height: int, width: int, *,
                       seed: int = 0) -> torch.Tensor:
        """The ``(n_masks, 1, height, width)`` RISE masks, values in [0, 1], from ``seed``."""
        g = _generator(seed)
        s = int(grid_size)
        cell_h, cell_w = math.ceil(height / s), math.ceil(width / s)
        grid = (torch.rand((n_masks, 1, s, s), generator=g) < keep_prob).float()
        up = F.interpolate(grid, size=((s + 1) * cell_h, (s + 1) * cell_w), mode="bilinear",
                           align_corners=False)
        dy = torch.randint(0, cell_h, (n_masks,), generator=g)
        dx = torch.randint(0, cell_w, (n_masks,), generator=g)
        rows = (dy[:, None] + torch.arange(height)[None, :])  # (N, H)
        cols = (dx[:, None] + torch.arange(width)[None, :])  # (N, W)
        idx = torch.arange(n_masks)[:, None, None]
        masks = up[:, 0][idx, rows[:, :, None], cols[:, None, :]]
        return masks.clamp(0.0, 1.0).unsqueeze(1).contiguous()

    def masks(self, height: int, width: int) -> torch.Tensor:
        """This object's masks for ``height x width`` images (drawn once, then reused)."""
        if self._masks is None or self._mask_hw != (height, width):
            self._masks = self.generate_masks(self.n_masks, self.grid_size, self.keep_prob, height,
                                              width, seed=self.seed)
            self._mask_hw = (height, width)
        return self._masks

    @torch.inference_mode()
    def scores(self, x: torch.Tensor, target: torch.Tensor | Sequence[int] | int,
               baseline: torch.Tensor | float) -> torch.Tensor:
        """``f_c(x * M_n + b * (1 - M_n))`` for every image and mask: (N_images, n_masks)."""
        x = _check_images(x)
        n, c, h, w = x.shape
        t = _as_targets(target, n).to(x.device)
        b = _expand_baseline(baseline, x)
        m = self.masks(h, w).to(x.device)
        out = torch.empty(n, self.n_masks, dtype=torch.float32, device=x.device)
        # each forward call: img_chunk images x mask_chunk masks <= batch_size
        mask_chunk = min(self.n_masks, self.batch_size)
        img_chunk = max(1, self.batch_size // mask_chunk)
        for i in range(0, n, img_chunk):
            xi, bi = x[i:i + img_chunk], b[i:i + img_chunk]
            ti = t[i:i + img_chunk]
            diff = (xi - bi).unsqueeze(1)  # (ni, 1, C, H, W)
            for j in range(0, self.n_masks, mask_chunk):
                mj = m[j:j + mask_chunk].unsqueeze(0)  # (1, nm, 1, H, W)
                batch = (bi.unsqueeze(1) + mj * diff).reshape(-1, c, h, w)
                p = self.forward(batch).reshape(xi.shape[0], mj.shape[1], -1)
                out[i:i + xi.shape[0], j:j + mj.shape[1]] = p.gather(
                    2, ti.view(-1, 1, 1).expand(-1, mj.shape[1], 1)).squeeze(2).float()
        return out

    def maps_from_scores(self, scores: torch.Tensor, n: int | None = None, *, centered: bool = False
                         ) -> torch.Tensor:
        """Maps (N_images, H, W) from :meth:`scores` using the first ``n`` masks (default all).

        ``centered=True`` subtracts each image's mean score over the ``n`` masks before
        weighting (a control variate): the map changes by ``mean_f * sum_n M_n / (n p)``, whose
        expectation is the constant ``mean_f``, so the limit map is the same up to an additive
        constant (same ranking of pixels), but the small-``N`` maps lose the imprint of the
        masks' coverage pattern ``sum_n M_n``. That imprint is identical for every baseline when
        masks are shared, so uncentered maps compared across baselines partly compare the masks.
        """
        n = self.n_masks if n is None else int(n)
        if not 1 <= n <= self.n_masks:
            raise ValueError(f"n must be in [1, {self.n_masks}], got {n}")
        if self._masks is None:
            raise ValueError("call scores() (or attribute()) first: the masks are not drawn yet")
        m = self._masks[:n].to(scores.device)
        h, w = m.shape[-2:]
        f = scores[:, :n].double()
        if centered:
            f = f - f.mean(dim=1, keepdim=True)
        sal = f @ m.reshape(n, h * w).double()
        return (sal / (n * self.keep_prob)).float().reshape(-1, h, w)

    def attribute(self, x: torch.Tensor, target: torch.Tensor | Sequence[int] | int,
                  baseline: torch.Tensor | float = 0.0, *, n_checkpoints: Sequence[int] | None = None,
                  centered: bool = False) -> torch.Tensor | dict[int, torch.Tensor]:
        """RISE maps (N, H, W) of ``x`` for classes ``target`` with baseline ``baseline``.

        With ``n_checkpoints`` (mask counts <= ``n_masks``), a dict ``{n: maps from the first n
        masks}`` instead (running estimates of one mask sequence). ``centered``: see
        :meth:`maps_from_scores` (default False: the paper's estimator).
        """
        s = self.scores(x, target, baseline)
        if n_checkpoints is None:
            return self.maps_from_scores(s, centered=centered)
        return {int(k): self.maps_from_scores(s, int(k), centered=centered) for k in n_checkpoints}


def gradient_maps(forward: ScoreFn, x: torch.Tensor, target: torch.Tensor | Sequence[int] | int
                  ) -> torch.Tensor:
    """Vanilla gradient saliency (Simonyan et al.) via captum ``Saliency``: ``max_c |d f / d x|``
    per pixel, (N, H, W)."""
    from captum.attr import Saliency

    x = _check_images(x)
    t = _as_targets(target, x.shape[0]).to(x.device)
    a = Saliency(forward).attribute(x.clone().requires_grad_(True), target=t, abs=True)
    return a.max(dim=1).values.detach()


def integrated_gradients_maps(forward: ScoreFn, x: torch.Tensor,
                              target: torch.Tensor | Sequence[int] | int,
                              baseline: torch.Tensor | float = 0.0, *, n_steps: int = 16,
                              internal_batch_size: int = 1024) -> torch.Tensor:
    """Integrated gradients via captum ``IntegratedGradients`` (Gauss-Legendre, ``n_steps``)
    from ``baseline`` (same forms as :func:`make_baseline` returns); signed attribution summed
    over channels, (N, H, W)."""
    from captum.attr import IntegratedGradients

    x = _check_images(x)
    t = _as_targets(target, x.shape[0]).to(x.device)
    b = _expand_baseline(baseline, x).contiguous()
    a = IntegratedGradients(forward).attribute(x, baselines=b, target=t, n_steps=int(n_steps),
                                               internal_batch_size=int(internal_batch_size))
    return a.sum(dim=1).detach()


def random_maps(shape: Sequence[int], *, seed: int = 0) -> torch.Tensor:
    """I.i.d. U(0, 1) maps of ``shape`` (N, H, W): the control a saliency method must beat."""
    return torch.rand(tuple(shape), generator=_generator(seed))


# --------------------------------------------------------------------------------------------
# saliency metrics
# --------------------------------------------------------------------------------------------


def _region_scores(saliency: torch.Tensor, region_size: int) -> torch.Tensor:
    """Mean saliency per non-overlapping ``region_size`` square (ceil-mode at the border)."""
    s = saliency.unsqueeze(1).double()
    if region_size == 1:
        return s.flatten(1)
    return F.avg_pool2d(s, region_size, stride=region_size, ceil_mode=True).flatten(1)


def perturbation_curve(forward: ScoreFn, x: torch.Tensor, target: torch.Tensor | Sequence[int] | int,
                       saliency: torch.Tensor, baseline: torch.Tensor | float, *,
                       region_size: int = 1, n_steps: int = 8, max_fraction: float = 1.0,
                       order: str = "most", mode: str = "delete", batch_size: int = 2048,
                       score_x: torch.Tensor | None = None, score_baseline: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """Score of class ``target`` while regions are removed (or inserted) in saliency order.

    Regions are the non-overlapping ``region_size`` squares (1 = pixels), ranked by their mean
    saliency (``order="most"``: most relevant first = MoRF / deletion; ``"least"``: LeRF; ties
    keep raster order). At step ``k = 0 .. n_steps`` the first ``round(k / n_steps *
    max_fraction * R)`` of the ``R`` regions are

    - ``mode="delete"``: replaced by the baseline in ``x`` (MoRF, LeRF, deletion), or
    - ``mode="insert"``: copied from ``x`` into the baseline image (insertion).

    ``score_x`` / ``score_baseline`` (N,): the target scores of ``x`` and of the baseline image
    if already known; the steps that equal one of them (nothing or everything removed) then
    reuse them instead of running the model (the same numbers, fewer forward calls).

    Returns (N, n_steps + 1): the scores along the curve (column 0 = nothing removed /
    inserted). Use :func:`aopc` and :func:`curve_auc` on it.
    """
    x = _check_images(x)
    _check_choice("order", order, ("most", "least"))
    _check_choice("mode", mode, ("delete", "insert"))
    if int(n_steps) < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if not 0.0 < float(max_fraction) <= 1.0:
        raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction}")
    n, c, h, w = x.shape
    if saliency.shape != (n, h, w):
        raise ValueError(f"saliency must have shape {(n, h, w)}, got {tuple(saliency.shape)}")
    t = _as_targets(target, n).to(x.device)
    b = _expand_baseline(baseline, x)
    r = int(region_size)
    scores = _region_scores(saliency.to(x.device), r)  # (N, R)
    n_regions = scores.shape[1]
    key = -scores if order == "most" else scores
    rank_of = torch.empty_like(key, dtype=torch.long)
    order_idx = torch.sort(key, dim=1, stable=True).indices
    rank_of.scatter_(1, order_idx, torch.arange(n_regions, device=x.device).expand(n, -1))
    # region rank per pixel
    gh, gw = math.ceil(h / r), math.ceil(w / r)
    rank_img = rank_of.view(n, 1, gh, gw).float()
    if r > 1:
        rank_img = rank_img.repeat_interleave(r, dim=2).repeat_interleave(r, dim=3)[:, :, :h, :w]
    counts = [int(round(k / n_steps * max_fraction * n_regions)) for k in range(int(n_steps) + 1)]
    out = torch.empty(n, len(counts), dtype=torch.float32, device=x.device)
    # steps whose image is x itself or the baseline itself can reuse known scores
    start, end = (score_x, score_baseline) if mode == "delete" else (score_baseline, score_x)
    known: dict[int, torch.Tensor] = {}
    for k, cnt_k in enumerate(counts):
        if cnt_k == 0 and start is not None:
            known[k] = start
        elif cnt_k == n_regions and end is not None:
            known[k] = end
    todo = [k for k in range(len(counts)) if k not in known]
    for k, v in known.items():
        out[:, k] = torch.as_tensor(v, dtype=torch.float32, device=x.device).reshape(n)
    if todo:
        per_call = max(1, batch_size // len(todo))
        cnt = torch.tensor([counts[k] for k in todo], device=x.device, dtype=torch.float32).view(1, -1, 1, 1, 1)
        with torch.no_grad():
            for i in range(0, n, per_call):
                sel = (rank_img[i:i + per_call].unsqueeze(1) < cnt).to(x.dtype)  # (ni, steps, 1, H, W)
                xi, bi = x[i:i + per_call].unsqueeze(1), b[i:i + per_call].unsqueeze(1)
                imgs = xi + sel * (bi - xi) if mode == "delete" else bi + sel * (xi - bi)
                p = forward(imgs.reshape(-1, c, h, w)).reshape(xi.shape[0], len(todo), -1)
                out[i:i + xi.shape[0], todo] = p.gather(
                    2, t[i:i + per_call].view(-1, 1, 1).expand(-1, len(todo), 1)).squeeze(2).float()
    return out


def aopc(curve: torch.Tensor | np.ndarray) -> np.ndarray:
    """Area over the perturbation curve per image (Samek et al. 2017):
    ``1 / (L + 1) * sum_{k=0..L} (f(x^(0)) - f(x^(k)))`` for a curve with ``L + 1`` columns."""
    c = np.asarray(curve, dtype=float)
    return (c[:, :1] - c).mean(axis=1)


def curve_auc(curve: torch.Tensor | np.ndarray) -> np.ndarray:
    """Area under a deletion / insertion curve per image, x-axis rescaled to [0, 1]
    (trapezoid rule; Petsiuk et al. 2018)."""
    c = np.asarray(curve, dtype=float)
    if c.shape[1] < 2:
        raise ValueError("a curve needs at least two points")
    return ((c[:, 1:] + c[:, :-1]) / 2).mean(axis=1)


# --------------------------------------------------------------------------------------------
# agreement between maps
# --------------------------------------------------------------------------------------------


def _flat(a: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return arr.reshape(arr.shape[0], -1).astype(float)


def spearman_per_image(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
    """Spearman rank correlation between maps ``a[i]`` and ``b[i]`` (ties get average ranks),
    (N,); ``nan`` where a map is constant."""
    return spearman_rows(_flat(a), _flat(b))


def topk_intersection(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, k: int | float = 0.1
                      ) -> np.ndarray:
    """Fraction of the ``k`` highest pixels of ``a[i]`` that are also among the ``k`` highest of
    ``b[i]`` (N,). ``k``: a count (int >= 1) or a fraction of the pixels (0 < k < 1). Ties are
    broken by raster order (stable sort)."""
    fa, fb = _flat(a), _flat(b)
    if fa.shape != fb.shape:
        raise ValueError(f"maps must have equal shapes, got {fa.shape} and {fb.shape}")
    d = fa.shape[1]
    kk = int(round(k * d)) if isinstance(k, float) and 0 < k < 1 else int(k)
    if not 1 <= kk <= d:
        raise ValueError(f"k must be a count in [1, {d}] or a fraction in (0, 1), got {k}")
    ta = np.argsort(-fa, axis=1, kind="stable")[:, :kk]
    tb = np.argsort(-fb, axis=1, kind="stable")[:, :kk]
    out = np.empty(fa.shape[0])
    for i in range(fa.shape[0]):
        out[i] = np.intersect1d(ta[i], tb[i]).size / kk
    return out


def _minmax(m: np.ndarray) -> np.ndarray:
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def ssim_per_image(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, *, win_size: int = 7
                   ) -> np.ndarray:
    """Structural similarity (scikit-image) of each pair of maps after min-max scaling each
    map to [0, 1] (data_range 1), (N,)."""
    from skimage.metrics import structural_similarity

    na = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    nb = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    win = min(win_size, *na.shape[-2:])
    win -= 1 - win % 2  # odd
    return np.array([structural_similarity(_minmax(p.astype(float)), _minmax(q.astype(float)),
                                           data_range=1.0, win_size=win)
                     for p, q in zip(na, nb, strict=True)])


def pointing_game(saliency: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """1.0 where the map's maximum pixel lies inside the object mask, else 0.0 (N,). ``mask``
    (N, H, W) or (N, 1, H, W), inside = value > 0.5; ties at the maximum: first in raster order."""
    s = _flat(saliency)
    m = _flat(mask) > 0.5
    if s.shape != m.shape:
        raise ValueError(f"saliency and mask must cover the same pixels, got {s.shape} and {m.shape}")
    return m[np.arange(len(s)), np.argmax(s, axis=1)].astype(float)


def mass_inside(saliency: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """Share of the map's positive mass inside the object mask (N,):
    ``sum(max(s, 0) * mask) / sum(max(s, 0))``; ``nan`` for a map with no positive value.
    A soft (anti-aliased) mask weighs pixels by its value."""
    s = np.clip(_flat(saliency), 0, None)
    m = _flat(mask)
    if s.shape != m.shape:
        raise ValueError(f"saliency and mask must cover the same pixels, got {s.shape} and {m.shape}")
    tot = s.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, (s * m).sum(axis=1) / np.where(tot > 0, tot, 1), np.nan)


def pairwise_agreement(maps: Mapping[str, torch.Tensor], *, measure: str = "spearman",
                       k: int | float = 0.1) -> dict[tuple[str, str], np.ndarray]:
    """Per-image agreement for every unordered pair of named maps: ``{(a, b): (N,)}`` with
    ``measure`` in ``"spearman"``, ``"topk"`` (fraction ``k``), ``"ssim"``."""
    _check_choice("measure", measure, ("spearman", "topk", "ssim"))
    fn: Callable[[Any, Any], np.ndarray]
    if measure == "spearman":
        fn = spearman_per_image
    elif measure == "topk":
        def fn(p, q):
            return topk_intersection(p, q, k)
    else:
        fn = ssim_per_image
    return {(a, b): fn(maps[a], maps[b]) for a, b in itertools.combinations(list(maps), 2)}


def pooled_median(pairs: Mapping[Any, np.ndarray]) -> float:
    """Median over all images and pairs of a :func:`pairwise_agreement` result (nan ignored)."""
    vals = np.concatenate([np.asarray(v, float).ravel() for v in pairs.values()]) if pairs else np.array([])
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if vals.size else math.nan


def ranking_kendall_tau(scores_a: Mapping[str, float], scores_b: Mapping[str, float]) -> float:
    """Kendall tau-b between two rankings of the same methods given as ``{method: score}``."""
    keys = sorted(scores_a)
    if sorted(scores_b) != keys:
        raise ValueError(f"both rankings must score the same methods, got {keys} and {sorted(scores_b)}")
    return kendall_tau([scores_a[k] for k in keys], [scores_b[k] for k in keys])


def rank_position(scores: Mapping[str, float], method: str, *, higher_is_better: bool = True) -> int:
    """1-based place of ``method`` when methods are sorted best first."""
    ordered = sorted(scores, key=lambda m: -scores[m] if higher_is_better else scores[m])
    return ordered.index(method) + 1
