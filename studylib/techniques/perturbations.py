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
whole-image SSIM and PSNR (scikit-image), the fraction of flipped decisions, and for study 02 the
classifier, the dispatch of its four perturbations and the lesion objects of a test set
(:func:`screening_classifier`, :func:`perturb`, :func:`sensitivity_scores`,
:func:`lesion_regions`, :func:`lowpass_object_visibility`).

These are the methods only. ROC AUCs and every interval live in ``studylib.stats``; study 02's
records, claims and figures live in ``studylib.studies.mammogram_perturbation``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..stats.intervals import hierarchical_bootstrap, t_interval

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


# ----------------------------------------------------------------------------- study 02 perturbations


def gaussian_noise(x: ArrayLike, std_fraction: float, seed: int = 0, *, clip: bool = True) -> torch.Tensor:
    """Additive Gaussian noise whose std is a fraction of each image's dynamic range.

    ``out = x + std_fraction * (max(x_i) - min(x_i)) * z`` with ``z ~ N(0, 1)`` i.i.d. per
    pixel and the range taken per image ``i`` over all its channels.

    Args:
        x: images (N, C, H, W).
        std_fraction: noise std as a fraction of the dynamic range (>= 0; 0 returns a copy).
        seed: seeds the noise; the same seed gives the same output.
        clip: clip the result to [0, 1] (default True: the images' valid intensity range).

    Returns:
        The noisy images.
    """
    x = _as_batch(x)
    s = _check_nonneg(std_fraction, "std_fraction")
    flat = x.reshape(x.shape[0], -1)
    rng = (flat.max(1).values - flat.min(1).values).view(-1, 1, 1, 1)
    z = torch.randn(x.shape, generator=_generator(seed)).to(x.device, x.dtype)
    out = x + s * rng * z
    return out.clamp(0.0, 1.0) if clip else out


