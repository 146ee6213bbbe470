"""Tests of ``python -m studylib sweep`` / ``sweep-report`` on the fixture notebook fx2_ok."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import FIXTURES_DIR, temp_leftovers

from studylib.__main__ import main
from studylib.cli.runner import Runner, ValidationError
from studylib.cli.sweep import (
    load_sweep,
    plan_sweep,
    point_id,
    run_sweep,
    task_resources,
    write_sweep_report,
)
from studylib.core import paths


def _write_sweep(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _runner() -> Runner:
    return Runner(notebooks_dir=FIXTURES_DIR, log=None)


# ----------------------------------------------------------------------------- the file


def test_grid_expands_in_file_order_with_stable_ids(tmp_path):
    f = _write_sweep(tmp_path / "g.yaml", {"study": "fx2_ok", "profile": "smoke",
                                          "set": {"n": 2},
                                          "grid": {"scale": [0.5, 2.0], "label": ["a", "b"]}})
    spec = load_sweep(f)
    assert spec.name == "g" and spec.varying == ["scale", "label"]
    assert spec.points == [{"scale": 0.5, "label": "a"}, {"scale": 0.5, "label": "b"},
                           {"scale": 2.0, "label": "a"}, {"scale": 2.0, "label": "b"}]
    points = plan_sweep(spec, _runner(), tmp_path / "out")
    ids = [p.id for p in points]
    assert len(set(ids)) == 4 and all(len(i) == 11 and i.startswith("p") for i in ids)
    # the id hashes the point's inputs: the merged values (shared ones included), not their
    # order or the file; the device; the code and the notebook (tests/test_faults.py, item 6)
    runner = _runner()
    inputs = runner.inputs(points[1].plan)
    assert inputs["parameters"]["label"] == "b" and inputs["parameters"]["n"] == 2
    assert inputs["parameters"]["scale"] == 0.5 and inputs["device"] in ("cpu", "cuda")
    assert ids[1] == point_id(inputs)
    assert ids[1] == point_id(dict(reversed(list(inputs.items()))))
    assert ids[1] != point_id({**inputs, "parameters": {**inputs["parameters"], "n": 8}})
    assert ids[1] != point_id({**inputs, "profile": "default"})
    assert points[3].output_dir == tmp_path / "out" / "g" / ids[3]
    assert points[3].plan.parameters["scale"] == 2.0 and points[3].plan.parameters["n"] == 2
    assert task_resources(points) is None
    gpu = plan_sweep(spec, _runner(), tmp_path / "out", device="cuda")
    assert task_resources(gpu) == {"GPU": 1}


@pytest.mark.parametrize("spec, message", [
    ({"study": "fx2_ok", "grid": {"n": [1]}, "points": [{"n": 2}]}, "exactly one of"),
    ({"study": "fx2_ok"}, "exactly one of"),
    ({"study": "fx2_ok", "grid": {"n": 3}}, "must be a non-empty list"),
    ({"study": "fx2_ok", "grids": {"n": [1]}}, "unknown key(s) 'grids'"),
    ({"grid": {"n": [1]}}, "'study' must name a study"),
    ({"study": "fx2_ok", "points": [{"n": 1}, {"n": 1}]}, "have the same overrides"),
    ({"study": "fx2_ok", "points": [{"n": 1}, 3]}, "point 1 must be a mapping"),
])
def test_malformed_sweep_files_are_rejected(tmp_path, spec, message):
    with pytest.raises(ValidationError) as err:
        load_sweep(_write_sweep(tmp_path / "bad.yaml", spec))
    assert message in str(err.value)


def test_invalid_grid_key_is_rejected_before_submission(tmp_path, monkeypatch, capsys):
    import distributed

    def no_cluster(*args, **kwargs):  # pragma: no cover - reaching it is the failure
        raise AssertionError("a cluster was started before validation")

    monkeypatch.setattr(distributed, "LocalCluster", no_cluster)
    monkeypatch.setattr(distributed, "Client", no_cluster)
    out = tmp_path / "out"
    f = _write_sweep(tmp_path / "bad.yaml", {"study": "fx2_ok", "grid": {"scael": [1.0, 2.0]}})
    rc = main(["sweep", "--file", str(f), "--executor", "dask", "--notebooks-dir",
               str(FIXTURES_DIR), "--output-root", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "grid: unknown parameter 'scael' for study 'fx2_ok'" in err
    assert "valid parameters: device, seeds, n, scale" in err
    # a value of the wrong type is caught too, naming the point
    f = _write_sweep(tmp_path / "bad2.yaml", {"study": "fx2_ok", "grid": {"n": [2, "many"]}})
    rc = main(["sweep", "--file", str(f), "--executor", "dask", "--notebooks-dir",
               str(FIXTURES_DIR), "--output-root", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "point 1 (n=\"many\")" in err and "expects int" in err
    assert not out.exists()


def test_example_sweep_file_is_valid():
    spec = load_sweep(paths.PARAMS_DIR / "sweeps" / "taylor_seeds_smoke.yaml")
    assert spec.study == "06_taylor_pruning" and spec.profile == "smoke"
    assert [p["seeds"] for p in spec.points] == [[0], [1], [2], [3], [4], [5]]
    if not (paths.NOTEBOOKS_DIR / "06_taylor_pruning.ipynb").exists():
        pytest.skip("notebooks/06_taylor_pruning.ipynb not written yet")
    assert len(plan_sweep(spec, Runner(log=None))) == 6


# ----------------------------------------------------------------------------- running


def _expected_mean(scale: float, n: int, seeds: list[int]) -> float:
    """What fx2_ok's `mean_value` metric must be, computed independently."""
    return float(np.mean([scale * (1 + np.random.default_rng(s).random(n)).mean()
                          for s in seeds]))


