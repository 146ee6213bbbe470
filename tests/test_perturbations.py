"""Known-answer tests of studylib.techniques.perturbations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from studylib.stats import bootstrap_auc
from studylib.techniques import perturbations as P


def _img(n=2, c=1, h=16, w=16, seed=0):
    return torch.rand((n, c, h, w), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- study 03 signals


def test_salt_and_pepper_fraction_values_and_determinism():
    x = torch.full((4, 1, 64, 64), 0.5)
    out = P.salt_and_pepper(x, 0.2, seed=3)
    changed = (out != 0.5)
    assert abs(changed.float().mean().item() - 0.2) < 0.02
    assert set(torch.unique(out[changed]).tolist()) <= {0.0, 1.0}
    # salt and pepper in roughly equal numbers
    assert abs((out == 1).float().mean().item() - (out == 0).float().mean().item()) < 0.02
    assert torch.equal(out, P.salt_and_pepper(x, 0.2, seed=3))
    assert not torch.equal(out, P.salt_and_pepper(x, 0.2, seed=4))
    assert torch.equal(P.salt_and_pepper(x, 0.0, seed=3), x)
    with pytest.raises(ValueError, match="amount"):
        P.salt_and_pepper(x, 1.5)


def test_gaussian_blur_preserves_constant_and_matches_variance_of_impulse():
    const = torch.full((1, 1, 20, 20), 0.3)
    assert torch.allclose(P.gaussian_blur(const, 1.5), const, atol=1e-6)
    # an impulse blurred with sigma has spatial second moment sigma^2 along each axis
    imp = torch.zeros((1, 1, 41, 41))
    imp[0, 0, 20, 20] = 1.0
    out = P.gaussian_blur(imp, 2.0)[0, 0]
    assert abs(out.sum().item() - 1.0) < 1e-5
    t = torch.arange(41.0) - 20
    var_x = (out.sum(0) * t**2).sum().item()
    assert abs(var_x - 4.0) < 0.05
    assert torch.equal(P.gaussian_blur(imp, 0.0), imp)


def test_brightness_contrast_known_values():
    x = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(1, 1, 2, 2)
    out = P.brightness_contrast(x, brightness=0.1, contrast=0.5)
    expected = (x - 0.5) * 0.5 + 0.5 + 0.1
    assert torch.allclose(out, expected)
    assert torch.allclose(P.brightness_contrast(x, brightness=0.5, contrast=2.0).max(), torch.tensor(1.0))
    assert torch.allclose(P.brightness_contrast(x), x)


@pytest.mark.parametrize("name", sorted(P.SIGNAL_PERTURBATIONS))
def test_signal_perturbations_grid_identity_at_zero_and_range(name):
    fn, grid = P.SIGNAL_PERTURBATIONS[name]
    assert grid[0] == 0 and len(grid) >= 5 and grid == sorted(grid)
    x = _img(n=3, c=3, h=12, w=12)
    assert torch.allclose(fn(x, 0.0, seed=0), x)
    out = fn(x, grid[-1], seed=1)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)
    assert torch.equal(out, P.apply_signal_perturbation(name, x, grid[-1], seed=1))


# ----------------------------------------------------------------------------- study 02 filters


def test_lowpass_leaves_constant_image_unchanged():
    x = torch.full((2, 1, 32, 32), 0.37)
    for r in (0.5, 2.0, 8.0):
        assert torch.allclose(P.fourier_lowpass(x, r), x, atol=1e-6)
    # the high-pass of a constant is zero (the zero frequency is always removed)
    assert torch.allclose(P.fourier_highpass(x, 2.0), torch.zeros_like(x), atol=1e-6)


def test_lowpass_removes_nyquist_checkerboard_and_keeps_it_without_filtering():
    n = 32
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    board = ((-1.0) ** (ii + jj)).view(1, 1, n, n)
    # frequency (n/2, n/2): d = n / sqrt(2) ~ 22.6; with r = 4 the mask is exp(-16) ~ 1e-7
    out = P.fourier_lowpass(0.5 + 0.5 * board, 4.0)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-5)
    # the mask value at Nyquist is exactly exp(-d^2 / 2r^2) for the checkerboard's amplitude
    r = 16.0
    expected = 0.5 * math.exp(-(2 * (n / 2) ** 2) / (2 * r * r))
    out = P.fourier_lowpass(0.5 + 0.5 * board, r)
    assert torch.allclose(out - 0.5, expected * board, atol=1e-6)
    assert torch.allclose(P.fourier_lowpass(board, math.inf), board)


def test_lowpass_plus_highpass_is_identity():
    x = _img(n=3, c=2, h=20, w=24)
    for r in (0.7, 3.0, 10.0):
        assert torch.allclose(P.fourier_lowpass(x, r) + P.fourier_highpass(x, r), x, atol=1e-6)


def test_lowpass_equals_circular_gaussian_blur_of_matching_width():
    # low-pass radius r (cycles/image) <-> spatial std n / (2 pi r) on a periodic grid
    n, r = 64, 4.0
    imp = torch.zeros((1, 1, n, n))
    imp[0, 0, 0, 0] = 1.0
    psf = P.fourier_lowpass(imp, r)[0, 0].double()
    sigma = n / (2 * math.pi * r)
    t = torch.fft.fftfreq(n, d=1.0 / n).double()  # signed circular coordinate
    var = (psf.sum(0) * t**2).sum().item()
    assert abs(var - sigma**2) < 1e-3 * sigma**2
    assert abs(psf.sum().item() - 1.0) < 1e-5


def test_mask_shape_and_errors():
    m = P.fourier_gaussian_mask(8, 6, 2.0)
    assert m.shape == (8, 6) and m[0, 0] == 1.0
    assert abs(m[1, 0].item() - math.exp(-1 / 8)) < 1e-6
    with pytest.raises(ValueError, match="r must be"):
        P.fourier_gaussian_mask(8, 8, 0.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        P.fourier_lowpass(torch.zeros(8, 8), 2.0)
    assert P.radius_from_nyquist_fraction(0.25, 128) == 16.0


def test_gaussian_noise_std_matches_fraction_of_dynamic_range():
    x = torch.zeros((2, 1, 128, 128))
    x[0, 0, :, :64] = 0.2
    x[0, 0, :, 64:] = 0.6   # dynamic range 0.4
    x[1, 0, :, :64] = 0.0
    x[1, 0, :, 64:] = 1.0   # dynamic range 1.0
    out = P.gaussian_noise(x, 0.1, seed=0, clip=False)
    diff = out - x
    assert abs(diff[0].std().item() - 0.04) < 0.002
    assert abs(diff[1].std().item() - 0.10) < 0.003
    assert abs(diff.mean().item()) < 0.002
    assert torch.equal(out, P.gaussian_noise(x, 0.1, seed=0, clip=False))
    clipped = P.gaussian_noise(x, 0.1, seed=0)
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert torch.equal(P.gaussian_noise(x, 0.0, seed=0), x)


# ----------------------------------------------------------------------------- CNR


def test_cnr_of_synthetic_speck_with_known_contrast_and_ring_noise():
    rng = np.random.default_rng(0)
    h = w = 200
    sigma, contrast = 0.05, 0.4
    img = 0.3 + sigma * rng.standard_normal((h, w))
    labels = np.zeros((h, w), dtype=np.int32)
    centres = [(40, 40), (40, 150), (150, 60), (150, 150)]
    for k, (cy, cx) in enumerate(centres, start=1):
        labels[cy - 2:cy + 3, cx - 2:cx + 3] = k
        img[cy - 2:cy + 3, cx - 2:cx + 3] = 0.3 + contrast  # noise-free speck
    regions = P.object_regions(labels, gap=1, width=6)
    assert [r.area for r in regions] == [25] * 4
    cnr = P.regions_cnr(img, regions)
    # expected CNR = contrast / sigma = 8, up to sampling error of the ring mean and std
    assert np.all(np.abs(cnr - contrast / sigma) < 1.0)
    assert P.detectable(cnr, 3.0).all()
    assert P.retained_fraction(cnr, cnr / 4, 3.0) == 0.0
    assert P.retained_fraction(cnr, cnr, 3.0) == 1.0


def test_ring_excludes_other_specks_and_exclusion_mask():
    labels = np.zeros((30, 30), dtype=np.int32)
    labels[10, 10] = 1
    labels[10, 14] = 2     # inside speck 1's ring
    excl = np.zeros((30, 30), dtype=bool)
    excl[7, :] = True
    regs = P.object_regions(labels, gap=1, width=3, exclude=excl)
    r1 = regs[0]
    full = np.zeros((30, 30), dtype=bool)
    full[r1.window] = r1.ring
    assert not full[9:12, 13:16].any()       # speck 2 and its 1-px gap are not background
    assert not full[7, :].any()
    assert full[10, 6] and not full[10, 11]  # outer part counts, the gap does not
    # a bright neighbour speck would bias the ring if it were included: it is not
    img = np.zeros((30, 30))
    img[10, 14] = 100.0
    img[10, 10] = 1.0
    img += np.random.default_rng(1).normal(0, 0.1, img.shape)
    assert P.regions_cnr(img, regs)[0] > 5


def test_batch_cnr_concatenates_and_checks_lengths():
    labels = np.zeros((20, 20), dtype=np.int32)
    labels[5, 5] = 1
    labels[14, 14] = 2
    regs = P.object_regions(labels)
    x = torch.rand((2, 1, 20, 20), generator=torch.Generator().manual_seed(0))
    out = P.batch_cnr(x, [regs, regs[:1]])
    assert out.shape == (3,)
    assert np.isclose(out[2], P.regions_cnr(x[1, 0].numpy(), regs[:1])[0])
    with pytest.raises(ValueError, match="regions"):
        P.batch_cnr(x, [regs])


# ----------------------------------------------------------------------------- similarity, AUC


def test_ssim_psnr_known_values():
    x = torch.full((1, 1, 32, 32), 0.5)
    y = x + 0.1
    ssim, psnr = P.ssim_psnr(x, y, data_range=1.0)
    assert abs(psnr[0] - 20.0) < 1e-4          # 10 log10(1 / 0.01)
    ssim_same, psnr_same = P.ssim_psnr(y, y)
    assert ssim_same[0] == pytest.approx(1.0) and np.isinf(psnr_same[0])
    assert ssim[0] < 1.0


def test_flip_fraction():
    assert P.flip_fraction([0.1, 0.6, 0.7, 0.4], [0.2, 0.4, 0.8, 0.5]) == 0.5
    assert P.flip_fraction([0.5], [0.49]) == 1.0


def test_bootstrap_auc_matches_sklearn_on_full_data_and_resamples():
    """The kit's AUC bootstrap (studylib.stats) with the -1 labels of :func:`P.subgroup_labels`."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)   # rounding makes ties
    auc, reps = bootstrap_auc(y, np.stack([s, -s]), n_boot=50, seed=7)
    assert auc[0] == pytest.approx(roc_auc_score(y, s))
    assert auc[1] == pytest.approx(1 - auc[0])
    idx = np.random.default_rng(7).integers(0, 300, size=(50, 300))
    for b in (0, 13, 49):
        assert reps[b, 0] == pytest.approx(roc_auc_score(y[idx[b]], s[idx[b]]))
    # -1 leaves examples out
    y_sub = np.where(np.arange(300) < 100, -1, y)
    sub, _ = bootstrap_auc(y_sub, s, n_boot=0)
    assert sub[0] == pytest.approx(roc_auc_score(y[100:], s[100:]))


