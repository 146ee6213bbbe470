"""A run never loses a result: one test per numbered fault of the issue "A run never loses a
result" (staged outputs, signals, locks, corrupt caches, I/O errors, content-keyed sweep ids,
report validation, value checks, documented commands).

Each test runs the fixture studies ``fx2_ok`` and ``fx3_steps`` (tests/fixtures/, no training)
and asserts that nothing was lost: the previous results.json still parses and is unchanged, and
the next run succeeds with the same numbers. No test races the clock: an order of events is
forced with files the fixture waits for, and every wait has a hang guard far beyond any real
duration.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES_DIR, temp_leftovers, write_params

from studylib.__main__ import main
from studylib.cli import outputs
from studylib.cli.runner import Runner
from studylib.core import paths

FAULTS_DIR = FIXTURES_DIR / "faults"
HANG_GUARD_S = 600  # never a threshold: a real run ends long before


@dataclass
class Kit:
    """A private notebooks / params / outputs / cache layout for one test."""

    notebooks: Path
    params: Path
    out: Path
    cache: Path

    def args(self, *extra: str, command: str = "run") -> list[str]:
        base = [command, "--notebooks-dir", str(self.notebooks), "--params-dir",
                str(self.params), "--output-root", str(self.out)]
        if command == "run":
            base += ["--cache-dir", str(self.cache), "--device", "cpu"]
        return base + list(extra)

    def folder(self, study: str, profile: str = "smoke") -> Path:
        return self.out / profile / study


@pytest.fixture
def kit(tmp_path) -> Kit:
    nb = tmp_path / "notebooks"
    nb.mkdir()
    shutil.copy(FIXTURES_DIR / "fx2_ok.ipynb", nb)
    shutil.copy(FAULTS_DIR / "fx3_steps.ipynb", nb)
    params = tmp_path / "params"
    write_params(params, "fx2_ok", "default", {"seeds": [0, 1], "scale": 2.0})
    write_params(params, "fx3_steps", "default", {"seeds": [0, 1]})
    return Kit(nb, params, tmp_path / "out", tmp_path / "cache")


def snapshot(folder: Path) -> dict[str, bytes]:
    """The bytes of a finished run's files (results, notebook, figures), hidden files and
    ``failed/`` excluded."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") or part == "failed"
                                       for part in p.relative_to(folder).parts)
            and p.name != "run.json"}


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def assert_same_numbers(a: dict, b: dict) -> None:
    assert a["status"] == b["status"] == "ok"
    assert a["seeds"] == b["seeds"]
    assert a["metrics"].keys() == b["metrics"].keys()
    for k in a["metrics"]:
        assert a["metrics"][k] == pytest.approx(b["metrics"][k], rel=1e-9, abs=1e-12)
    assert [c["verdict"] for c in a["claims"]] == [c["verdict"] for c in b["claims"]]


def assert_clean(folder: Path) -> None:
    """No staging folder, lock, swap leftovers or unfinished atomic writes."""
    assert not (folder / outputs.STAGING_NAME).exists()
    assert not (folder / outputs.LOCK_NAME).exists()
    assert not list(folder.glob(".trash-*"))
    assert temp_leftovers(folder) == []


def good_run(kit: Kit, capsys, study: str = "fx2_ok", *extra: str) -> tuple[dict, dict]:
    rc = main(kit.args("--study", study, "--profile", "smoke", *extra))
    err = capsys.readouterr().err
    assert rc == 0, err
    folder = kit.folder(study)
    return results(folder), snapshot(folder)


# ----------------------------------------------------------------------------- 1. stage, then swap


def test_1_a_failed_rerun_keeps_the_last_good_results(kit, capsys):
    first, before = good_run(kit, capsys)
    folder = kit.folder("fx2_ok")
    rc = main(kit.args("--study", "fx2_ok", "--profile", "smoke", "--set", "fail=true"))
    assert rc == 1
    assert snapshot(folder) == before, "the failed rerun changed the last good results"
    failed = json.loads((folder / "failed" / "results.json").read_text())
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: fixture asked to fail"
    assert (folder / "failed" / "fx2_ok.ipynb").exists()
    report = (kit.out / "smoke" / "REPORT.md").read_text()
    assert "failed (last good results kept)" in report and "fixture asked to fail" in report
    assert_clean(folder)

    import torch

    if not torch.cuda.is_available():  # the example: --device cuda on a CPU machine
        args = kit.args("--study", "fx2_ok", "--profile", "smoke")
        rc = main(args[:args.index("--device")] + args[args.index("--device") + 2:]
                  + ["--device", "cuda"])
        assert rc == 1 and snapshot(folder) == before
        failed = json.loads((folder / "failed" / "results.json").read_text())
        assert "torch sees no CUDA device" in failed["error"]

    again, _ = good_run(kit, capsys)
    assert_same_numbers(again, first)
    assert not (folder / "failed").exists(), "a successful run removes the failed record"
    capsys.readouterr()