def test_dask_sweep_retries_records_failures_and_resumes(tmp_path, capsys):
    marker = tmp_path / "failed_once.txt"
    f = _write_sweep(tmp_path / "fx_sweep.yaml", {
        "study": "fx2_ok", "profile": "smoke", "device": "cpu",
        "set": {"seeds": [0, 1, 2], "n": 4},
        "points": [
            {"scale": 0.4},                                       # ok, claim not reproduced
            {"scale": 2.0},                                       # ok, claim reproduced
            {"scale": 1.5, "fail_once_marker": str(marker)},      # fails once, retry passes
            {"scale": 3.0, "fail": True},                         # fails twice: recorded
        ],
        "metric": "mean_value"})
    spec = load_sweep(f)
    out = tmp_path / "sweeps"
    points = plan_sweep(spec, _runner(), out)
    run = run_sweep(spec, points, executor="dask", workers=2, processes=False,
                    render_html=False, log=None)
    by_scale = {r.overrides["scale"]: r for r in run.results}
    errors = [r.error for r in run.results]
    assert [r.status for r in run.results] == ["ok", "ok", "ok", "failed"], errors
    assert [r.attempts for r in run.results] == [1, 1, 2, 2], errors
    assert marker.exists()
    assert by_scale[3.0].error == "RuntimeError: fixture asked to fail"
    assert (by_scale[0.4].n_reproduced, by_scale[2.0].n_reproduced) == (0, 1)
    for p in points:
        res = json.loads((p.output_dir / "results.json").read_text())
        info = json.loads((p.output_dir / "point.json").read_text())
        assert info["id"] == p.id and info["overrides"] == p.overrides
        assert res["params"]["output_dir"] == str(p.output_dir)
        if p.overrides.get("fail"):
            assert res["status"] == "failed" and "fixture asked to fail" in res["error"]
        else:
            assert res["status"] == "ok"
            assert res["metrics"]["mean_value"] == pytest.approx(
                _expected_mean(p.overrides["scale"], 4, [0, 1, 2]), rel=1e-12)
    manifest = json.loads((out / spec.name / "sweep.json").read_text())
    assert [pt["status"] for pt in manifest["points"]] == ["ok", "ok", "ok", "failed"]
    assert temp_leftovers(out) == []

    # rerun through the CLI (local executor): finished points are skipped, untouched
    stamps = {p.id: (p.output_dir / "results.json").stat().st_mtime_ns for p in points}
    rc = main(["sweep", "--file", str(f), "--notebooks-dir", str(FIXTURES_DIR),
               "--output-root", str(out)])
    assert rc == 1  # the forced failure fails again
    again = json.loads((out / spec.name / "sweep.json").read_text())
    assert [pt["status"] for pt in again["points"]] == ["skipped", "skipped", "skipped",
                                                        "failed"]
    for p in points[:3]:
        assert (p.output_dir / "results.json").stat().st_mtime_ns == stamps[p.id]
    assert "3 already ok and skipped, 1 to run" in capsys.readouterr().err

    # sweep-report: CSV + Markdown + figure of the chosen metric
    files = write_sweep_report(spec, out, runner=_runner())
    with open(files["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "failed"]
    assert [r["scale"] for r in rows] == ["0.4", "2.0", "1.5", "3.0"]
    assert [r["attempts"] for r in rows] == ["1", "1", "2", "2"]
    assert float(rows[1]["metric:mean_value"]) == pytest.approx(_expected_mean(2.0, 4, [0, 1, 2]))
    assert rows[0]["claim:mean_at_least_one"] == "not reproduced"
    assert rows[1]["claim:mean_at_least_one"] == "reproduced"
    assert rows[3]["metric:mean_value"] == ""
    md = files["markdown"].read_text()
    assert "4 points: 1 failed, 3 ok" in md and "![mean_value by scale](mean_value.png)" in md
    assert files["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValidationError, match="recorded metrics: mean_value, n_values"):
        write_sweep_report(spec, out, metric="accuracy", runner=_runner())


class _Gate:
    """Events shared by the Ctrl-C test and its point function (module level: Dask pickles the
    task function, which then refers to these by name instead of carrying locks)."""

    lock = threading.Lock()
    started: list[str] = []
    two_started = threading.Event()
    stopping = threading.Event()
    cancelled = threading.Event()
    release = threading.Event()

    @classmethod
    def reset(cls) -> None:
        cls.started.clear()
        for ev in (cls.two_started, cls.stopping, cls.cancelled, cls.release):
            ev.clear()


def _blocked_point(task):
    """Stands in for a notebook execution: blocks until the sweep has cancelled the rest."""
    with _Gate.lock:
        _Gate.started.append(task["id"])
        if len(_Gate.started) == 2:
            _Gate.two_started.set()
    # a hang guard only: the test sets `release` long before this could run out
    assert _Gate.release.wait(timeout=120), "the sweep never cancelled its outstanding points"
    return {"id": task["id"], "overrides": task["overrides"], "status": "ok",
            "attempts": 1, "runtime_s": 0.0}


def test_ctrl_c_cancels_outstanding_points(tmp_path, monkeypatch):
    """SIGINT while waiting on Dask: tasks not yet started never start; all are recorded.

    No sleeps and no deadlines: the order of events is forced by the test. Each point blocks
    until the sweep has cancelled the outstanding tasks, so neither a slow nor a fast machine
    can let a point finish before the interrupt, or a queued point start after it.
    """
    import distributed

    f = _write_sweep(tmp_path / "cc.yaml", {"study": "fx2_ok", "device": "cpu",
                                           "grid": {"n": [1, 2, 3, 4]}})
    spec = load_sweep(f)
    points = plan_sweep(spec, _runner(), tmp_path / "out")
    _Gate.reset()
    real_cancel = distributed.Client.cancel

    def cancel_then_release(self, *args, **kwargs):  # returns once the scheduler has cancelled
        out = real_cancel(self, *args, **kwargs)
        _Gate.cancelled.set()
        _Gate.release.set()
        return out

    monkeypatch.setattr(distributed.Client, "cancel", cancel_then_release)

    real_set = distributed.Event.set

    def note_stop(self, *args, **kwargs):  # the sweep's first act on a KeyboardInterrupt
        _Gate.stopping.set()
        return real_set(self, *args, **kwargs)

    monkeypatch.setattr(distributed.Event, "set", note_stop)

    def interrupt_when_two_started():
        _Gate.two_started.wait()
        # Sent to the process, as a real Ctrl-C is. Sent again only if the sweep has not
        # reacted: Python drops a KeyboardInterrupt that lands in a finaliser, and a user
        # would then press Ctrl-C again.
        for _ in range(60):
            os.kill(os.getpid(), signal.SIGINT)
            if _Gate.stopping.wait(timeout=1.0):
                return

    # A process started in the background by a shell without job control (make test run from
    # a script, CI) inherits SIGINT *ignored*, and Python then installs no handler: the
    # interrupt would never arrive. Install Python's own handler for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_when_two_started, daemon=True).start()
    try:
        run = run_sweep(spec, points, executor="dask", workers=2, processes=False,
                        point_fn=_blocked_point, log=None)
    finally:
        _Gate.release.set()  # never leave a worker thread blocked, whatever happened above
        signal.signal(signal.SIGINT, previous)
    assert _Gate.cancelled.is_set() and run.interrupted
    # the cluster is closed when run_sweep returns: no queued task can start any more
    assert len(_Gate.started) == 2
    assert [r.status for r in run.results] == ["cancelled"] * 4
    manifest = json.loads((tmp_path / "out" / "cc" / "sweep.json").read_text())
    assert manifest["interrupted"] is True


def test_sweep_report_of_a_seed_sweep_from_results_files(tmp_path):
    """No execution: results.json files written by hand, one point never ran."""
    f = _write_sweep(tmp_path / "seeds.yaml", {"study": "fx2_ok", "profile": "smoke",
                                              "grid": {"seeds": [[0], [1], [2], [3]]}})
    spec = load_sweep(f)
    root = tmp_path / "sweeps"
    values = [0.5, 0.7, 0.6]
    points = plan_sweep(spec, _runner(), root)
    for seed, value in enumerate(values):  # seed 3 never ran
        d = points[seed].output_dir
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({
            "status": "ok", "runtime_s": 1.5, "metrics": {"acc": value},
            "claims": [{"id": "c", "verdict": "inconclusive"}]}))
        (d / "point.json").write_text(json.dumps({"attempts": 1}))
    files = write_sweep_report(spec, root, runner=_runner())  # metric: the first recorded
    with open(files["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["point", "seeds", "status", "attempts", "runtime_s", "metric:acc",
                             "claim:c"]
    assert [r["seeds"] for r in rows] == ["[0]", "[1]", "[2]", "[3]"]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "not run"]
    assert [r["metric:acc"] for r in rows] == ["0.5", "0.7", "0.6", ""]
    md = files["markdown"].read_text()
    assert "4 points: 1 not run, 3 ok." in md and "| [0] | ok | 1 | 1.5 | 0.5 | inconclusive |" in md
    assert files["figure"].name == "acc.png" and files["figure"].stat().st_size > 1000
    with pytest.raises(ValidationError, match="valid: seeds"):
        write_sweep_report(spec, root, x="scale", runner=_runner())
    assert temp_leftovers(root) == []


def test_threaded_points_after_a_main_thread_run_get_their_own_event_loops(tmp_path):
    """Regression: after this process ran a notebook, Dask threads shared its asyncio loop
    ("This event loop is already running"). fx1_raises fails fast, with its own error."""
    runner = Runner(notebooks_dir=FIXTURES_DIR, output_root=tmp_path / "run",
                    render_html=False, log=None)
    (plan,) = runner.plan("smoke", ["fx1_raises"])
    assert runner.execute(plan).error == "ZeroDivisionError: division by zero"
    f = _write_sweep(tmp_path / "loops.yaml", {"study": "fx1_raises",
                                              "grid": {"seeds": [[0], [1]]}})
    spec = load_sweep(f)
    run = run_sweep(spec, plan_sweep(spec, runner, tmp_path / "out"), executor="dask",
                    workers=2, processes=False, retries=0, render_html=False, log=None)
    assert [r.error for r in run.results] == ["ZeroDivisionError: division by zero"] * 2


def test_sweep_dry_run_lists_points_and_runs_nothing(tmp_path, capsys):
    f = _write_sweep(tmp_path / "dry.yaml", {"study": "fx2_ok", "device": "cpu",
                                            "grid": {"n": [1, 2]}})
    out = tmp_path / "out"
    rc = main(["sweep", "--file", str(f), "--notebooks-dir", str(FIXTURES_DIR), "--output-root",
               str(out), "--dry-run", "--device", "cuda:1"])
    text = capsys.readouterr().out
    assert rc == 0 and not out.exists()
    ids = [p.id for p in plan_sweep(load_sweep(f), _runner(), out, device="cuda:1")]
    for pid in ids:
        assert f"{pid}  n=" in text and "would run" in text
    assert "2 points of fx2_ok" in text