def fourier_gaussian_mask(h: int, w: int, r: float, *, device: torch.device | str = "cpu",
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The Gaussian low-pass mask ``M(d) = exp(-d^2 / (2 r^2))`` on the unshifted FFT grid.

    ``d`` is the distance of each frequency from the zero frequency, in cycles per image along
    each axis (``d = sqrt(ky^2 + kx^2)`` with ``ky = fftfreq(h) * h``, ``kx = fftfreq(w) * w``),
    so the Nyquist frequency of a square image of side ``n`` is ``n / 2`` and a low-pass with
    radius ``r`` equals a circular spatial Gaussian blur of std ``n / (2 pi r)`` pixels.

    Args:
        h, w: image height and width.
        r: the mask's radius (std) in cycles per image (> 0; ``inf`` gives all ones).

    Returns:
        A (h, w) tensor, laid out like ``torch.fft.fft2``'s output (zero frequency at [0, 0]).
    """
    r = float(r)
    if not r > 0:
        raise ValueError(f"r must be > 0 (cycles per image), got {r}")
    ky = torch.fft.fftfreq(h, d=1.0 / h, dtype=torch.float64)
    kx = torch.fft.fftfreq(w, d=1.0 / w, dtype=torch.float64)
    d2 = ky[:, None] ** 2 + kx[None, :] ** 2
    if math.isinf(r):
        m = torch.ones_like(d2)
    else:
        m = torch.exp(-d2 / (2.0 * r * r))
    return m.to(device=device, dtype=dtype)


def _fourier_filter(x: torch.Tensor, mask: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """``Re(ifft2(fft2(x) * mask))`` in float64, ``chunk`` images at a time.

    Each image's transform is independent, so chunking changes no value; it bounds the
    complex128 intermediates (16 bytes per pixel, three of them alive at once) to ``chunk``
    images: filtering 2,400 images of 128 x 128 in one call needed about 2 GB more memory.
    """
    mask = mask.to(x.device, torch.float64)
    out = torch.empty_like(x)
    for i in range(0, x.shape[0], chunk):
        spec = torch.fft.fft2(x[i:i + chunk].double())
        out[i:i + chunk] = torch.fft.ifft2(spec * mask).real.to(x.dtype)
    return out


def fourier_lowpass(x: ArrayLike, r: float) -> torch.Tensor:
    """Gaussian low-pass filter in the Fourier domain: ``Re(ifft2(fft2(x) * M))``.

    Args:
        x: images (N, C, H, W); each channel is filtered separately (periodic boundary, as the
            discrete Fourier transform implies).
        r: mask radius in cycles per image (see :func:`fourier_gaussian_mask`); smaller ``r``
            removes more; ``inf`` returns the input. The output is not clipped (a low-pass with
            a positive kernel keeps values inside the input's range anyway).

    Returns:
        The filtered images, same shape and dtype.
    """
    x = _as_batch(x)
    return _fourier_filter(x, fourier_gaussian_mask(x.shape[-2], x.shape[-1], r))


def fourier_highpass(x: ArrayLike, r: float) -> torch.Tensor:
    """Gaussian high-pass filter in the Fourier domain: ``Re(ifft2(fft2(x) * (1 - M)))``.

    Args:
        x: images (N, C, H, W).
        r: radius of the removed low-frequency Gaussian in cycles per image; larger ``r``
            removes more. The zero frequency (image mean) is always removed, so the output has
            zero mean per channel and is not clipped (it has negative values by construction).

    Returns:
        The filtered images, same shape and dtype.
    """
    x = _as_batch(x)
    return _fourier_filter(x, 1.0 - fourier_gaussian_mask(x.shape[-2], x.shape[-1], r))


def renormalise_to_input(out: ArrayLike, x: ArrayLike) -> torch.Tensor:
    """Min-max map each image channel of ``out`` onto the range of the same channel of ``x``.

    The reference filters of nyukat/perception_comparison min-max normalise their output; here
    the target range is the input image's own ``[min, max]``, so a filtered image stays on the
    intensity scale the classifier was trained on and a nearly-identity filter returns nearly
    the input (a high-pass that only removes the image mean gives back ``x``, not ``x - mean``).
    A constant channel of ``out`` maps to the input's minimum.
    """
    out, x = _as_batch(out, "out"), _as_batch(x)
    if out.shape != x.shape:
        raise ValueError(f"out {tuple(out.shape)} and x {tuple(x.shape)} differ in shape")
    o = out.reshape(out.shape[0], out.shape[1], -1)
    r = x.reshape(x.shape[0], x.shape[1], -1)
    o_lo, o_hi = o.min(-1, keepdim=True).values, o.max(-1, keepdim=True).values
    x_lo, x_hi = r.min(-1, keepdim=True).values, r.max(-1, keepdim=True).values
    span = o_hi - o_lo
    unit = torch.where(span > 0, (o - o_lo) / span.clamp_min(1e-12), torch.zeros_like(o))
    return (x_lo + unit * (x_hi - x_lo)).reshape(out.shape)


def radius_from_nyquist_fraction(fraction: float, image_size: int) -> float:
    """``fraction * image_size / 2``: a filter radius given as a fraction of the Nyquist frequency,
    so one severity grid means the same thing at 64, 128 or 512 pixels."""
    fraction = float(fraction)
    if not fraction > 0:
        raise ValueError(f"fraction must be > 0, got {fraction}")
    return fraction * int(image_size) / 2.0


# ----------------------------------------------------------------------------- contrast-to-noise


@dataclass(frozen=True)
class Region:
    """One object (a calcification speck or a mass) and its background ring, as boolean masks
    over the crop ``window`` of the image (a pair of slices)."""

    window: tuple[slice, slice]
    inside: np.ndarray
    ring: np.ndarray
    area: int


def object_regions(labels: np.ndarray, *, gap: int = 1, width: int = 3,
                   exclude: np.ndarray | None = None) -> list[Region]:
    """The inside and background ring of every labelled object of one image.

    The ring of object ``k`` is the set of pixels within ``gap + width`` pixels (chessboard
    distance) of the object but farther than ``gap`` pixels from it, minus every pixel within
    ``gap`` pixels of any other object and minus ``exclude``. It is computed on a crop around
    the object, so the cost does not grow with the image size.

    Args:
        labels: (H, W) integer array, 0 = background, k > 0 = object k (e.g. from
            ``scipy.ndimage.label`` of a binary mask); a boolean mask counts as one object.
        gap: pixels left out between an object and its ring (default 1), so that the object's
            own blurred edge does not count as background.
        width: ring width in pixels (default 3).
        exclude: optional (H, W) boolean mask of pixels never used as background (e.g. other
            lesions).

    Returns:
        One :class:`Region` per object, in label order.
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D array, got shape {labels.shape}")
    if labels.dtype == bool:
        labels = labels.astype(np.int32)
    gap, width = int(gap), int(width)
    if gap < 0 or width < 1:
        raise ValueError(f"gap must be >= 0 and width >= 1, got gap={gap}, width={width}")
    h, w = labels.shape
    occupied = labels > 0
    struct = np.ones((3, 3), dtype=bool)
    blocked = ndimage.binary_dilation(occupied, struct, iterations=gap) if gap > 0 else occupied
    if exclude is not None:
        blocked = blocked | np.asarray(exclude, dtype=bool)
    regions: list[Region] = []
    pad = gap + width
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        y0, y1 = max(0, sl[0].start - pad), min(h, sl[0].stop + pad)
        x0, x1 = max(0, sl[1].start - pad), min(w, sl[1].stop + pad)
        window = (slice(y0, y1), slice(x0, x1))
        inside = labels[window] == k
        outer = ndimage.binary_dilation(inside, struct, iterations=pad)
        ring = outer & ~blocked[window]
        regions.append(Region(window=window, inside=inside, ring=ring, area=int(inside.sum())))
    return regions


def regions_cnr(image: np.ndarray, regions: Sequence[Region], *, min_ring: int = 8) -> np.ndarray:
    """Contrast-to-noise ratio of each region: ``(mean inside - mean ring) / std ring``.

    Args:
        image: (H, W) array (one channel).
        regions: from :func:`object_regions` on the same image geometry.
        min_ring: rings with fewer pixels give ``nan`` (default 8); a ring with zero std gives
            ``+inf``/``-inf`` by the sign of the contrast (``nan`` for zero contrast).

    Returns:
        (len(regions),) float array. The std is the sample std (ddof=1).
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    out = np.full(len(regions), np.nan)
    for i, reg in enumerate(regions):
        crop = image[reg.window]
        ring_vals = crop[reg.ring]
        if ring_vals.size < max(2, min_ring) or reg.area == 0:
            continue
        contrast = crop[reg.inside].mean() - ring_vals.mean()
        sd = ring_vals.std(ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[i] = contrast / sd if sd > 0 else (np.sign(contrast) * np.inf if contrast else np.nan)
    return out


def batch_cnr(images: ArrayLike, regions: Sequence[Sequence[Region]], *, channel: int = 0,
              min_ring: int = 8) -> np.ndarray:
    """CNR of every region of every image, concatenated in image order.

    Args:
        images: (N, C, H, W) images; ``channel`` is measured (default 0).
        regions: ``regions[i]`` are image ``i``'s regions (:func:`object_regions`).

    Returns:
        1-D float array of length ``sum(len(r) for r in regions)``.
    """
    x = _as_batch(images, "images").detach().cpu().numpy()
    if len(regions) != x.shape[0]:
        raise ValueError(f"regions has {len(regions)} entries for {x.shape[0]} images")
    parts = [regions_cnr(x[i, channel], regions[i], min_ring=min_ring) for i in range(x.shape[0])]
    return np.concatenate(parts) if parts else np.zeros(0)


def _template(reg: Region, shape: tuple[int, int]) -> np.ndarray:
    """The centre-surround template ``inside / |inside| - ring / |ring|`` of one region, placed
    in a full ``shape`` image (zero elsewhere), flattened."""
    t = np.zeros(shape)
    t[reg.window] = reg.inside / reg.inside.sum() - reg.ring / reg.ring.sum()
    return t.reshape(-1)


def npw_dprime(images: ArrayLike, regions: Sequence[Sequence[Region]],
               backgrounds: ArrayLike, *, channel: int = 0, min_ring: int = 8) -> np.ndarray:
    """Detectability index d' of every region against lesion-free backgrounds.

    A non-prewhitening observer with a centre-surround template: the response to an object is
    ``t = mean(inside) - mean(ring)`` (the CNR's own contrast, :func:`regions_cnr`), and its
    noise is the spread of the *same* response over lesion-free images at the same place,
    ``d' = (t - mean_k t_k) / std_k t_k`` (backgrounds k = 1..K, ``ddof=1``). The plain CNR
    divides by the std of single ring *pixels*, the wrong noise for a large object on a 1/f^3
    (mammographic) background: what an observer must see a mass against is the background
    averaged over a mass-sized area, whose variance for beta > 2 grows with the area, while the
    pixel std is set by the largest scales and the pixel noise. Per object, ``d' >= 3`` says the
    response exceeds the lesion-free responses by three of their standard deviations.

    Args:
        images: (N, C, H, W) images holding the objects; ``channel`` is measured (default 0).
        regions: ``regions[i]`` are image ``i``'s regions (:func:`object_regions`).
        backgrounds: (K, C, H, W) lesion-free images of the same geometry (K >= 3), e.g. the
            test set's negatives, processed like ``images`` (the same filter).
        min_ring: rings with fewer pixels give ``nan`` (default 8).

    Returns:
        1-D float array of length ``sum(len(r) for r in regions)``, in image order.
    """
    x = _as_batch(images, "images").detach().cpu().double().numpy()[:, channel]
    bg = _as_batch(backgrounds, "backgrounds").detach().cpu().double().numpy()[:, channel]
    if len(regions) != x.shape[0]:
        raise ValueError(f"regions has {len(regions)} entries for {x.shape[0]} images")
    if bg.shape[0] < 3 or bg.shape[1:] != x.shape[1:]:
        raise ValueError(f"need >= 3 backgrounds of shape {x.shape[1:]}, got {bg.shape}")
    # every template in the full image, so the responses of all K backgrounds to a block of
    # templates are one matrix product (no crops copied per region and background)
    items = [(i, reg) for i, regs in enumerate(regions) for reg in regs]
    out = np.full(len(items), np.nan)
    bg_flat = bg.reshape(bg.shape[0], -1)
    shape = x.shape[1:]
    for lo in range(0, len(items), 256):
        block = [(k, i, reg) for k, (i, reg) in enumerate(items[lo:lo + 256], start=lo)
                 if reg.area > 0 and int(reg.ring.sum()) >= max(2, min_ring)]
        if not block:
            continue
        t = np.stack([_template(reg, shape) for _, _, reg in block])   # (B, H*W)
        resp_bg = bg_flat @ t.T                                          # (K, B)
        resp = np.einsum("bp,bp->b", x.reshape(x.shape[0], -1)[[i for _, i, _ in block]], t)
        sd = resp_bg.std(axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(sd > 0, (resp - resp_bg.mean(axis=0)) / sd, np.nan)
        out[[k for k, _, _ in block]] = d
    return np.asarray(out, dtype=float)


def detectable(cnr: np.ndarray, threshold: float = 3.0) -> np.ndarray:
    """``cnr >= threshold`` (Rose criterion: an object is visible at a CNR of about 3-5)."""
    return np.asarray(cnr, dtype=float) >= float(threshold)


def retained_fraction(cnr_before: np.ndarray, cnr_after: np.ndarray, threshold: float = 3.0) -> float:
    """Of the objects detectable before (``cnr_before >= threshold``), the fraction still
    detectable after; ``nan`` if none was detectable before."""
    before = detectable(cnr_before, threshold)
    if not before.any():
        return math.nan
    return float(detectable(np.asarray(cnr_after)[before], threshold).mean())


# ----------------------------------------------------------------------------- image similarity


def ssim_psnr(reference: ArrayLike, test: ArrayLike, *, data_range: float = 1.0,
              channel: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-image SSIM and PSNR of ``test`` against ``reference`` (scikit-image).

    Args:
        reference, test: (N, C, H, W) images.
        data_range: the intensity range used by both measures (default 1.0: images in [0, 1]).
        channel: the channel compared (default 0; the phantoms are single-channel).

    Returns:
        ``(ssim, psnr)``, two (N,) arrays. PSNR is ``inf`` for identical images.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a = _as_batch(reference, "reference").detach().cpu().double().numpy()
    b = _as_batch(test, "test").detach().cpu().double().numpy()
    if a.shape != b.shape:
        raise ValueError(f"reference {a.shape} and test {b.shape} differ in shape")
    ssim = np.empty(a.shape[0])
    psnr = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        ssim[i] = structural_similarity(a[i, channel], b[i, channel], data_range=data_range)
        if np.array_equal(a[i, channel], b[i, channel]):
            psnr[i] = np.inf
        else:
            psnr[i] = peak_signal_noise_ratio(a[i, channel], b[i, channel], data_range=data_range)
    return ssim, psnr


# ----------------------------------------------------------------------------- decisions


def flip_fraction(p_clean: ArrayLike, p_perturbed: ArrayLike, threshold: float = 0.5) -> float:
    """Fraction of examples whose decision ``p >= threshold`` differs between the two scores."""
    a = np.asarray(p_clean, dtype=float) >= threshold
    b = np.asarray(p_perturbed, dtype=float) >= threshold
    if a.shape != b.shape:
        raise ValueError(f"p_clean {a.shape} and p_perturbed {b.shape} differ in shape")
    return float((a != b).mean()) if a.size else math.nan


# ----------------------------------------------------------------------------- study 02 methods

#: The four perturbations of study 02 -> what their parameter (see :func:`perturb`) means.
STUDY02_PERTURBATIONS = {
    "gaussian_noise": "noise std as a fraction of each image's dynamic range",
    "lowpass": "low-pass radius r as a fraction of the Nyquist frequency (smaller = stronger)",
    "highpass": "high-pass radius r as a fraction of the Nyquist frequency (larger = stronger)",
    "pgd": "L-inf radius eps of PGD against the classifier",
}


def screening_classifier(*, in_channels: int = 1, image_size: int = 128, pool: int = 8,
                         stem_channels: int = 8, stem_kernel: int = 3,
                         widths: Sequence[int] = (16, 32, 64),
                         blocks_per_stage: Sequence[int] = (1, 1, 1), seed: int = 0) -> torch.nn.Module:
    """The lesion classifier of study 02: a full-resolution convolution, max-pooling, then
    studylib's narrow ResNet (``studylib.models.build_model("resnet", ...)``) with two outputs.

    The stem ``Conv2d(in_channels, stem_channels, stem_kernel) -> BatchNorm -> ReLU ->
    MaxPool2d(pool)`` sees every pixel at full resolution (so it can respond to a one-pixel
    speck) and the max-pool keeps the strongest local response of each ``pool x pool`` block,
    where average pooling or resizing would divide a speck's response by ``pool^2`` (they are
    low-pass filters themselves). The ResNet then runs at ``image_size / pool`` resolution, which
    is what makes 128x128 training fit a CPU budget. Written here because ``build_model``'s
    ResNet has a stride-1 stem; a lossless space-to-depth (PixelUnshuffle) stem was tried and
    learnt calcifications far worse (AUC ~0.6 vs ~0.9 on 64x64 phantoms).

    Args:
        in_channels: image channels (default 1).
        image_size: input side (default 128); must be divisible by ``pool``.
        pool: max-pool size and stride (default 8; 1 = none).
        stem_channels, stem_kernel: stem width and kernel size (defaults 8 and 3).
        widths, blocks_per_stage: passed to the ResNet (defaults ``(16, 32, 64)``, ``(1, 1, 1)``).
        seed: initial-weight seed (the same seed gives the same initial weights).

    Returns:
        An ``nn.Sequential`` (stem, ResNet) with a JSON-able ``.config`` (used in cache keys).
    """
    from ..models import build_model

    pool, k = int(pool), int(stem_kernel)
    if pool < 1 or int(image_size) % pool:
        raise ValueError(f"pool must be >= 1 and divide image_size={image_size}, got {pool}")
    if k < 1 or k % 2 == 0:
        raise ValueError(f"stem_kernel must be an odd number >= 1, got {stem_kernel}")
    inner = build_model("resnet", in_channels=int(stem_channels), num_classes=2,
                        image_size=int(image_size) // pool, widths=tuple(widths),
                        blocks_per_stage=tuple(blocks_per_stage), seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) + 7919)
        stem = torch.nn.Sequential(
            torch.nn.Conv2d(int(in_channels), int(stem_channels), k, padding=k // 2, bias=False),
            torch.nn.BatchNorm2d(int(stem_channels)), torch.nn.ReLU(), torch.nn.MaxPool2d(pool))
    model = torch.nn.Sequential(stem, inner)
    model.config = {"name": "screening_classifier", "pool": pool,  # type: ignore[attr-defined]
                    "stem_channels": int(stem_channels), "stem_kernel": k,
                    "in_channels": int(in_channels), "image_size": int(image_size),
                    "resnet": inner.config}
    return model


def positive_probability(model: torch.nn.Module, x: ArrayLike, *, device: str | torch.device = "cpu",
                         batch_size: int = 512) -> np.ndarray:
    """Softmax probability of class 1 (lesion present) for each image, as a numpy array."""
    from ..training import predict_logits

    logits = predict_logits(model, _as_batch(x), device, batch_size=batch_size)
    return torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()


def perturb(name: str, x: ArrayLike, level: float | None, *, seed: int = 0,
            model: torch.nn.Module | None = None, y: torch.Tensor | None = None,
            pgd_steps: int = 10, device: str | torch.device = "cpu",
            batch_size: int = 256) -> torch.Tensor:
    """Apply one of the four study-02 perturbations (:data:`STUDY02_PERTURBATIONS`).

    Args:
        name: ``"gaussian_noise"``, ``"lowpass"``, ``"highpass"`` or ``"pgd"``.
        x: images (N, C, H, W) in [0, 1].
        level: the perturbation's own parameter, or ``None`` for the clean images:
            - ``"gaussian_noise"``: noise std as a fraction of each image's dynamic range
              (:func:`gaussian_noise`, clipped to [0, 1]);
            - ``"lowpass"``: radius ``r`` as a fraction of the Nyquist frequency
              ``min(H, W) / 2`` (:func:`fourier_lowpass`; smaller = stronger);
            - ``"highpass"``: the same for :func:`fourier_highpass` (larger = stronger), its
              output min-max mapped back onto each image's own range
              (:func:`renormalise_to_input`, as the reference filter renormalises);
            - ``"pgd"``: L-inf radius eps of untargeted PGD on the cross-entropy of the true
              label (``studylib.attacks.pgd``) against ``model``; needs ``model`` and ``y``.
        seed: seeds the noise / PGD random start.
        pgd_steps, device, batch_size: PGD settings (default 10 steps, cpu, 256).

    Returns:
        The perturbed images (a new tensor).
    """
    x = _as_batch(x)
    if name not in STUDY02_PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; valid: {sorted(STUDY02_PERTURBATIONS)}")
    if level is None:
        return x.clone()
    level = _check_nonneg(level, "level")
    nyquist = min(x.shape[-2:]) / 2.0
    if name == "gaussian_noise":
        return gaussian_noise(x, level, seed=seed)
    if name == "lowpass":
        return fourier_lowpass(x, level * nyquist)
    if name == "highpass":  # renormalised like the reference filter: not a brightness shift
        return renormalise_to_input(fourier_highpass(x, level * nyquist), x)
    if model is None or y is None:
        raise ValueError("perturbation 'pgd' needs model= and y=")
    from ..attacks import pgd

    dev = torch.device(device)
    model = model.to(dev).eval()
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(dev)
        yb = y[i:i + batch_size].to(dev)
        out.append(pgd(model, xb, yb, level, steps=pgd_steps, seed=seed + i).cpu())
    return torch.cat(out)


def labelled_objects(mask: ArrayLike) -> np.ndarray:
    """Connected components (8-connectivity) of a binary (H, W) mask as an int label image."""
    from scipy import ndimage

    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask) > 0
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    labels, _ = ndimage.label(m, structure=np.ones((3, 3), dtype=bool))
    return labels


def cluster_bootstrap_fraction(hits: np.ndarray, totals: np.ndarray, *, n_boot: int = 1000,
                               seed: int = 0, ci: float = 0.95) -> dict[str, float | list[float]]:
    """A ratio of sums ``sum(hits) / sum(totals)`` with a bootstrap CI resampling *clusters*.

    Used for "fraction of specks still detectable": specks of one image are correlated (same
    background, same filter), so the image, not the speck, is the resampling unit. The interval
    is :func:`studylib.stats.hierarchical_bootstrap` with one group whose items are the clusters
    (the kit's one bootstrap), so it lies inside [0, 1].

    Args:
        hits, totals: (M,) per-cluster counts (e.g. per image: specks retained, specks
            detectable before), ``0 <= hits <= totals``; clusters with ``totals == 0`` add
            nothing to either sum.

    Returns:
        ``{"fraction": f, "ci95": [lo, hi], "n_clusters": M, "n_objects": sum(totals)}``;
        the interval is ``[nan, nan]`` with fewer than two clusters or ``n_boot <= 0``.
    """
    hits = np.asarray(hits, dtype=float)
    totals = np.asarray(totals, dtype=float)
    if hits.shape != totals.shape or hits.ndim != 1:
        raise ValueError("hits and totals must be 1-D arrays of equal length")
    m = hits.size
    tot = totals.sum()
    frac = float(hits.sum() / tot) if tot > 0 else math.nan
    ci95 = [math.nan, math.nan]
    if m >= 2 and n_boot > 0 and tot > 0:
        iv = hierarchical_bootstrap([np.column_stack([hits, totals])], _ratio_of_sums,
                                    n_boot=int(n_boot), ci=ci, seed=seed, bounds=(0.0, 1.0))
        ci95 = [iv.lo, iv.hi]
    return {"fraction": frac, "ci95": ci95, "n_clusters": int(m), "n_objects": int(tot)}


def _ratio_of_sums(rows: np.ndarray) -> float:
    """``sum(rows[:, 0]) / sum(rows[:, 1])`` (nan when the denominator is 0)."""
    den = rows[:, 1].sum()
    return float(rows[:, 0].sum() / den) if den > 0 else math.nan


def lowpass_object_visibility(x: ArrayLike, regions: Sequence[Sequence[Region]],
                              r_fractions: Sequence[float], *, threshold: float = 3.0,
                              data_range: float = 1.0, n_boot: int = 1000,
                              seed: int = 0,
                              backgrounds: ArrayLike | None = None) -> dict[str, object]:
    """How low-pass filtering changes object CNR, detectability and whole-image SSIM/PSNR.

    Args:
        x: (N, 1, H, W) images holding the objects.
        regions: ``regions[i]``: the objects of image ``i`` (:func:`object_regions`).
        r_fractions: low-pass radii as fractions of the Nyquist frequency.
        threshold: CNR at which an object counts as detectable (default 3).
        data_range: for SSIM/PSNR (default 1.0).
        n_boot, seed: cluster bootstrap over images for the retained fraction.
        backgrounds: lesion-free images (K, 1, H, W); when given the index is
            :func:`npw_dprime` against them (filtered at each level like ``x``) instead of the
            ring CNR: for masses on 1/f^3 backgrounds.

    Returns:
        ``{"cnr_clean": (M,) CNR of all M objects unfiltered, "detectable_clean": fraction of
        objects with CNR >= threshold unfiltered, "detectable_per_image": (N,) objects
        detectable unfiltered in each image, "per_r": [one dict per r with "r_fraction",
        "median_cnr", "kept_per_image" ((N,) of those, still detectable after the filter),
        "retained" (:func:`cluster_bootstrap_fraction` of objects detectable before and after,
        over the images with at least one), "ssim_mean", "ssim_ci95" (t over images, inside
        [-1, 1]), "psnr_mean"]}``.
    """
    x = _as_batch(x)
    counts = np.array([len(r) for r in regions])
    img_of = np.repeat(np.arange(len(regions)), counts)
    bg = None if backgrounds is None else _as_batch(backgrounds, "backgrounds")

    def index(images, bgs):
        return batch_cnr(images, regions) if bgs is None else npw_dprime(images, regions, bgs)

    cnr0 = index(x, bg)
    det0 = detectable(cnr0, threshold)
    totals = np.bincount(img_of, weights=det0, minlength=len(regions))
    keep = totals > 0
    out: dict[str, object] = {"cnr_clean": cnr0, "n_objects": int(cnr0.size),
                              "detectable_clean": float(det0.mean()) if cnr0.size else math.nan,
                              "detectable_per_image": totals.astype(np.int64),
                              "threshold": float(threshold), "per_r": []}
    for rf in r_fractions:
        xf = perturb("lowpass", x, float(rf))
        cnr = index(xf, None if bg is None else perturb("lowpass", bg, float(rf)))
        hits = np.bincount(img_of, weights=det0 & detectable(cnr, threshold), minlength=len(regions))
        ssim, psnr = ssim_psnr(x, xf, data_range=data_range)
        ssim_ci = t_interval(ssim, bounds=(-1.0, 1.0))  # over images
        out["per_r"].append({   # type: ignore[union-attr]
            "r_fraction": float(rf),
            "median_cnr": float(np.nanmedian(cnr)) if cnr.size else math.nan,
            "detectable": float(detectable(cnr, threshold).mean()) if cnr.size else math.nan,
            "kept_per_image": hits.astype(np.int64),
            "retained": cluster_bootstrap_fraction(hits[keep], totals[keep], n_boot=n_boot, seed=seed),
            "cnr": cnr,
            "ssim_mean": float(ssim.mean()),
            "ssim_ci95": list(ssim_ci.ci95),
            "psnr_mean": float(np.mean(psnr[np.isfinite(psnr)])) if np.isfinite(psnr).any() else math.inf,
        })
    return out


def subgroup_labels(y: ArrayLike, lesion_type: ArrayLike, keep_type: int) -> np.ndarray:
    """Labels for "positives of lesion type ``keep_type`` vs all negatives": positives of any
    other type become -1 (left out, see :func:`studylib.stats.bootstrap_auc`)."""
    y = np.asarray(y).astype(np.int64)
    t = np.asarray(lesion_type)
    return np.where((y == 1) & (t != keep_type), -1, y)


def speck_label_image(specks: ArrayLike, shape: tuple[int, int]) -> np.ndarray:
    """Label image of microcalcification specks given as rows (row, col, radius, ...).

    Speck ``k`` (1-based) covers the pixels whose centre lies within its radius of its centre
    (at least the nearest pixel), the definition ``studylib.data``'s phantom uses; a pixel
    claimed by two specks keeps the first.
    """
    sp = np.asarray(specks.detach().cpu() if isinstance(specks, torch.Tensor) else specks, dtype=float)
    h, w = int(shape[0]), int(shape[1])
    labels = np.zeros((h, w), dtype=np.int32)
    if sp.size == 0:
        return labels
    if sp.ndim != 2 or sp.shape[1] < 3:
        raise ValueError(f"specks must have shape (K, >=3) of (row, col, radius, ...), got {sp.shape}")
    rows = np.arange(h)[:, None]
    cols = np.arange(w)[None, :]
    for k, (cy, cx, r) in enumerate(sp[:, :3], start=1):
        d = np.sqrt((rows - cy) ** 2 + (cols - cx) ** 2)
        inside = (d <= max(r, d.min())) & (labels == 0)
        labels[inside] = k
    return labels


def lesion_regions(split, lesion: str, *, gap: int, width: int) -> tuple[np.ndarray, list[list[Region]]]:
    """Indices of the images with a lesion of type ``lesion`` and their object regions.

    Args:
        split: a ``studylib.data.Split`` with extras ``"lesion_type"`` and, for
            ``lesion="calcification"``, ``"specks"`` (phantoms) or ``"calc_mask"`` (connected
            components are the specks); for ``lesion="mass"``, ``"mask"`` (the mass outline).
        lesion: ``"calcification"`` (lesion_type 1) or ``"mass"`` (lesion_type 2).
        gap, width: ring geometry (:func:`object_regions`).

    Returns:
        ``(indices, regions)``; every image's other lesion pixels are excluded from its rings.
    """
    kinds = {"calcification": 1, "mass": 2}
    if lesion not in kinds:
        raise ValueError(f"lesion must be one of {sorted(kinds)}, got {lesion!r}")
    extras = split.extras
    if "lesion_type" not in extras:
        raise ValueError("split.extras has no 'lesion_type'")
    lt = np.asarray(extras["lesion_type"])
    idx = np.flatnonzero(lt == kinds[lesion])
    h, w = split.x.shape[-2:]
    regions: list[list[Region]] = []
    for i in idx:
        lesion_mask = np.asarray(extras["mask"][i, 0]) > 0 if "mask" in extras else None
        if lesion == "calcification":
            if "specks" in extras:
                labels = speck_label_image(extras["specks"][i], (h, w))
            elif "calc_mask" in extras:
                labels = labelled_objects(extras["calc_mask"][i, 0])
            else:
                raise ValueError("calcification CNR needs extras 'specks' or 'calc_mask'")
        else:
            if lesion_mask is None:
                raise ValueError("mass CNR needs extras 'mask'")
            labels = lesion_mask.astype(np.int32)
        exclude = None
        if lesion_mask is not None:
            exclude = lesion_mask & ~(labels > 0)
        regions.append(object_regions(labels, gap=gap, width=width, exclude=exclude))
    return idx, regions


def sensitivity_scores(models: Sequence[torch.nn.Module], x: torch.Tensor, y: torch.Tensor,
                       grids: dict[str, Sequence[float]], *, pgd_steps: int = 10,
                       pgd_subset: int | None = None, device: str | torch.device = "cpu",
                       seed: int = 0,
                       first_model_pgd: dict[float, torch.Tensor] | None = None
                       ) -> dict[str, np.ndarray]:
    """Positive-class probabilities of every model under every perturbation level.

    Args:
        models: S trained classifiers (one per seed).
        x, y: test images (N, C, H, W) and labels (N,).
        grids: perturbation name (:data:`STUDY02_PERTURBATIONS`) -> levels (without the clean
            level, which is added as level 0).
        pgd_steps: PGD steps (default 10).
        pgd_subset: attack only the first ``pgd_subset`` test images (PGD is the expensive
            part); ``None`` attacks all. The other perturbations use all N images.
        device: where the models run.
        seed: noise / PGD seed; model ``s`` uses ``seed + s`` for PGD.
        first_model_pgd: when a dict, it receives eps -> the first model's adversarial images
            (the first ``pgd_subset``), so a caller can measure them without attacking again.

    Returns:
        name -> array (L + 1, S, N_name) of probabilities, level 0 = clean; for ``"pgd"``
        ``N_name = pgd_subset``. Input-only perturbations are computed once and shared by all
        models (the same noisy image for every seed).
    """
    from ..core.runtime import progress

    unknown = sorted(set(grids) - set(STUDY02_PERTURBATIONS))
    if unknown:
        raise ValueError(f"unknown perturbation(s) {unknown}; valid: {sorted(STUDY02_PERTURBATIONS)}")
    out: dict[str, np.ndarray] = {}
    clean = np.stack([positive_probability(m, x, device=device) for m in models])
    jobs = [(n, lvl) for n, levels in grids.items() for lvl in levels]
    results: dict[str, list[np.ndarray]] = {n: [] for n in grids}
    for name, level in progress(jobs, desc="perturbations"):
        if name == "pgd":
            n_sub = x.shape[0] if pgd_subset is None else min(int(pgd_subset), x.shape[0])
            per_model = []
            for s, m in enumerate(models):
                xa = perturb("pgd", x[:n_sub], level, seed=seed + s, model=m, y=y[:n_sub],
                             pgd_steps=pgd_steps, device=device)
                if s == 0 and first_model_pgd is not None:
                    first_model_pgd[float(level)] = xa
                per_model.append(positive_probability(m, xa, device=device))
            probs = np.stack(per_model)
        else:
            xp = perturb(name, x, level, seed=seed)
            probs = np.stack([positive_probability(m, xp, device=device) for m in models])
        results[name].append(probs)
    for name in grids:
        n_sub = results[name][0].shape[1] if results[name] else x.shape[0]
        out[name] = np.stack([clean[:, :n_sub]] + results[name])
    return out