# ----------------------------------------------------------------------------- 2. signals


def _wait_for_file(path: Path, proc: subprocess.Popen) -> str:
    """Block until ``path`` holds text (the fixture wrote it), failing fast if ``proc`` died."""
    import time

    for _ in range(HANG_GUARD_S * 10):  # a hang guard, not a deadline
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended before the fixture started: {err}")
        time.sleep(0.1)
    raise AssertionError("the fixture never started")


def _wait_until_gone(pid: int) -> None:
    import time

    for _ in range(HANG_GUARD_S * 10):  # a hang guard, not a deadline
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"kernel {pid} still runs")


def _default_sigint() -> None:
    # A process started without job control inherits SIGINT ignored, and Python then installs
    # no handler; the run under test must see SIGINT as a user's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signame", [
    "SIGTERM",
    pytest.param("SIGHUP", marks=pytest.mark.slow),
    pytest.param("SIGINT", marks=pytest.mark.slow),
])
def test_2_a_signal_stops_the_kernel_and_records_the_failure(kit, capsys, tmp_path, signame):
    first, before = good_run(kit, capsys, "fx3_steps")
    folder = kit.folder("fx3_steps")
    started, go = tmp_path / "started", tmp_path / "go"
    env = dict(os.environ, STUDYLIB_PROGRESS="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "studylib", *kit.args(
            "--study", "fx3_steps", "--profile", "smoke", "--set", f"started_marker={started}",
            f"wait_for={go}")],
        cwd=paths.REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=_default_sigint)
    try:
        kernel_pid = int(_wait_for_file(started, proc))
        proc.send_signal(getattr(signal, signame))
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        go.write_text("go")  # never leave a kernel waiting, whatever happened above
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + getattr(signal, signame), err
    _wait_until_gone(kernel_pid)
    assert snapshot(folder) == before
    failed = json.loads((folder / "failed" / "results.json").read_text())
    assert failed["status"] == "failed"
    assert failed["error"] == f"Interrupted: run stopped by {signame}"
    assert f"interrupted ({signame})" in err
    report = (kit.out / "smoke" / "REPORT.md").read_text()
    assert f"run stopped by {signame}" in report
    assert_clean(folder)
    again, _ = good_run(kit, capsys, "fx3_steps")
    assert_same_numbers(again, first)


def _twin_of_fx3(notebooks: Path, name: str) -> None:
    """A copy of fx3_steps under another study id (its own output folder and results)."""
    text = (FAULTS_DIR / "fx3_steps.ipynb").read_text(encoding="utf-8")
    (notebooks / f"{name}.ipynb").write_text(text.replace("fx3_steps", name), encoding="utf-8")


