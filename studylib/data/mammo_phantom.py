"""``mammo_phantom``: procedural mammogram patches with microcalcification clusters and masses."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .bundle import GENERATOR_VERSION, DataBundle, Split, _check_fraction, _check_int
from .signs import _gaussian_blur_per_image

_PHANTOM_REF_SIZE = 128  # lesion sizes below are in pixels at this size (100 um per pixel)
#: Default mean mass amplitude: the smallest contrast of the calibration grid at which >= 70% of
#: the masses are visible unfiltered (d' >= 3, ``mammogram_perturbation.mass_visibility``).
MASS_CONTRAST = 0.3
#: Default internal texture of the masses (``mass_texture``; 0 = the smooth ellipsoid).
MASS_TEXTURE = 0.5


def _power_law_noise(b: int, size: int, beta: torch.Tensor | float, gen: torch.Generator,
                     stretch: torch.Tensor | float = 1.0,
                     angle: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``b`` fields of 1/f^beta noise, ``(b, size, size)``, each zero-mean with unit std.

    White Gaussian noise filtered in the Fourier domain by ``|f|^(-beta/2)`` (so the power
    spectrum falls as ``|f|^-beta``; beta about 3 matches mammographic anatomical noise,
    Burgess et al. 2001). The DC term is removed. ``stretch`` > 1 makes the texture
    anisotropic (elongated along ``angle``, radians), like fibroglandular tissue oriented
    towards the nipple. ``beta``, ``stretch`` and ``angle`` may be per-image tensors ``(b,)``.
    """
    def per(v):
        return torch.as_tensor(v, dtype=torch.float32).reshape(-1, 1, 1)

    white = torch.randn(b, size, size, generator=gen)
    fy = torch.fft.fftfreq(size).view(1, -1, 1)
    fx = torch.fft.rfftfreq(size).view(1, 1, -1)
    c, s = torch.cos(per(angle)), torch.sin(per(angle))
    fa = fx * c + fy * s  # frequency along the elongation axis: shrunk, so structures elongate
    fb = -fx * s + fy * c
    st = per(stretch)
    f = torch.sqrt((fa * st) ** 2 + (fb / st) ** 2)
    f[:, 0, 0] = 1.0
    amp = f.pow(-per(beta) / 2.0)
    amp[:, 0, 0] = 0.0
    field = torch.fft.irfft2(torch.fft.rfft2(white) * amp, s=(size, size))
    field = field - field.mean(dim=(1, 2), keepdim=True)
    return field / field.std(dim=(1, 2), keepdim=True).clamp_min(1e-8)


def _place_specks(rng: np.random.Generator, n_specks: int, cluster_r: float, cy: float,
                  cx: float, r_lo: float, r_hi: float, gap: float) -> np.ndarray:
    """Speck centres/radii ``(K, 3)`` = (row, col, radius) inside a disc, ``gap`` px apart.

    Rejection sampling, 64 candidate positions at a time; the cluster radius grows by 10%
    whenever a batch has no valid candidate, so the requested number is always placed.
    """
    out = np.zeros((0, 3))
    while len(out) < n_specks:
        r = float(rng.uniform(r_lo, r_hi))
        rho = max(cluster_r - r, 0.0) * np.sqrt(rng.random(64))
        phi = rng.uniform(0, 2 * np.pi, 64)
        y, x = cy + rho * np.sin(phi), cx + rho * np.cos(phi)
        dist = np.hypot(y[:, None] - out[None, :, 0], x[:, None] - out[None, :, 1])
        ok = np.flatnonzero((dist >= r + out[None, :, 2] + gap).all(axis=1))
        if len(ok):
            out = np.concatenate([out, [[y[ok[0]], x[ok[0]], r]]])
        else:
            cluster_r *= 1.1
    return out.astype(np.float32)


