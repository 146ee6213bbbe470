"""The real-data loaders on stand-in data sets (``tests/standins.py``): MNIST IDX files, CIFAR-10
pickles, GTSRB class folders of PPMs with the ``;``-separated ground truth, and a mammogram folder
in every format the loader decodes. Pixel values are checked against values computed by hand from
what was written; caches are checked to see the data's content."""

from __future__ import annotations

import colorsys
import pickle
import warnings

import numpy as np
import pytest
import standins
import torch

from studylib import data
from studylib.core import paths
from studylib.data import mammo_folder, torchvision_sets
from studylib.training import TrainConfig, checkpoint_key


@pytest.fixture(autouse=True)
def _private_roots(tmp_path, monkeypatch):
    """Every test gets its own cache root and data root, and downloads are off."""
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.delenv(paths.DOWNLOAD_ENV, raising=False)


@pytest.fixture()
def root(tmp_path):
    r = tmp_path / "data"
    r.mkdir()
    return r


def _quiet_load(name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data.load(name, **kwargs)


# --------------------------------------------------------------------------------- MNIST


def test_mnist_stand_in_reads_back_exactly(root):
    written = standins.write_mnist(root, n_train=50, n_test=20)
    b = data.load("mnist")  # the data root comes from $STUDYLIB_DATA
    x, y = written["train"]
    assert b.input_shape == (1, 28, 28) and len(b.train) == 50 and len(b.test) == 20
    assert torch.equal(b.train.x[:, 0], torch.tensor(x / 255.0, dtype=torch.float32))
    assert b.train.y.tolist() == y.tolist()
    # digit 7 has its square at grid cell (1, 2): top row 16 +- 1, left column 11 or 12, so
    # rows 17-20 and columns 12-16 are inside it whatever the jitter
    for i in np.flatnonzero(y == 7):
        assert b.train.x[i, 0, 17:21, 12:17].min() >= 200 / 255
    assert len(b.spec["content_sha256"]) == 64


def test_checkpoint_key_changes_when_one_pixel_changes(root):
    standins.write_mnist(root, n_train=30, n_test=10)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    cfg = TrainConfig(epochs=1)
    first = data.load("mnist")
    key = checkpoint_key(model, first, cfg, 0, "ce")
    assert checkpoint_key(model, data.load("mnist"), cfg, 0, "ce") == key  # same files, same key
    raw = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    blob = bytearray(raw.read_bytes())
    blob[16 + 5 * 784 + 300] ^= 0xFF  # image 5, pixel 300 (the header is 16 bytes)
    raw.write_bytes(bytes(blob))
    second = data.load("mnist")
    assert second.train.x[5, 0].flatten()[300] != first.train.x[5, 0].flatten()[300]
    assert second.spec["content_sha256"] != first.spec["content_sha256"]
    assert checkpoint_key(model, second, cfg, 0, "ce") != key


def test_embedded_specs_carry_no_content_digest():
    # the embedded sets are keyed by their arguments as before, so cached models stay valid
    for name, kw in (("digits", {}), ("signs", {"n_train": 8, "n_test": 4}),
                     ("mammo_phantom", {"n_train": 4, "n_test": 2, "image_size": 32})):
        assert "content_sha256" not in data.load(name, **kw).spec


def test_download_only_when_asked(root, monkeypatch):
    calls = []

    def fake_download(name, data_root=None):
        calls.append((name, str(data_root)))
        standins.write_mnist(data_root, n_train=10, n_test=10)

    monkeypatch.setattr(torchvision_sets, "download_torchvision", fake_download)
    with pytest.raises(FileNotFoundError) as err:
        data.load("mnist")
    assert calls == [] and "MNIST/raw/train-images-idx3-ubyte" in str(err.value)
    assert "data prepare" in str(err.value) and "download=True" in str(err.value)
    monkeypatch.setenv(paths.DOWNLOAD_ENV, "1")  # what `run --download` sets for the kernels
    b = data.load("mnist")
    assert calls == [("mnist", str(root))] and len(b.train) == 10
    data.load("mnist")  # present now: no second download
    assert len(calls) == 1


# ------------------------------------------------------------------------------ CIFAR-10


def test_cifar10_stand_in_reads_back_and_warns_about_its_checksums(root):
    written = standins.write_cifar10(root, n_per_batch=12, n_test=20)
    with pytest.warns(UserWarning, match="differs from the official release"):
        b = data.load("cifar10")
    x, y = written["train"]
    assert b.classes == standins.CIFAR_CLASSES and len(b.train) == 60 and len(b.test) == 20
    assert torch.equal(b.train.x, torch.tensor(x / 255.0, dtype=torch.float32))
    assert b.train.y.tolist() == y.tolist()
    check = data.check("cifar10")
    assert check.found and len(check.notes) == 7  # five batches, the test batch, the meta file
    sub = _quiet_load("cifar10", classes=["cat", "ship"], n_train=6)
    assert sub.classes == ["cat", "ship"] and len(sub.train) == 6
    assert set(sub.train.y.tolist()) <= {0, 1}


def test_cifar10_missing_or_truncated_files_are_named(root):
    standins.write_cifar10(root, n_per_batch=4, n_test=4)
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="missing cifar-10-batches-py/data_batch_3"):
        data.load("cifar10")
    standins.write_cifar10(root, n_per_batch=4, n_test=4)
    batch = root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(ValueError, match="test_batch is not a readable CIFAR-10 batch"):
        _quiet_load("cifar10")


