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


@pytest.mark.parametrize("study", STUDIES)
def test_papermill_reads_every_parameter_of_the_cell(study):
    """papermill parses the parameters cell line by line and skips, with only a warning, a
    line it cannot read (a comment holding ``=`` such as ``>= this``); that parameter then is
    unknown to the profiles and to --set. Every name the cell assigns must be one it reads."""
    import ast

    nb = json.loads(RUNNER.notebook(study).read_text())
    (cell,) = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assigned = {t.id for node in ast.parse("".join(cell["source"])).body
                if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    assert assigned == set(RUNNER.parameters(study)), \
        f"{study}: papermill does not read {sorted(assigned - set(RUNNER.parameters(study)))}"


def test_every_study_settings_reads_its_notebooks_parameters():
    """Each study's Settings is filled from its notebook's parameters cell (the one source of
    names and defaults): no field lacks a parameter."""
    import dataclasses

    from studylib.studies import CLAIMS

    modules = {study: __import__(fn.__module__, fromlist=["Settings"])
               for study, claims in CLAIMS.items() for fn in list(claims.values())[:1]}
    assert set(modules) == set(STUDIES)
    for study, module in modules.items():
        params = {name: p.default for name, p in RUNNER.parameters(study).items()}
        missing = {f.name for f in dataclasses.fields(module.Settings)} - set(params)
        assert not missing, f"{study}: Settings fields without a parameter: {sorted(missing)}"


@pytest.mark.parametrize("study", STUDIES)
def test_a_notebook_is_glue(study):
    """At most 60 code lines outside the parameters cell, and no verdict decided in a cell:
    no verdict string, no hand-written rule; claims come from studylib.studies through
    ctx.add."""
    import re

    nb = json.loads(RUNNER.notebook(study).read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
            and "parameters" not in c.get("metadata", {}).get("tags", [])]
    lines = [ln for src in code for ln in src.splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    assert len(lines) <= 60, f"{study}: {len(lines)} code lines outside the parameters cell"
    text = "\n".join(code)
    assert not re.search(r"[\"'](reproduced|not reproduced|inconclusive)[\"']|Verdict\.|"
                         r"\.decide\(|Rule\(|make_claim\(|claim_over_conditions\(", text), \
        f"{study}: verdict logic in a notebook cell"
    assert "ctx.add(" in text, f"{study}: records no claim"