def _sample_phantom_params(rng: np.random.Generator, n: int, size: int, lesion_fraction: float,
                           calc_fraction: float, calc_contrast: float,
                           mass_contrast: float) -> dict[str, Any]:
    """Per-image random parameters of the phantom generator (drawn up front, in one order)."""
    sc = size / _PHANTOM_REF_SIZE
    n_pos = int(math.floor(n * lesion_fraction + 0.5))
    n_calc = int(math.floor(n_pos * calc_fraction + 0.5))
    lesion_type = rng.permutation(np.array([1] * n_calc + [2] * (n_pos - n_calc)
                                           + [0] * (n - n_pos), dtype=np.int64))

    def u(lo, hi, sz=n):
        return rng.uniform(lo, hi, sz).astype(np.float32)

    p: dict[str, Any] = {
        "lesion_type": lesion_type,
        "beta": u(2.8, 3.2),
        "fat": u(0.20, 0.30), "gland": u(0.25, 0.40), "density": u(-1.2, 1.0),
        "texture": u(0.02, 0.05), "stretch": u(1.0, 2.0), "orient": u(0.0, np.pi),
        "edge": rng.random(n) < 0.25, "edge_dir": u(0, 2 * np.pi),
        "edge_curv": u(1.5, 4.0) * size, "edge_roll": u(0.08, 0.2) * size,
    }
    # lesion geometry (pixel units; row, col)
    centre = np.full((n, 2), np.nan, dtype=np.float32)
    radius = np.zeros(n, dtype=np.float32)
    specks: list[np.ndarray] = []
    mass = {k: np.zeros(n, dtype=np.float32) for k in ("spiculated", "n_spic")}
    harm_a = u(0.0, 0.08, (n, 3))
    harm_phi = u(0.0, 2 * np.pi, (n, 3))
    spic_jitter = u(-0.3, 0.3, (n, 16))  # spicule k points at angle 2 pi (k + jitter) / K
    spic_len = u(1.0, 1.8, (n, 16))
    amp = np.zeros(n, dtype=np.float32)
    for i in range(n):
        t = lesion_type[i]
        if t == 1:
            cr = float(rng.uniform(10, 30)) * sc
            cy, cx = rng.uniform(cr + 3 * sc, size - cr - 3 * sc, 2)
            k = int(rng.integers(5, 16))
            sp = _place_specks(rng, k, cr, float(cy), float(cx), max(0.75, 1.0 * sc),
                               max(0.75, 3.0 * sc), 1.5)
            sp_amp = rng.uniform(0.75, 1.25, len(sp)).astype(np.float32) * calc_contrast
            specks.append(np.concatenate([sp, sp_amp[:, None]], axis=1))
            centre[i], radius[i] = (cy, cx), cr
        else:
            specks.append(np.zeros((0, 4), dtype=np.float32))
        if t == 2:
            mr = float(rng.uniform(25, 50)) * sc
            lo, hi = min(mr + 2, size / 2), max(size - mr - 2, size / 2)
            cy, cx = rng.uniform(lo, hi, 2)
            centre[i], radius[i] = (cy, cx), mr
            mass["spiculated"][i] = float(rng.random() < 0.5)
            mass["n_spic"][i] = int(rng.integers(8, 17))
            amp[i] = mass_contrast * float(rng.uniform(0.8, 1.2))
    p.update(centre=centre, radius=radius, specks=specks, mass_amp=amp, harm_a=harm_a,
             harm_phi=harm_phi, spic_jitter=spic_jitter, spic_len=spic_len, **mass)
    # keep the skin line away from the lesion: the edge passes at signed distance e from the
    # patch centre along edge_dir; e is at least the lesion's projection + its radius + 4 px
    e = rng.uniform(0.15, 0.5, n).astype(np.float32) * size
    nrm = np.stack([np.sin(p["edge_dir"]), np.cos(p["edge_dir"])], axis=1)  # (row, col)
    has = lesion_type > 0
    proj = np.where(has, ((centre - size / 2) * nrm).sum(axis=1) + radius * 1.8 + 4, -np.inf)
    e = np.maximum(e, proj)
    p["edge"] = p["edge"] & (e < 0.5 * size)
    p["edge_offset"] = e.astype(np.float32)
    return p