def test_2_jobs_run_studies_at_once_and_a_signal_stops_every_one(kit, tmp_path):
    """``--jobs 2``: two studies run at the same time (each waits until both have started, so
    one at a time could not finish), the cores are shared (one torch thread each on two
    cores), outcomes are listed in plan order; SIGTERM then stops both running studies,
    each keeping its last good results beside a failed record."""
    _twin_of_fx3(kit.notebooks, "fx3_twin")
    studies = ("fx3_steps", "fx3_twin")
    go = tmp_path / "go"
    markers = {s: tmp_path / f"started-{s}" for s in studies}
    for s in studies:
        write_params(kit.params, s, "default", {"seeds": [0, 1], "started_marker": str(markers[s]),
                                                "wait_for": str(go)})
    env = {k: v for k, v in os.environ.items() if k != "STUDYLIB_THREADS"}
    env["STUDYLIB_PROGRESS"] = "0"

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "studylib", *kit.args("--study", *studies, "--profile",
                                                         "default", "--jobs", "2")],
            cwd=paths.REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, preexec_fn=_default_sigint)

    proc = start()
    try:
        pids = [int(_wait_for_file(markers[s], proc)) for s in studies]  # both run at once
        assert len(set(pids)) == 2
        go.write_text("go")
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        go.write_text("go")
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "2 at a time" in err
    share = str(max(1, len(os.sched_getaffinity(0)) // 2))
    first = {s: results(kit.folder(s, "default")) for s in studies}
    for s in studies:
        assert first[s]["status"] == "ok" and first[s]["environment"]["cpu_threads"] == share
    table = [line.split()[0] for line in out.splitlines() if line.startswith("fx3_")]
    assert table == list(studies)  # plan order, whichever finished first
    before = {s: snapshot(kit.folder(s, "default")) for s in studies}

    go.unlink()
    for m in markers.values():
        m.unlink()
    proc = start()
    try:
        pids = [int(_wait_for_file(markers[s], proc)) for s in studies]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        go.write_text("go")
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    for pid in pids:
        _wait_until_gone(pid)
    for s in studies:
        folder = kit.folder(s, "default")
        assert snapshot(folder) == before[s]
        failed = json.loads((folder / "failed" / "results.json").read_text())
        assert failed["error"] == "Interrupted: run stopped by SIGTERM"
        assert_clean(folder)
    assert "interrupted (SIGTERM)" in err


# ----------------------------------------------------------------------------- 3. corrupt caches


def test_3_a_corrupt_cache_entry_is_rebuilt_and_said_on_the_terminal(kit, capsys):
    first, _ = good_run(kit, capsys, "fx3_steps", "--set", "use_cache=true")
    (entry,) = (kit.cache / "fx3").glob("*.pt")  # under --cache-dir, not outputs/cache
    record = outputs.read_run_record(kit.folder("fx3_steps"))
    assert [(e["what"], e["hit"]) for e in record["cache"]] == [("fixture entry", False)]
    entry.write_bytes(b"truncated")
    rc = main(kit.args("--study", "fx3_steps", "--profile", "smoke", "--set", "use_cache=true"))
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "cache: discarding unreadable fixture entry" in err and "rebuilding it" in err
    assert "weights_only=False" not in err
    again = results(kit.folder("fx3_steps"))
    assert_same_numbers(again, first)
    import torch

    assert "values" in torch.load(entry, weights_only=True)  # rewritten, readable
    # a third run reads it
    good_run(kit, capsys, "fx3_steps", "--set", "use_cache=true")
    record = outputs.read_run_record(kit.folder("fx3_steps"))
    assert [e["hit"] for e in record["cache"]] == [True]


class _Split:
    """A data split (``x``, ``y``); pickled whole it is a foreign object to torch's loader."""

    def __init__(self, x, y):
        self.x, self.y = x, y


def test_3_the_checkpoint_cache_says_so_on_the_runners_terminal(tmp_path, monkeypatch):
    """training.fit through the cache helper: the discard reaches the event channel (which
    the runner prints), not only the notebook, and the model is trained again, identically."""
    import torch

    from studylib.core.runtime import EVENTS_ENV
    from studylib.models import build_model
    from studylib.training import TrainConfig, fit

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 64, generator=g), torch.randint(0, 2, (40,), generator=g)

    data, cfg = _Split(x, y), TrainConfig(epochs=1, batch_size=16)
    m1 = fit(build_model("mlp", in_features=64, num_classes=2, seed=0), data, cfg, seed=0,
             cache_dir=tmp_path, progress=False)
    (ckpt,) = tmp_path.glob("*.pt")
    # a foreign pickle: torch's weights-only loader refuses it (and would advise an unsafe load)
    torch.save({"state_dict": {}, "extra": _Split(x, y)}, ckpt)
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(EVENTS_ENV, str(events))
    with pytest.warns(UserWarning, match="discarding unreadable checkpoint"):
        m2 = fit(build_model("mlp", in_features=64, num_classes=2, seed=0), data, cfg, seed=0,
                 cache_dir=tmp_path, progress=False)
    notices = [json.loads(line) for line in events.read_text().splitlines()]
    texts = [e["text"] for e in notices if e["event"] == "notice"]
    assert len(texts) == 1 and "rebuilding it" in texts[0]
    assert "weights_only=False" not in texts[0] and "weights-only loader" in texts[0]
    assert not m2.from_cache
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.allclose(a, b)


def test_3_the_cache_helper_reads_rebuilds_and_never_fails(tmp_path, monkeypatch):
    """studylib.core.cache on its own: a hit, a miss, a foreign file, a wrong layout, a
    cache that cannot be written, and the cache switched off."""
    import torch

    from studylib.core import cache
    from studylib.core.runtime import EVENTS_ENV

    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(EVENTS_ENV, str(events))
    path = tmp_path / "c" / "entry.pt"
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(3.0)}

    def has_w(obj):
        return "w" in obj

    value, hit = cache.load_or_build(path, build, what="toy entry", check=has_w)
    assert not hit and calls == [1] and path.exists()
    value, hit = cache.load_or_build(path, build, what="toy entry", check=has_w)
    assert hit and calls == [1] and torch.equal(value["w"], torch.arange(3.0))
    for bad in (b"\x00garbage", None):
        if bad is None:
            torch.save({"other": 1}, path)  # readable, but not this cache's layout
        else:
            path.write_bytes(bad)
        with pytest.warns(UserWarning, match="discarding unreadable toy entry"):
            value, hit = cache.load_or_build(path, build, what="toy entry", check=has_w)
        assert not hit and "w" in value and path.exists()
    assert len(calls) == 3
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert kinds.count("notice") == 2 and kinds.count("cache") == 4  # 3 writes, 1 hit
    # a cache that cannot be written costs a rebuild, never the study
    blocker = tmp_path / "file"
    blocker.write_text("x")
    value, hit = cache.load_or_build(blocker / "sub" / "e.pt", build, what="toy entry")
    assert not hit and "w" in value
    assert "could not write toy entry" in events.read_text().splitlines()[-1]
    value, hit = cache.load_or_build(tmp_path / "off.pt", build, enabled=False)
    assert not hit and not (tmp_path / "off.pt").exists()


