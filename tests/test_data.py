"""Tests of studylib.data: containers, generators' determinism and the properties each data set
promises (stratified splits, masks where the object is, detectable calcifications, file
round-trips)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studylib import data

# --------------------------------------------------------------------------------------------
# Containers and load()
# --------------------------------------------------------------------------------------------


def _toy_split(n=6):
    x = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1) / n
    y = torch.arange(n) % 2
    extras = {
        "mask": torch.arange(n).reshape(n, 1, 1, 1).float(),
        "specks": [torch.full((i, 3), float(i)) for i in range(n)],
        "note": "not per example",
        "table": torch.zeros(3, 2),
    }
    return data.Split(x, y, extras)


def test_split_subset_slices_every_per_example_extra():
    s = _toy_split()
    sub = s.subset([4, 1])
    assert len(sub) == 2
    assert sub.y.tolist() == [0, 1]
    assert sub.x.flatten().tolist() == pytest.approx([4 / 6, 1 / 6])
    assert sub.extras["mask"].flatten().tolist() == [4.0, 1.0]
    assert [t.shape[0] for t in sub.extras["specks"]] == [4, 1]
    assert sub.extras["note"] == "not per example"
    assert sub.extras["table"].shape == (3, 2)  # leading length 3 != 6: kept whole


def test_split_indexing_forms_agree():
    s = _toy_split()
    mask = torch.tensor([True, False, True, False, False, True])
    a, b, c = s[mask], s[np.array([0, 2, 5])], s[torch.tensor([0, 2, 5])]
    for other in (b, c):
        assert torch.equal(a.x, other.x) and torch.equal(a.extras["mask"], other.extras["mask"])
    assert len(s[1:4]) == 3
    x0, y0 = s[3]
    assert x0.shape == (1, 1, 1) and int(y0) == 1
    with pytest.raises(IndexError):
        s.subset([6])


def test_split_to_moves_nested_tensors():
    s = _toy_split().to("cpu")
    assert s.extras["specks"][2].device.type == "cpu"
    assert s.extras["note"] == "not per example"


def test_load_rejects_unknown_name_and_kwargs_listing_valid_ones():
    with pytest.raises(ValueError, match="valid names: .*digits"):
        data.load("no_such_set")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['imagesize'\].*image_size=8"):
        data.load("digits", imagesize=28)
    with pytest.raises(ValueError, match="test_fraction"):
        data.load("digits", test_fraction=1.5)


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def test_digits_is_the_real_sklearn_set_scaled_to_unit_range():
    from sklearn.datasets import load_digits

    b = data.load("digits")
    assert b.num_classes == 10 and b.input_shape == (1, 8, 8)
    assert len(b.train) + len(b.test) == 1797
    assert b.train.x.dtype == torch.float32 and b.train.y.dtype == torch.int64
    raw = load_digits()
    i = int(b.test.extras["index"][0])
    assert torch.allclose(b.test.x[0, 0], torch.tensor(raw.images[i] / 16.0, dtype=torch.float32))
    assert int(b.test.y[0]) == raw.target[i]
    assert float(b.train.x.min()) == 0.0 and float(b.train.x.max()) == 1.0


def test_digits_split_is_stratified_disjoint_and_seeded():
    b = data.load("digits", test_fraction=0.3, seed=1)
    tr, te = b.train.extras["index"].numpy(), b.test.extras["index"].numpy()
    assert len(np.intersect1d(tr, te)) == 0
    assert len(np.union1d(tr, te)) == 1797
    all_y = torch.cat([b.train.y, b.test.y])
    for c in range(10):
        n_c = int((all_y == c).sum())
        n_test_c = int((b.test.y == c).sum())
        assert abs(n_test_c - 0.3 * n_c) <= 1.0
    again = data.load("digits", test_fraction=0.3, seed=1)
    assert torch.equal(again.test.x, b.test.x)
    other = data.load("digits", test_fraction=0.3, seed=2)
    assert not np.array_equal(other.test.extras["index"].numpy(), te)


def test_digits_resized_to_28():
    b = data.load("digits", image_size=28)
    assert b.input_shape == (1, 28, 28)
    assert float(b.train.x.min()) >= 0.0 and float(b.train.x.max()) <= 1.0
    assert b.spec == {"name": "digits", "image_size": 28, "test_fraction": 0.3, "seed": 0}
    # bilinear upsampling keeps the mean brightness of each image close to the original's
    small = data.load("digits")
    assert torch.allclose(b.train.x.mean(dim=(1, 2, 3)), small.train.x.mean(dim=(1, 2, 3)),
                          atol=0.03)


# --------------------------------------------------------------------------------------------
# signs
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signs():
    return data.load("signs", n_train=160, n_test=40, seed=3)


def test_signs_shapes_ranges_and_balance(signs):
    b = signs
    assert b.num_classes == 8 and b.input_shape == (3, 32, 32)
    assert b.classes == [name for name, _ in data.SIGN_CLASSES]
    assert b.train.x.dtype == torch.float32 and b.train.y.dtype == torch.int64
    assert float(b.train.x.min()) >= 0.0 and float(b.train.x.max()) <= 1.0
    assert torch.bincount(b.train.y, minlength=8).tolist() == [20] * 8
    m = b.train.extras["mask"]
    assert m.shape == (160, 1, 32, 32) and float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    assert b.spec["name"] == "signs" and b.spec["n_train"] == 160


def test_signs_are_seeded_and_train_test_streams_differ(signs):
    again = data.load("signs", n_train=160, n_test=40, seed=3)
    assert torch.equal(again.train.x, signs.train.x)
    assert torch.equal(again.test.extras["mask"], signs.test.extras["mask"])
    other = data.load("signs", n_train=160, n_test=40, seed=4)
    assert not torch.equal(other.train.x, signs.train.x)
    assert not torch.equal(signs.train.x[:40], signs.test.x)


def test_signs_masks_cover_the_sign(signs):
    s = signs.train
    vis, full = s.extras["mask"], s.extras["full_mask"]
    area = full.sum(dim=(1, 2, 3))
    # sign radius 0.45-0.8 of the half-width (16 px): from a small triangle (area 1.57 r^2, about
    # 80 px) to a large disc (pi r^2, about 640 px), give or take perspective
    assert float(area.min()) > 60 and float(area.max()) < 800
    assert bool((vis <= full + 1e-6).all())
    not_occ = ~s.extras["occluded"]
    assert torch.equal(vis[not_occ], full[not_occ])
    # red signs (stop, no entry): redness inside the mask exceeds redness outside it
    red_labels = [signs.classes.index("stop"), signs.classes.index("no_entry")]
    sel = (s.y == red_labels[0]) | (s.y == red_labels[1])
    x, m = s.x[sel], (vis[sel] > 0.99).float()
    redness = x[:, 0] - 0.5 * (x[:, 1] + x[:, 2])
    inside = (redness * m[:, 0]).sum(dim=(1, 2)) / m[:, 0].sum(dim=(1, 2))
    outside = (redness * (1 - m[:, 0])).sum(dim=(1, 2)) / (1 - m[:, 0]).sum(dim=(1, 2))
    assert bool((inside > outside + 0.1).all())


def _bbox_fill(mask):
    """Fraction of the mask's bounding box that the (binarised) mask fills."""
    out = []
    for m in mask[:, 0] > 0.5:
        rows, cols = torch.nonzero(m, as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        out.append(float(m.sum()) / float(box))
    return torch.tensor(out)


def test_signs_class_subset_reindexes_in_the_given_order():
    b = data.load("signs", n_train=60, n_test=20, classes=["road_work", 2], occlusion=0.0)
    assert b.classes == ["road_work", "speed_limit_50"]
    assert b.info["gtsrb_ids"] == [25, 2]
    assert b.spec["classes"] == ["road_work", "speed_limit_50"]
    assert sorted(torch.unique(b.train.y).tolist()) == [0, 1]
    fill = _bbox_fill(b.train.extras["mask"])
    # a triangle fills about half its bounding box, a disc about pi/4 of it
    assert float(fill[b.train.y == 0].mean()) < 0.62
    assert float(fill[b.train.y == 1].mean()) > 0.72
    by_id = data.load("signs", n_train=60, n_test=20, classes=[25, "speed limit 50"],
                      occlusion=0.0)
    assert torch.equal(by_id.train.x, b.train.x)


def test_signs_bad_classes_are_rejected():
    with pytest.raises(ValueError, match=r"valid classes .*road_work \(25\)"):
        data.load("signs", n_train=4, n_test=4, classes=[2, 99])
    with pytest.raises(ValueError, match="twice"):
        data.load("signs", n_train=4, n_test=4, classes=[2, "speed_limit_50"])


# --------------------------------------------------------------------------------------------
# mammo_phantom
# --------------------------------------------------------------------------------------------

PHANTOM_KW = dict(n_train=40, n_test=12, lesion_fraction=0.75, calc_fraction=0.5, seed=5)


@pytest.fixture(scope="module")
def phantom():
    return data.load("mammo_phantom", **PHANTOM_KW)


def test_phantom_shapes_labels_and_seeding(phantom):
    s = phantom.train
    assert phantom.input_shape == (1, 128, 128) and phantom.classes == ["normal", "lesion"]
    assert s.x.dtype == torch.float32 and float(s.x.min()) >= 0 and float(s.x.max()) <= 1
    lt = s.extras["lesion_type"]
    assert torch.equal(s.y, (lt > 0).long())
    assert int((lt > 0).sum()) == 30 and int((lt == 1).sum()) == 15 and int((lt == 2).sum()) == 15
    for i in range(len(s)):
        k = s.extras["specks"][i].shape[0]
        assert (5 <= k <= 15) if lt[i] == 1 else k == 0
        assert (s.extras["calc_mask"][i].sum() > 0) == (lt[i] == 1)
        assert (s.extras["mask"][i].sum() > 0) == (lt[i] > 0)
    assert bool((s.extras["mask"] * (1 - s.extras["tissue_mask"])).sum() == 0)
    again = data.load("mammo_phantom", **PHANTOM_KW)
    assert torch.equal(again.train.x, s.x) and torch.equal(again.test.x, phantom.test.x)
    other = data.load("mammo_phantom", **{**PHANTOM_KW, "seed": 6})
    assert not torch.equal(other.train.x, s.x)


def test_phantom_specks_are_where_calc_mask_says(phantom):
    s = phantom.train
    for i in torch.nonzero(s.extras["lesion_type"] == 1).flatten().tolist():
        cm = s.extras["calc_mask"][i, 0]
        sp = s.extras["specks"][i]
        # every speck (radius >= 1 px at 128) covers the pixel nearest its centre
        for row, col, r, _ in sp.tolist():
            assert r >= 1.0 and cm[round(row), round(col)] == 1
        # every mask pixel lies within one of the specks (radius + half a pixel diagonal)
        rr, cc = torch.nonzero(cm, as_tuple=True)
        d = torch.sqrt((rr[:, None] - sp[None, :, 0]) ** 2 + (cc[:, None] - sp[None, :, 1]) ** 2)
        assert bool(((d - sp[None, :, 2]) <= 0.71).any(dim=1).all())
        # specks are brighter than the tissue around the cluster
        yy, xx = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
        cy, cx = s.extras["lesion_center"][i].tolist()
        rad = float(s.extras["lesion_radius"][i])
        dist = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        ring = (dist > rad + 3) & (dist < rad + 10)
        assert float(s.x[i, 0][cm > 0].mean()) > float(s.x[i, 0][ring].mean()) + 0.05


def test_phantom_lesions_add_signal_only_inside_their_masks(phantom):
    """Same seed with zero lesion contrast gives the same background: the difference is the
    lesion (blurred by the detector) plus the slight change of quantum noise with intensity."""
    blank = data.load("mammo_phantom", **PHANTOM_KW, calc_contrast=0.0, mass_contrast=0.0)
    s = phantom.train
    diff = s.x - blank.train.x
    mask = s.extras["mask"] > 0
    near = torch.nn.functional.max_pool2d(mask.float(), 7, stride=1, padding=3) > 0
    for kind, lo in ((1, 0.12), (2, 0.04)):
        sel = s.extras["lesion_type"] == kind
        inside = diff[sel][mask[sel]].mean()
        assert float(inside) > lo
    assert float(diff[~near].abs().mean()) < 0.005
    assert float(diff[s.extras["lesion_type"] == 0].abs().max()) < 0.05


def _ring_cnr(img, specks, gap, width):
    """Per-speck CNR computed independently of studylib: full-image numpy distance maps."""
    img = img.numpy().astype(np.float64)
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    sp = specks.numpy().astype(np.float64)
    dists = [np.hypot(yy - row, xx - col) for row, col in sp[:, :2]]
    out = []
    for k, (_, _, r, _) in enumerate(sp):
        inside = dists[k] <= max(r, dists[k].min())
        ring = (dists[k] > r + gap) & (dists[k] <= r + gap + width)
        for j, dj in enumerate(dists):
            if j != k:
                ring &= dj > sp[j, 2] + gap
        vals = img[ring]
        out.append((img[inside].mean() - vals.mean()) / vals.std(ddof=1))
    return np.array(out)


def test_phantom_most_specks_have_cnr_at_least_3_and_speck_cnr_agrees(phantom):
    s = phantom.train
    ours, theirs = [], []
    for i in torch.nonzero(s.extras["lesion_type"] == 1).flatten().tolist():
        img, sp = s.x[i, 0], s.extras["specks"][i]
        ours.append(_ring_cnr(img, sp, gap=2.0, width=3.0))
        theirs.append(data.speck_cnr(img, sp, gap=1.0, ring_width=3.0).numpy())
        np.testing.assert_allclose(theirs[-1], _ring_cnr(img, sp, gap=1.0, width=3.0),
                                   rtol=1e-4)
    ours = np.concatenate(ours)
    assert np.mean(ours >= 3.0) >= 0.7, np.mean(ours >= 3.0)


def _lesion_contrast_and_cnr(x, inside, exclude, centre, radius):
    """Mean over ``inside`` minus the mean of a ring (radius + 2, radius + 6] around ``centre``
    that avoids ``exclude``; and that difference over the ring's std."""
    yy, xx = torch.meshgrid(torch.arange(x.shape[-2]), torch.arange(x.shape[-1]), indexing="ij")
    dist = torch.sqrt((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2)
    ring = (dist > radius + 2) & (dist <= radius + 6) & ~exclude
    c = float(x[inside].mean() - x[ring].mean())
    return c, c / float(x[ring].std())


def test_phantom_masses_are_lower_contrast_than_specks():
    b = data.load("mammo_phantom", n_train=40, n_test=1, lesion_fraction=1.0, seed=7)
    s = b.train
    yy, xx = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    speck, mass = [], []
    for i in range(len(s)):
        for row, col, r, _ in s.extras["specks"][i].tolist():
            disc = (yy - row) ** 2 + (xx - col) ** 2 <= max(r, 0.5) ** 2
            others = s.extras["calc_mask"][i, 0] > 0
            speck.append(_lesion_contrast_and_cnr(s.x[i, 0], disc, others, (row, col), r))
        if s.extras["lesion_type"][i] == 2:
            m = s.extras["mask"][i, 0] > 0
            # ring outside the spicules' reach (1.8 x radius)
            mass.append(_lesion_contrast_and_cnr(s.x[i, 0], m, m, s.extras["lesion_center"][i],
                                                 1.8 * float(s.extras["lesion_radius"][i])))
    speck, mass = np.array(speck), np.array(mass)
    assert np.median(mass[:, 0]) < np.median(speck[:, 0])
    assert np.median(mass[:, 1]) < 0.5 * np.median(speck[:, 1])
    assert b.spec["mass_contrast"] < b.spec["calc_contrast"]
