"""CHANGES.md: verdicts before and after, and a reason demanded for every one that moved."""

from __future__ import annotations

from studylib.cli.changes import changes_markdown, missing_reasons


def _claim(cid, verdict, est=0.5, ci=(0.4, 0.6)):
    return {"id": cid, "verdict": verdict, "estimate": est, "ci95": list(ci)}


BEFORE = {"01_x": {"claims": [_claim("a", "reproduced"), _claim("b", "inconclusive"),
                              _claim("gone", "not reproduced")]}}
AFTER = {"01_x": {"claims": [_claim("a", "reproduced", 0.55), _claim("b", "not reproduced"),
                             _claim("new", "inconclusive", None, (None, None))]}}


def test_every_moved_new_or_removed_verdict_needs_a_reason_of_a_known_kind():
    assert missing_reasons(BEFORE, AFTER, {}) == ["01_x/b", "01_x/gone", "01_x/new"]
    reasons = {"01_x/b": {"kind": "statistics", "why": "log-scale interval"},
               "01_x/gone": {"kind": "removed claim", "why": "could not fail"},
               "01_x/new": {"kind": "typo", "why": "?"}}
    assert missing_reasons(BEFORE, AFTER, reasons) == ["01_x/new"]
    reasons["01_x/new"]["kind"] = "new claim"
    assert missing_reasons(BEFORE, AFTER, reasons) == []


def test_table_has_one_row_per_claim_with_both_verdicts():
    reasons = {"01_x/b": {"kind": "statistics", "why": "log | scale"}}
    text = changes_markdown(BEFORE, AFTER, reasons, before_label="`r0`", after_label="now")
    rows = [line for line in text.splitlines() if line.startswith("| 01_x")]
    assert len(rows) == 4  # a, b, gone, new
    row_b = [r for r in rows if "`b`" in r][0]
    assert "inconclusive 0.5 [0.4, 0.6]" in row_b and "not reproduced 0.5" in row_b
    assert "log \\| scale" in row_b  # escaped for the Markdown table
    assert "3 changed verdict" in text
    row_gone = [r for r in rows if "`gone`" in r][0]
    assert "| - |" in row_gone
    row_new = [r for r in rows if "`new`" in r][0]
    assert "inconclusive |" in row_new
