"""Tests of the benchmark harness (``benchmarks/``): timing statistics against a fake clock,
alternating comparisons, the report files, and that a mismatch fails the run.

The real comparisons train models and time them for minutes: they are marked slow.
"""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import __main__ as bench_main
from benchmarks import cases, harness
from benchmarks.harness import BenchmarkMismatch, CaseResult, Timing, write_reports


class FakeClock:
    """Stands in for ``time.perf_counter``: only ``advance`` moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(harness.time, "perf_counter", fake)
    return fake


def _sleeper(clock: FakeClock, durations: list[float], log: list[str] | None = None,
             name: str = ""):
    """A function whose successive calls 'take' the given durations on the fake clock."""
    it = iter(durations)

    def fn():
        if log is not None:
            log.append(name)
        clock.advance(next(it))

    return fn


def test_timing_of_skips_warmup_and_takes_median_min_max(clock):
    # the first call (100 s) is the warm-up and must not count
    t = Timing.of(_sleeper(clock, [100.0, 3.0, 1.0, 2.0, 5.0, 4.0]), reps=5)
    assert (t.median_s, t.min_s, t.max_s, t.reps) == (3.0, 1.0, 5.0, 5)
    # an even count: the median is the mean of the middle two
    t = Timing.of(_sleeper(clock, [0.0, 1.0, 2.0, 3.0, 10.0]), reps=4)
    assert t.median_s == 2.5 and t.max_s == 10.0


def test_timing_compare_alternates_and_keeps_order(clock):
    log: list[str] = []
    a = _sleeper(clock, [9.0, 1.0, 1.0, 1.0, 3.0, 1.0], log, "a")
    b = _sleeper(clock, [9.0, 2.0, 4.0, 6.0, 8.0, 10.0], log, "b")
    ta, tb = Timing.compare(a, b, reps=5)
    assert log == ["a", "b"] + ["a", "b"] * 5  # one warm-up each, then interleaved
    assert (ta.median_s, ta.min_s, ta.max_s) == (1.0, 1.0, 3.0)
    assert (tb.median_s, tb.min_s, tb.max_s) == (6.0, 2.0, 10.0)
    with pytest.raises(ValueError):
        Timing.compare(reps=5)
    with pytest.raises(ValueError):
        Timing.from_times([])


def _results() -> list[CaseResult]:
    fast = Timing(0.010, 0.009, 0.012, 5)
    slow = Timing(0.100, 0.090, 0.130, 5)
    return [
        CaseResult("speed", "a speed-up case", "max |diff| 1e-7", fast, slow, 10.0,
                   target=">= 5x", target_met=True, extra={"note": "x | y"}),
        CaseResult("overhead", "a time-ratio case", "same loss", slow, fast, 10.0,
                   ratio_kind="time ratio (ours / reference)", target="<= 1.15x",
                   target_met=False),
        CaseResult("broken", "broken", "MISMATCH", error="maps differ by 0.5"),
    ]


def test_readme_section_is_rewritten_from_bench_json(tmp_path):
    json_path, _ = write_reports(_results(), torch.device("cpu"), tmp_path / "bench")
    readme = tmp_path / "README.md"
    readme.write_text(f"# Kit\n\n{harness.README_START}\nold table\n{harness.README_END}\n\nmore\n")
    harness.update_readme(readme, json_path)
    text = readme.read_text()
    assert "old table" not in text and text.endswith(f"{harness.README_END}\n\nmore\n")
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows == ["| 1 | a speed-up case | 10 ms | 100 ms | 10.00x faster | >= 5x | yes |",
                    "| 2 | a time-ratio case | 100 ms | 10 ms | 10.00x time | <= 1.15x | **no** |",
                    "| 3 | broken | - | - | - | - | error |"]
    assert "(cpu, " in text
    harness.update_readme(readme, json_path)
    assert readme.read_text() == text  # idempotent


def test_write_reports_json_and_markdown(tmp_path):
    json_path, md_path = write_reports(_results(), torch.device("cpu"), tmp_path / "bench")
    payload = json.loads(json_path.read_text())
    assert payload["machine"]["device"] == "cpu" and "torch" in payload["machine"]
    names = [c["name"] for c in payload["cases"]]
    assert names == ["speed", "overhead", "broken"]
    first = payload["cases"][0]
    assert first["ours"] == {"median_s": 0.010, "min_s": 0.009, "max_s": 0.012, "reps": 5}
    assert first["ratio"] == 10.0 and first["target_met"] is True
    assert payload["cases"][2]["error"] == "maps differ by 0.5"

    md = md_path.read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 3
    # a '|' inside a cell is escaped, so every row has exactly the header's 8 columns
    n_cols = md.splitlines()[[i for i, line in enumerate(md.splitlines())
                              if line.startswith("| #")][0]].count(" | ") + 1
    assert all(r.replace("\\|", "").count(" | ") + 1 == n_cols for r in rows)
    assert "max \\|diff\\| 1e-7" in rows[0]
    assert "10.0 ms (9.0-12.0)" in rows[0] and "100.0 ms (90.0-130.0)" in rows[0]
    assert "10.00x faster" in rows[0] and "| yes |" in rows[0]
    assert "10.00x time" in rows[1] and "**no**" in rows[1]
    assert "**error**: maps differ by 0.5" in rows[2]
    assert "- `speed`: note = x | y" in md  # details list (not a table: no escaping needed)
    assert not list((tmp_path / "bench").glob("*.tmp"))


def _fake_case(result: CaseResult | Exception):
    def run(device: torch.device, reps: int) -> CaseResult:
        assert reps >= 5 and isinstance(device, torch.device)
        if isinstance(result, Exception):
            raise result
        return result
    return run


def test_mismatch_fails_the_run_and_is_reported(tmp_path, monkeypatch):
    ok = CaseResult("ok_case", "fine", "equal", Timing(1.0, 1.0, 1.0, 5),
                    Timing(2.0, 2.0, 2.0, 5), 2.0, target=">= 1x", target_met=True)
    monkeypatch.setattr(bench_main, "CASES", {
        "ok_case": _fake_case(ok),
        "bad_case": _fake_case(BenchmarkMismatch("maps differ by 0.25")),
    })
    out = tmp_path / "out"
    assert bench_main.main(["--out", str(out), "--reps", "5"]) == 1
    cases_json = {c["name"]: c for c in json.loads((out / "bench.json").read_text())["cases"]}
    assert cases_json["bad_case"]["equality"] == "MISMATCH"
    assert cases_json["bad_case"]["error"] == "maps differ by 0.25"
    assert cases_json["bad_case"]["ours"] is None  # no speed is printed for a mismatch
    assert cases_json["ok_case"]["error"] is None
    assert "**error**: maps differ by 0.25" in (out / "BENCH.md").read_text()
    # the passing case alone exits 0; an unexpected exception also fails the run
    assert bench_main.main(["--out", str(out), "--only", "ok_case"]) == 0
    monkeypatch.setitem(bench_main.CASES, "bad_case", _fake_case(RuntimeError("boom")))
    assert bench_main.main(["--out", str(out), "--only", "bad_case"]) == 1
    assert "RuntimeError: boom" in (out / "BENCH.md").read_text()


def test_fewer_than_five_reps_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        bench_main.main(["--out", str(tmp_path), "--reps", "3"])


def test_cases_run_in_the_issue_order():
    assert list(cases.CASES) == ["posterior_predictive", "occlusion_batched", "rise_batched",
                                 "pgd_vs_torchattacks", "psi_vs_accuracy_grid",
                                 "sequential_vs_chernoff", "taylor_overhead", "whole_study"]
    assert all(fn.__doc__ for fn in cases.CASES.values())


def _write_result(root, study: str, runtime_s: float, peak: float | None, status: str = "ok"):
    d = root / "default" / study
    d.mkdir(parents=True)
    obj = {"study": study, "status": status, "runtime_s": runtime_s}
    if peak is not None:
        obj["peak_rss_mib"] = peak
    (d / "results.json").write_text(json.dumps(obj))


def test_whole_study_reads_runtime_and_peak_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(cases.paths, "OUTPUTS_DIR", tmp_path)
    res = cases.whole_study(torch.device("cpu"), 5)
    assert res.target_met is None and "run make study" in res.extra["note"]

    _write_result(tmp_path, "01_a", 120.0, 900.0)
    _write_result(tmp_path, "02_b", 60.0, None)
    res = cases.whole_study(torch.device("cpu"), 5)
    assert res.ratio == pytest.approx(3.0)  # minutes
    assert res.extra["01_a"] == "120 s, 900 MiB peak"
    assert res.extra["02_b"] == "60 s, peak memory not recorded"
    assert res.extra["largest peak"] == "900 MiB"
    assert res.target_met is None  # only two studies, one without a memory figure

    for i in range(3, 7):
        _write_result(tmp_path, f"0{i}_x", 100.0, 1000.0)
    (tmp_path / "default" / "02_b" / "results.json").unlink()
    _write_result(tmp_path, "02_c", 60.0, 800.0)
    assert cases.whole_study(torch.device("cpu"), 5).target_met is True
    _write_result(tmp_path, "07_big", 10.0, 5000.0)  # over 4 GiB
    assert cases.whole_study(torch.device("cpu"), 5).target_met is False
    (tmp_path / "default" / "07_big" / "results.json").unlink()

    # 40 min summed, but run two at a time in 20 min of wall clock (run.json spans): met
    for study, start, end in [("01_a", 0, 20), ("02_c", 0, 10), ("03_x", 10, 20),
                              ("04_x", 0, 5), ("05_x", 5, 12), ("06_x", 12, 20)]:
        rt = (end - start) * 60.0
        (tmp_path / "default" / study / "results.json").write_text(json.dumps(
            {"study": study, "status": "ok", "runtime_s": rt, "peak_rss_mib": 1000.0}))
        (tmp_path / "default" / study / "run.json").write_text(json.dumps(
            {"started": f"2026-12-03T10:{start:02d}:00+00:00",
             "finished": f"2026-12-03T10:{end:02d}:00+00:00"}))
    res = cases.whole_study(torch.device("cpu"), 5)
    assert res.ratio == pytest.approx(20.0) and "3 studies at a time" in res.ratio_kind
    assert res.target_met is True and res.extra["sum"] == "60.0 min over 6 studies"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in cases.CASES if n != "whole_study"])
def test_real_case_runs_and_checks_equality(name):
    res = cases.CASES[name](torch.device("cpu"), 5)
    assert res.error is None and res.equality != "MISMATCH"
    if res.ours is not None:
        assert 0 < res.ours.min_s <= res.ours.median_s <= res.ours.max_s
        assert res.ratio is not None and res.ratio > 0