# ----------------------------------------------------------------------------- 4. one run per folder


def test_4_a_second_run_into_a_held_folder_exits_2_naming_the_holder(kit, capsys, tmp_path):
    first, before = good_run(kit, capsys)
    folder = kit.folder("fx2_ok")
    with outputs.FolderLock(folder):
        rc = main(kit.args("--study", "fx2_ok", "--profile", "smoke"))
        err = capsys.readouterr().err
    assert rc == 2
    assert f"is in use by another run: pid {os.getpid()} on {socket.gethostname()}" in err
    assert snapshot(folder) == before

    # a lock left behind by a process that died is taken over with a warning
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (folder / outputs.LOCK_NAME).write_text(json.dumps(
        {"pid": int(dead.stdout), "host": socket.gethostname(), "started": "earlier",
         "command": "python -m studylib run"}))
    rc = main(kit.args("--study", "fx2_ok", "--profile", "smoke"))
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "taking over the stale lock" in err and "is no longer running" in err
    assert_same_numbers(results(folder), first)
    assert_clean(folder)

    # a sweep locks its folder too
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"study": "fx2_ok", "grid": {"n": [2]}}))
    with outputs.FolderLock(kit.out / "sweeps" / "s"):
        rc = main(["sweep", "--file", str(sweep), "--notebooks-dir", str(kit.notebooks),
                   "--output-root", str(kit.out / "sweeps")])
    assert rc == 2 and "is in use by another run" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 5. I/O errors


