"""``signs``: procedural RGB traffic signs modelled on eight GTSRB classes, with object masks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .bundle import GENERATOR_VERSION, DataBundle, Split, _check_fraction, _check_int

#: The eight procedural sign classes as (name, GTSRB class id), in label order for classes=None.
SIGN_CLASSES: list[tuple[str, int]] = [
    ("speed_limit_30", 1),
    ("speed_limit_50", 2),
    ("speed_limit_70", 4),
    ("priority_road", 12),
    ("yield", 13),
    ("stop", 14),
    ("no_entry", 17),
    ("road_work", 25),
]

#: GTSRB's 43 class names, index = GTSRB class id.
GTSRB_CLASS_NAMES: list[str] = [
    "speed_limit_20", "speed_limit_30", "speed_limit_50", "speed_limit_60", "speed_limit_70",
    "speed_limit_80", "end_of_speed_limit_80", "speed_limit_100", "speed_limit_120",
    "no_passing", "no_passing_over_3_5t", "right_of_way_next_intersection", "priority_road",
    "yield", "stop", "no_vehicles", "over_3_5t_prohibited", "no_entry", "general_caution",
    "dangerous_curve_left", "dangerous_curve_right", "double_curve", "bumpy_road",
    "slippery_road", "road_narrows_right", "road_work", "traffic_signals", "pedestrians",
    "children_crossing", "bicycles_crossing", "beware_ice_snow", "wild_animals_crossing",
    "end_of_all_limits", "turn_right_ahead", "turn_left_ahead", "ahead_only",
    "go_straight_or_right", "go_straight_or_left", "keep_right", "keep_left",
    "roundabout_mandatory", "end_of_no_passing", "end_of_no_passing_over_3_5t",
]


def _norm_name(s: str) -> str:
    return str(s).strip().lower().replace(" ", "_").replace("-", "_")


def _select_classes(classes: Sequence[Any] | None, names: list[str], ids: list[int],
                    what: str) -> list[int]:
    """Resolve ``classes`` (names or integer ids, any mix) to positions in ``names``.

    Returns positions in the order given, so label ``i`` of the result is ``classes[i]``.
    """
    if classes is None:
        return list(range(len(names)))
    if isinstance(classes, (str, int)) or not isinstance(classes, Sequence):
        raise ValueError(f"classes must be a list of class names or ids, got {classes!r}")
    by_name = {_norm_name(n): i for i, n in enumerate(names)}
    by_id = {int(c): i for i, c in enumerate(ids)}
    out: list[int] = []
    for c in classes:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            pos = by_id.get(int(c))
        elif isinstance(c, str):
            pos = by_name.get(_norm_name(c))
        else:
            pos = None
        if pos is None:
            valid = ", ".join(f"{n} ({i})" for n, i in zip(names, ids, strict=True))
            raise ValueError(f"unknown {what} class {c!r}; valid classes (name (id)): {valid}")
        if pos in out:
            raise ValueError(f"class {c!r} is listed twice in classes={list(classes)}")
        out.append(pos)
    if len(out) < 2:
        raise ValueError(f"classes must name at least two classes, got {list(classes)}")
    return out


def _seg_dist(u: torch.Tensor, v: torch.Tensor, a: tuple[float, float],
              b: tuple[float, float]) -> torch.Tensor:
    """Euclidean distance from points (u, v) to the segment a-b."""
    bx, by = b[0] - a[0], b[1] - a[1]
    pu, pv = u - a[0], v - a[1]
    h = ((pu * bx + pv * by) / max(bx * bx + by * by, 1e-12)).clamp(0.0, 1.0)
    return torch.hypot(pu - bx * h, pv - by * h)


def _polyline_dist(u: torch.Tensor, v: torch.Tensor,
                   pts: Sequence[tuple[float, float]]) -> torch.Tensor:
    d = _seg_dist(u, v, pts[0], pts[1])
    for a, b in zip(pts[1:-1], pts[2:], strict=True):
        d = torch.minimum(d, _seg_dist(u, v, a, b))
    return d


def _regular_polygon(n: int, circumradius: float, phase_deg: float,
                     centre: tuple[float, float] = (0.0, 0.0)) -> list[tuple[float, float]]:
    ang = np.deg2rad(phase_deg) + 2 * np.pi * np.arange(n) / n
    return [(centre[0] + circumradius * math.cos(t), centre[1] + circumradius * math.sin(t))
            for t in ang]


def _sd_convex_polygon(u: torch.Tensor, v: torch.Tensor,
                       verts: Sequence[tuple[float, float]]) -> torch.Tensor:
    """Exact signed distance to a convex polygon (negative inside)."""
    cx = sum(p[0] for p in verts) / len(verts)
    cy = sum(p[1] for p in verts) / len(verts)
    dist = None
    plane = None
    for a, b in zip(verts, list(verts[1:]) + [verts[0]], strict=True):
        d = _seg_dist(u, v, a, b)
        dist = d if dist is None else torch.minimum(dist, d)
        nx, ny = b[1] - a[1], -(b[0] - a[0])
        norm = math.hypot(nx, ny)
        nx, ny = nx / norm, ny / norm
        if (cx - a[0]) * nx + (cy - a[1]) * ny > 0:  # point the normal away from the centre
            nx, ny = -nx, -ny
        s = (u - a[0]) * nx + (v - a[1]) * ny
        plane = s if plane is None else torch.maximum(plane, s)
    return torch.where(plane < 0, -dist, dist)


def _sd_rounded_regular(u, v, n, circumradius, phase_deg, corner, centre=(0.0, 0.0)):
    """Signed distance to a regular n-gon whose corners are rounded with radius ``corner``."""
    inradius = circumradius * math.cos(math.pi / n)
    shrunk = (inradius - corner) / math.cos(math.pi / n)
    return _sd_convex_polygon(u, v, _regular_polygon(n, shrunk, phase_deg, centre)) - corner


def _ellipse_ring_dist(u, v, cx, cy, a, b):
    """First-order distance to the ellipse ((u-cx)/a)^2 + ((v-cy)/b)^2 = 1."""
    du, dv = (u - cx) / a, (v - cy) / b
    e = torch.sqrt(du * du + dv * dv).clamp_min(1e-6)
    grad = torch.sqrt((du / a) ** 2 + (dv / b) ** 2).clamp_min(1e-6) / e
    return (e - 1.0).abs() / grad


# Glyphs as polylines in a box [-1, 1] x [-1, 1] (x right, y down), DIN-like with a flat-top 3.
_DIGIT_STROKES: dict[str, list[list[tuple[float, float]]]] = {
    "3": [[(-0.85, -1.0), (0.85, -1.0), (-0.15, -0.12)],
          [(-0.15, -0.12), (0.45, -0.08), (0.88, 0.3), (0.85, 0.72), (0.45, 1.0), (-0.2, 1.0),
           (-0.88, 0.72)]],
    "5": [[(0.85, -1.0), (-0.7, -1.0), (-0.85, -0.05), (0.15, -0.2), (0.7, 0.02), (0.92, 0.45),
           (0.72, 0.88), (0.15, 1.02), (-0.88, 0.8)]],
    "7": [[(-0.9, -1.0), (0.9, -1.0), (-0.25, 1.0)]],
}
_LETTER_STROKES: dict[str, list[list[tuple[float, float]]]] = {
    "S": [[(0.9, -1.0), (-0.9, -1.0), (-0.9, 0.0), (0.9, 0.0), (0.9, 1.0), (-0.9, 1.0)]],
    "T": [[(-1.0, -1.0), (1.0, -1.0)], [(0.0, -1.0), (0.0, 1.0)]],
    "P": [[(-0.9, 1.0), (-0.9, -1.0), (0.9, -1.0), (0.9, 0.05), (-0.9, 0.05)]],
}


def _glyph_dist(u, v, strokes, cx, cy, hw, hh):
    """Distance (in sign units) to a glyph drawn in the box centred (cx, cy), half-size (hw, hh)."""
    d = None
    for line in strokes:
        pts = [(cx + x * hw, cy + y * hh) for x, y in line]
        dl = _polyline_dist(u, v, pts)
        d = dl if d is None else torch.minimum(d, dl)
    return d


_RED = (0.80, 0.07, 0.11)
_WHITE = (0.93, 0.93, 0.91)
_BLACK = (0.07, 0.07, 0.08)
_YELLOW = (0.98, 0.74, 0.06)
_TRI_SHIFT = 0.275  # moves a centroid-centred triangle so its bounding box is centred


def _sign_layers(cls: str, u: torch.Tensor,
                 v: torch.Tensor) -> list[tuple[torch.Tensor, tuple[float, float, float]]]:
    """Painter's-order layers ``(signed distance, rgb)`` of sign ``cls`` at sign coordinates.

    Sign coordinates: x right, y down, the sign fits the unit disc. A layer covers the points
    where its signed distance is negative; the first layer is the sign's silhouette.
    """
    if cls.startswith("speed_limit") or cls == "no_entry":
        d = torch.hypot(u, v)
        layers = [(d - 1.0, _WHITE), (d - 0.94, _RED)]  # thin reflective rim, red disc/ring
        if cls == "no_entry":
            bar = torch.maximum(u.abs() - 0.62, v.abs() - 0.15)
            layers.append((bar, _WHITE))
        else:
            digit = cls.rsplit("_", 1)[1][0]
            stroke = 0.065
            ink = torch.minimum(_glyph_dist(u, v, _DIGIT_STROKES[digit], -0.2, 0.0, 0.15, 0.36),
                                _ellipse_ring_dist(u, v, 0.2, 0.0, 0.15, 0.36))
            layers += [(d - 0.73, _WHITE), (ink - stroke, _BLACK)]
        return layers
    if cls == "stop":
        sd = _sd_rounded_regular(u, v, 8, 1.0, 22.5, 0.05)
        ink = None
        for k, ch in enumerate("STOP"):
            cx = -0.5 + k * (1.0 / 3.0)
            if ch == "O":
                dk = _ellipse_ring_dist(u, v, cx, 0.0, 0.12, 0.2)
            else:
                dk = _glyph_dist(u, v, _LETTER_STROKES[ch], cx, 0.0, 0.11, 0.2)
            ink = dk if ink is None else torch.minimum(ink, dk)
        return [(sd, _WHITE), (sd + 0.06, _RED), (ink - 0.045, _WHITE)]
    if cls in ("yield", "road_work"):
        phase = 90.0 if cls == "yield" else -90.0  # yield points down (y grows downwards)
        centre = (0.0, -_TRI_SHIFT if cls == "yield" else _TRI_SHIFT)
        sd = _sd_rounded_regular(u, v, 3, 1.1, phase, 0.08, centre)
        layers = [(sd, _WHITE), (sd + 0.05, _RED), (sd + 0.24, _WHITE)]
        if cls == "road_work":
            # a worker digging next to a pile of earth: head, torso, legs, arm, shovel, pile
            ink = torch.hypot(u + 0.06, v + 0.03) - 0.08
            for a, b, r in [((-0.06, 0.08), (0.06, 0.3), 0.065),
                            ((0.06, 0.3), (-0.08, 0.52), 0.045),
                            ((0.06, 0.3), (0.2, 0.52), 0.045),
                            ((-0.04, 0.13), (-0.2, 0.28), 0.04),
                            ((-0.3, 0.08), (-0.1, 0.5), 0.028)]:
                ink = torch.minimum(ink, _seg_dist(u, v, a, b) - r)
            ink = torch.minimum(ink, torch.hypot(u - 0.34, v - 0.62) - 0.17)
            layers.append((torch.maximum(ink, sd + 0.24), _BLACK))  # clipped to the interior
        return layers
    if cls == "priority_road":
        sd = _sd_rounded_regular(u, v, 4, 1.0, 0.0, 0.06)
        return [(sd, _BLACK), (sd + 0.03, _WHITE), (sd + 0.2, _BLACK), (sd + 0.225, _YELLOW)]
    raise ValueError(f"unknown sign class {cls!r}")  # pragma: no cover - guarded by caller


def _coverage(sd: torch.Tensor, pixel: torch.Tensor | float) -> torch.Tensor:
    """Anti-aliased coverage of a shape from its signed distance (box filter of one pixel)."""
    return (0.5 - sd / pixel).clamp_(0.0, 1.0)


_SKY_BUILDING = np.array([
    [0.55, 0.70, 0.90], [0.75, 0.82, 0.90], [0.85, 0.85, 0.85], [0.50, 0.50, 0.52],
    [0.60, 0.55, 0.48], [0.70, 0.62, 0.55], [0.30, 0.32, 0.36], [0.20, 0.30, 0.45],
], dtype=np.float32)
_GROUND = np.array([
    [0.30, 0.42, 0.20], [0.20, 0.30, 0.14], [0.40, 0.40, 0.40], [0.28, 0.28, 0.30],
    [0.45, 0.38, 0.28], [0.15, 0.17, 0.15], [0.55, 0.55, 0.50],
], dtype=np.float32)
_CLUTTER = np.concatenate([_SKY_BUILDING, _GROUND, np.array([
    [0.65, 0.25, 0.20], [0.80, 0.78, 0.70], [0.10, 0.10, 0.12], [0.85, 0.70, 0.30],
    [0.25, 0.40, 0.55], [0.45, 0.30, 0.20]], dtype=np.float32)])
_FOLIAGE = np.array([
    [0.18, 0.30, 0.10], [0.28, 0.40, 0.15], [0.35, 0.25, 0.15], [0.45, 0.45, 0.42],
    [0.10, 0.12, 0.10], [0.55, 0.50, 0.35],
], dtype=np.float32)
_N_CLUTTER = 6


def _sample_sign_params(rng: np.random.Generator, n: int, k: int,
                        occlusion: float) -> dict[str, np.ndarray]:
    """Per-image random parameters of the sign generator (all drawn up front, in one order)."""
    labels = rng.permutation(np.arange(n) % k)

    def u(lo, hi, size=n):
        return rng.uniform(lo, hi, size).astype(np.float32)

    def pick(palette, size, jitter):
        c = palette[rng.integers(0, len(palette), size)]
        return np.clip(c + rng.uniform(-jitter, jitter, c.shape), 0, 1).astype(np.float32)

    m = _N_CLUTTER
    return {
        "label": labels,
        "scale": u(0.45, 0.8), "tx": u(-0.18, 0.18), "ty": u(-0.18, 0.18),
        "rot": np.deg2rad(u(-12.0, 12.0)), "aspect": u(0.9, 1.1),
        "px": u(-0.15, 0.15), "py": u(-0.15, 0.15),
        "bg_top": pick(_SKY_BUILDING, n, 0.08), "bg_bottom": pick(_GROUND, n, 0.08),
        "horizon": u(-0.3, 0.5), "horizon_soft": u(0.05, 0.5),
        "shape_kind": rng.integers(0, 2, (n, m)),
        "shape_cx": u(-1.2, 1.2, (n, m)), "shape_cy": u(-1.2, 1.2, (n, m)),
        "shape_hw": u(0.05, 0.6, (n, m)), "shape_hh": u(0.05, 0.6, (n, m)),
        "shape_col": pick(_CLUTTER, (n, m), 0.1), "shape_alpha": u(0.5, 1.0, (n, m)),
        "pole": rng.random(n) < 0.5, "pole_w": u(0.04, 0.08), "pole_grey": u(0.35, 0.65),
        "occluded": rng.random(n) < occlusion,
        "occ_angle": u(0.0, 2 * np.pi), "occ_rho": u(0.7, 1.15),
        "occ_a": u(0.2, 0.45), "occ_b": u(0.2, 0.45), "occ_rect": rng.random(n) < 0.5,
        "occ_col": pick(_FOLIAGE, n, 0.05),
        "contrast": u(0.6, 1.15), "brightness": u(-0.18, 0.15), "gain": u(0.9, 1.1, (n, 3)),
        "blur": u(0.0, 1.0), "noise": u(0.0, 0.04),
    }


def _gaussian_blur_per_image(img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with one sigma (pixels) per image; ~0 = no blur."""
    b, c, h, w = img.shape
    radius = max(1, int(math.ceil(3 * float(sigma.max())))) if sigma.numel() else 1
    t = torch.arange(-radius, radius + 1, dtype=img.dtype)
    s = sigma.clamp_min(1e-3).view(b, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)
    k = k.repeat_interleave(c, dim=0)  # (B*C, K)
    x = img.reshape(1, b * c, h, w)
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(b * c, 1, 1, -1), groups=b * c)
    x = F.conv2d(x, k.view(b * c, 1, -1, 1), groups=b * c)
    return x.reshape(b, c, h, w)


