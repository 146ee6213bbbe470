"""Every study's profiles validate against its notebook's parameters cell, and every study
notebook follows the kit's conventions (a test per study, so a new study is checked too)."""

from __future__ import annotations

import json

import pytest

from studylib.cli.runner import Runner
from studylib.core import paths

RUNNER = Runner()
STUDIES = RUNNER.studies()
REQUIRED_PARAMETERS = ("profile", "output_dir", "device", "seeds")


def test_there_are_studies():
    assert STUDIES, "no notebooks found under notebooks/"


@pytest.mark.parametrize("study", STUDIES)
def test_every_profile_validates(study):
    profiles = RUNNER.profiles(study)
    assert {"smoke", "default", "paper"} <= set(profiles), f"{study} lacks a profile: {profiles}"
    for profile in profiles:
        plan = RUNNER.plan_one(study, profile)
        assert plan.parameters["profile"] == profile
        assert plan.output_dir == paths.OUTPUTS_DIR / profile / study


@pytest.mark.parametrize("study", STUDIES)
def test_notebook_conventions(study):
    params = RUNNER.parameters(study)
    for name in REQUIRED_PARAMETERS:
        assert name in params, f"{study}: parameters cell lacks {name!r}"
    assert params["profile"].default == "smoke"
    assert params["output_dir"].default == f"outputs/smoke/{study}"
    nb = json.loads(RUNNER.notebook(study).read_text())
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown"
    first = "".join(cells[0]["source"])
    assert "papermill" in first.lower() or "studylib run" in first, \
        f"{study}: the first cell must say how to rerun the notebook"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
    code = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert all(c.get("execution_count") for c in code), f"{study}: committed unexecuted"
    for c in code:
        for out in c.get("outputs", []):
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), \
                f"{study}: a widget output does not render statically"
            assert out.get("output_type") != "error", f"{study}: committed with an error"
