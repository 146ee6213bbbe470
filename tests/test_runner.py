"""Tests of the Papermill runner (``python -m studylib list | run``) on fixture notebooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES_DIR, temp_leftovers, write_params

from studylib.__main__ import main
from studylib.cli.runner import Runner, ValidationError, format_outcomes, parse_set, read_parameters
from studylib.core import paths

# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("item, expected", [
    ("seeds=[0,1]", ("seeds", [0, 1])),
    ("seeds=[0, 1]", ("seeds", [0, 1])),
    ("lr=1e-3", ("lr", 0.001)),
    ("lr=2.5E+2", ("lr", 250.0)),
    ("scale=2", ("scale", 2)),
    ("flag=true", ("flag", True)),
    ("name=abc", ("name", "abc")),
    ("name=", ("name", "")),
    ("cfg={a: 1, b: [2]}", ("cfg", {"a": 1, "b": [2]})),
    ("expr=a=b", ("expr", "a=b")),
])
def test_parse_set_reads_values_as_yaml(item, expected):
    assert parse_set(item) == expected


@pytest.mark.parametrize("item", ["seeds", "=3", "x=[1, 2"])
def test_parse_set_rejects_malformed_items(item):
    with pytest.raises(ValidationError, match="--set"):
        parse_set(item)


def test_read_parameters_infers_types_from_literal_defaults():
    params = read_parameters(FIXTURES_DIR / "fx2_ok.ipynb")
    assert list(params) == ["profile", "output_dir", "device", "seeds", "n", "scale", "label",
                            "fail", "fail_once_marker"]
    assert {n: p.type_name for n, p in params.items()} == {
        "profile": "str", "output_dir": "str", "device": "str", "seeds": "list", "n": "int",
        "scale": "float", "label": "str", "fail": "bool", "fail_once_marker": "str"}
    assert params["seeds"].default == [0, 1, 2]
    assert params["scale"].default == 1.0
    assert params["n"].help == "values drawn per seed"
    # an int is a valid float; a bool is not an int; a list is not a str
    assert params["scale"].accepts(3)
    assert not params["n"].accepts(True)
    assert not params["n"].accepts(2.5)
    assert not params["label"].accepts([1])
    assert params["seeds"].accepts([])


def test_read_parameters_none_default_accepts_anything_and_recovers_skipped_lines(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cell = new_code_cell('profile = "smoke"  # p\n'
                         'limit = None  # anything goes\n'
                         'ratio = 0.5  # a=b in a comment makes papermill skip this line\n')
    cell.metadata["tags"] = ["parameters"]
    nb_path = tmp_path / "nb.ipynb"
    nb = new_notebook(cells=[cell])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python"}
    nbformat.write(nb, nb_path)
    params = read_parameters(nb_path)
    assert params["limit"].type_name == "None"
    assert params["limit"].accepts("x") and params["limit"].accepts([1])
    assert params["ratio"].type_name == "float" and params["ratio"].default == 0.5
    assert params["ratio"].help == "a=b in a comment makes papermill skip this line"


def test_read_parameters_requires_a_parameters_cell(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb_path = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), nb_path)
    with pytest.raises(ValidationError, match="parameters"):
        read_parameters(nb_path)


# ----------------------------------------------------------------------------- validation


def _run_cli(capsys, *args):
    rc = main(list(args))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture
def cli_dirs(tmp_path, params_dir):
    out = tmp_path / "out"
    return ["--notebooks-dir", str(FIXTURES_DIR), "--params-dir", str(params_dir),
            "--output-root", str(out)], out


def test_unknown_parameter_exits_2_naming_it_and_the_valid_ones(capsys, cli_dirs):
    args, out = cli_dirs
    rc, _, err = _run_cli(capsys, "run", *args, "--study", "fx2_ok", "--set", "bogus=1")
    assert rc == 2
    assert "unknown parameter 'bogus'" in err
    assert "valid parameters: device, seeds, n, scale, label, fail, fail_once_marker" in err
    assert not out.exists(), "validation must fail before anything runs"


def test_wrong_type_exits_2_naming_parameter_and_type(capsys, cli_dirs):
    args, out = cli_dirs
    rc, _, err = _run_cli(capsys, "run", *args, "--study", "fx2_ok", "--set", "n=abc")
    assert rc == 2
    assert "parameter 'n'" in err and "expects int" in err and "got str 'abc'" in err
    rc, _, err = _run_cli(capsys, "run", *args, "--study", "fx2_ok", "--set", "seeds=0")
    assert rc == 2 and "parameter 'seeds'" in err and "expects list" in err
    assert not out.exists()
    # an int where a float is expected is fine (planning validates without running)
    (plan,) = Runner(notebooks_dir=FIXTURES_DIR).plan("smoke", ["fx2_ok"], sets=["scale=3"])
    assert plan.parameters["scale"] == 3


def test_unknown_profile_exits_2_listing_valid_profiles(capsys, cli_dirs):
    args, out = cli_dirs
    rc, _, err = _run_cli(capsys, "run", *args, "--profile", "papr", "--study", "fx2_ok")
    assert rc == 2
    assert "unknown profile 'papr' for study 'fx2_ok'" in err
    assert "valid profiles: smoke, default" in err
    assert not out.exists()


def test_unknown_study_exits_2_listing_valid_studies(capsys, cli_dirs):
    args, out = cli_dirs
    rc, _, err = _run_cli(capsys, "run", *args, "--study", "06_nope")
    assert rc == 2
    assert "unknown study '06_nope'; valid studies: fx1_raises, fx2_ok" in err
    assert not out.exists()


def test_bad_profile_yaml_is_rejected_before_any_study_runs(capsys, tmp_path, params_dir):
    # fx1_raises sorts first and is valid; fx2_ok's YAML has an unknown key: nothing may run.
    write_params(params_dir, "fx2_ok", "default", {"seeds": [0], "epochs": 3})
    out = tmp_path / "out"
    rc, _, err = _run_cli(capsys, "run", "--notebooks-dir", str(FIXTURES_DIR), "--params-dir",
                          str(params_dir), "--output-root", str(out))
    assert rc == 2
    assert "fx2_ok/default.yaml" in err and "unknown parameter 'epochs'" in err
    assert not out.exists()


@pytest.mark.parametrize("key", ["output_dir", "profile"])
def test_injected_names_cannot_be_overridden(tmp_path, params_dir, key):
    runner = Runner(notebooks_dir=FIXTURES_DIR, params_dir=params_dir, output_root=tmp_path)
    with pytest.raises(ValidationError, match=f"'{key}' is set by the runner"):
        runner.plan("smoke", studies=["fx2_ok"], sets=[f"{key}=x"])


def test_plan_merges_defaults_profile_and_set_in_that_order(tmp_path, params_dir):
    runner = Runner(notebooks_dir=FIXTURES_DIR, params_dir=params_dir,
                    output_root=paths.REPO_ROOT / "outputs" / "t")
    (plan,) = runner.plan("default", studies=["fx2_ok"], sets=["scale=5", "label=z"],
                          device="cpu")
    # profile gives seeds and scale=2.0; --set wins for scale
    assert plan.overrides == {"seeds": [0, 1], "scale": 5, "label": "z", "device": "cpu"}
    assert plan.parameters["profile"] == "default"
    # inside the repo the injected output_dir is relative (no machine paths in notebooks)
    assert plan.parameters["output_dir"] == "outputs/t/default/fx2_ok"
    assert plan.output_dir == paths.REPO_ROOT / "outputs" / "t" / "default" / "fx2_ok"
    assert plan.device == "cpu"
    # the smoke profile needs no YAML and uses the notebook's own device default
    (smoke,) = runner.plan("smoke", studies=["fx2_ok"])
    assert smoke.overrides == {} and smoke.device == "auto"


def test_list_shows_title_profiles_and_parameters(capsys, params_dir):
    rc, out, _ = _run_cli(capsys, "list", "--notebooks-dir", str(FIXTURES_DIR),
                          "--params-dir", str(params_dir))
    assert rc == 0
    assert "fx2_ok: Fixture study: seeded values through StudyContext" in out
    assert "profiles: smoke, default" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("scale "))
    assert line.split()[:3] == ["scale", "float", "1.0"] and "scale * (1 + U[0, 1))" in line


def test_cli_process_exits_with_code_2(tmp_path, params_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "studylib", "run", "--notebooks-dir", str(FIXTURES_DIR),
         "--params-dir", str(params_dir), "--output-root", str(tmp_path / "o"),
         "--study", "fx3_missing"],
        capture_output=True, text=True, cwd=paths.REPO_ROOT, timeout=900)  # a hang guard only
    assert proc.returncode == 2, proc.stderr
    assert "unknown study 'fx3_missing'; valid studies: fx1_raises, fx2_ok" in proc.stderr


# ----------------------------------------------------------------------------- execution


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """One ``run --profile default`` of both fixtures (fx1_raises first, and it raises)."""
    tmp = tmp_path_factory.mktemp("run")
    params = tmp / "params"
    write_params(params, "fx1_raises", "default", {"divisor": 0})
    write_params(params, "fx2_ok", "default", {"seeds": [0, 1], "scale": 2.0})
    out = tmp / "out"
    # a results.json that breaks the contract is not a good result to keep: a failing rerun
    # replaces it (a valid one would be kept beside the failure, see tests/test_faults.py)
    stale = out / "default" / "fx1_raises" / "results.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"status": "ok", "claims": []}))
    rc = main(["run", "--notebooks-dir", str(FIXTURES_DIR), "--params-dir", str(params),
               "--output-root", str(out), "--profile", "default", "--device", "cpu"])
    return rc, out / "default"


def test_failing_study_does_not_stop_the_next_and_run_exits_nonzero(default_run):
    rc, root = default_run
    assert rc == 1
    failed = json.loads((root / "fx1_raises" / "results.json").read_text())
    assert failed["status"] == "failed"
    assert failed["error"] == "ZeroDivisionError: division by zero"
    assert failed["error_detail"]["ename"] == "ZeroDivisionError"
    assert failed["study"] == "fx1_raises" and failed["profile"] == "default"
    assert failed["device"] == "cpu" and failed["params"]["divisor"] == 0
    assert failed["runtime_s"] > 0
    ok = json.loads((root / "fx2_ok" / "results.json").read_text())
    assert ok["status"] == "ok"
    assert ok["params"]["scale"] == 2.0 and ok["seeds"] == [0, 1]
    assert ok["params"]["profile"] == "default" and ok["device"] == "cpu"
    # scale 2 puts every value in [2, 4): the claim "mean >= 1" holds
    assert [c["verdict"] for c in ok["claims"]] == ["reproduced"]


def test_results_files_follow_the_contract(default_run):
    from studylib.core.results import validate_results

    _, root = default_run
    for study in ("fx1_raises", "fx2_ok"):
        validate_results(json.loads((root / study / "results.json").read_text()))


def test_partial_notebook_and_html_are_kept(default_run):
    import nbformat

    _, root = default_run
    nb = nbformat.read(str(root / "fx1_raises" / "fx1_raises.ipynb"), as_version=4)
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert "before the error\n" in texts
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert errors and errors[0].ename == "ZeroDivisionError"
    for study in ("fx1_raises", "fx2_ok"):
        html = (root / study / f"{study}.html").read_text()
        assert html.lstrip().lower().startswith("<!doctype html")
    assert (root / "fx2_ok" / "figures" / "per_seed_means.png").stat().st_size > 0


def test_report_lists_both_studies(default_run):
    _, root = default_run
    report = (root / "REPORT.md").read_text()
    assert "### fx1_raises" in report and "### fx2_ok" in report
    assert "ZeroDivisionError: division by zero" in report
    assert "| fx2_ok | `mean_at_least_one` | reproduced |" in report
    assert "[per_seed_means](fx2_ok/figures/per_seed_means.png)" in report


def test_run_leaves_no_temporary_files(default_run):
    _, root = default_run
    assert temp_leftovers(root) == []


def test_notebook_without_results_is_recorded_as_failed(tmp_path, params_dir):
    runner = Runner(notebooks_dir=FIXTURES_DIR, params_dir=params_dir, output_root=tmp_path,
                    render_html=False, log=None)
    (plan,) = runner.plan("smoke", studies=["fx1_raises"], sets=["divisor=1"])
    outcome = runner.execute(plan)
    assert outcome.status == "failed"
    assert "without writing results.json" in outcome.error
    saved = json.loads((tmp_path / "smoke" / "fx1_raises" / "results.json").read_text())
    assert saved["status"] == "failed" and saved["error_detail"]["ename"] == "MissingResults"
    assert "failed" in format_outcomes([outcome]).splitlines()[2]
    assert not (tmp_path / "smoke" / "fx1_raises" / "fx1_raises.html").exists()


def test_no_notebooks_means_nothing_to_run(capsys, tmp_path):
    empty = tmp_path / "nb"
    empty.mkdir()
    rc, _, err = _run_cli(capsys, "run", "--notebooks-dir", str(empty), "--output-root",
                          str(tmp_path / "o"))
    assert rc == 0 and "nothing to run" in err
    assert Runner(notebooks_dir=Path(empty)).studies() == []


def test_study_settings_from_params_fills_every_field_and_names_a_missing_one():
    import dataclasses

    from studylib.core.settings import StudySettings

    @dataclasses.dataclass(frozen=True)
    class Settings(StudySettings):
        epochs: int
        eps_values: tuple[float, ...]

    s = Settings.from_params({"epochs": 3, "eps_values": [0.1, 0.2], "profile": "smoke"})
    assert s == Settings(epochs=3, eps_values=(0.1, 0.2))
    grid = Settings.from_params({"epochs": 1, "eps_values": [[2, 2], [4, 2]]}).eps_values
    assert grid == ((2, 2), (4, 2)) and hash(grid)  # nested lists: nested tuples
    with pytest.raises(KeyError, match="eps_values"):
        Settings.from_params({"epochs": 3})


# ----------------------------------------------------------------------------- value constraints


def _all_notebooks():
    return sorted(paths.NOTEBOOKS_DIR.glob("*.ipynb")) + sorted(FIXTURES_DIR.rglob("*.ipynb"))


@pytest.mark.parametrize("notebook", _all_notebooks(), ids=lambda p: p.stem)
def test_constraints_accept_every_default_and_every_profile(notebook):
    """The derived constraints never reject what the kit itself uses: each notebook's defaults
    and each of its profile YAMLs."""
    from studylib.cli.parameters import load_yaml_mapping

    params = read_parameters(notebook)
    for p in params.values():
        assert p.violations(p.default) == [], (p.name, p.rule())
    runner = Runner(notebooks_dir=notebook.parent, log=None)
    for yml in sorted((paths.PARAMS_DIR / notebook.stem).glob("*.yaml")):
        runner.validate_overrides(notebook.stem, load_yaml_mapping(yml), source=str(yml))


def test_constraints_are_derived_from_names_defaults_and_comments():
    from studylib.cli.parameters import derive_constraints

    def rules(name, default, comment=""):
        return [c.description for c in derive_constraints(name, type(default).__name__,
                                                          default, comment)]

    assert rules("seeds", [0]) == ["a non-empty list", "integers >= 0"]
    assert rules("n_test", 200) == ["a count >= 1"]
    assert rules("rise_baseline_n", 100) == ["a count >= 1"]
    assert rules("acc_pgd_steps", [5, 10]) == ["counts >= 1", "integers"]
    assert rules("rescale_layer", 0) == []
    assert rules("data_seed", 0) == ["an integer >= 0"]
    assert rules("dropout_p", 0.25)[0] == "in [0, 1]"
    assert rules("map_rho_threshold", 0.8)[0] == "in [-1, 1]"
    assert rules("eps", 0.1, "L-inf radius (inputs in [0, 1])") == ["a finite number"]
    assert rules("head_init", "cnn_ref", "start at: cnn_ref (its head) | fresh") == [
        "one of cnn_ref, fresh"]
    assert rules("backend", "x", "a | b") == []  # the default is not a listed choice
    assert rules("dataset", "digits") == ["a data set name of studylib.data.available()"]
    assert rules("setups", {"a": {"dataset": "digits"}}) == [
        "every 'dataset' key a name of studylib.data.available()"]


def test_a_set_given_twice_is_an_error(tmp_path, params_dir):
    runner = Runner(notebooks_dir=FIXTURES_DIR, params_dir=params_dir, output_root=tmp_path)
    with pytest.raises(ValidationError, match="given twice"):
        runner.plan("smoke", ["fx2_ok"], sets=["n=2", "n=3"])


# ----------------------------------------------------------------------------- dry run, resume


def test_dry_run_shows_sources_and_runs_nothing(capsys, tmp_path, params_dir):
    out = tmp_path / "out"
    rc = main(["run", "--notebooks-dir", str(FIXTURES_DIR), "--params-dir", str(params_dir),
               "--output-root", str(out), "--study", "fx2_ok", "--set", "label=z",
               "--dry-run"])
    text = capsys.readouterr().out
    assert rc == 0 and not out.exists()
    rows = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("    ")}
    assert rows["seeds"].split()[-1].endswith("fx2_ok/default.yaml")
    assert rows["label"].split()[-1] == "--set" and rows["n"].split()[-1] == "notebook"
    assert rows["output_dir"].split()[-1] == "runner"
    assert "output folder:" in text and "(writable)" in text
    assert "--resume: run (no results.json yet)" in text


def test_resume_skips_a_study_whose_inputs_are_unchanged(capsys, tmp_path, params_dir):
    out = tmp_path / "out"
    args = ["run", "--notebooks-dir", str(FIXTURES_DIR), "--params-dir", str(params_dir),
            "--output-root", str(out), "--study", "fx2_ok", "--profile", "smoke",
            "--device", "cpu", "--set", "n=3"]
    assert main(args) == 0
    res = out / "smoke" / "fx2_ok" / "results.json"
    stamp = res.stat().st_mtime_ns
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "fx2_ok: skipped (results up to date" in err
    assert res.stat().st_mtime_ns == stamp
    assert main([*args, "--dry-run"]) == 0
    assert "--resume: skip" in capsys.readouterr().out
    # another value: it runs
    assert main([*args[:-1], "n=4", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "skipped" not in err and json.loads(res.read_text())["params"]["n"] == 4
    assert main([*args, "--dry-run"]) == 0
    assert "--resume: run (inputs changed since the last run: parameters n)" in \
        capsys.readouterr().out


# ----------------------------------------------------------------------------- progress


def test_progress_goes_to_the_terminal_not_into_the_notebook(capsys, tmp_path, monkeypatch):
    import nbformat

    monkeypatch.setenv("STUDYLIB_PROGRESS", "1")  # the kernels inherit it
    out = tmp_path / "out"
    rc = main(["run", "--notebooks-dir", str(FIXTURES_DIR / "faults"), "--output-root",
               str(out), "--study", "fx3_steps", "--profile", "smoke", "--device", "cpu",
               "--set", "steps=4"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "fx3_steps: cell 4/6 (Draw the values) done in" in err
    nb = nbformat.read(str(out / "smoke" / "fx3_steps" / "fx3_steps.ipynb"), as_version=4)
    streams = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if o.output_type == "stream" and o.name == "stderr"]
    assert streams == [], "progress bars must stay out of the executed notebook"
    html = (out / "smoke" / "fx3_steps" / "fx3_steps.html").read_text()
    assert "it/s]" not in html and "steps:" not in html


def test_strip_progress_outputs_keeps_other_stderr_text():
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from studylib.cli.progress import strip_progress_outputs

    bar = "\rtrain:  50%|#####     | 1/2 [00:01<00:01,  1.00it/s]\r" + " " * 40 + "\r"
    cell = new_code_cell("x", outputs=[
        new_output("stream", name="stderr", text=bar),
        new_output("stream", name="stderr", text="UserWarning: keep me\n" + bar),
        new_output("stream", name="stdout", text="10%|# printed on purpose\n")])
    nb = new_notebook(cells=[cell])
    assert strip_progress_outputs(nb) == 2
    assert [o.get("text") for o in nb.cells[0].outputs] == [
        "UserWarning: keep me\n", "10%|# printed on purpose\n"]


# ------------------------------------------------------------- dict overrides, data root


def test_merge_override_merges_mappings_recursively_and_replaces_the_rest():
    from studylib.cli.parameters import merge_override

    base = {"a": 1, "b": {"c": 2, "d": [1, 2]}}
    assert merge_override(base, {"b": {"d": [3]}, "e": 4}) == {"a": 1, "b": {"c": 2, "d": [3]},
                                                               "e": 4}
    assert base == {"a": 1, "b": {"c": 2, "d": [1, 2]}}  # not modified in place
    assert merge_override(base, [1]) == [1] and merge_override(3, {"x": 1}) == {"x": 1}


def test_set_merges_a_mapping_into_the_profiles_and_replace_replaces_it():
    runner = Runner(log=None)
    study = "02_mammogram_perturbation"
    (plan,) = runner.plan("paper", [study], sets=["data_kwargs={csv: b.csv}"])
    assert plan.parameters["data_kwargs"] == {"data_root": "mammograms", "csv": "b.csv",
                                              "resize": "resize"}
    (plan,) = runner.plan("paper", [study], replaces=["data_kwargs={csv: b.csv}"])
    assert plan.parameters["data_kwargs"] == {"csv": "b.csv"}
    # nested mappings merge too: one key of one setup of study 06
    (plan,) = runner.plan("paper", ["06_taylor_pruning"],
                          sets=["setups={resnet18_cifar10: {epochs: 1}}"])
    setup = plan.parameters["setups"]["resnet18_cifar10"]
    assert setup["epochs"] == 1 and setup["lr"] == 0.001 and setup["model"] == "resnet"
    assert setup["model_kwargs"]["widths"] == [64, 128, 256, 512]
    # the smoke profile merges into the notebook's own default
    (plan,) = runner.plan("smoke", ["06_taylor_pruning"], sets=["setups={}"])
    assert plan.parameters["setups"]  # an empty mapping changes nothing
    with pytest.raises(ValidationError, match="given twice"):
        runner.plan("paper", [study], sets=["seeds=[0]"], replaces=["seeds=[1]"])


def test_data_root_and_download_reach_the_kernels_and_the_inputs(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DOWNLOAD_ENV, raising=False)
    runner = Runner(log=None, data_root=tmp_path, download=True)
    env = runner._kernel_env(tmp_path / "events")
    assert env[paths.DATA_ENV] == str(tmp_path) and env[paths.DOWNLOAD_ENV] == "1"
    plain = Runner(log=None)
    assert paths.DOWNLOAD_ENV not in plain._kernel_env(tmp_path / "events")
    (plan,) = runner.plan("paper", ["04_saliency_baselines"])
    assert runner.inputs(plan)["data_root"] == str(tmp_path)
    assert "data_root" not in plain.inputs(plan)  # records of runs without it stay comparable
    assert f"data root: {tmp_path} (from --data-root)" in runner.describe(plan)
    from studylib.cli.__main__ import build_parser

    args = build_parser().parse_args(["run", "--data-root", "d", "--download", "--replace",
                                      "seeds=[0]"])
    assert (args.data_root, args.download, args.replace) == ("d", True, ["seeds=[0]"])


def test_the_cifar_command_of_study_01s_paper_profile_replaces_its_regimes():
    import shlex

    from studylib.cli.__main__ import build_parser

    text = (paths.PARAMS_DIR / "01_loss_visualization" / "paper.yaml").read_text()
    lines = [ln.lstrip("# ").rstrip() for ln in text.splitlines() if ln.startswith("#")]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("python -m studylib run"))
    command = " ".join(ln.rstrip("\\") for ln in lines[start:start + 4])
    args = build_parser().parse_args(shlex.split(command)[3:])
    (plan,) = Runner(log=None).plan(args.profile, args.study, sets=args.set,
                                    replaces=args.replace)
    regimes = plan.parameters["regimes"]
    assert regimes["pgd_small"] == {"kind": "pgd_at", "eps": 0.007843, "steps": 10}
    assert plan.parameters["architectures"]["small_cnn"] == {"width": 32, "hidden": 256}


def test_strict_determinism_is_off_by_default_and_on_when_asked(monkeypatch):
    import torch

    from studylib.core.runtime import DETERMINISM_ENV, set_deterministic
    monkeypatch.delenv(DETERMINISM_ENV, raising=False)
    try:
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        monkeypatch.setenv(DETERMINISM_ENV, "strict")
        set_deterministic(True)
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        set_deterministic(True, strict=False)
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        monkeypatch.delenv(DETERMINISM_ENV, raising=False)
        set_deterministic(True)


def test_resnet_pools_with_a_mean_that_matches_adaptive_average_pooling():
    import torch
    from torch import nn

    from studylib.models import SpatialMean
    x = torch.randn(3, 5, 7, 6, requires_grad=True)
    assert torch.allclose(SpatialMean()(x), nn.AdaptiveAvgPool2d(1)(x), atol=1e-6)
    SpatialMean()(x).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 1 / 42))


def test_study_context_banner_names_the_profile_its_source_and_the_seeds(tmp_path):
    from studylib.core.runtime import StudyContext

    smoke = StudyContext("06_x", "smoke", tmp_path / "a", "cpu", [0], {}).banner()
    assert "profile `smoke`" in smoke and "notebook's own defaults" in smoke and "[0]" in smoke
    default = StudyContext("06_x", "default", tmp_path / "b", "cpu", range(10), {}).banner()
    assert "params/06_x/default.yaml" in default and "10 seeds (0..9)" in default
    assert "embedded data" in default
    paper = StudyContext("06_x", "paper", tmp_path / "c", "cpu", [0, 1, 2], {}).banner()
    assert "data root" in paper and "[0, 1, 2]" in paper


def test_torch_threads_restores_and_cpu_workers_bounds_the_count():
    import torch

    from studylib.core.runtime import cpu_workers, torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    cpu = torch.device("cpu")
    assert cpu_workers(4, 3, cpu) == 3 and cpu_workers(2, 10, cpu) == 2
    assert 1 <= cpu_workers(0, 10, cpu) <= 10 and cpu_workers(0, 0, cpu) == 1
    assert cpu_workers(4, 10, torch.device("meta")) == 1


def test_cpus_env_caps_worker_pools_and_jobs_share_the_cores(monkeypatch, tmp_path):
    import torch

    from studylib.core.runtime import CPUS_ENV, available_cpus, cpu_workers

    cpu = torch.device("cpu")
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv(CPUS_ENV, raising=False)
    assert available_cpus() == cores and cpu_workers(4, 3, cpu) == 3  # no cap without it
    monkeypatch.setenv(CPUS_ENV, "1")
    assert available_cpus() == 1
    assert cpu_workers(0, 10, cpu) == 1 and cpu_workers(4, 10, cpu) == 1
    monkeypatch.setenv(CPUS_ENV, "0")
    with pytest.raises(ValueError, match=CPUS_ENV):
        available_cpus()
    monkeypatch.delenv(CPUS_ENV)
    monkeypatch.delenv("STUDYLIB_THREADS", raising=False)
    assert CPUS_ENV not in Runner(output_root=tmp_path)._kernel_env(tmp_path / "e")
    env = Runner(output_root=tmp_path, jobs=2)._kernel_env(tmp_path / "e")
    assert env[CPUS_ENV] == env["STUDYLIB_THREADS"] == str(max(1, cores // 2))
    monkeypatch.setenv("STUDYLIB_THREADS", "3")  # the user's own setting wins
    assert Runner(output_root=tmp_path, jobs=2)._kernel_env(tmp_path / "e")["STUDYLIB_THREADS"] == "3"
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValidationError):
            Runner(output_root=tmp_path, jobs=bad)


def test_the_final_table_gives_the_wall_clock_beside_the_summed_runtimes(tmp_path):
    from studylib.cli.runner import StudyOutcome, format_outcomes

    outs = [StudyOutcome("01_a", "ok", 600.0, tmp_path, 4, 3),
            StudyOutcome("02_b", "failed", 300.0, tmp_path, 0, 0)]
    table = format_outcomes(outs).splitlines()
    assert table[0].split() == ["study", "status", "runtime", "claims", "reproduced"]
    assert table[2].split() == ["01_a", "ok", "600.0", "s", "3/4"]
    assert "wall clock" not in "\n".join(table)
    last = format_outcomes(outs, wall_s=660.0, jobs=2).splitlines()[-1]
    assert last == "2 studies in 11.0 min wall clock, 2 at a time (15.0 min summed over the studies)"
