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
