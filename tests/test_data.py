"""Tests of studylib.data: containers, generators' determinism and the properties each data set
promises (stratified splits, masks where the object is, detectable calcifications, file
round-trips)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from standins import write_dicom

from studylib import data
from studylib.core import paths


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Decoded mammograms are cached under the cache root: keep them out of outputs/cache."""
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))

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


def test_phantom_masses_have_a_low_ring_cnr_but_are_visible_by_their_dprime():
    """Per pixel a mass is a fainter object than a speck (a lower ring CNR: the 1/f^3 background
    varies at the mass's own scale), but at the calibrated default contrast its d' against
    lesion-free images (the index study 02 uses for masses) is mostly >= 3."""
    from studylib.techniques import perturbations as P

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
    assert np.median(mass[:, 1]) < np.median(speck[:, 1])
    assert np.median(mass[:, 0]) > 0.1  # the mean contrast itself is not small
    idx, regions = P.lesion_regions(s, "mass", gap=2, width=4)
    normals = data.load("mammo_phantom", n_train=60, n_test=1, lesion_fraction=0.0, seed=8).train.x
    d = P.npw_dprime(s.x[idx], regions, normals)
    cnr = P.batch_cnr(s.x[idx], regions)  # the ring CNR on the same regions
    assert np.median(d) >= 3.0 and np.mean(d >= 3) > np.mean(cnr >= 3) + 0.3


def test_phantom_mass_texture_changes_the_masses_only_and_adds_high_frequencies():
    kw = dict(n_train=24, n_test=1, image_size=64, lesion_fraction=1.0, calc_fraction=0.5, seed=3)
    smooth = data.load("mammo_phantom", **kw, mass_texture=0.0).train
    textured = data.load("mammo_phantom", **kw, mass_texture=0.5).train
    blank = data.load("mammo_phantom", **kw, mass_contrast=0.0).train
    lt = smooth.extras["lesion_type"]
    # its own random stream: backgrounds, specks and geometry do not move with the option
    assert torch.equal(smooth.x[lt != 2], textured.x[lt != 2])
    assert torch.equal(smooth.extras["mask"], textured.extras["mask"])
    mass = (smooth.extras["mask"] > 0) & (lt == 2).view(-1, 1, 1, 1)
    near = torch.nn.functional.max_pool2d(mass.float(), 7, stride=1, padding=3) > 0
    diff = textured.x - smooth.x
    assert float(diff[(lt == 2).view(-1, 1, 1, 1).expand_as(diff) & ~near].abs().max()) < 1e-3
    # the mean signal stays (texture of mean 1), its spectrum gains high frequencies
    sig_s, sig_t = (smooth.x - blank.x)[lt == 2, 0], (textured.x - blank.x)[lt == 2, 0]
    m = mass[lt == 2, 0]
    assert abs(float(sig_t[m].mean() / sig_s[m].mean()) - 1.0) < 0.1

    def high_share(sig):  # share of the signal's power above 0.2 of Nyquist (0.1 cycles/px)
        f = torch.sqrt(torch.fft.fftfreq(64).view(-1, 1) ** 2 + torch.fft.fftfreq(64).view(1, -1) ** 2)
        power = torch.fft.fft2(sig).abs() ** 2
        return float(power[:, f > 0.1].sum() / power.sum())

    assert high_share(sig_t) > 5 * high_share(sig_s)
    assert data.load("mammo_phantom", **kw).spec["mass_texture"] == 0.5  # the default
    with pytest.raises(ValueError, match="mass_texture"):
        data.load("mammo_phantom", **kw, mass_texture=-0.1)


# --------------------------------------------------------------------------------------------
# mammo_folder: PNG and DICOM files listed in a CSV
# --------------------------------------------------------------------------------------------


