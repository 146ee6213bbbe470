"""The committed ``outputs/default/`` (what a reader reads) follows the results contract: every
study's results.json validates (typed claims, each estimate inside its interval and each
interval inside its quantity's natural range), and REPORT.md lists every claim with the same
estimate and interval."""

from __future__ import annotations

import json

import pytest

from studylib.cli.report import claim_evidence
from studylib.core import paths
from studylib.core.results import validate_results
from studylib.studies import CLAIMS

DEFAULT = paths.OUTPUTS_DIR / "default"
STUDIES = sorted(CLAIMS)


@pytest.mark.parametrize("study", STUDIES)
def test_committed_default_results_follow_the_contract(study):
    res = json.loads((DEFAULT / study / "results.json").read_text())
    validate_results(res)
    assert res["status"] == "ok" and res["profile"] == "default"
    assert sorted(c["id"] for c in res["claims"]) == sorted(CLAIMS[study]), \
        f"{study}: the committed claims are not those the study module defines"
    report = (DEFAULT / "REPORT.md").read_text()
    for c in res["claims"]:
        assert f"`{c['id']}`" in report and claim_evidence(c) in report
