"""``python -m studylib data check | prepare`` on stand-in data roots; downloads are mocked."""

from __future__ import annotations

import pytest
import standins

from studylib.__main__ import main
from studylib.cli.data import needed_data
from studylib.core import paths
from studylib.data import registry


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.delenv(paths.DOWNLOAD_ENV, raising=False)
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))


@pytest.fixture()
def no_download(monkeypatch):
    """Fail the test if anything tries to download."""
    monkeypatch.setattr(registry, "download_torchvision",
                        lambda *a, **k: pytest.fail(f"download attempted: {a}"))


def _cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_needed_data_reads_every_way_a_study_names_a_data_set():
    assert [(n.name, n.where) for n in needed_data({
        "dataset": "mammo_folder", "data_kwargs": {"data_root": "mine", "csv": "a.csv",
                                                   "resize": "pad"},
        "datasets": ["mnist", "signs", "gtsrb"], "coverage_dataset": "mnist",
        "setups": {"a": {"dataset": "cifar10", "data_kwargs": {}},
                   "b": {"dataset": "digits"}},
    })] == [("mammo_folder", {"data_root": "mine", "csv": "a.csv"}), ("mnist", {}),
            ("gtsrb", {}), ("mnist", {}), ("cifar10", {})]
    assert needed_data({"dataset": "signs", "datasets": ["digits"]}) == []


def test_check_of_the_paper_profile_names_what_is_missing_and_exits_1(capsys, tmp_path,
                                                                      no_download):
    rc, out, err = _cli(capsys, "data", "check", "--data-root", str(tmp_path))
    assert rc == 1 and "4 of 4 data set(s) missing" in err
    assert f"data root: {tmp_path} (from --data-root); profile paper" in out
    for name, study in (("mnist", "05_bnn_verification"), ("cifar10", "06_taylor_pruning"),
                        ("gtsrb", "05_bnn_verification"),
                        ("mammo_folder", "02_mammogram_perturbation")):
        line = next(li for li in out.splitlines() if li.startswith(name + " "))
        assert "MISSING" in line and study in line
    assert "missing MNIST/raw/train-images-idx3-ubyte" in out
    assert f"{tmp_path / 'mammograms'} is not a folder" in out  # data_root: mammograms
    assert "data prepare" in out


def test_check_passes_on_stand_ins_and_follows_set(capsys, tmp_path, no_download):
    standins.write_all(tmp_path)
    rc, out, _ = _cli(capsys, "data", "check", "--data-root", str(tmp_path))
    assert rc == 0 and "all 4 data set(s) found" in out
    assert "note: cifar-10-batches-py/data_batch_1 differs from the official release" in out
    # a data_kwargs override merges into the profile's: only csv changes
    rc, out, _ = _cli(capsys, "data", "check", "--data-root", str(tmp_path), "--study",
                      "02_mammogram_perturbation", "--set", "data_kwargs={csv: other.csv}")
    assert rc == 1 and "missing the label file other.csv" in out
    rc, out, _ = _cli(capsys, "data", "check", "--profile", "default")
    assert rc == 0 and "every one is embedded" in out


def test_prepare_downloads_only_what_is_missing_and_can_be_downloaded(capsys, tmp_path,
                                                                      monkeypatch):
    calls = []

    def fake_download(name, data_root=None):
        calls.append((name, data_root))
        {"mnist": standins.write_mnist, "cifar10": standins.write_cifar10,
         "gtsrb": standins.write_gtsrb}[name](data_root)

    monkeypatch.setattr(registry, "download_torchvision", fake_download)
    standins.write_mnist(tmp_path)  # present: not downloaded again
    rc, out, err = _cli(capsys, "data", "prepare", "--data-root", str(tmp_path))
    assert sorted(calls) == [("cifar10", str(tmp_path)), ("gtsrb", str(tmp_path))]
    assert "mammo_folder: cannot be downloaded" in out
    assert rc == 1 and "1 of 4 data set(s) missing" in err  # the mammograms are the user's
    standins.write_mammograms(tmp_path)
    calls.clear()
    rc, out, _ = _cli(capsys, "data", "prepare", "--data-root", str(tmp_path))
    assert rc == 0 and calls == [] and "all 4 data set(s) found" in out


def test_prepare_of_one_named_data_set_and_a_failed_download(capsys, tmp_path, monkeypatch):
    def offline(name, data_root=None):
        raise OSError("no route to host")

    monkeypatch.setattr(registry, "download_torchvision", offline)
    rc, out, err = _cli(capsys, "data", "prepare", "--dataset", "mnist", "--data-root",
                        str(tmp_path))
    assert rc == 1 and "mnist: download failed: OSError: no route to host" in err
    assert "cifar10" not in out
    with pytest.raises(SystemExit):
        main(["data", "frobnicate"])
    assert main(["data", "check", "--dataset", "nope"]) == 2