# ----------------------------------------------------------------------------- study 02 methods


def test_screening_classifier_shapes_seed_and_maxpool_keeps_a_speck():
    m = P.screening_classifier(image_size=32, pool=4, widths=(4, 8), blocks_per_stage=(1, 1), seed=0)
    x = _img(n=3, c=1, h=32, w=32)
    assert m(x).shape == (3, 2)
    assert m[0](x).shape == (3, 8, 8, 8)
    assert m.config["pool"] == 4 and m.config["resnet"]["image_size"] == 8
    with pytest.raises(ValueError, match="pool"):
        P.screening_classifier(image_size=30, pool=4)
    m2, m3 = (P.screening_classifier(image_size=32, pool=4, widths=(4, 8), blocks_per_stage=(1, 1),
                                     seed=0) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(m3.state_dict().values(), m2.state_dict().values(), strict=True))
    # a single bright pixel: the pooled stem output holds the same peak response as the
    # full-resolution stem output (max-pooling), not the peak divided by pool^2 (average)
    m2.eval()
    imp = torch.zeros((1, 1, 32, 32))
    imp[0, 0, 13, 18] = 1.0
    conv_relu = torch.nn.Sequential(*list(m2[0])[:3])
    with torch.no_grad():
        full = conv_relu(imp)
        pooled = m2[0](imp)
    assert torch.allclose(pooled.amax(dim=(2, 3)), full.amax(dim=(2, 3)))


