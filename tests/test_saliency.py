"""Known-answer tests of studylib.techniques.saliency (study 04_saliency_baselines; the
study's own pipeline is tested in tests/test_claims_04.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from studylib.techniques import saliency as sal


class Linear(nn.Module):
    """f_k(x) = sum(W_k * x): a linear score whose occlusion / IG answers are known by hand."""

    def __init__(self, weight: torch.Tensor) -> None:  # weight (K, C, H, W)
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kchw,nchw->nk", self.weight, x)


class OnePixel(nn.Module):
    """Class 0 scores x[0, i, j]; class 1 scores 1 - x[0, i, j]."""

    def __init__(self, i: int, j: int) -> None:
        super().__init__()
        self.i, self.j = i, j

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, 0, self.i, self.j]
        return torch.stack([v, 1 - v], dim=1)


def _assert_close(a, b, atol=1e-5):
    a = torch.as_tensor(np.asarray(a), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(b), dtype=torch.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a, b, atol=atol), float((a - b).abs().max())


def _linear_case(c=3, h=6, w=5, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(2, c, h, w, generator=g)
    x = torch.rand(n, c, h, w, generator=g)
    b = torch.rand(n, c, h, w, generator=g)
    return Linear(weight), weight, x, b


# ------------------------------------------------------------------------------ occlusion


@pytest.mark.parametrize("c", [1, 3])
def test_occlusion_one_pixel_window_on_linear_model_is_w_times_x_minus_b(c):
    model, weight, x, b = _linear_case(c=c)
    maps = sal.occlusion_maps(model, x, 0, b, patch=1, stride=1, perturbations_per_eval=8)
    expected = (weight[0] * (x - b)).sum(dim=1)  # window spans the channels
    _assert_close(maps, expected)


def test_occlusion_patch_window_sums_the_window_and_batching_does_not_change_maps():
    model, weight, x, b = _linear_case(c=2, h=4, w=4)
    maps1 = sal.occlusion_maps(model, x, 1, b, patch=2, stride=2, perturbations_per_eval=1)
    maps4 = sal.occlusion_maps(model, x, 1, b, patch=2, stride=2, perturbations_per_eval=4)
    a = (weight[1] * (x - b)).sum(dim=1)  # (N, 4, 4)
    block = a.reshape(2, 2, 2, 2, 2).sum(dim=(2, 4))  # sum of each 2x2 window
    expected = block.repeat_interleave(2, 1).repeat_interleave(2, 2)
    _assert_close(maps1, expected)
    _assert_close(maps4, maps1, atol=1e-6)
    auto = sal.occlusion_maps(model, x, 1, b, patch=2, stride=2)  # None: ~512 images per call
    _assert_close(auto, maps1, atol=1e-6)
    with pytest.raises(ValueError):
        sal.occlusion_maps(model, x, 1, b, patch=2, stride=2, perturbations_per_eval=0)


def test_channels_last_probability_forward_matches_and_leaves_model_alone():
    from studylib.models import build_model

    model = build_model("small_cnn", in_channels=3, num_classes=4, image_size=16, width=4,
                        hidden=8, seed=0)
    model.to(memory_format=torch.contiguous_format)  # SmallCNN is built channels-last
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = sal.probability_forward(model)(x)
        fast = sal.probability_forward(model, channels_last=True)(x)
    assert torch.allclose(plain.sum(1), torch.ones(5))
    _assert_close(fast, plain, atol=1e-6)
    conv = model.features[0].weight
    assert conv.is_contiguous()  # the caller's model keeps its memory format


def test_occlusion_rejects_bad_patch():
    model, _, x, b = _linear_case()
    with pytest.raises(ValueError, match="patch"):
        sal.occlusion_maps(model, x, 0, b, patch=0, stride=1)


# ------------------------------------------------------------------------------ RISE


def test_rise_masks_shape_range_and_keep_probability():
    m = sal.RISE.generate_masks(2000, 4, 0.3, 16, 12, seed=1)
    assert m.shape == (2000, 1, 16, 12)
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    assert abs(float(m.mean()) - 0.3) < 0.02
    again = sal.RISE.generate_masks(2000, 4, 0.3, 16, 12, seed=1)
    assert torch.equal(m, again)
    assert not torch.equal(m, sal.RISE.generate_masks(2000, 4, 0.3, 16, 12, seed=2))


def test_rise_batched_equals_the_formula_with_a_per_mask_loop():
    model, _, x, b = _linear_case(c=3, h=8, w=8, n=3)
    forward = sal.probability_forward(model)
    rise = sal.RISE(forward, n_masks=37, grid_size=3, keep_prob=0.4, seed=5, batch_size=10)
    maps = rise.attribute(x, torch.tensor([0, 1, 0]), b)
    masks = rise.masks(8, 8)
    for i, t in enumerate([0, 1, 0]):
        acc = torch.zeros(8, 8, dtype=torch.float64)
        for mk in masks:
            p = forward((x[i] * mk + b[i] * (1 - mk)).unsqueeze(0))[0, t]
            acc += float(p.detach()) * mk[0].double()
        _assert_close(maps[i], acc / (37 * 0.4), atol=1e-5)
    # the centered estimator differs by mean score x mask coverage / (N p)
    scores = rise.scores(x, torch.tensor([0, 1, 0]), b)
    coverage = masks[:, 0].sum(dim=0) / (37 * 0.4)
    centered = rise.maps_from_scores(scores, centered=True)
    _assert_close(centered, maps - scores.mean(dim=1).view(-1, 1, 1) * coverage, atol=1e-5)
    # checkpoints are the maps of the mask prefixes
    ck = rise.attribute(x, torch.tensor([0, 1, 0]), b, n_checkpoints=[10, 37])
    _assert_close(ck[37], maps, atol=1e-6)
    prefix = sal.RISE(forward, n_masks=10, grid_size=3, keep_prob=0.4, seed=5)
    prefix._masks, prefix._mask_hw = masks[:10], (8, 8)
    _assert_close(ck[10], prefix.attribute(x, torch.tensor([0, 1, 0]), b), atol=1e-6)


def _smooth_linear_case(h=16):
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(h).float(), indexing="ij")
    blob = lambda cy, cx, s: torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s**2))  # noqa: E731
    w = (blob(4, 5, 2.5) - 0.8 * blob(11, 10, 2.0)).view(1, 1, h, h)
    weight = torch.cat([w, -w])  # two classes
    x = (0.55 + 0.35 * torch.cos(yy / 3.0) * torch.sin(xx / 4.0)).view(1, 1, h, h)  # smooth image
    b = torch.full_like(x, 0.1)
    return Linear(weight), (w * (x - b))[0, 0], x, b


def test_rise_with_many_masks_on_a_linear_model_approaches_w_times_x_minus_b():
    model, expected, x, b = _smooth_linear_case()
    corr = {}
    rise = sal.RISE(model, n_masks=4000, grid_size=8, keep_prob=0.5, seed=0, batch_size=4096)
    maps = rise.attribute(x, 0, b, n_checkpoints=[30, 300, 4000])
    for n, m in maps.items():
        corr[n] = float(np.corrcoef(m[0].flatten().numpy(), expected.flatten().numpy())[0, 1])
    # the expectation is (const + mask-covariance smoothing of w * (x - b)); the Monte-Carlo
    # estimate converges to it, so the correlation grows with N and is high at N = 4000
    assert corr[4000] > 0.9, corr
    assert corr[30] < corr[300] < corr[4000], corr
    centered = rise.attribute(x, 0, b, centered=True)[0]
    assert np.corrcoef(centered.flatten().numpy(), expected.flatten().numpy())[0, 1] > 0.9


def test_rise_rejects_bad_arguments():
    with pytest.raises(ValueError, match="keep_prob"):
        sal.RISE(lambda z: z, n_masks=10, keep_prob=0.0)
    with pytest.raises(ValueError, match="n_masks"):
        sal.RISE(lambda z: z, n_masks=0)


# ------------------------------------------------------------------------------ gradient references


def test_integrated_gradients_on_linear_model_is_w_times_x_minus_b():
    model, weight, x, b = _linear_case(c=3)
    maps = sal.integrated_gradients_maps(model, x, 1, b, n_steps=4)
    _assert_close(maps, (weight[1] * (x - b)).sum(dim=1), atol=1e-4)


def test_gradient_map_on_linear_model_is_max_abs_weight_over_channels():
    model, weight, x, _ = _linear_case(c=3)
    maps = sal.gradient_maps(model, x, 0)
    _assert_close(maps, weight[0].abs().max(dim=0).values.expand(2, -1, -1))


# ------------------------------------------------------------------------------ baselines


def test_baselines_have_their_defining_values():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 16, 16, generator=g)
    bl = sal.make_baselines(x, dataset_mean=[0.1, 0.2, 0.3], seed=4)
    assert set(bl) == set(sal.BASELINES)
    assert torch.equal(bl["black"], torch.zeros_like(x))
    assert torch.equal(bl["white"], torch.ones_like(x))
    _assert_close(bl["dataset_mean"][1, :, 5, 7], [0.1, 0.2, 0.3])
    _assert_close(bl["image_mean"][2, :, 0, 0], x[2].mean(dim=(1, 2)))
    _assert_close(bl["image_mean"].mean(dim=(2, 3)), x.mean(dim=(2, 3)))
    for k in ("uniform_noise", "gaussian_noise"):
        assert float(bl[k].min()) >= 0 and float(bl[k].max()) <= 1
        assert torch.equal(bl[k], sal.make_baseline(x, k, seed=4))
        assert not torch.equal(bl[k], sal.make_baseline(x, k, seed=5))
    assert abs(float(bl["gaussian_noise"].mean()) - 0.5) < 0.02
    assert abs(float(bl["uniform_noise"].mean()) - 0.5) < 0.02


def test_blur_keeps_constant_images_and_spreads_an_impulse_with_unit_mass():
    const = torch.full((1, 3, 16, 16), 0.3)
    _assert_close(sal.make_baseline(const, "blur", blur_sigma=2.0), const)
    imp = torch.zeros(1, 1, 32, 32)
    imp[0, 0, 16, 16] = 1.0
    out = sal.make_baseline(imp, "blur", blur_sigma=1.5)
    assert abs(float(out.sum()) - 1.0) < 1e-5
    assert float(out[0, 0, 16, 16]) == pytest.approx(1 / (2 * math.pi * 1.5**2), rel=0.05)


def test_baseline_errors():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="dataset_mean"):
        sal.make_baseline(x, "dataset_mean")
    with pytest.raises(ValueError, match="kind"):
        sal.make_baseline(x, "grey")


def test_baseline_output_stats_of_uniform_and_one_hot_outputs():
    k = 4
    uniform = sal.baseline_output_stats(lambda z: torch.full((z.shape[0], k), 1 / k), torch.zeros(5, 1, 2, 2))
    assert uniform["max_prob_over_uniform"] == pytest.approx(1.0)
    assert uniform["kl_from_uniform"] == pytest.approx(0.0, abs=1e-9)
    onehot = sal.baseline_output_stats(
        lambda z: torch.nn.functional.one_hot(torch.zeros(z.shape[0], dtype=torch.long), k).float(),
        torch.zeros(5, 1, 2, 2))
    assert onehot["max_prob"] == pytest.approx(1.0)
    assert onehot["kl_from_uniform"] == pytest.approx(math.log(k), rel=1e-6)
    assert onehot["top_class_share"] == 1.0


# ------------------------------------------------------------------------------ metrics


def _one_pixel_case():
    i, j = 5, 9
    model = OnePixel(i, j)
    x = torch.full((1, 1, 16, 16), 0.9)
    b = torch.full_like(x, 0.2)
    perfect = torch.zeros(1, 16, 16)
    perfect[0, i, j] = 1.0
    return model, x, b, perfect, 0.9, 0.2


def test_aopc_of_a_perfect_map_on_a_one_pixel_model():
    model, x, b, perfect, xp, bp = _one_pixel_case()
    kw = dict(region_size=4, n_steps=4, max_fraction=1.0)
    morf = sal.perturbation_curve(model, x, 0, perfect, b, order="most", **kw)
    _assert_close(morf, [[xp, bp, bp, bp, bp]])
    assert sal.aopc(morf)[0] == pytest.approx(4 * (xp - bp) / 5)
    lerf = sal.perturbation_curve(model, x, 0, perfect, b, order="least", **kw)
    assert sal.aopc(lerf)[0] == pytest.approx((xp - bp) / 5)
    # no other map has a larger MoRF AOPC on this model
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        other = torch.rand(1, 16, 16, generator=g)
        assert sal.aopc(sal.perturbation_curve(model, x, 0, other, b, order="most", **kw))[0] <= \
            sal.aopc(morf)[0] + 1e-9


def test_deletion_and_insertion_auc_of_a_perfect_map_on_a_one_pixel_model():
    model, x, b, perfect, xp, bp = _one_pixel_case()
    dele = sal.perturbation_curve(model, x, 0, perfect, b, region_size=1, n_steps=4)
    assert sal.curve_auc(dele)[0] == pytest.approx(((xp + bp) / 2 + 3 * bp) / 4)
    ins = sal.perturbation_curve(model, x, 0, perfect, b, region_size=1, n_steps=4, mode="insert")
    assert sal.curve_auc(ins)[0] == pytest.approx(((xp + bp) / 2 + 3 * xp) / 4)
    # known start / end scores are reused, not recomputed: same curve
    sx, sb = model(x)[:, 0], model(b)[:, 0]
    for mode in ("delete", "insert"):
        full = sal.perturbation_curve(model, x, 0, perfect, b, region_size=1, n_steps=4, mode=mode)
        reuse = sal.perturbation_curve(model, x, 0, perfect, b, region_size=1, n_steps=4, mode=mode,
                                       score_x=sx, score_baseline=sb)
        _assert_close(reuse, full)
    marker = sal.perturbation_curve(model, x, 0, perfect, b, region_size=1, n_steps=4,
                                    score_x=torch.tensor([7.0]), score_baseline=torch.tensor([-7.0]))
    assert marker[0, 0] == 7.0 and marker[0, -1] == -7.0


def test_perturbation_curve_max_fraction_and_regions_counts():
    # score = mean of the image: removal of r regions of 4x4 to baseline 0 lowers it by 16 r / 256
    model = lambda z: z.mean(dim=(1, 2, 3)).unsqueeze(1)  # noqa: E731
    x = torch.ones(2, 1, 16, 16)
    s = torch.rand(2, 16, 16)
    curve = sal.perturbation_curve(model, x, 0, s, 0.0, region_size=4, n_steps=4, max_fraction=0.5)
    _assert_close(curve, [[1, 7 / 8, 6 / 8, 5 / 8, 4 / 8]] * 2)  # 2, 4, 6, 8 of 16 regions


# ------------------------------------------------------------------------------ agreement


def test_spearman_hand_cases_and_ties_match_scipy():
    a = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]], float)
    b = np.array([[1, 2, 3, 4], [4, 3, 2, 1], [2, 1, 4, 3]], float)
    _assert_close(sal.spearman_per_image(a, b), [1.0, -1.0, 1 - 6 * 4 / (4 * 15)])
    g = np.random.default_rng(0)
    p = g.integers(0, 3, size=(2, 30)).astype(float)
    q = g.normal(size=(2, 30))
    ours = sal.spearman_per_image(p, q)
    ref = [stats.spearmanr(p[i], q[i]).statistic for i in range(2)]
    _assert_close(ours, ref, atol=1e-10)
    assert np.isnan(sal.spearman_per_image(np.ones((1, 4)), a[:1]))[0]


def test_topk_intersection_hand_cases():
    a = np.array([[4, 3, 2, 1]], float)
    b = np.array([[4, 1, 3, 2]], float)
    assert sal.topk_intersection(a, b, 2)[0] == 0.5
    assert sal.topk_intersection(a, b, 0.5)[0] == 0.5
    assert sal.topk_intersection(a, b, 1)[0] == 1.0
    assert sal.topk_intersection(a, -a, 2)[0] == 0.0
    with pytest.raises(ValueError, match="k must"):
        sal.topk_intersection(a, b, 5)


def test_ssim_pointing_and_mass_inside():
    g = torch.Generator().manual_seed(1)
    m = torch.rand(2, 16, 16, generator=g)
    _assert_close(sal.ssim_per_image(m, m), [1.0, 1.0])
    _assert_close(sal.ssim_per_image(m, 3 * m + 1), [1.0, 1.0])  # min-max invariant
    assert sal.ssim_per_image(m, torch.rand(2, 16, 16, generator=g)).max() < 0.5
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, :8] = 1.0  # top half is the object
    s = torch.zeros(2, 16, 16)
    s[0, 2, 3] = 5.0  # peak inside
    s[1, 12, 3] = 5.0  # peak outside
    s[:, 0, 0] += 1.0
    s[:, 15, 15] -= 9.0  # negative values do not count as mass
    _assert_close(sal.pointing_game(s, mask), [1.0, 0.0])
    _assert_close(sal.mass_inside(s, mask), [1.0, 1 / 6])


def test_ranking_tau_and_rank_position():
    a = {"x": 3.0, "y": 2.0, "z": 1.0}
    assert sal.ranking_kendall_tau(a, a) == pytest.approx(1.0)
    assert sal.ranking_kendall_tau(a, {"x": 1.0, "y": 2.0, "z": 3.0}) == pytest.approx(-1.0)
    assert sal.ranking_kendall_tau(a, {"x": 3.0, "y": 1.0, "z": 2.0}) == pytest.approx(1 / 3)
    assert sal.rank_position(a, "z") == 3
    assert sal.rank_position(a, "z", higher_is_better=False) == 1
    pairs = sal.pairwise_agreement({"a": torch.tensor([[1.0, 2, 3]]), "b": torch.tensor([[3.0, 2, 1]]),
                                    "c": torch.tensor([[1.0, 2, 3]])})
    assert set(pairs) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert sal.pooled_median(pairs) == pytest.approx(-1.0)


def test_scale_size():
    assert sal.scale_size(8, 32) == 8
    assert sal.scale_size(8, 16) == 4
    assert sal.scale_size(2, 16) == 1
    assert sal.scale_size(1, 16) == 1
    assert sal.scale_size(16, 224) == 112


def test_occlusion_on_a_shifted_grid_of_a_linear_model():
    """A linear score w . x with patch = stride: each pixel lies in one window, whose
    occlusion (baseline 0) removes the window's sum of w * x; shifted by 2, the first window
    covers only the 2 x 2 corner inside the image."""
    from studylib.techniques.saliency import occlusion_maps

    torch.manual_seed(0)
    w = torch.randn(3, 16, 16)

    def f(z):
        s = (z * w).sum((1, 2, 3))
        return torch.stack([s, -s], 1)

    x = torch.rand(2, 3, 16, 16)
    wx = (w * x).sum(1)
    m0 = occlusion_maps(f, x, 0, 0.0, patch=4, stride=4)
    m2 = occlusion_maps(f, x, 0, 0.0, patch=4, stride=4, offset=2)
    torch.testing.assert_close(m0[:, 0, 0], wx[:, :4, :4].sum((1, 2)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(m2[:, 0, 0], wx[:, :2, :2].sum((1, 2)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(m2[:, 5, 5], wx[:, 2:6, 2:6].sum((1, 2)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(m2[:, 15, 15], wx[:, 14:, 14:].sum((1, 2)), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="offset"):
        occlusion_maps(f, x, 0, 0.0, patch=4, stride=4, offset=4)


def test_block_pool_means_blocks():
    from studylib.techniques.saliency import block_pool

    m = torch.arange(16.0).reshape(1, 4, 4)
    torch.testing.assert_close(block_pool(m, 2), torch.tensor([[[2.5, 4.5], [10.5, 12.5]]]))
    assert block_pool(m, 1) is m
    assert block_pool(torch.ones(1, 5, 5), 2).shape == (1, 3, 3)  # last block smaller
