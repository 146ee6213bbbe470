"""Tests of REPORT.md generation from hand-written results.json files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import temp_leftovers

from studylib.__main__ import main
from studylib.cli.report import (
    build_report,
    claim_n_seeds,
    claims_paragraph,
    fmt_number,
    format_evidence,
    study_paragraph,
    write_report,
)


@pytest.mark.parametrize("evidence, expected", [
    ({"spearman_mean": 0.94, "ci95": [0.91, 0.96], "n_seeds": 3},
     "spearman_mean = 0.94 [0.91, 0.96]"),
    # <stem>_ci95 pairs with <stem>_mean and <stem>; counts are left out
    ({"drop_mean": 0.123456, "drop_ci95": [0.1, 0.15], "auc": 0.5, "auc_ci": [0.4, 0.6],
      "n": 5}, "drop_mean = 0.1235 [0.1, 0.15]; auc = 0.5 [0.4, 0.6]"),
    # a nested mean_ci(...) dict
    ({"rho": {"mean": 0.9, "ci95": [0.8, 1.0], "n": 3}}, "rho_mean = 0.9 [0.8, 1]"),
    # a CI with nothing to pair with is still shown; NaN is spelled out
    ({"ci95": [None, float("nan")]}, "ci95 [nan, nan]"),
    ({"a": 1, "b": 2, "c": 3, "d": 4}, "a = 1; b = 2; c = 3; ..."),
    ({"ratio": 1e-5, "flag": True}, "ratio = 1e-05"),
    # a bare ci95 pairs with the first number inside it, and numbers with a CI come first
    ({"strongest_level": 0.5, "auc_clean": 0.9, "auc_drop": 0.37, "ci95": [0.36, 0.39]},
     "auc_drop = 0.37 [0.36, 0.39]; strongest_level = 0.5; auc_clean = 0.9"),
    ({"level": 0.5, "ci95": [0.1, 0.2]}, "ci95 [0.1, 0.2]; level = 0.5"),
    ({"note": "text | only"}, ""),
])
def test_format_evidence(evidence, expected):
    assert format_evidence(evidence) == expected


def test_fmt_number():
    assert [fmt_number(x) for x in (3, 0.123456, 1234567.0, None, float("nan"), float("inf"),
                                     True)] == ["3", "0.1235", "1.235e+06", "nan", "nan",
                                                "inf", "true"]


def test_claims_paragraph_counts_and_names():
    claims = [{"id": "a", "verdict": "reproduced"}, {"id": "b", "verdict": "not reproduced"},
              {"id": "c", "verdict": "inconclusive"}, {"id": "d", "verdict": "not reproduced"}]
    assert claims_paragraph(claims) == ("1 of 4 claims reproduced; not reproduced: `b`, `d`; "
                                        "inconclusive: `c`.")
    assert claims_paragraph(claims[:1]) == "1 of 1 claims reproduced."
    assert claims_paragraph([]) == "No claims were recorded."


def test_study_paragraph_groups_statements_by_verdict_with_their_evidence():
    claims = [
        {"id": "b", "verdict": "not reproduced", "statement": "B is larger than 2.",
         "evidence": {"ratio": 1.5, "ci95": [1.2, 1.8], "other": 7, "n_seeds": 3}},
        {"id": "a", "verdict": "reproduced", "statement": "A holds",
         "evidence": {"rho": 0.9, "ci95": [0.85, 0.95]}},
        {"id": "c", "verdict": "inconclusive", "statement": "C | D", "evidence": {}},
    ]
    text = study_paragraph(claims)
    assert text.startswith("**Reproduced:** A holds (rho = 0.9 [0.85, 0.95]). ")
    assert "**Not reproduced:** B is larger than 2 (ratio = 1.5 [1.2, 1.8]). " in text
    assert "7" not in text  # only the first evidence item
    assert text.endswith(":** C \\| D.")
    assert study_paragraph([]) == ""


def test_claim_n_seeds_prefers_evidence_then_study_seeds():
    res = {"seeds": [0, 1, 2]}
    assert claim_n_seeds({"evidence": {"n_seeds": 5}}, res) == "5"
    assert claim_n_seeds({"evidence": {"n": 4}}, res) == "4"
    assert claim_n_seeds({"evidence": {}}, res) == "3"


def _ok_results(runtime: float = 12.34) -> dict:
    return {
        "study": "06_taylor_pruning", "profile": "default", "status": "ok", "seeds": [0, 1, 2],
        "device": "cpu", "runtime_s": runtime, "params": {"epochs": 2},
        "metrics": {"clean_accuracy": 0.931234, "pruned_accuracy": 0.9},
        "claims": [
            {"id": "fo_correlates_with_oracle", "statement": "rho >= 0.9 | ranked alike",
             "verdict": "reproduced",
             "evidence": {"spearman_mean": 0.94, "ci95": [0.91, 0.96], "n_seeds": 3}},
            {"id": "beats_weight_norm", "statement": "FO beats the weight norm",
             "verdict": "inconclusive", "evidence": {"gap_mean": 0.01, "gap_ci95": [-0.02, 0.04]}},
        ],
    }


def _failed_results() -> dict:
    return {"study": "01_loss_visualization", "profile": "default", "status": "failed",
            "seeds": [0], "device": "cpu", "runtime_s": 3.0, "params": {}, "metrics": {},
            "claims": [], "error": "ValueError: bad grid"}


@pytest.fixture
def profile_root(tmp_path: Path) -> Path:
    root = tmp_path / "outputs"
    ok = root / "default" / "06_taylor_pruning"
    (ok / "figures").mkdir(parents=True)
    (ok / "results.json").write_text(json.dumps(_ok_results()))
    (ok / "06_taylor_pruning.ipynb").write_text("{}")
    (ok / "06_taylor_pruning.html").write_text("<html></html>")
    for name in ("ranking", "accuracy_vs_pruned"):
        (ok / "figures" / f"{name}.png").write_bytes(b"\x89PNG")
    failed = root / "default" / "01_loss_visualization"
    failed.mkdir(parents=True)
    (failed / "results.json").write_text(json.dumps(_failed_results()))
    (failed / "01_loss_visualization.ipynb").write_text("{}")
    unfinished = root / "default" / "03_bayesian_robustness"
    unfinished.mkdir(parents=True)
    (unfinished / "03_bayesian_robustness.ipynb").write_text("{}")
    (root / "default" / "not_a_study").mkdir()  # neither results nor notebook: ignored
    return root


def test_report_tables_sections_and_links(profile_root):
    text = build_report("default", profile_root)
    assert text.startswith("# Report: profile `default`\n")
    assert ("3 studies: 1 ok, 2 failed or unfinished. 2 claims: 1 reproduced, "
            "0 not reproduced, 1 inconclusive.") in text
    # claims table: evidence with its CI, n_seeds from evidence or the study's seeds
    assert ("| 06_taylor_pruning | `fo_correlates_with_oracle` | reproduced "
            "| spearman_mean = 0.94 [0.91, 0.96] | 3 |") in text
    assert ("| 06_taylor_pruning | `beats_weight_norm` | inconclusive "
            "| gap_mean = 0.01 [-0.02, 0.04] | 3 |") in text
    # studies in sorted order, each with its section
    order = [text.index(f"### {s}") for s in
             ("01_loss_visualization", "03_bayesian_robustness", "06_taylor_pruning")]
    assert order == sorted(order)
    assert "not_a_study" not in text
    assert "**Failed**: `ValueError: bad grid`" in text
    assert "**Unfinished**" in text
    assert "1 of 2 claims reproduced; inconclusive: `beats_weight_norm`." in text
    assert "**Reproduced:** rho >= 0.9 \\| ranked alike (" in text
    assert "| clean_accuracy | 0.9312 |" in text
    assert "runtime: 12.3 s" in text
    # relative links that resolve from the report's folder
    links = ["06_taylor_pruning/06_taylor_pruning.html", "06_taylor_pruning/06_taylor_pruning.ipynb",
             "06_taylor_pruning/figures/accuracy_vs_pruned.png",
             "06_taylor_pruning/figures/ranking.png", "01_loss_visualization/results.json"]
    for link in links:
        assert f"]({link})" in text
        assert (profile_root / "default" / link).exists()
    assert "01_loss_visualization/01_loss_visualization.html" not in text  # not rendered


def test_report_is_deterministic_apart_from_runtimes(profile_root, tmp_path):
    first = build_report("default", profile_root)
    assert build_report("default", profile_root) == first
    res_path = profile_root / "default" / "06_taylor_pruning" / "results.json"
    res_path.write_text(json.dumps(_ok_results(runtime=99.0)))
    second = build_report("default", profile_root)
    changed = [(a, b) for a, b in zip(first.splitlines(), second.splitlines(), strict=True) if a != b]
    assert len(first.splitlines()) == len(second.splitlines())
    assert changed and all("12.3" in a and "99" in b for a, b in changed)


def test_write_report_and_cli(profile_root, capsys):
    path = write_report("default", profile_root)
    assert path == profile_root / "default" / "REPORT.md"
    assert path.read_text() == build_report("default", profile_root)
    assert temp_leftovers(profile_root) == []
    path.unlink()
    assert main(["report", "--profile", "default", "--output-root", str(profile_root)]) == 0
    assert path.exists() and "REPORT.md" in capsys.readouterr().out


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
    assert "auc_clean" not in text and "greater 0" in text and "3 of 3 seeds" in text
    assert claim_n_seeds(claim.to_json(), {"seeds": [0]}) == "3"