def test_perturb_dispatch_levels():
    x = _img(n=2, c=1, h=16, w=16)
    assert torch.equal(P.perturb("lowpass", x, None), x)
    assert torch.allclose(P.perturb("lowpass", x, 0.25), P.fourier_lowpass(x, 2.0))
    assert torch.allclose(P.perturb("highpass", x, 0.5),
                          P.renormalise_to_input(P.fourier_highpass(x, 4.0), x))
    assert torch.equal(P.perturb("gaussian_noise", x, 0.1, seed=2), P.gaussian_noise(x, 0.1, seed=2))
    with pytest.raises(ValueError, match="model"):
        P.perturb("pgd", x, 0.1)
    with pytest.raises(ValueError, match="unknown perturbation"):
        P.perturb("jpeg", x, 0.1)
    # PGD stays inside the eps ball and [0, 1]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 2))
    y = torch.tensor([0, 1])
    adv = P.perturb("pgd", x, 0.05, model=model, y=y, pgd_steps=3)
    assert (adv - x).abs().max() <= 0.05 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def test_cluster_bootstrap_fraction():
    res = P.cluster_bootstrap_fraction(np.array([1, 2, 0, 3]), np.array([2, 2, 2, 4]), n_boot=200)
    assert res["fraction"] == 0.6 and res["n_objects"] == 10 and res["n_clusters"] == 4
    lo, hi = res["ci95"]
    assert 0 <= lo <= 0.6 <= hi <= 1
    same = P.cluster_bootstrap_fraction(np.array([2, 2, 2]), np.array([2, 2, 2]), n_boot=50)
    assert same["ci95"] == [1.0, 1.0]


