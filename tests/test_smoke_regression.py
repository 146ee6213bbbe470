"""The smoke runs against their committed references (tests/reference/<study>.smoke.json).

nbval compares text, which is the right tool for verdict lines, sizes and parameter echoes and
the wrong one for numbers from trained models (they move with the CPU, the thread count and
the oneDNN kernels). This module executes every notebook at its smoke defaults and compares its
results.json with the reference: verdicts, claims, parameters and seeds exactly; every metric
within the tolerance its reference states. The unit tests first show on hand-built records
that float noise passes and a real regression fails.
"""

from __future__ import annotations

import copy

import pytest

from studylib.cli.regression import (
    BOUNDED_FLOOR,
    REFERENCE_DIR,
    Tolerance,
    build_reference,
    compare,
    load_reference,
    main,
    metric_kind,
    tolerance_for,
)
from studylib.core import paths

STUDIES = sorted(p.stem for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def _run(acc: float = 0.83, psi: float = 0.38, verdict: str = "inconclusive",
         **extra_metrics) -> dict:
    return {"study": "99_fake", "profile": "smoke", "status": "ok", "seeds": [0],
            "runtime_s": 12.5, "params": {"epochs": 8, "output_dir": "/somewhere/else"},
            "metrics": {"clean_accuracy": acc, "psi/mlp": psi, "gated_channels": 226.0,
                        "latency_ms": 3.2, **extra_metrics},
            "claims": [{"id": "c1", "statement": "s", "verdict": verdict, "evidence": {}}]}


@pytest.fixture
def reference() -> dict:
    runs = [_run(), _run(acc=0.81, psi=0.40, latency_ms=9.9), _run(acc=0.84, psi=0.37)]
    return build_reference(runs, ["default", "threads1", "avx2"])


def test_tolerances_from_the_spread_with_floors(reference):
    m = reference["metrics"]
    # bounded: 3 x the largest deviation (0.02), rounded up, at least the floor 0.05
    assert m["clean_accuracy"] == {"value": 0.83, "kind": "bounded", "abs": 0.06,
                                   "spread": 0.02}
    # unbounded: relative, 3 x 0.02 / 0.38 = 0.158 -> 0.16
    assert m["psi/mlp"]["kind"] == "unbounded" and m["psi/mlp"]["rel"] == pytest.approx(0.16)
    assert m["gated_channels"] == {"value": 226.0, "kind": "exact", "spread": 0.0}
    assert reference["not_compared"] == ["latency_ms"]
    assert "output_dir" not in reference["params"]
    assert metric_kind("auc", [0.5, 0.5]) == "bounded"
    assert metric_kind("psi", [0.5, 0.6]) == "unbounded"  # a KL divergence is not bounded by 1
    assert metric_kind("accuracy", [3.0, 4.0]) == "unbounded"  # percent, not a fraction
    assert metric_kind("auc", [None, 0.5]) == "missing"
    assert metric_kind("auc_pgd_strongest", [0.0, 0.0]) == "bounded"  # not a count
    assert metric_kind("gated_channels", [226.0, 226.0]) == "exact"
    kind, tol, spread = tolerance_for("accuracy", [0.9, 0.9, 0.9])
    assert (kind, tol.abs, spread) == ("bounded", BOUNDED_FLOOR, 0.0)


def test_float_noise_passes(reference):
    noisy = _run(acc=0.83 * (1 + 1e-7), psi=0.38 * (1 - 1e-6), latency_ms=400.0)
    noisy["runtime_s"] = 99.0
    noisy["params"]["output_dir"] = "/tmp/elsewhere"
    assert compare(noisy, reference) == []
    # and so does a move inside the stated tolerance (another CPU's trained model)
    assert compare(_run(acc=0.87, psi=0.43), reference) == []


def test_real_regressions_fail(reference):
    problems = compare(_run(acc=0.60), reference)  # accuracy lost 23 points
    assert len(problems) == 1 and problems[0].startswith("metric clean_accuracy: reference 0.83")
    assert compare(_run(psi=0.6), reference)[0].startswith("metric psi/mlp")
    assert compare(_run(gated_channels=225.0), reference)[0].startswith("metric gated_channels")
    assert compare(_run(verdict="reproduced"), reference) == [
        "claim c1: verdict 'inconclusive' in the reference, now 'reproduced'"]
    changed = _run()
    changed["params"]["epochs"] = 4
    assert compare(changed, reference) == ["parameter epochs: reference 8, now 4"]
    missing = _run()
    del missing["metrics"]["psi/mlp"]
    missing["metrics"]["new_metric"] = 1.0
    assert compare(missing, reference) == ["metric new_metric: recorded now, not in the reference",
                                           "metric psi/mlp: in the reference, not recorded now"]
    lost = _run()
    lost["claims"] = []
    assert compare(lost, reference) == ["claim c1: in the reference, not recorded now"]
    failed = dict(_run(), status="failed", error="RuntimeError: boom")
    assert compare(failed, reference) == ["status 'failed': RuntimeError: boom"]


def test_a_reference_refuses_runs_that_disagree_on_what_must_be_exact():
    with pytest.raises(ValueError, match="verdicts differ under 'avx2'"):
        build_reference([_run(), _run(verdict="reproduced")], ["default", "avx2"])
    other = _run()
    other["params"]["epochs"] = 2
    with pytest.raises(ValueError, match="params differ"):
        build_reference([_run(), other], ["default", "threads1"])


def test_tolerance_edges():
    t = Tolerance(abs=0.05)
    assert t.allows(0.80, 0.85) and not t.allows(0.80, 0.8501)
    assert Tolerance().allows(None, None) and not Tolerance(abs=1).allows(None, 0.5)
    assert Tolerance(rel=0.1).allows(10.0, 11.0) and not Tolerance(rel=0.1).allows(10.0, 11.2)


def test_every_study_has_a_reference_with_its_claims():
    for study in STUDIES:
        ref = load_reference(study)
        assert ref["study"] == study and ref["verdicts"] and ref["metrics"], study
        assert len(ref["conditions"]) >= 2, f"{study}: tolerances need several conditions"


def test_cli_check_reports_differences(tmp_path, capsys, monkeypatch):
    import json

    import studylib.cli.regression as regression

    ref = build_reference([_run(), _run(acc=0.82)], ["a", "b"])
    (tmp_path / "99_fake.smoke.json").write_text(json.dumps(ref))
    monkeypatch.setattr(regression, "REFERENCE_DIR", tmp_path)
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(_run()))
    bad.write_text(json.dumps(_run(acc=0.5)))
    assert main(["check", str(good)]) == 0
    assert main(["check", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "99_fake: matches the reference" in out and "metric clean_accuracy" in out
    # make test checks the files nbval's execution wrote: one older than the stamp it touched
    # before nbval started is stale (the notebook stopped before writing) and fails
    import os

    stamp = tmp_path / "started"
    stamp.touch()
    os.utime(good, (stamp.stat().st_mtime - 60,) * 2)
    assert main(["check", "--newer-than", str(stamp), str(good)]) == 1
    assert "not written by this run" in capsys.readouterr().err
    good.write_text(json.dumps(_run()))
    os.utime(good, (stamp.stat().st_mtime + 1,) * 2)
    assert main(["check", "--newer-than", str(stamp), str(good)]) == 0


@pytest.mark.notebooks
@pytest.mark.smoke_run
@pytest.mark.parametrize("study", STUDIES)
def test_smoke_run_matches_its_reference(study, tmp_path):
    """Execute the notebook at its smoke defaults into a temp dir; compare with the reference."""
    from studylib.cli.runner import Runner

    runner = Runner(output_root=tmp_path, render_html=False, log=None)
    (plan,) = runner.plan("smoke", [study])
    outcome = runner.execute(plan)
    assert outcome.status == "ok", outcome.error
    problems = compare(outcome.results, load_reference(study))
    assert not problems, (f"{study} at the smoke profile differs from "
                          f"{REFERENCE_DIR.name}/{study}.smoke.json:\n  " + "\n  ".join(problems)
                          + "\nIf the change is intended, rebuild the references with "
                            "`make smoke-reference` and say why in the commit.")


def test_compare_does_not_modify_its_inputs(reference):
    run = _run(acc=0.5)
    before_run, before_ref = copy.deepcopy(run), copy.deepcopy(reference)
    compare(run, reference)
    assert run == before_run and reference == before_ref
