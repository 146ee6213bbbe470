"""Image perturbations and the measurements that go with them.

Perturbations act on batches ``(N, C, H, W)`` of float images (torch tensors; numpy arrays are
accepted and converted). Two families:

- the perturbations of Oleszkiewicz et al. (2020), study 02: additive Gaussian noise with a std
  given as a fraction of each image's dynamic range, and Gaussian low-/high-pass filters applied
  in the Fourier domain (:func:`gaussian_noise`, :func:`fourier_lowpass`,
  :func:`fourier_highpass`, :func:`fourier_gaussian_mask`);
- the "signal interference" of Pang et al. (2021), study 03: salt-and-pepper noise, Gaussian
  blur and a brightness/contrast shift (:func:`salt_and_pepper`, :func:`gaussian_blur`,
  :func:`brightness_contrast`), all mapping images in [0, 1] to images clipped to [0, 1];
  :data:`SIGNAL_PERTURBATIONS` names them with a suggested severity grid.

Measurements: per-object contrast-to-noise ratio (:func:`object_regions`, :func:`regions_cnr`),
whole-image SSIM and PSNR (scikit-image), the fraction of flipped decisions, and ROC AUC with
bootstrap confidence intervals, paired across conditions (:func:`bootstrap_auc`,
:func:`auc_with_ci`, :func:`auc_drop`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = torch.Tensor | np.ndarray


# ----------------------------------------------------------------------------- helpers


def _as_batch(x: ArrayLike, name: str = "x") -> torch.Tensor:
    """Return ``x`` as a float tensor of shape (N, C, H, W); raise ValueError otherwise."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        x = x.float()
    return x


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _check_nonneg(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


# ----------------------------------------------------------------------------- study 03 signals


def salt_and_pepper(x: ArrayLike, amount: float, seed: int = 0) -> torch.Tensor:
    """Salt-and-pepper noise: each pixel is set to 0 or 1 (equal odds) with probability ``amount``.

    Args:
        x: images (N, C, H, W) in [0, 1].
        amount: fraction of pixels replaced, in [0, 1] (0 returns a copy of ``x``). A pixel
            position is corrupted in all channels at once (as a dead/saturated sensor pixel).
        seed: seeds the corruption pattern; the same seed gives the same output.

    Returns:
        The corrupted images, clipped to [0, 1].
    """
    x = _as_batch(x)
    amount = _check_nonneg(amount, "amount")
    if amount > 1:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    gen = _generator(seed)
    n, _, h, w = x.shape
    u = torch.rand((n, 1, h, w), generator=gen).to(x.device)
    salt = torch.rand((n, 1, h, w), generator=gen).to(x.device) < 0.5
    hit = u < amount
    out = x.clone()
    out = torch.where(hit & salt, torch.ones_like(out), out)
    out = torch.where(hit & ~salt, torch.zeros_like(out), out)
    return out.clamp(0.0, 1.0)


def _gaussian_kernel1d(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: ArrayLike, sigma: float) -> torch.Tensor:
    """Spatial Gaussian blur with standard deviation ``sigma`` pixels (separable convolution).

    Written as two 1-D convolutions (kernel radius ``ceil(3 sigma)``, reflect padding) rather than
    torchvision's ``gaussian_blur`` because that one needs an odd kernel size chosen by the
    caller; here ``sigma`` alone fixes the kernel.

    Args:
        x: images (N, C, H, W) in [0, 1].
        sigma: blur std in pixels (>= 0; 0 returns a copy).

    Returns:
        The blurred images, clipped to [0, 1].
    """
    x = _as_batch(x)
    sigma = _check_nonneg(sigma, "sigma")
    if sigma == 0:
        return x.clone().clamp(0.0, 1.0)
    n, c, h, w = x.shape
    k = _gaussian_kernel1d(sigma, x.device, x.dtype)
    r = (k.numel() - 1) // 2
    y = x.reshape(n * c, 1, h, w)
    # reflect padding needs pad < dim; fall back to replicate for tiny images
    mode = "reflect" if r < min(h, w) else "replicate"
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w).clamp(0.0, 1.0)


def brightness_contrast(x: ArrayLike, brightness: float = 0.0, contrast: float = 1.0) -> torch.Tensor:
    """Contrast scaling about each image's mean followed by an additive brightness shift.

    ``out = clip((x - mean) * contrast + mean + brightness, 0, 1)`` with ``mean`` the per-image,
    per-channel mean.

    Args:
        x: images (N, C, H, W) in [0, 1].
        brightness: added intensity (default 0.0; e.g. 0.3 brightens by 30% of the range).
        contrast: factor on deviations from the mean (default 1.0; 0 gives a flat image, >= 0).

    Returns:
        The shifted images, clipped to [0, 1].
    """
    x = _as_batch(x)
    contrast = _check_nonneg(contrast, "contrast")
    brightness = float(brightness)
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + brightness).clamp(0.0, 1.0)


def _brightness_shift(x: ArrayLike, severity: float) -> torch.Tensor:
    """Severity-parameterised brightness/contrast shift used in :data:`SIGNAL_PERTURBATIONS`:
    brighten by ``severity`` and scale contrast by ``1 - severity``."""
    s = _check_nonneg(severity, "severity")
    return brightness_contrast(x, brightness=s, contrast=max(0.0, 1.0 - s))


def _gaussian_noise_clipped(x: ArrayLike, severity: float, seed: int = 0) -> torch.Tensor:
    """Additive N(0, severity^2) noise in absolute intensity units, clipped to [0, 1]."""
    x = _as_batch(x)
    s = _check_nonneg(severity, "severity")
    noise = torch.randn(x.shape, generator=_generator(seed)).to(x.device, x.dtype)
    return (x + s * noise).clamp(0.0, 1.0)


#: name -> (function(x, severity, seed) -> perturbed x, suggested severity grid including 0).
#: Severity units: noise std (intensity), fraction of pixels, blur sigma (pixels), brightness
#: shift b (contrast scaled by 1 - b). Grids suit 28x28 images in [0, 1].
SIGNAL_PERTURBATIONS: dict[str, tuple[Callable[..., torch.Tensor], list[float]]] = {
    "gaussian_noise": (_gaussian_noise_clipped, [0.0, 0.05, 0.1, 0.2, 0.3, 0.5]),
    "salt_and_pepper": (lambda x, severity, seed=0: salt_and_pepper(x, severity, seed),
                        [0.0, 0.02, 0.05, 0.1, 0.2, 0.3]),
    "gaussian_blur": (lambda x, severity, seed=0: gaussian_blur(x, severity),
                      [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]),
    "brightness_contrast": (lambda x, severity, seed=0: _brightness_shift(x, severity),
                            [0.0, 0.1, 0.2, 0.3, 0.45, 0.6]),
}


def apply_signal_perturbation(name: str, x: ArrayLike, severity: float, seed: int = 0) -> torch.Tensor:
    """Apply the perturbation ``name`` of :data:`SIGNAL_PERTURBATIONS` at ``severity``."""
    if name not in SIGNAL_PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; valid: {sorted(SIGNAL_PERTURBATIONS)}")
    fn, _ = SIGNAL_PERTURBATIONS[name]
    return fn(x, severity, seed=seed)
