import json

import numpy as np
import pytest

from studylib.core import results as R
from studylib.core.io import atomic_write_json
from studylib.core.runtime import StudyContext, capture_parameters


def _ok_results():
    return {"study": "s", "profile": "smoke", "status": "ok", "seeds": [0], "device": "cpu",
            "runtime_s": 1.0, "params": {}, "metrics": {"m": 0.5},
            "claims": [_claim()]}


def _claim() -> dict:
    from studylib.stats import Rule, make_claim, t_interval

    return make_claim("c", "x > 0", t_interval([0.4, 0.5, 0.6]), Rule("greater", 0.0)).to_json()


def test_validate_results_accepts_contract_and_rejects_violations():
    R.validate_results(_ok_results())
    for mutate, msg in [
        (lambda d: d.pop("claims"), "missing key 'claims'"),
        (lambda d: d.update(status="weird"), "status"),
        (lambda d: d["claims"][0].update(verdict="yes"), "(?i)verdict"),
        (lambda d: d["claims"].append(dict(d["claims"][0])), "twice"),
        (lambda d: d["metrics"].update(m="high"), "metric 'm'"),
        (lambda d: d.update(status="failed"), "error"),
        # a claim of the old untyped form, or one whose interval leaves its quantity's range
        (lambda d: d["claims"].__setitem__(0, {"id": "c", "statement": "x",
                                               "verdict": "reproduced", "evidence": {}}),
         "not a typed claim"),
        (lambda d: d["claims"][0].update(range=[0.0, 0.5]), "natural range"),
        (lambda d: d["claims"][0].pop("rule"), "rule"),
    ]:
        d = _ok_results()
        mutate(d)
        with pytest.raises(ValueError, match=msg):
            R.validate_results(d)


def test_study_context_writes_valid_results(tmp_path, capsys):
    ctx = StudyContext("demo", "smoke", tmp_path / "out", "cpu", [0, 1], {"n": 3})
    ctx.record_metric("acc", np.float32(0.5))
    ctx.record_metric("nan_metric", float("nan"))
    from studylib.stats import Rule, logit_interval, make_claim

    ctx.add(make_claim("c1", "acc >= 0.4", logit_interval([0.6, 0.62, 0.64]),
                       Rule("at_least", 0.4)))
    path = ctx.finish()
    data = json.loads(path.read_text())
    R.validate_results(data)
    assert data["metrics"] == {"acc": 0.5, "nan_metric": None}
    assert data["seeds"] == [0, 1] and data["params"] == {"n": 3}
    assert "1/1 claims reproduced" in capsys.readouterr().out
    assert not list(path.parent.glob(".*.tmp"))


def test_capture_parameters_keeps_plain_values_only():
    import os

    ns = {"n": 3, "seeds": [0, 1], "name": "x", "os": os, "_hidden": 1, "In": ["a"],
          "fn": print, "cfg": {"a": (1, 2)}}
    assert capture_parameters(ns) == {"cfg": {"a": [1, 2]}, "n": 3, "name": "x", "seeds": [0, 1]}


def test_atomic_write_json_replaces_whole_file(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_json(p, {"a": np.int64(3), "b": np.array([1.5])})
    assert json.loads(p.read_text()) == {"a": 3, "b": [1.5]}
    atomic_write_json(p, {"c": 1})
    assert json.loads(p.read_text()) == {"c": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]


def test_atomic_write_json_writes_strict_json_with_null_for_non_finite(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_json(p, {"ci95": [float("nan"), np.float64("nan")], "x": (float("inf"), 2.0),
                          "nested": {"m": np.array([np.nan, 1.0])}})
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    # a strict parser (NaN constants rejected) reads it back
    def reject(c):
        raise ValueError(c)
    assert json.loads(text, parse_constant=reject) == {
        "ci95": [None, None], "x": [None, 2.0], "nested": {"m": [None, 1.0]}}


def test_atomic_write_gives_files_the_umask_permissions(tmp_path):
    import stat

    from studylib.core import io

    p = atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~io._UMASK


def test_typed_claims_are_recorded_validated_and_shown(tmp_path, capsys):
    from studylib.stats import Rule, log_ratio_interval, make_claim

    ctx = StudyContext("demo", "smoke", tmp_path / "out", "cpu", [0, 1, 2], {})
    claim = make_claim("ratio_at_least_3", "ratio >= 3", log_ratio_interval([26.0, 92.0, 35.0]),
                       Rule("at_least", 3.0))
    ctx.add(claim)
    with pytest.raises(ValueError, match="twice"):
        ctx.add(claim)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "[reproduced] ratio_at_least_3"
    assert "estimate 43.7 [8.47, 226]" in out and "3 of 3 seeds" in out
    data = json.loads(ctx.finish().read_text())
    (entry,) = data["claims"]
    assert entry["estimate"] == pytest.approx(43.7, abs=0.05) and entry["ci95"][0] > 0
    R.validate_results(data)
    broken = json.loads(json.dumps(data))
    broken["claims"][0]["estimate"] = 500.0  # outside its own interval
    with pytest.raises(ValueError, match="outside its interval"):
        R.validate_results(broken)


def test_contract_problem_says_why_or_nothing():
    assert R.contract_problem(_ok_results()) is None
    bad = _ok_results()
    bad["status"] = "weird"
    assert R.contract_problem(bad).startswith("results.json does not follow the contract: ")
    assert "status" in R.contract_problem(bad)
    assert R.contract_problem(["not", "an", "object"]) is not None