def _write_csv(path, rows, header="path,label"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")


@pytest.fixture()
def mammo_dir(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    raw12 = rng.integers(0, 4096, (16, 12)).astype(np.uint16)
    raw12[0, 0], raw12[0, 1], raw12[0, 2] = 0, 4095, 2048
    write_dicom(tmp_path / "m2.dcm", raw12, photometric="MONOCHROME2")
    write_dicom(tmp_path / "m1.dcm", raw12, photometric="MONOCHROME1")
    write_dicom(tmp_path / "win.dcm", raw12, photometric="MONOCHROME2", window=(2048, 1024))
    raw16 = rng.integers(0, 65536, (16, 12)).astype(np.uint16)
    Image.fromarray(raw16).save(tmp_path / "p16.png")
    raw8 = rng.integers(0, 256, (16, 12)).astype(np.uint8)
    Image.fromarray(raw8).save(tmp_path / "p8.png")
    _write_csv(tmp_path / "labels.csv",
               [("m2.dcm", 1, 1, "train"), ("m1.dcm", 0, 0, "train"), ("win.dcm", 1, 2, "test"),
                ("p16.png", 0, 0, "test"), ("p8.png", 1, 1, "train")],
               header="path,label,lesion_type,split")
    return tmp_path, {"raw12": raw12, "raw16": raw16, "raw8": raw8}


def _by_path(bundle):
    out = {}
    for split in (bundle.train, bundle.test):
        for i, p in enumerate(split.extras["path"]):
            out[p] = (split.x[i, 0].double().numpy(), int(split.y[i]),
                      int(split.extras["lesion_type"][i]))
    return out


def test_mammo_folder_round_trips_dicom_and_png(mammo_dir):
    root, raw = mammo_dir
    b = data.load("mammo_folder", data_root=str(root), image_size=16, resize="crop")
    assert b.input_shape == (1, 16, 16) and b.classes == ["normal", "lesion"]
    assert sorted(b.train.extras["path"]) == ["m1.dcm", "m2.dcm", "p8.png"]  # the split column
    got = _by_path(b)
    crop = slice(None), slice(2, 14)  # 16x12 images centred in a 16x16 crop, zero-padded
    expect12 = raw["raw12"] / 4095.0
    np.testing.assert_allclose(got["m2.dcm"][0][crop], expect12, atol=1e-6)
    np.testing.assert_allclose(got["m1.dcm"][0][crop], 1.0 - expect12, atol=1e-6)  # inverted
    np.testing.assert_allclose(got["p16.png"][0][crop], raw["raw16"] / 65535.0, atol=1e-6)
    np.testing.assert_allclose(got["p8.png"][0][crop], raw["raw8"] / 255.0, atol=1e-6)
    assert got["m2.dcm"][0][0, 0] == 0.0  # padding column
    # the window (centre 2048, width 1024, DICOM 'LINEAR': c - 0.5, w - 1) maps
    # <= 1536 to 0, > 2559 to 1 and 2048 to (0.5/1023 + 0.5)
    w = got["win.dcm"][0][crop]
    assert w[0, 0] == 0.0 and w[0, 1] == 1.0
    assert w[0, 2] == pytest.approx(0.5 / 1023 + 0.5, abs=1e-6)
    lin = np.clip(((raw["raw12"] - 2047.5) / 1023 + 0.5), 0, 1)
    np.testing.assert_allclose(w, lin, atol=1e-6)
    assert [got[p][1:] for p in ("m2.dcm", "win.dcm", "p16.png")] == [(1, 1), (1, 2), (0, 0)]
    assert len(b.spec["csv_sha256"]) == 64


def test_mammo_folder_resize_modes(mammo_dir):
    root, raw = mammo_dir
    stretch = data.load("mammo_folder", data_root=str(root), image_size=8)
    pad = data.load("mammo_folder", data_root=str(root), image_size=8, resize="pad")
    assert stretch.input_shape == pad.input_shape == (1, 8, 8)
    x = _by_path(pad)["p8.png"][0]
    # 16x12 padded to 16x16 (2 zero columns each side), then halved with an antialiasing
    # filter: the border columns are mostly padding, the inner ones all image
    inner = x[:, 2:6].mean()
    assert x[:, 0].mean() < 0.5 * inner and x[:, -1].mean() < 0.5 * inner and inner > 0.3
    full = raw["raw8"] / 255.0
    assert _by_path(stretch)["p8.png"][0].mean() == pytest.approx(full.mean(), abs=0.02)


def test_mammo_folder_bad_files_are_named_or_skipped(mammo_dir):
    root, _ = mammo_dir
    (root / "junk.png").write_bytes(b"this is not an image")
    _write_csv(root / "bad.csv", [("m2.dcm", 1), ("missing.png", 0), ("junk.png", 1),
                                  ("p16.png", 0), ("p8.png", 1), ("m1.dcm", 0)])
    with pytest.raises(FileNotFoundError, match=r"missing\.png.*line 3.*file not found"):
        data.load("mammo_folder", data_root=str(root), csv="bad.csv", image_size=8)
    _write_csv(root / "bad2.csv", [("m2.dcm", 1), ("junk.png", 1), ("p8.png", 0)])
    with pytest.raises(ValueError, match=r"junk\.png.*not a readable image"):
        data.load("mammo_folder", data_root=str(root), csv="bad2.csv", image_size=8)
    with pytest.warns(UserWarning, match="skipped 2 of 6 files"):
        b = data.load("mammo_folder", data_root=str(root), csv="bad.csv", image_size=8,
                      skip_bad=True, test_fraction=0.5)
    assert len(b.train) + len(b.test) == 4
    assert [s["path"] for s in b.info["skipped"]] == ["missing.png", "junk.png"]
    assert "lesion_type" not in b.train.extras
    with pytest.raises(FileNotFoundError, match="label file"):
        data.load("mammo_folder", data_root=str(root), csv="nope.csv")
    _write_csv(root / "cols.csv", [("m2.dcm", 1)], header="file,label")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['path'\]"):
        data.load("mammo_folder", data_root=str(root), csv="cols.csv")


# --------------------------------------------------------------------------------------------
# torchvision data sets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "cifar10", "gtsrb"])
def test_torchvision_sets_absent_give_a_clear_error(tmp_path, name):
    with pytest.raises(FileNotFoundError) as err:
        data.load(name, data_root=str(tmp_path))
    msg = str(err.value)
    assert name in msg and str(tmp_path) in msg and "download=True" in msg


def _write_idx(path, array):
    """MNIST's big-endian idx format: magic (0, 0, type 0x08 = uint8, ndim), dims, bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_the_raw_idx_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    imgs = {k: rng.integers(0, 256, (n, 28, 28)) for k, n in (("train", 30), ("t10k", 10))}
    labels = {"train": np.arange(30) % 10, "t10k": np.arange(10)}
    for k in ("train", "t10k"):
        _write_idx(raw / f"{k}-images-idx3-ubyte", imgs[k])
        _write_idx(raw / f"{k}-labels-idx1-ubyte", labels[k])
    b = data.load("mnist", data_root=str(tmp_path))
    assert b.input_shape == (1, 28, 28) and len(b.train) == 30 and len(b.test) == 10
    assert torch.allclose(b.train.x[:, 0], torch.tensor(imgs["train"] / 255.0, dtype=torch.float32))
    sub = data.load("mnist", data_root=str(tmp_path), classes=[3, "1"], n_train=4, image_size=14)
    assert sub.classes == ["3", "1"] and sub.input_shape == (1, 14, 14) and len(sub.train) == 4
    orig = labels["train"][sub.train.extras["index"].numpy()]
    assert np.array_equal(np.where(orig == 3, 0, 1), sub.train.y.numpy())
    assert set(labels["t10k"][sub.test.extras["index"].numpy()]) == {1, 3}
    spec = dict(sub.spec)
    digest = spec.pop("content_sha256")
    assert spec == {"name": "mnist", "image_size": 14, "n_train": 4, "n_test": None,
                    "classes": ["3", "1"], "seed": 0}
    assert len(digest) == 64 and digest != b.spec["content_sha256"]  # other rows, other digest