# --------------------------------------------------------------------------------- GTSRB


def test_gtsrb_stand_in_reads_both_splits_with_ground_truth(root):
    written = standins.write_gtsrb(root, n_train_rich=6, n_test_per_class=4)
    b = data.load("gtsrb", classes=[2, 25], image_size=32)
    assert b.classes == ["speed_limit_50", "road_work"]
    assert len(b.train) == 12 and len(b.test) == 8
    assert b.train.y.tolist().count(0) == 6 and b.test.y.tolist().count(1) == 4
    # the disc centre keeps its class colour through the resize: hue c / 43 at value 230
    for split in (b.train, b.test):
        for i in range(len(split)):
            c = (2, 25)[int(split.y[i])]
            rgb = np.rint(np.array(colorsys.hsv_to_rgb(c / 43, 1.0, 1.0)) * 230) / 255
            assert np.allclose(split.x[i, :, 15:17, 15:17].mean((1, 2)).numpy(), rgb, atol=1e-5)
    assert len(written["train"]) == 41 * 2 + 2 * 6


def test_gtsrb_without_ground_truth_or_a_class_folder_says_what_is_missing(root):
    standins.write_gtsrb(root, n_train_rich=2, n_test_per_class=1, ground_truth=False)
    with pytest.raises(FileNotFoundError, match="GT-final_test.csv") as err:
        data.load("gtsrb", classes=[2, 25])
    assert "GTSRB_Final_Test_GT.zip" in str(err.value)
    (root / "gtsrb" / "GT-final_test.csv").write_text("Filename;ClassId\n")
    for f in (root / "gtsrb" / "GTSRB" / "Training" / "00007").iterdir():
        f.unlink()
    (root / "gtsrb" / "GTSRB" / "Training" / "00007").rmdir()
    with pytest.raises(FileNotFoundError, match="lacks 1 of 43 class folders \\(00007\\)"):
        data.load("gtsrb")


# ---------------------------------------------------------------------------- mammograms


def _rows_by_path(bundle):
    out = {}
    for split in (bundle.train, bundle.test):
        for i, p in enumerate(split.extras["path"]):
            out[p] = {k: split.extras[k][i] for k in ("lesion_type", "mask", "calc_mask")}
            out[p].update(x=split.x[i, 0].numpy(), y=int(split.y[i]))
    return out


