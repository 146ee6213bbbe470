"""Every shell command in README.md's code blocks is checked, so a documented command cannot rot.

How each kind of command is checked (nothing is executed that costs more than a dry run):

- ``make <target> VAR=...``: ``make -n`` must accept it; each ``python -m studylib ...`` line it
  would run is then checked as below (so the Makefile's translation is checked too);
- ``python -m studylib run|sweep ...``: run in this process with ``--dry-run`` (every study,
  profile, parameter name, type and value is validated, nothing runs or is written);
  ``list`` runs as is; ``report`` and ``sweep-report`` have their arguments parsed, the profile
  name or sweep file checked;
- ``papermill NB OUT -f YAML -p NAME VALUE ...``: the YAML is validated against the
  notebook's parameters like a profile, every ``-p`` name must be a parameter, and a
  non-smoke YAML must come with ``-p profile <its name>`` and ``-p output_dir`` (without them
  the results are labelled smoke and written into the smoke folder);
- set-up and cluster commands (``pip``, ``conda``, ``dask scheduler|worker``, ``export``) are
  listed in :data:`NOT_CHECKED` with the reason; any other command fails the test until a check
  for it is added here.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from studylib.__main__ import main
from studylib.cli.__main__ import build_parser
from studylib.core import paths

README = paths.REPO_ROOT / "README.md"
NOT_CHECKED = {
    "pip": "installs packages (set-up)",
    "conda": "creates an environment (set-up)",
    "dask": "starts a scheduler or workers (a cluster)",
    "export": "sets an environment variable",
}
_FENCE = re.compile(r"^```(bash|sh|shell)\s*\n(.*?)^```", re.M | re.S)


class CommandError(AssertionError):
    """A documented command that would fail (the message says why)."""


def readme_commands(text: str | None = None) -> list[str]:
    """The shell commands of README.md's ``bash``/``sh`` code blocks (continuation lines
    joined, comment-only and blank lines dropped)."""
    text = README.read_text(encoding="utf-8") if text is None else text
    commands = []
    for _lang, body in _FENCE.findall(text):
        body = body.replace("\\\n", " ")
        for line in body.splitlines():
            if line.strip() and not line.strip().startswith("#"):
                commands.append(line.strip())
    return commands


def _main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, out.getvalue(), err.getvalue()


def _check_studylib(argv: list[str], shown: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            raise CommandError(f"{shown}: {err.getvalue().strip()}") from None
    if args.command in ("run", "sweep"):
        rc, _, err_text = _main([*argv, "--dry-run"])
        if rc != 0:
            raise CommandError(f"{shown}: --dry-run exits {rc}: {err_text.strip()}")
        return "dry run"
    if args.command == "list":
        rc, _, err_text = _main(argv)
        if rc != 0:
            raise CommandError(f"{shown}: exits {rc}: {err_text.strip()}")
        return "ran"
    if args.command == "report":
        from studylib.cli.report import check_profile_name, valid_profiles

        try:
            check_profile_name(args.profile, valid_profiles(
                paths.resolve(args.output_root or paths.OUTPUTS_DIR)))
        except ValueError as exc:
            raise CommandError(f"{shown}: {exc}") from None
        return "arguments and profile"
    if args.command == "sweep-report":
        from studylib.cli.sweep import load_sweep

        try:
            load_sweep(args.file)
        except ValueError as exc:
            raise CommandError(f"{shown}: {exc}") from None
        return "arguments and sweep file"
    if args.command == "changes":
        import yaml

        rev = subprocess.run(["git", "rev-parse", "--verify", f"{args.before}^{{commit}}"],
                             cwd=paths.REPO_ROOT, capture_output=True, text=True)
        if rev.returncode != 0:
            raise CommandError(f"{shown}: --before {args.before} is not a commit here")
        reasons = paths.REPO_ROOT / args.reasons if args.reasons else None
        if reasons is not None and not isinstance(yaml.safe_load(reasons.read_text()), dict):
            raise CommandError(f"{shown}: {args.reasons} is not a mapping")
        return "arguments, revision and reasons file"
    raise CommandError(f"{shown}: no check for `studylib {args.command}`; add one here")


def _check_make(tokens: list[str], shown: str) -> str:
    proc = subprocess.run(["make", "-n", *tokens[1:]], cwd=paths.REPO_ROOT,
                          capture_output=True, text=True, timeout=600)  # a hang guard only
    if proc.returncode != 0:
        raise CommandError(f"{shown}: make -n fails: {proc.stderr.strip()}")
    checked = "make -n"
    for line in proc.stdout.splitlines():
        # set-up, pytest, papermill and other modules' recipes (`-m studylib.cli.regression`):
        # make -n suffices; the studylib CLI (`-m studylib ...`) is checked as below
        if not re.search(r"-m studylib(\s|$)", line):
            continue
        parts = shlex.split(line.rstrip().rstrip("\\"))
        argv = parts[parts.index("studylib", parts.index("-m")) + 1:]
        checked += "; " + _check_studylib(argv, f"{shown} (runs: {line.strip()})")
    return checked


def _papermill_options(tokens: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    files, params = [], []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t in ("-f", "--parameters_file"):
            files.append(tokens[i + 1])
            i += 2
        elif t in ("-p", "--parameters"):
            params.append((tokens[i + 1], tokens[i + 2]))
            i += 3
        else:
            i += 1
    return files, params


def _check_papermill(tokens: list[str], shown: str) -> str:
    from studylib.cli.parameters import load_yaml_mapping
    from studylib.cli.runner import Runner

    notebook = paths.resolve(tokens[1])
    if not notebook.is_file():
        raise CommandError(f"{shown}: no notebook {tokens[1]}")
    runner = Runner(notebooks_dir=notebook.parent, log=None)
    study = notebook.stem
    declared = runner.parameters(study)
    files, given = _papermill_options(tokens[3:])
    try:
        for f in files:
            runner.validate_overrides(study, load_yaml_mapping(paths.resolve(f)), source=f)
    except ValueError as exc:
        raise CommandError(f"{shown}: {exc}") from None
    names = dict(given)
    unknown = [n for n in names if n not in declared]
    if unknown:
        raise CommandError(f"{shown}: -p names unknown parameter(s) {unknown}")
    for f in files:
        profile = Path(f).stem
        if profile != "smoke" and (names.get("profile") != profile or "output_dir" not in names):
            raise CommandError(
                f"{shown}: {f} needs -p profile {profile} -p output_dir <folder>, or the "
                "results are labelled smoke and written into the smoke folder")
    return "parameters file and -p names"


def check_command(command: str) -> str:
    """Check one README command (see the module docstring); return what was checked.

    Raises:
        CommandError: the command would fail, or there is no check for it.
    """
    tokens = shlex.split(command, comments=True)
    if not tokens:
        return "empty"
    head = Path(tokens[0]).name
    if head in NOT_CHECKED:
        return f"not checked: {NOT_CHECKED[head]}"
    if head == "make":
        return _check_make(tokens, command)
    if head.startswith("python") and tokens[1:3] == ["-m", "studylib"]:
        return _check_studylib(tokens[3:], command)
    if head == "papermill":
        return _check_papermill(tokens, command)
    raise CommandError(f"{command}: no check for this kind of command; add one to "
                       "tests/test_readme_commands.py")


def test_the_readme_has_commands_of_every_kind():
    heads = {Path(shlex.split(c, comments=True)[0]).name for c in readme_commands()}
    assert {"make", "papermill"} <= heads
    assert any(c.startswith(".venv/bin/python -m studylib run") for c in readme_commands())
    assert any("--dry-run" in c for c in readme_commands())
    assert any("--resume" in c for c in readme_commands())


def test_readme_commands_parser_joins_lines_and_drops_comments():
    text = "x\n```bash\n# a comment\nmake study \\\n  STUDY=a   # why\n\n```\n```python\nz\n```\n"
    assert readme_commands(text) == ["make study    STUDY=a   # why"]


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command(command):
    check_command(command)


def notebook_commands() -> list[tuple[str, str]]:
    """``(study, command)`` for every command a notebook's first cell tells the reader to run:
    its fenced blocks (unlabelled or ``bash``) and inline code spans that start with ``papermill`` or
    ``python -m studylib`` (continuation lines joined)."""
    import json

    out = []
    for nb_path in sorted(paths.NOTEBOOKS_DIR.glob("*.ipynb")):
        first = "".join(json.loads(nb_path.read_text())["cells"][0]["source"])
        # a notebook's blocks are often unlabelled: read them as shell
        cmds = readme_commands(re.sub(r"^```[ \t]*\n", "```bash\n", first, flags=re.M))
        text = re.sub(r"^```.*?^```", "", first, flags=re.M | re.S).replace("\\\n", " ")
        cmds += [m.strip() for m in re.findall(r"`([^`]+)`", text.replace("\n", " "))
                 if m.strip().startswith(("papermill ", "python -m studylib "))]
        out += [(nb_path.stem, c) for c in cmds]
    return out


@pytest.mark.parametrize("study, command", notebook_commands())
def test_notebook_rerun_command(study, command):
    # "--profile default|paper" in prose names two commands; check each
    for variant in ([command.replace("default|paper", p) for p in ("default", "paper")]
                    if "default|paper" in command else [command]):
        check_command(variant)
