import json

import pytest

from studylib.cli.report import HEADLINE_END, HEADLINE_START, headline_markdown, update_readme


def _write(root, study, status, verdicts, runtime=None):
    d = root / "default" / study
    d.mkdir(parents=True)
    claims = [{"id": f"c{i}", "statement": "s", "verdict": v, "evidence": {}}
              for i, v in enumerate(verdicts)]
    obj = {"study": study, "profile": "default", "status": status, "claims": claims}
    if runtime is not None:
        obj.update(runtime_s=runtime, device="cpu")
    if status == "failed":
        obj["error"] = "ZeroDivisionError: division by zero"
    (d / "results.json").write_text(json.dumps(obj))


def test_headline_counts_verdicts_and_failures(tmp_path):
    _write(tmp_path, "01_a", "ok", ["reproduced", "not reproduced", "reproduced"])
    _write(tmp_path, "02_b", "failed", [])
    text = headline_markdown("default", tmp_path)
    assert "| `01_a` | ok | 2 of 3 claims reproduced; not reproduced: `c1`. |" in text
    assert "| `02_b` | failed | ZeroDivisionError: division by zero |" in text


def test_update_readme_replaces_only_between_markers(tmp_path):
    _write(tmp_path, "01_a", "ok", ["inconclusive"])
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{HEADLINE_START}\nold\n{HEADLINE_END}\n\nrest\n")
    update_readme(readme, "default", tmp_path)
    text = readme.read_text()
    assert text.startswith("# Title\n\n") and text.endswith(f"{HEADLINE_END}\n\nrest\n")
    assert "old" not in text and "0 of 1 claims reproduced; inconclusive: `c0`." in text
    update_readme(readme, "default", tmp_path)
    assert readme.read_text() == text  # idempotent
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        update_readme(readme, "default", tmp_path)


def test_headline_sums_the_study_times(tmp_path):
    _write(tmp_path, "01_a", "ok", ["reproduced"], runtime=90.0)
    _write(tmp_path, "02_b", "ok", ["reproduced"], runtime=210.0)
    assert headline_markdown("default", tmp_path).endswith(
        "Study time of that run: 5.0 min for 2 studies (device: cpu; set-up excluded).")


def _run_json(root, study, started, finished):
    (root / "default" / study / "run.json").write_text(json.dumps(
        {"started": f"2026-12-03T{started}+00:00", "finished": f"2026-12-03T{finished}+00:00"}))


def test_headline_gives_the_wall_clock_when_studies_ran_at_once(tmp_path):
    # 01 runs 10:00-10:05 and 02 10:01-10:04 at the same time, then 03 alone 10:05-10:06:
    # 6 minutes of wall clock, 2 at a time, against 5 + 3 + 1 = 9 minutes summed.
    for study, rt, (s, e) in [("01_a", 300.0, ("10:00:00", "10:05:00")),
                              ("02_b", 180.0, ("10:01:00", "10:04:00")),
                              ("03_c", 60.0, ("10:05:00", "10:06:00"))]:
        _write(tmp_path, study, "ok", ["reproduced"], runtime=rt)
        _run_json(tmp_path, study, s, e)
    assert headline_markdown("default", tmp_path).endswith(
        "Study time of that run: 6.0 min wall clock for 3 studies, up to 2 at a time "
        "(9.0 min summed over the studies; device: cpu; set-up excluded).")


def test_headline_sums_studies_that_ran_one_after_another_or_lack_their_times(tmp_path):
    # touching spans (one ends the second the next starts) are not concurrent
    _write(tmp_path, "01_a", "ok", ["reproduced"], runtime=60.0)
    _run_json(tmp_path, "01_a", "10:00:00", "10:01:00")
    _write(tmp_path, "02_b", "ok", ["reproduced"], runtime=120.0)
    _run_json(tmp_path, "02_b", "10:01:00", "10:03:00")
    assert headline_markdown("default", tmp_path).endswith("3.0 min for 2 studies "
                                                           "(device: cpu; set-up excluded).")
    # an overlapping study without run.json: the sum, not a wall clock that leaves it out
    _write(tmp_path, "03_c", "ok", ["reproduced"], runtime=60.0)
    _run_json(tmp_path, "02_b", "10:00:30", "10:02:30")
    (tmp_path / "default" / "03_c" / "run.json").write_text("not json")
    assert headline_markdown("default", tmp_path).endswith("4.0 min for 3 studies "
                                                           "(device: cpu; set-up excluded).")


def test_wall_clock_counts_busy_time_and_the_most_at_once():
    from datetime import datetime, timedelta

    from studylib.cli.report import wall_clock

    t0 = datetime(2026, 1, 1)
    m = lambda a, b: (t0 + timedelta(minutes=a), t0 + timedelta(minutes=b))  # noqa: E731
    assert wall_clock([]) == (0.0, 0)
    assert wall_clock([m(0, 10), m(2, 4), m(3, 12), m(20, 21)]) == (13 * 60.0, 3)
    assert wall_clock([m(0, 1), m(1, 2)]) == (120.0, 1)