def test_every_mammogram_format_decodes_to_the_hand_computed_image(root):
    rows = standins.write_mammograms(root, n=20, shape=(48, 40))
    b = data.load("mammo_folder", image_size=48, resize="crop")  # <data root>/mammograms
    got = _rows_by_path(b)
    assert {r["format"] for r in rows} == set(standins.MAMMO_FORMATS)
    for r in rows:
        g = got[r["path"]]
        expected = np.zeros((48, 48))
        expected[:, 4:44] = r["decoded"]  # crop of a 48x40 image: centred, zero columns beside
        assert np.abs(g["x"] - expected).max() < 1e-6, r["format"]
        # and every format is faithful to the picture it encodes, up to its quantisation
        assert np.abs(r["decoded"] - r["image"]).max() < 2.5e-3, r["format"]
        assert g["y"] == r["label"] and int(g["lesion_type"]) == r["lesion_type"]
        mask = np.zeros((48, 48))
        if r["mask"] is not None:
            mask[:, 4:44] = r["mask"]
        assert np.array_equal(g["mask"][0].numpy(), mask)
        assert np.array_equal(g["calc_mask"][0].numpy(), mask * (r["lesion_type"] == 1))
    assert len(b.spec["content_sha256"]) == 64


def _dicom_values(tmp_path, stored, **kw):
    path = tmp_path / "one.dcm"
    standins.write_dicom(path, np.asarray(stored, dtype=np.uint16), **kw)
    return mammo_folder._read_mammogram(path).x


def test_dicom_transforms_give_hand_computed_values(tmp_path):
    row = [[0, 1024, 2048, 3071, 4095]]
    # no transform: stored / (2^12 - 1), from BitsStored
    assert np.allclose(_dicom_values(tmp_path, row), [[0, 1024 / 4095, 2048 / 4095,
                                                       3071 / 4095, 1]])
    # MONOCHROME1: high stored values are dark
    assert np.allclose(_dicom_values(tmp_path, row, photometric="MONOCHROME1"),
                       [[1, 1 - 1024 / 4095, 1 - 2048 / 4095, 1 - 3071 / 4095, 0]])
    # window centre 2048, width 2048: 1024 -> 0, 3071 -> 1, linear between, clipped outside
    assert np.allclose(_dicom_values(tmp_path, row, window=(2048, 2048)),
                       [[0, 0, 1024 / 2047, 1, 1]])
    # rescale 2 s - 100 over [-100, 8090]: the same fractions as no transform
    assert np.allclose(_dicom_values(tmp_path, row, rescale=(2.0, -100.0)),
                       [[0, 1024 / 4095, 2048 / 4095, 3071 / 4095, 1]])
    # an 8-bit VOI LUT on 12-bit data (pydicom 3.0 wraps such indices through uint8)
    lut = standins.VOI_LUT
    assert lut[1024] == 128 and lut[4095] == 255
    assert np.allclose(_dicom_values(tmp_path, row, voi_lut=(0, 8, lut)),
                       [[0, 128 / 255, lut[2048] / 255, lut[3071] / 255, 1]])
    # JPEG 2000 in DICOM (lossless): the stored values come back exactly
    assert np.allclose(_dicom_values(tmp_path, row, jpeg2000=True),
                       [[0, 1024 / 4095, 2048 / 4095, 3071 / 4095, 1]])


def _one_png(root, pixels, sbit=None):
    folder = root / "mammograms"
    folder.mkdir(parents=True, exist_ok=True)
    standins.write_png(folder / "a.png", pixels, sbit=sbit)
    standins.write_png(folder / "b.png", pixels[::-1].copy(), sbit=sbit)
    (folder / "labels.csv").write_text("path,label,split\na.png,0,train\nb.png,1,test\n")


def test_twelve_bit_data_in_sixteen_bit_pngs_is_detected_or_declared(root):
    pixels = np.tile(np.array([0, 1000, 4095], dtype=np.uint16), (8, 3))[:, :8]
    _one_png(root, pixels)
    with pytest.warns(UserWarning, match="look like 12-bit data.*bits=12"):
        b = data.load("mammo_folder", image_size=8, resize="crop")
    assert float(b.train.x.max()) == pytest.approx(4095 / 65535)  # the container's scale
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # declared: no warning
        declared = data.load("mammo_folder", image_size=8, resize="crop", bits=12)
    assert float(declared.train.x.max()) == 1.0
    assert declared.train.x[0, 0, 0, 1] == pytest.approx(1000 / 4095)
    assert declared.spec["bits"] == 12 and b.spec["content_sha256"] != declared.spec[
        "content_sha256"]
    _one_png(root, pixels, sbit=12)  # the sBIT chunk records the depth: detected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detected = data.load("mammo_folder", image_size=8, resize="crop")
    assert torch.equal(detected.train.x, declared.train.x)
    full = np.tile(np.array([0, 1000, 65535], dtype=np.uint16), (8, 3))[:, :8]
    _one_png(root, full)  # genuinely 16-bit: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(data.load("mammo_folder", image_size=8, resize="crop").train.x.max()) == 1.0