def _mass_texture(m: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``m`` fields ``(m, size, size)`` of high-pass white noise, zero mean and unit std each:
    white noise minus its Gaussian blur of std 2 px at 128 px (scaled with the size), so the
    power lies above about 0.16 of the Nyquist frequency (the corner 1 / (2 pi 2 px))."""
    white = torch.randn(m, size, size, generator=gen)
    sigma = 2.0 * max(size / _PHANTOM_REF_SIZE, 0.5)
    smooth = _gaussian_blur_per_image(white.unsqueeze(1), torch.full((m,), sigma))[:, 0]
    field = white - smooth
    field = field - field.mean(dim=(1, 2), keepdim=True)
    return field / field.std(dim=(1, 2), keepdim=True).clamp_min(1e-8)


def _render_phantoms(p: dict[str, Any], lo: int, hi: int, size: int, quantum_noise: float,
                     gen: torch.Generator, mass_texture: float = 0.0,
                     tex_gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    b = hi - lo
    sc = size / _PHANTOM_REF_SIZE

    def pi(name):
        return torch.as_tensor(p[name][lo:hi]).float().view(b, 1, 1)

    # anatomical background: 1/f^beta noise mapped to fatty / fibroglandular tissue
    beta = torch.as_tensor(p["beta"][lo:hi])
    n1 = _power_law_noise(b, size, beta, gen, torch.as_tensor(p["stretch"][lo:hi]),
                          torch.as_tensor(p["orient"][lo:hi]))
    n2 = _power_law_noise(b, size, beta, gen)
    gland_frac = torch.sigmoid((n1 - pi("density")) / 0.45)
    tissue = pi("fat") + pi("gland") * gland_frac + pi("texture") * n2

    # breast edge (skin line) with thickness roll-off towards it, air outside
    rows = torch.arange(size, dtype=torch.float32).view(1, -1, 1)
    cols = torch.arange(size, dtype=torch.float32).view(1, 1, -1)
    ny, nx = torch.sin(pi("edge_dir")), torch.cos(pi("edge_dir"))
    rc = pi("edge_curv")
    # centre of the (large) breast outline circle, inside the breast, behind the patch centre
    oy = size / 2 - ny * (rc - pi("edge_offset"))
    ox = size / 2 - nx * (rc - pi("edge_offset"))
    dist = rc - torch.sqrt((rows - oy) ** 2 + (cols - ox) ** 2)  # > 0 inside the breast
    dist = torch.where(pi("edge") > 0, dist, torch.full_like(dist, 1e6))
    thick = 1.0 - torch.exp(-dist.clamp_min(0.0) / pi("edge_roll"))
    air = 0.03
    img = air + (tissue - air) * thick
    tissue_mask = (dist > 0).float()

    lesion = torch.zeros(b, size, size)
    calc_mask = torch.zeros(b, size, size)
    mass_mask = torch.zeros(b, size, size)

    # microcalcifications: anti-aliased discs (4x4 sub-pixel coverage), summed into the image
    sp = [torch.as_tensor(s) for s in p["specks"][lo:hi]]
    counts = [len(s) for s in sp]
    if sum(counts):
        allsp = torch.cat(sp)
        img_idx = torch.repeat_interleave(torch.arange(b), torch.tensor(counts))
        w = int(math.ceil(float(allsp[:, 2].max()) + 1.0))
        off = torch.arange(-w, w + 1, dtype=torch.float32)
        sub = (torch.arange(4, dtype=torch.float32) + 0.5) / 4 - 0.5
        cy, cx, r, a = (allsp[:, k].view(-1, 1, 1) for k in range(4))
        py = torch.round(cy) + off.view(1, -1, 1)  # (M, W, 1) pixel rows
        px = torch.round(cx) + off.view(1, 1, -1)  # (M, 1, W) pixel cols
        sy = (py - cy).unsqueeze(-1).unsqueeze(-1) + sub.view(1, 1, 1, -1, 1)
        sx = (px - cx).unsqueeze(-1).unsqueeze(-1) + sub.view(1, 1, 1, 1, -1)
        cov = ((sy * sy + sx * sx) <= (r * r).view(-1, 1, 1, 1, 1)).float().mean(dim=(-1, -2))
        py, px = py.expand_as(cov), px.expand_as(cov)
        ok = (py >= 0) & (py < size) & (px >= 0) & (px < size) & (cov > 0)
        flat = (img_idx.view(-1, 1, 1).expand_as(cov) * size * size + py.long() * size
                + px.long())[ok]
        lesion.view(-1).index_add_(0, flat, (cov * a)[ok])
        hard = ok & (cov >= 0.5)
        flat_hard = (img_idx.view(-1, 1, 1).expand_as(cov) * size * size + py.long() * size
                     + px.long())[hard]
        calc_mask.view(-1)[flat_hard] = 1.0

    # masses: projected ellipsoid (sqrt(1 - (d/R)^2)) with a lobulated outline; spiculated
    # ones have a smaller core and thin tapered spicules radiating from it; with mass_texture
    # > 0 the whole mass signal is multiplied by 1 + mass_texture * (high-pass noise), an
    # internal texture that gives the mass high-frequency content (drawn from tex_gen, a
    # stream of its own, so backgrounds and geometry do not change with the option)
    mi_np = np.flatnonzero(p["lesion_type"][lo:hi] == 2)
    if len(mi_np):
        g, mi = lo + mi_np, torch.as_tensor(mi_np)
        m = len(mi_np)
        t = torch.as_tensor
        cy = t(p["centre"][g, 0]).view(m, 1, 1)
        cx = t(p["centre"][g, 1]).view(m, 1, 1)
        rad = t(p["radius"][g]).view(m, 1, 1)
        spic = t(p["spiculated"][g]).view(m, 1, 1)
        dy, dx = rows - cy, cols - cx
        d = torch.sqrt(dy * dy + dx * dx)
        theta = torch.atan2(dy, dx)
        shape = torch.ones(m, size, size)
        for k in range(3):
            shape = shape + t(p["harm_a"][g, k]).view(m, 1, 1) * torch.cos(
                (k + 2) * theta + t(p["harm_phi"][g, k]).view(m, 1, 1))
        body_r = rad * torch.where(spic > 0, 0.7, 1.0) * shape
        body = torch.sqrt((1.0 - (d / body_r) ** 2).clamp_min(0.0))
        mask = d < body_r
        # spicule k of K points at angle 2 pi (k + jitter_k) / K (|jitter| <= 0.3), so a pixel
        # at angle theta lies between spicules floor(theta K / 2 pi) and the next one; only
        # those two can reach it (others are >= 0.4 of a sector away): two evaluations
        # instead of K
        spic_img = torch.zeros(m, size, size)
        width = 1.0 * max(sc, 0.75)
        n_sp = t(p["n_spic"][g]).view(m, 1, 1)
        sector = torch.floor((theta % (2 * math.pi)) / (2 * math.pi) * n_sp)
        jit = t(p["spic_jitter"][g])
        lens = t(p["spic_len"][g])
        for step in (0, 1):
            k = ((sector + step) % n_sp).long().view(m, -1)
            ang = (2 * math.pi * (k + torch.gather(jit, 1, k)) / n_sp.view(m, 1)).view(m, size,
                                                                                      size)
            length = rad * torch.gather(lens, 1, k).view(m, size, size)
            along = dx * torch.cos(ang) + dy * torch.sin(ang)
            perp = -dx * torch.sin(ang) + dy * torch.cos(ang)
            taper = (1.0 - along / length).clamp(0.0, 1.0) * (along > 0).float() * spic
            line = 0.8 * taper * torch.exp(-0.5 * (perp / width) ** 2)
            spic_img = torch.maximum(spic_img, line)
            mask = mask | ((perp.abs() < width) & (taper > 0.1))
        amp = t(p["mass_amp"][g]).view(m, 1, 1)
        signal = torch.maximum(body, spic_img)
        if mass_texture > 0:
            if tex_gen is None:
                raise ValueError("mass_texture > 0 needs tex_gen")
            signal = signal * (1.0 + mass_texture * _mass_texture(m, size, tex_gen)).clamp_min(0.0)
        lesion[mi] += amp * signal
        mass_mask[mi] = mask.float()

    # imaging chain: lesions add attenuation, detector blur (MTF), quantum noise
    img = img + lesion
    img = _gaussian_blur_per_image(img.unsqueeze(1), torch.full((b,), 0.5 * max(sc, 0.5)))
    sigma = quantum_noise * torch.sqrt(img.clamp_min(1e-3) / 0.5)
    img = img + sigma * torch.randn(img.shape, generator=gen)
    return {
        "x": img.clamp_(0.0, 1.0),
        "calc_mask": calc_mask.unsqueeze(1),
        "mask": torch.maximum(calc_mask, mass_mask).unsqueeze(1),
        "tissue_mask": tissue_mask.unsqueeze(1),
    }


def _make_phantoms(n: int, size: int, seed: int, stream: int, lesion_fraction: float,
                   calc_fraction: float, calc_contrast: float, mass_contrast: float,
                   quantum_noise: float, mass_texture: float = 0.0, chunk: int = 256) -> Split:
    rng = np.random.default_rng([seed, stream, 0x3A3])
    p = _sample_phantom_params(rng, n, size, lesion_fraction, calc_fraction, calc_contrast,
                               mass_contrast)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    tex_gen = None
    if mass_texture > 0:
        tex_seed = int(np.random.default_rng([seed, stream, 0x7E7]).integers(0, 2**62))
        tex_gen = torch.Generator().manual_seed(tex_seed)
    out: dict[str, torch.Tensor] = {}
    starts = range(0, n, chunk)
    if n > 8 * chunk:
        from ..core.runtime import progress

        starts = progress(starts, desc="mammo_phantom", total=len(starts))
    for lo in starts:
        hi = min(n, lo + chunk)
        part = _render_phantoms(p, lo, hi, size, quantum_noise, gen, mass_texture, tex_gen)
        for k, v in part.items():  # filled in place: no second copy of the whole split
            if k not in out:
                out[k] = torch.empty((n, *v.shape[1:]), dtype=v.dtype)
            out[k][lo:hi] = v
    lesion_type = torch.as_tensor(p["lesion_type"])
    return Split(
        x=out.pop("x").contiguous(),
        y=(lesion_type > 0).long(),
        extras={
            "lesion_type": lesion_type,
            **out,
            "specks": [torch.as_tensor(s) for s in p["specks"]],
            "lesion_center": torch.as_tensor(p["centre"]),
            "lesion_radius": torch.as_tensor(p["radius"]),
        },
    )


def _load_mammo_phantom(n_train: int = 1000, n_test: int = 500, image_size: int = 128,
                        lesion_fraction: float = 0.5, calc_fraction: float = 0.5,
                        calc_contrast: float = 0.25, mass_contrast: float = MASS_CONTRAST,
                        mass_texture: float = MASS_TEXTURE, quantum_noise: float = 0.02,
                        seed: int = 0) -> DataBundle:
    """Procedural grayscale mammogram patches (nominal 100 um per pixel at 128 x 128).

    Background: two fields of 1/f^beta noise (beta ~ U(2.8, 3.2) per image, the exponent of
    mammographic anatomical noise) mapped to fatty and fibroglandular tissue through a sigmoid
    whose threshold sets the breast density; a quarter of the patches include the breast
    edge (a large circular skin line, tissue thinning towards it, air outside). Lesions:

    - microcalcification cluster (lesion_type 1): 5-15 bright anti-aliased discs of radius
      1-3 px, 1.5 px apart, inside a cluster disc of radius 10-30 px (2-6 mm: "within about
      1 cm"); each speck's amplitude is ``calc_contrast * U(0.75, 1.25)``.
    - mass (lesion_type 2): radius 25-50 px (5-10 mm diameter; the upper half of the clinical
      5-15 mm range does not fit a 12.8 mm patch), a projected ellipsoid with a lobulated
      outline, half of them spiculated (core 0.7 R and 8-16 tapered spicules up to 1.8 R);
      amplitude ``mass_contrast * U(0.8, 1.2)``.

    Then detector blur (Gaussian, sigma 0.5 px) and quantum noise with std
    ``quantum_noise * sqrt(I / 0.5)`` (Poisson-like: variance grows with the signal).
    All lengths are given at 128 px and scale with ``image_size / 128`` (the patch always
    covers 12.8 mm; speck radii are kept >= 0.75 px). Written here: no library generates
    mammographic phantoms with lesion ground truth.

    With the default contrasts most specks have CNR >= 3 against a ring around them
    (see :func:`speck_cnr`), as on real screening mammograms, while masses are low-contrast
    (their amplitude is about the fibroglandular texture's local variation).

    Args:
        n_train, n_test: images per split. Defaults 1000 and 500.
        image_size: side in pixels. Default 128.
        lesion_fraction: fraction of images with a lesion (label 1). Default 0.5.
        calc_fraction: fraction of the lesion images that get calcifications (the rest get
            masses). Default 0.5.
        calc_contrast: mean speck amplitude added to the intensity in [0, 1]. Default 0.25.
        mass_contrast: mean mass amplitude at its centre. Default 0.15.
        quantum_noise: quantum noise std at intensity 0.5. Default 0.02.
        seed: train and test use separate streams derived from it. Default 0.

    Extras: ``"lesion_type"`` int64 (N,) 0 none / 1 calcification / 2 mass; ``"mask"``
    (N,1,H,W) lesion pixels (speck discs or mass body and spicules); ``"calc_mask"`` speck
    pixels only (coverage >= 0.5); ``"tissue_mask"`` breast (1) vs air (0); ``"specks"`` list
    of N float tensors (K,4): row, col, radius (px, pixel centres at integer coordinates) and
    amplitude of each speck ((0,4) without calcifications); ``"lesion_center"`` (N,2) row/col
    (NaN without a lesion); ``"lesion_radius"`` (N,) cluster or mass radius in px (0 without).
    """
    n_train = _check_int("n_train", n_train, 1)
    n_test = _check_int("n_test", n_test, 1)
    image_size = _check_int("image_size", image_size, 32)
    lesion_fraction = _check_fraction("lesion_fraction", lesion_fraction)
    calc_fraction = _check_fraction("calc_fraction", calc_fraction)
    calc_contrast = _check_fraction("calc_contrast", calc_contrast)
    mass_contrast = _check_fraction("mass_contrast", mass_contrast)
    mass_texture = _check_fraction("mass_texture", mass_texture, 0.0, 2.0)
    quantum_noise = _check_fraction("quantum_noise", quantum_noise, 0.0, 0.5)
    seed = _check_int("seed", seed)
    args = dict(lesion_fraction=lesion_fraction, calc_fraction=calc_fraction,
                calc_contrast=calc_contrast, mass_contrast=mass_contrast,
                quantum_noise=quantum_noise, mass_texture=mass_texture)
    spec = {"name": "mammo_phantom", "n_train": n_train, "n_test": n_test,
            "image_size": image_size, **args, "seed": seed, "version": GENERATOR_VERSION}
    return DataBundle(
        name="mammo_phantom", spec=spec,
        train=_make_phantoms(n_train, image_size, seed, 0, **args),
        test=_make_phantoms(n_test, image_size, seed, 1, **args),
        classes=["normal", "lesion"],
        info={"pixel_size_mm": 12.8 / image_size, "lesion_types": ["none", "calcification",
                                                                    "mass"]},
    )


def speck_cnr(image: torch.Tensor, specks: torch.Tensor, gap: float = 1.0,
              ring_width: float = 3.0) -> torch.Tensor:
    """Contrast-to-noise ratio of each microcalcification speck against a ring around it.

    ``CNR = (mean inside - mean ring) / std ring`` with "inside" the pixels whose centre is
    within the speck radius r (at least the nearest pixel), "ring" the pixels at distance
    ``(r + gap, r + gap + ring_width]`` that are not within ``r_j + gap`` of another speck j.

    Args:
        image: ``(H, W)`` or ``(1, H, W)`` tensor.
        specks: ``(K, >=3)`` rows of (row, col, radius, ...) as in ``extras["specks"]``.
        gap, ring_width: ring geometry in pixels. Defaults 1 and 3.

    Returns a float tensor ``(K,)``.
    """
    img = image.reshape(image.shape[-2], image.shape[-1]).double()
    h, w = img.shape
    rows = torch.arange(h, dtype=torch.float64).view(-1, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, -1)
    sp = specks.double()
    out = torch.zeros(len(sp), dtype=torch.float64)
    for k in range(len(sp)):
        cy, cx, r = float(sp[k, 0]), float(sp[k, 1]), float(sp[k, 2])
        win = int(math.ceil(r + gap + ring_width + 1))
        r0, r1 = max(0, int(cy) - win), min(h, int(cy) + win + 2)
        c0, c1 = max(0, int(cx) - win), min(w, int(cx) + win + 2)
        d = torch.sqrt((rows[r0:r1] - cy) ** 2 + (cols[:, c0:c1] - cx) ** 2)
        inside = d <= max(r, float(d.min()))
        ring = (d > r + gap) & (d <= r + gap + ring_width)
        for j in range(len(sp)):
            if j != k:
                dj = torch.sqrt((rows[r0:r1] - sp[j, 0]) ** 2 + (cols[:, c0:c1] - sp[j, 1]) ** 2)
                ring &= dj > sp[j, 2] + gap
        patch = img[r0:r1, c0:c1]
        ring_vals = patch[ring]
        if ring_vals.numel() < 3:
            out[k] = float("nan")
            continue
        out[k] = (patch[inside].mean() - ring_vals.mean()) / ring_vals.std().clamp_min(1e-12)
    return out.float()