def test_subgroup_labels():
    y = np.array([0, 1, 1, 0, 1])
    t = np.array([0, 1, 2, 0, 1])
    assert P.subgroup_labels(y, t, 1).tolist() == [0, 1, -1, 0, 1]
    assert P.subgroup_labels(y, t, 2).tolist() == [0, -1, 1, 0, -1]


def test_lowpass_erases_a_speck_before_a_mass():
    # one 1-px speck and one Gaussian blob (sigma 4 px) on a smooth textured background (std
    # ~0.02, correlation length 2 px, as breast tissue): a low-pass of radius r blurs with std
    # n / (2 pi r) px = 1.27 px here, which spreads the speck's contrast over ~10 pixels (peak /10)
    # while the texture, already smooth, keeps most of its std; the blob barely changes.
    n = 64
    texture = P.fourier_lowpass(torch.randn((1, 1, n, n), generator=torch.Generator().manual_seed(0)),
                                n / (2 * math.pi * 2.0))[0, 0].numpy().astype(float)
    img = 0.3 + 0.02 * texture / texture.std()
    img[16, 16] += 0.3
    yy, xx = np.mgrid[0:n, 0:n]
    blob = np.exp(-((yy - 44) ** 2 + (xx - 44) ** 2) / (2 * 4.0**2))
    img += 0.3 * blob
    labels = np.zeros((n, n), dtype=np.int32)
    labels[16, 16] = 1
    mass_labels = (blob > np.exp(-0.5)).astype(np.int32)   # within 1 sigma
    x = torch.tensor(img, dtype=torch.float32).view(1, 1, n, n)
    speck = P.lowpass_object_visibility(x, [P.object_regions(labels)], [0.25], n_boot=20)
    mass = P.lowpass_object_visibility(x, [P.object_regions(mass_labels, gap=2, width=4)], [0.25], n_boot=20)
    assert speck["detectable_clean"] == 1.0 and mass["detectable_clean"] == 1.0
    assert speck["per_r"][0]["retained"]["fraction"] == 0.0
    assert mass["per_r"][0]["retained"]["fraction"] == 1.0
    # the per-image counts behind those shares (what study 02's claim resamples)
    assert speck["detectable_per_image"].tolist() == [1] and speck["per_r"][0]["kept_per_image"].tolist() == [0]
    assert mass["per_r"][0]["kept_per_image"].tolist() == [1]
    assert 0 < speck["per_r"][0]["ssim_mean"] <= 1