def _render_signs(p: dict[str, np.ndarray], lo: int, hi: int, class_names: list[str],
                  image_size: int,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render images ``lo:hi``: returns x (B,3,S,S), visible mask and full sign mask (B,1,S,S).

    Every edge is anti-aliased analytically: a shape's coverage of a pixel is its signed
    distance mapped through a one-pixel ramp (``_coverage``), so no supersampling is needed.
    """
    b, res = hi - lo, image_size
    q = {k: torch.as_tensor(v[lo:hi]) for k, v in p.items()}
    pix = 2.0 / res  # one pixel in world units (the image spans [-1, 1])
    g = (torch.arange(res, dtype=torch.float32) + 0.5) * pix - 1.0
    wy, wx = torch.meshgrid(g, g, indexing="ij")  # world coordinates, y down
    wx, wy = wx.expand(b, res, res), wy.expand(b, res, res)

    def per_image(name, j=None):
        t = q[name] if j is None else q[name][:, j]
        return t.float().view(b, 1, 1)

    def col3(t):
        return t.float().view(b, 3, 1, 1)

    def blend(img, rgb, cov):
        return torch.lerp(img, rgb, cov.unsqueeze(1))

    # background: sky/buildings over ground with a soft horizon, colour texture, clutter
    t = ((wy - per_image("horizon")) / per_image("horizon_soft")).sigmoid().unsqueeze(1)
    img = torch.lerp(col3(q["bg_top"]), col3(q["bg_bottom"]), t)
    tex = torch.randn(b, 3, 6, 6, generator=gen) * 0.06
    img = img + F.interpolate(tex, size=(res, res), mode="bilinear", align_corners=False)
    for j in range(_N_CLUTTER):
        dx, dy = wx - per_image("shape_cx", j), wy - per_image("shape_cy", j)
        hw, hh = per_image("shape_hw", j), per_image("shape_hh", j)
        box = torch.maximum(dx.abs() - hw, dy.abs() - hh)
        ell = _ellipse_ring_dist(dx, dy, 0.0, 0.0, hw, hh) * torch.where(
            (dx / hw) ** 2 + (dy / hh) ** 2 < 1, -1.0, 1.0)
        sd = torch.where(per_image("shape_kind", j) == 1, box, ell)
        img = blend(img, q["shape_col"][:, j].view(b, 3, 1, 1),
                    _coverage(sd, pix) * per_image("shape_alpha", j))

    tx, ty, s = per_image("tx"), per_image("ty"), per_image("scale")
    pole_sd = torch.maximum((wx - tx).abs() - per_image("pole_w") * s, ty - wy)
    pole = _coverage(pole_sd, pix) * per_image("pole")
    img = blend(img, per_image("pole_grey").unsqueeze(1).expand(b, 3, 1, 1), pole)

    # world -> sign coordinates: inverse of  sign -> projective -> scale/aspect -> rotate -> shift
    c, sn = torch.cos(per_image("rot")), torch.sin(per_image("rot"))
    rx, ry = wx - tx, wy - ty
    ax = per_image("aspect")
    qx = (c * rx + sn * ry) / (s * ax)
    qy = (-sn * rx + c * ry) * ax / s
    den = (1 - per_image("px") * qx - per_image("py") * qy).clamp_min(0.05)
    su, sv = qx / den, qy / den
    pix_sign = pix / (s * den)  # one pixel in sign units (local scale of the warp)

    sign_col = torch.zeros(b, 3, res, res)
    sign_cov = torch.zeros(b, res, res)
    labels = q["label"]
    for k, name in enumerate(class_names):
        sel = torch.nonzero(labels == k, as_tuple=False).flatten()
        if sel.numel() == 0:
            continue
        layers = _sign_layers(name, su[sel], sv[sel])
        pk = pix_sign[sel]
        col = torch.zeros(sel.numel(), 3, res, res)
        for sd, rgb in layers[1:]:
            col = blend(col, torch.tensor(rgb).view(1, 3, 1, 1), _coverage(sd, pk))
        # the first layer is the silhouette: its colour fills everything the later ones leave
        first = torch.tensor(layers[0][1]).view(1, 3, 1, 1)
        under = 1.0 - _coverage(layers[1][0], pk).unsqueeze(1)
        sign_col[sel] = col + first * under
        sign_cov[sel] = _coverage(layers[0][0], pk)
    img = blend(img, sign_col, sign_cov)

    # partial occlusion (foliage, a post, another object) near the sign's rim
    ang, rho = per_image("occ_angle"), per_image("occ_rho")
    ocx, ocy = tx + s * rho * torch.cos(ang), ty + s * rho * torch.sin(ang)
    oa, ob = s * per_image("occ_a"), s * per_image("occ_b")
    dx, dy = wx - ocx, wy - ocy
    box = torch.maximum(dx.abs() - oa, dy.abs() - ob)
    ell = _ellipse_ring_dist(dx, dy, 0.0, 0.0, oa, ob) * torch.where(
        (dx / oa) ** 2 + (dy / ob) ** 2 < 1, -1.0, 1.0)
    occ = _coverage(torch.where(q["occ_rect"].view(b, 1, 1), box, ell), pix)
    occ = occ * per_image("occluded")
    img = blend(img, col3(q["occ_col"]), occ)

    full_mask = sign_cov.unsqueeze(1)
    visible_mask = (sign_cov * (1 - occ)).unsqueeze(1)

    # photometric: contrast, brightness, colour cast, blur, sensor noise
    img = (img - 0.5) * per_image("contrast").unsqueeze(1) + 0.5 + per_image("brightness").unsqueeze(1)
    img = img * col3(q["gain"])
    img = _gaussian_blur_per_image(img, q["blur"])
    img = img + torch.randn(img.shape, generator=gen) * per_image("noise").unsqueeze(1)
    return img.clamp_(0.0, 1.0), visible_mask, full_mask


def _make_signs(n: int, class_names: list[str], image_size: int, seed: int, stream: int,
                occlusion: float, chunk: int = 256) -> Split:
    rng = np.random.default_rng([seed, stream, 0x516])
    p = _sample_sign_params(rng, n, len(class_names), occlusion)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    xs, vis, full = [], [], []
    starts = range(0, n, chunk)
    if n > 8 * chunk:
        from ..core.runtime import progress

        starts = progress(starts, desc="signs", total=len(starts))
    for lo in starts:
        x, mv, mf = _render_signs(p, lo, min(n, lo + chunk), class_names, image_size, gen)
        xs.append(x)
        vis.append(mv)
        full.append(mf)
    return Split(
        x=torch.cat(xs).contiguous(),
        y=torch.as_tensor(p["label"], dtype=torch.long),
        extras={
            "mask": torch.cat(vis),
            "full_mask": torch.cat(full),
            "occluded": torch.as_tensor(p["occluded"]),
        },
    )


def _load_signs(n_train: int = 2000, n_test: int = 500, image_size: int = 32,
                classes: Sequence[str | int] | None = None, seed: int = 0,
                occlusion: float = 0.3) -> DataBundle:
    """Procedural RGB traffic signs modelled on eight GTSRB classes.

    Classes (name, GTSRB id): speed_limit_30 (1), speed_limit_50 (2), speed_limit_70 (4),
    priority_road (12), yield (13), stop (14), no_entry (17), road_work (25), each with its
    real shape and colours. Each image varies scale, position, rotation (+-12 deg), perspective,
    aspect, background clutter (gradient, colour texture, six random shapes, a post),
    occlusion, contrast/brightness/colour cast, Gaussian blur (sigma 0-1 px) and sensor noise.
    Geometry is evaluated with signed-distance functions at 4x resolution and box-filtered
    down (anti-aliasing). Written here (no library draws parametric traffic signs).

    Args:
        n_train, n_test: number of images in each split (classes balanced to +-1). Defaults
            2000 and 500.
        image_size: side in pixels. Default 32.
        classes: ``None`` (all eight, in the order above) or a list of class names and/or GTSRB
            ids, e.g. ``[2, 25]`` or ``["speed_limit_50", "road_work"]``; labels follow the
            order given (label ``i`` is ``classes[i]``).
        seed: train and test use separate streams derived from it. Default 0.
        occlusion: probability that an occluder covers part of the sign's rim. Default 0.3.

    Extras: ``"mask"`` (N,1,H,W) float: the visible sign (after occlusion), anti-aliased;
    ``"full_mask"``: the whole sign silhouette before occlusion; ``"occluded"`` bool (N,).
    """
    n_train = _check_int("n_train", n_train, 1)
    n_test = _check_int("n_test", n_test, 1)
    image_size = _check_int("image_size", image_size, 8)
    seed = _check_int("seed", seed)
    occlusion = _check_fraction("occlusion", occlusion)
    names = [nm for nm, _ in SIGN_CLASSES]
    ids = [i for _, i in SIGN_CLASSES]
    pos = _select_classes(classes, names, ids, "signs")
    chosen = [names[i] for i in pos]
    spec = {"name": "signs", "n_train": n_train, "n_test": n_test, "image_size": image_size,
            "classes": chosen, "seed": seed, "occlusion": occlusion,
            "version": GENERATOR_VERSION}
    return DataBundle(
        name="signs", spec=spec,
        train=_make_signs(n_train, chosen, image_size, seed, 0, occlusion),
        test=_make_signs(n_test, chosen, image_size, seed, 1, occlusion),
        classes=chosen,
        info={"gtsrb_ids": [ids[i] for i in pos], "extras": {
            "mask": "visible sign pixels (after occlusion), anti-aliased, (N,1,H,W)",
            "full_mask": "whole sign silhouette before occlusion, (N,1,H,W)",
            "occluded": "bool (N,): an occluder covers part of the sign"}},
    )


