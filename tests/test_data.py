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
