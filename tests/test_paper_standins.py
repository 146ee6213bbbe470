"""End to end: study 02's ``paper`` profile on stand-in mammograms, through the runner.

The real path a researcher takes: ``params/02_mammogram_perturbation/paper.yaml`` as it is
(``data_kwargs: {data_root: mammograms, csv: labels.csv, ...}``), a data root given as
``run --data-root`` would give it, and the sizes shrunk with ``--set`` (the ``data_kwargs``
override merges into the profile's). The stand-in folder holds every format the loader decodes
(PNG 8/16-bit, 12-bit PNG with sBIT, DICOM MONOCHROME1/2 with window, rescale and VOI LUT, JPEG
2000) and lesion masks, so the CNR analysis, which needs masks, runs on the real loader.
"""

from __future__ import annotations

import pytest
import standins

from studylib.cli.runner import Runner

STUDY = "02_mammogram_perturbation"
SHRINK = ["seeds=[0]", "image_size=64", "pool=4", "stem_channels=8", "widths=[8,16,32]",
          "epochs=2", "batch_size=16", "n_pgd=8", "pgd_steps=2", "n_cnr_images=10",
          "n_boot=50", "data_kwargs={resize: pad}"]


@pytest.mark.notebooks
def test_study_02_paper_profile_runs_on_stand_in_mammograms(tmp_path):
    data_root = tmp_path / "data"
    standins.write_mammograms(data_root, n=90, shape=(80, 64))
    runner = Runner(output_root=tmp_path / "out", cache_dir=tmp_path / "cache",
                    data_root=data_root, render_html=False, log=None)
    (plan,) = runner.plan("paper", [STUDY], sets=SHRINK, device="cpu")
    assert plan.parameters["data_kwargs"] == {"data_root": "mammograms", "csv": "labels.csv",
                                              "resize": "pad"}
    (outcome,) = runner.run_plans([plan])
    assert outcome.status == "ok", outcome.error
    results = outcome.results
    assert results["profile"] == "paper" and results["params"]["dataset"] == "mammo_folder"
    claims = {c["id"]: c for c in results["claims"]}
    erased = claims["lowpass_erases_microcalcifications"]
    # the masks reached the CNR analysis: specks and masses were found and measured
    assert erased["details"].get("n_specks", 0) > 0 and erased["details"]["n_masses"] > 0
    assert 0.0 < results["metrics"]["speck_detectable_unfiltered"] <= 1.0
    # the decoded images went to the run's cache root, keyed by their files' content
    assert len(list((tmp_path / "cache" / "decoded").glob("*.pt"))) == 90