def test_fourier_filter_in_chunks_equals_one_batch():
    x = torch.rand((7, 2, 16, 12), generator=torch.Generator().manual_seed(3))
    mask = P.fourier_gaussian_mask(16, 12, 3.0)
    whole = P._fourier_filter(x, mask, chunk=64)
    assert torch.equal(P._fourier_filter(x, mask, chunk=3), whole)
    assert whole.dtype == x.dtype and whole.shape == x.shape
    # and it is the filter: a constant image passes a low-pass unchanged
    const = torch.full((2, 1, 16, 12), 0.25)
    assert torch.allclose(P._fourier_filter(const, mask, chunk=1), const, atol=1e-7)


def test_mildest_highpass_is_not_a_brightness_shift():
    """At r = 0.005 of Nyquist the raw high-pass is x - mean within a small tolerance; the
    renormalised one keeps the input's range and stays close to the input itself."""
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.4 * P.fourier_lowpass(torch.rand(3, 1, 64, 64, generator=g), 6.0)
    x = (x - x.amin(dim=(2, 3), keepdim=True)) / (x.amax(dim=(2, 3), keepdim=True)
                                                 - x.amin(dim=(2, 3), keepdim=True))
    x = 0.2 + 0.5 * x  # each image spans [0.2, 0.7]
    raw = P.fourier_highpass(x, 0.005 * 32)
    shifted = x - x.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(raw, shifted, atol=0.01)  # what the issue found
    out = P.perturb("highpass", x, 0.005)
    assert not torch.allclose(out, shifted, atol=0.05)
    assert torch.allclose(out.amin(dim=(2, 3)), torch.full((3, 1), 0.2), atol=1e-5)
    assert torch.allclose(out.amax(dim=(2, 3)), torch.full((3, 1), 0.7), atol=1e-5)
    assert torch.allclose(out, x, atol=0.02)


def test_renormalise_to_input_known_values():
    x = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]]])
    out = torch.tensor([[[[-1.0, 0.0], [0.0, 1.0]]]])
    expected = torch.tensor([[[[0.2, 0.5], [0.5, 0.8]]]])
    assert torch.allclose(P.renormalise_to_input(out, x), expected)
    flat = P.renormalise_to_input(torch.zeros_like(x), x)
    assert torch.allclose(flat, torch.full_like(x, 0.2))


# ----------------------------------------------------------------------------- mass detectability


