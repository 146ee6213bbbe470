"""Tests of REPORT.md generation from hand-written results.json files."""

from __future__ import annotations

from studylib.cli.report import (
    build_report,
    claim_n_seeds,
    claims_paragraph,
    fmt_number,
    study_paragraph,
)


def _claim(id="fo_correlates_with_oracle", statement="rho >= 0.9 | ranked alike",
           rhos=(0.93, 0.95, 0.94), threshold=0.9, paper=True):
    from studylib.stats import PaperValue, Rule, fisher_z_interval, make_claim

    return make_claim(id, statement, fisher_z_interval(list(rhos)), Rule("at_least", threshold),
                      paper_value=PaperValue("> 93% correlation", "abstract") if paper else None
                      ).to_json()


def test_fmt_number():
    assert [fmt_number(x) for x in (3, 0.123456, 1234567.0, None, float("nan"), float("inf"),
                                     True)] == ["3", "0.123", "1.23e6", "n/a", "n/a",
                                                "inf", "true"]


def test_claims_paragraph_counts_and_names():
    claims = [{"id": "a", "verdict": "reproduced"}, {"id": "b", "verdict": "not reproduced"},
              {"id": "c", "verdict": "inconclusive"}, {"id": "d", "verdict": "not reproduced"}]
    assert claims_paragraph(claims) == ("1 of 4 claims reproduced; not reproduced: `b`, `d`; "
                                        "inconclusive: `c`.")
    assert claims_paragraph(claims[:1]) == "1 of 1 claims reproduced."
    assert claims_paragraph([]) == "No claims were recorded."


def test_study_paragraph_groups_statements_by_verdict_with_their_estimates():
    claims = [_claim("b", "B is larger than 0.99.", threshold=0.99),
              _claim("a", "A holds"),
              _claim("c", "C | D", rhos=(0.8, 0.95, 0.9))]
    text = study_paragraph(claims)
    # Fisher z of 0.93, 0.95, 0.94: mean 1.743, sd 0.0868, t(2) 4.30 -> tanh: 0.941 [0.91, 0.961]
    assert text.startswith("**Reproduced:** A holds (0.941 [0.91, 0.961]). ")
    assert "**Not reproduced:** B is larger than 0.99 (0.941 [0.91, 0.961]). " in text
    assert text.endswith("C \\| D (0.899 [0.506, 0.983]).")
    assert study_paragraph([]) == ""


def test_claim_n_seeds_from_the_claim_else_the_study_seeds():
    res = {"seeds": [0, 1, 2, 3]}
    assert claim_n_seeds(_claim(), res) == "3"
    assert claim_n_seeds({"id": "old", "evidence": {"n": 4}}, res) == "4"


def test_an_untyped_claim_shows_no_number_and_says_why():
    from studylib.cli.report import claim_evidence, claim_paper_value

    old = {"id": "x", "verdict": "reproduced", "statement": "s",
           "evidence": {"auc_clean": 0.9485, "ci95": [0.920, 0.969]}}
    text = claim_evidence(old)
    assert "0.9485" not in text and "re-run" in text
    assert claim_paper_value(old) == ""
    assert claim_paper_value(_claim(paper=False)) == "qualitative"
    assert claim_paper_value(_claim()) == "> 93% correlation (abstract)"


def test_report_of_an_empty_profile(tmp_path):
    text = build_report("paper", tmp_path)
    assert "No study results under `paper/` yet" in text


def test_a_typed_claim_shows_its_own_estimate_and_interval():
    """No pairing by position: the estimate and the interval are one field pair."""
    from studylib.cli.report import claim_evidence
    from studylib.stats import Rule, make_claim, paired_difference

    drop = paired_difference([0.95, 0.94, 0.96], [0.57, 0.58, 0.56])  # AUC drop 0.38
    claim = make_claim("sensitive_to_noise", "AUC drops under noise", drop, Rule("greater", 0.0),
                       details={"auc_clean": 0.95, "strongest_level": 0.5})
    text = claim_evidence(claim.to_json())
    assert text.startswith("0.38 [")
    assert "auc_clean" not in text and "rule: > 0" in text and "3 of 3 seeds" in text
    assert claim_n_seeds(claim.to_json(), {"seeds": [0]}) == "3"


def test_evidence_carries_the_power_line_and_the_conditions_left_out():
    from studylib.cli.report import claim_evidence
    from studylib.stats import Rule, claim_over_conditions, decide_condition, t_interval

    rule = Rule("at_least", 0.5)
    kept = decide_condition("a", t_interval([0.4, 0.6, 0.55]), rule)
    out = decide_condition("b", t_interval([0.0, 0.0, 0.0]), rule,
                           uninformative="floor: every model at 0")
    claim = claim_over_conditions("c", "it holds", [kept, out]).to_json()
    assert claim["verdict"] == "inconclusive" and claim["power"]
    text = claim_evidence(claim)
    assert "power: " + claim["power"].replace("|", "\\|") in text
    assert "left out: b (floor: every model at 0)" in text


def test_findings_paragraph_goes_into_its_study_section(tmp_path):
    import json

    import pytest

    from studylib.cli.report import findings

    d = tmp_path / "default" / "06_x"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({
        "schema": 1, "study": "06_x", "profile": "default", "status": "ok", "runtime_s": 1.0,
        "device": "cpu", "seeds": [0, 1, 2], "params": {}, "metrics": {},
        "claims": [_claim()]}))
    assert "What it means" not in build_report("default", tmp_path)
    (tmp_path / "default" / "findings.yaml").write_text(
        "06_x: >\n  Taylor FO ranks channels like the oracle on both networks.\n")
    text = build_report("default", tmp_path)
    section = text[text.index("### 06_x"):]
    assert "**What it means.** Taylor FO ranks channels like the oracle" in section
    (tmp_path / "default" / "findings.yaml").write_text("- not a mapping\n")
    with pytest.raises(ValueError, match="mapping"):
        findings(tmp_path / "default")