def test_relative_data_root_is_taken_from_the_data_root(root):
    standins.write_mammograms(root, n=6, folder="inbreast")
    b = data.load("mammo_folder", data_root="inbreast", image_size=16)
    assert b.spec["data_root"] == str(root / "inbreast")
    with pytest.raises(FileNotFoundError, match=str(root / "nowhere")):
        data.load("mammo_folder", data_root="nowhere")


def test_masks_survive_downscaling_and_rows_without_one_are_empty(root):
    folder = root / "mammograms"
    folder.mkdir()
    img = np.zeros((64, 64), dtype=np.uint8)
    standins.write_png(folder / "a.png", img)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[10, 41] = 255  # one pixel: in cell (10 // 8, 41 // 8) = (1, 5) of an 8x8 grid
    standins.write_png(folder / "m.png", mask)
    (folder / "labels.csv").write_text("path,label,lesion_type,split,mask\n"
                                       "a.png,1,1,train,m.png\na.png,0,0,test,\n")
    b = data.load("mammo_folder", image_size=8)
    masks = {int(s.y[0]): s.extras["mask"][0, 0] for s in (b.train, b.test)}
    expected = torch.zeros(8, 8)
    expected[1, 5] = 1.0
    assert torch.equal(masks[1], expected) and masks[0].sum() == 0


def test_decoded_images_are_cached_by_content(root, monkeypatch):
    standins.write_mammograms(root, n=4, formats=("dcm_mono2", "png16"))
    first = data.load("mammo_folder", image_size=16)
    real = mammo_folder._read_mammogram
    monkeypatch.setattr(mammo_folder, "_read_mammogram", lambda *a, **k: pytest.fail("decoded"))
    again = data.load("mammo_folder", image_size=16)  # every file from the cache
    assert torch.equal(first.train.x, again.train.x) and first.spec == again.spec
    calls = []
    monkeypatch.setattr(mammo_folder, "_read_mammogram",
                        lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    path = root / "mammograms" / "001_png16.png"
    standins.write_png(path, np.full((48, 40), 30000, dtype=np.uint16))
    changed = data.load("mammo_folder", image_size=16)
    # only the changed row is decoded again: its image and its lesion mask (row 1 is a lesion)
    assert calls == ["001_png16.png", "001.png"]
    assert changed.spec["content_sha256"] != first.spec["content_sha256"]
    assert changed.spec["csv_sha256"] == first.spec["csv_sha256"]  # the CSV alone cannot tell


def test_check_names_missing_images_and_masks(root):
    rows = standins.write_mammograms(root, n=6)
    assert data.check("mammo_folder").found
    (root / "mammograms" / rows[1]["path"]).unlink()
    lesion = next(r for r in rows if r["mask"] is not None)
    (root / "mammograms" / f"masks/{lesion['path'][:3]}.png").unlink()
    check = data.check("mammo_folder")
    assert not check.found and len(check.problems) == 2
    assert rows[1]["path"] in check.problems[0] and "mask" in check.problems[1]
    assert data.check("digits") is None


def test_cifar_pickles_are_read_without_torchvision_checks(root):
    # the loader reads the pickles itself; torchvision's CIFAR10 refuses a copy whose md5
    # sums differ ("Dataset not found or corrupted"), which is what used to be reported
    standins.write_cifar10(root, n_per_batch=2, n_test=2)
    with open(root / "cifar-10-batches-py" / "batches.meta", "rb") as f:
        assert pickle.load(f)["label_names"] == standins.CIFAR_CLASSES
    from torchvision.datasets import CIFAR10

    with pytest.raises(RuntimeError, match="not found or corrupted"):
        CIFAR10(str(root), train=True)
    assert len(_quiet_load("cifar10").train) == 10