def _disc_scene(n_images, n_bg, contrast, sigma, ramp=0.0, seed=0, size=48, radius=6):
    """Lesion images (a flat disc of ``contrast`` at the centre) and lesion-free backgrounds:
    0.3 + white noise of std ``sigma`` + a linear ramp ``ramp`` per pixel along the rows."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (np.hypot(yy - size / 2, xx - size / 2) <= radius)
    base = 0.3 + ramp * yy
    bg = base + sigma * rng.standard_normal((n_bg, size, size))
    noise = sigma * rng.standard_normal((n_images, size, size))
    les = base + noise + contrast * disc
    regions = P.object_regions(disc.astype(np.int32), gap=2, width=4)
    return (torch.tensor(les[:, None]), torch.tensor(bg[:, None]), [regions] * n_images, disc,
            noise)


def test_npw_dprime_of_a_disc_on_white_noise_is_contrast_over_the_template_noise():
    les, bg, regions, _, _ = _disc_scene(60, 400, contrast=0.2, sigma=0.2)
    reg = regions[0][0]
    a_in, a_ring = int(reg.inside.sum()), int(reg.ring.sum())
    # the response mean(inside) - mean(ring) has std sigma sqrt(1/A_in + 1/A_ring) on white
    # noise, so d' = contrast / that, here about 6.7; averaged over 60 lesion images
    expected = 0.2 / (0.2 * math.sqrt(1 / a_in + 1 / a_ring))
    d = P.npw_dprime(les, regions, bg)
    assert d.shape == (60,) and abs(d.mean() - expected) < 0.1 * expected
    assert abs(d.std(ddof=1) - 1.0) < 0.3  # one template-noise std per image
    # the ring CNR divides by the single-pixel std instead: smaller by sqrt(1/A_in + 1/A_ring)
    cnr = P.batch_cnr(les, regions)
    assert abs(cnr.mean() - 1.0) < 0.15


def test_npw_dprime_ignores_a_common_linear_trend_and_is_affine_in_contrast():
    flat = _disc_scene(5, 50, contrast=0.1, sigma=0.1)
    ramped = _disc_scene(5, 50, contrast=0.1, sigma=0.1, ramp=0.03)
    d_flat = P.npw_dprime(flat[0], flat[2], flat[1])
    np.testing.assert_allclose(P.npw_dprime(ramped[0], ramped[2], ramped[1]), d_flat, rtol=1e-9)
    # the ring CNR takes the slope for noise: with the ramp it falls
    assert P.batch_cnr(ramped[0], ramped[2]).mean() < 0.6 * P.batch_cnr(flat[0], flat[2]).mean()
    # same noise, contrast 0, c and 2c: d' is affine in the contrast
    d0, d1, d2 = (P.npw_dprime(_disc_scene(5, 50, contrast=c, sigma=0.1)[0], flat[2], flat[1])
                  for c in (0.0, 0.1, 0.2))
    np.testing.assert_allclose(d2 - d1, d1 - d0, rtol=1e-9)
    np.testing.assert_allclose(d1, d_flat, rtol=1e-12)
    with pytest.raises(ValueError, match="backgrounds"):
        P.npw_dprime(flat[0], flat[2], flat[1][:2])


def test_lowpass_object_visibility_uses_the_dprime_with_backgrounds():
    les, bg, regions, _, _ = _disc_scene(4, 100, contrast=0.15, sigma=0.1)
    v = P.lowpass_object_visibility(les, regions, [0.1], n_boot=20, backgrounds=bg)
    np.testing.assert_allclose(v["cnr_clean"], P.npw_dprime(les, regions, bg))
    # a disc of radius 6 px survives a low-pass (blur std 48 / (2 pi 2.4) = 3.2 px) that removes
    # most of the white noise, so its d' against equally filtered backgrounds stays large
    assert v["detectable_clean"] == 1.0 and v["per_r"][0]["retained"]["fraction"] == 1.0
    lp = P.perturb("lowpass", les, 0.1)
    np.testing.assert_allclose(v["per_r"][0]["cnr"],
                               P.npw_dprime(lp, regions, P.perturb("lowpass", bg, 0.1)))