def test_5_an_io_error_fails_that_study_with_a_record_and_the_others_run(kit, capsys,
                                                                        monkeypatch, tmp_path):
    rc = main(kit.args("--profile", "smoke"))
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    ok2, before2 = results(kit.folder("fx2_ok")), snapshot(kit.folder("fx2_ok"))
    ok3 = results(kit.folder("fx3_steps"))
    real_swap = outputs.swap_in

    def full_disk_for_fx2(staging, folder, **kwargs):
        if folder.name == "fx2_ok":
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / "results.json"))
        return real_swap(staging, folder, **kwargs)

    monkeypatch.setattr(outputs, "swap_in", full_disk_for_fx2)
    rc = main(kit.args("--profile", "smoke", "--set", "n=4"))
    err = capsys.readouterr().err
    assert rc == 1
    assert "[fx2_ok] failed: I/O error: [Errno 28] No space left on device" in err
    assert snapshot(kit.folder("fx2_ok")) == before2
    failed = json.loads((kit.folder("fx2_ok") / "failed" / "results.json").read_text())
    assert failed["status"] == "failed" and "No space left on device" in failed["error"]
    assert results(kit.folder("fx3_steps"))["params"]["n"] == 4, "the next study must run"
    assert "failed (last good results kept)" in (kit.out / "smoke" / "REPORT.md").read_text()
    assert_clean(kit.folder("fx2_ok"))
    monkeypatch.setattr(outputs, "swap_in", real_swap)

    # folders that cannot be written stop the run before anything executes
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for flag, value in (("--output-root", blocker / "out"), ("--cache-dir", blocker / "c")):
        args = kit.args("--profile", "smoke")
        args[args.index(flag) + 1] = str(value)
        rc = main(args)
        err = capsys.readouterr().err
        assert rc == 2 and "cannot be written" in err and str(blocker) in err
    assert_same_numbers(results(kit.folder("fx2_ok")), ok2)

    rc = main(kit.args("--study", "fx2_ok", "--profile", "smoke"))
    assert rc == 0, capsys.readouterr().err
    assert_same_numbers(results(kit.folder("fx2_ok")), ok2)
    assert not (kit.folder("fx2_ok") / "failed").exists()
    assert results(kit.folder("fx3_steps"))["seeds"] == ok3["seeds"]


# ----------------------------------------------------------------------------- 6. sweep point ids


def test_6_sweep_point_ids_follow_parameters_device_notebook_and_code(kit, capsys, monkeypatch,
                                                                     tmp_path):
    from studylib.cli.sweep import load_sweep, plan_sweep, run_sweep
    from studylib.core import io

    f = tmp_path / "fx.yaml"
    f.write_text(yaml.safe_dump({"study": "fx2_ok", "profile": "default", "device": "cpu",
                                 "grid": {"n": [3]}}))
    spec = load_sweep(f)
    runner = Runner(notebooks_dir=kit.notebooks, params_dir=kit.params, log=None)
    root = tmp_path / "sweeps"

    def the_id(**kw) -> str:
        return plan_sweep(spec, kw.pop("runner", runner), root, **kw)[0].id

    base = the_id()
    assert the_id(device="cuda") != base
    monkeypatch.setattr(io, "results_digest", lambda: "0" * 64)
    assert the_id() != base
    monkeypatch.undo()
    assert the_id() == base

    # a run, then an edit of the profile YAML: the point runs again; the old one is kept
    (point,) = plan_sweep(spec, runner, root)
    run = run_sweep(spec, [point], render_html=False, log=None)
    assert [r.status for r in run.results] == ["ok"]
    old = results(point.output_dir)
    write_params(kit.params, "fx2_ok", "default", {"seeds": [0, 1], "scale": 3.0})
    runner = Runner(notebooks_dir=kit.notebooks, params_dir=kit.params, log=None)
    (edited,) = plan_sweep(spec, runner, root)
    assert edited.id != point.id
    run = run_sweep(spec, [edited], render_html=False, log=None)
    assert [r.status for r in run.results] == ["ok"], "an edited profile must not be skipped"
    assert results(edited.output_dir)["params"]["scale"] == 3.0
    assert results(point.output_dir) == old

    # an edited notebook changes the id too
    nb = json.loads((kit.notebooks / "fx2_ok.ipynb").read_text())
    nb["cells"].append({"cell_type": "markdown", "id": "new-note", "metadata": {},
                        "source": "A new note."})
    (kit.notebooks / "fx2_ok.ipynb").write_text(json.dumps(nb))
    runner = Runner(notebooks_dir=kit.notebooks, params_dir=kit.params, log=None)
    assert the_id(runner=runner) != edited.id


# ----------------------------------------------------------------------------- 7. report


def test_7_report_checks_profile_names_and_every_results_file(kit, capsys, tmp_path):
    rc = main(kit.args("--profile", "smoke"))
    assert rc == 0, capsys.readouterr().err
    ok2 = results(kit.folder("fx2_ok"))
    report_args = ["--output-root", str(kit.out), "--notebooks-dir", str(kit.notebooks),
                   "--params-dir", str(kit.params)]
    for bad in ("../../x", "..", "a/b"):
        rc = main(["report", "--profile", bad, *report_args])
        assert rc == 2 and "invalid profile name" in capsys.readouterr().err
    assert not (tmp_path.parent / "x").exists() and not (kit.out.parent / "REPORT.md").exists()
    rc = main(["report", "--profile", "papr", *report_args])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown profile 'papr'" in err and "default, smoke" in err

    bad = results(kit.folder("fx3_steps"))
    bad["runtime_s"], bad["claims"] = "fast", "none"
    (kit.folder("fx3_steps") / "results.json").write_text(json.dumps(bad))
    rc = main(["report", "--profile", "smoke", *report_args])
    assert rc == 0
    report = (kit.out / "smoke" / "REPORT.md").read_text()
    assert "| [fx3_steps](#fx3_steps) | failed |" in report
    assert "results.json does not follow the contract" in report
    assert "| fx2_ok | `mean_at_least_one` | reproduced |" in report
    assert "failed or unfinished: fx3_steps" in capsys.readouterr().err
    # the end of a later run writes the report without crashing on it
    rc = main(kit.args("--study", "fx2_ok", "--profile", "smoke"))
    assert rc == 0, capsys.readouterr().err
    assert_same_numbers(results(kit.folder("fx2_ok")), ok2)


# ----------------------------------------------------------------------------- 8. values


@pytest.mark.parametrize("item, message", [
    ("seeds=[]", "parameter 'seeds' of 'fx3_steps' must be a non-empty list"),
    ("seeds=[a]", "must be integers >= 0"),
    ("seeds=[-1]", "must be integers >= 0"),
    ("n=-1", "parameter 'n' of 'fx3_steps' must be a count >= 1"),
    ("steps=0", "parameter 'steps' of 'fx3_steps' must be a count >= 1"),
    ("dropout=1.5", "parameter 'dropout' of 'fx3_steps' must be in [0, 1]"),
    ("dataset=imagenet", "must be a data set name of studylib.data.available()"),
])
def test_8_bad_values_exit_2_before_anything_runs(kit, capsys, item, message):
    rc = main(kit.args("--study", "fx3_steps", "--profile", "smoke", "--set", item))
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert not kit.out.exists(), "validation must fail before anything runs"


def test_8_duplicate_yaml_keys_and_devices(kit, capsys):
    first, before = good_run(kit, capsys)
    (kit.params / "fx2_ok" / "default.yaml").write_text("seeds: [0]\nscale: 2.0\nseeds: [1]\n")
    rc = main(kit.args("--study", "fx2_ok"))
    err = capsys.readouterr().err
    assert rc == 2 and "duplicate key 'seeds' (lines 1 and 3)" in err
    (kit.params / "fx2_ok" / "default.yaml").write_text("seeds: [0]\ndevice: cuda:x\n")
    rc = main(kit.args("--study", "fx2_ok"))
    assert rc == 2 and "device 'cuda:x' is not one of" in capsys.readouterr().err
    # cuda:N is a device on the command line as in YAML
    args = kit.args("--study", "fx2_ok", "--profile", "smoke", "--dry-run")
    args[args.index("--device") + 1] = "cuda:1"
    rc = main(args)
    out = capsys.readouterr().out
    assert rc == 0 and "device cuda:1" in out
    args[args.index("--device") + 1] = "gpu"
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and "cuda:N" in capsys.readouterr().err
    assert snapshot(kit.folder("fx2_ok")) == before


# ----------------------------------------------------------------------------- 9. documented commands


def test_9_the_readme_check_catches_the_commands_that_had_rotted():
    """The README-commands test (tests/test_readme_commands.py) rejects both faults the issue
    found, so they cannot come back; it checks every command of README.md itself."""
    from test_readme_commands import CommandError, check_command

    with pytest.raises(CommandError, match="unknown parameter 'epochs'"):
        check_command('make study STUDY="01_loss_visualization 06_taylor_pruning" '
                      'SET="seeds=[0,1] epochs=2"')
    with pytest.raises(CommandError, match="unknown parameter 'epochs'"):
        check_command(".venv/bin/python -m studylib run --profile default --study "
                      "06_taylor_pruning --set seeds=[0] --set epochs=2")
    with pytest.raises(CommandError, match="-p profile default"):
        check_command("papermill notebooks/06_taylor_pruning.ipynb out.ipynb "
                      "-f params/06_taylor_pruning/default.yaml")
