"""The Papermill runner behind ``python -m studylib list | run``.

A *study* is a notebook ``<notebooks_dir>/<study>.ipynb`` whose ``parameters`` cell is the single
source of truth for parameter names, types and defaults (the ``smoke`` profile). A *profile*
``P`` other than ``smoke`` is a YAML file ``<params_dir>/<study>/<P>.yaml`` that overrides some of
those parameters. ``--set key=value`` overrides win over the profile; values are parsed with
``yaml.safe_load`` so ``seeds=[0,1]`` gives a list and ``lr=1e-3`` a float.

Everything is validated before the first notebook starts (:meth:`Runner.plan`), so a typo in a
YAML file costs nothing. Each study is then executed with Papermill (kernel ``python3``, working
directory = repository root, ``profile``, ``output_dir`` and ``device`` injected) into
``<output_root>/<profile>/<study>/<study>.ipynb``, rendered to HTML with nbconvert, and a study
that raises does not stop the others: its partial notebook is kept and its ``results.json`` says
``"status": "failed"`` with the error. Every file the runner writes goes through
:mod:`studylib.core.io` (temporary name + rename), so an interrupted run never leaves a truncated file.

Example:
    >>> runner = Runner()                                  # the repository's notebooks/params
    >>> plans = runner.plan("default", studies=["06_taylor_pruning"], sets=["seeds=[0]"])
    >>> outcomes = runner.run_plans(plans)
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core import paths
from ..core.io import atomic_write_json, atomic_write_text, read_json_object

SMOKE = "smoke"
#: Parameters the runner injects itself; profiles and ``--set`` may not name them
#: (``device`` has its own ``--device`` option and may also be given in a profile YAML).
INJECTED = ("profile", "output_dir")
DEVICES = ("auto", "cpu", "cuda")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Types a parameter may have, by the name ``type(default).__name__`` gives for its default.
_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list,
               "dict": dict, "tuple": tuple}


class ValidationError(ValueError):
    """A profile, study, parameter name or value is not valid (the CLI exits with code 2)."""


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Parameter:
    """One assignment of a notebook's ``parameters`` cell.

    Attributes:
        name: the variable name.
        type_name: ``"int" | "float" | "str" | "bool" | "list" | "dict" | "None" | "any"``:
            the annotation if the cell has one, else the type of the literal default
            (``"None"``: the default is ``None``, any value is accepted; ``"any"``: the default
            is not a literal, so its type cannot be inferred and any value is accepted).
        default: the default value (the literal, evaluated), or ``None`` if not a literal.
        default_source: the default as written in the cell.
        help: the trailing ``# comment`` of the line, if any.
    """

    name: str
    type_name: str
    default: Any
    default_source: str
    help: str = ""

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has this parameter's type (an int is accepted for a float)."""
        if self.type_name in ("None", "any"):
            return True
        expected = _TYPE_NAMES.get(self.type_name)
        if expected is None:  # an annotation we do not model (e.g. "list[int]"): accept
            return True
        if expected is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if expected is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if expected in (list, tuple):
            return isinstance(value, (list, tuple))
        return isinstance(value, expected)


def _literal(source: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def _find_parameters_cell(nb: dict) -> dict | None:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get(
                "tags", []):
            return cell
    return None


def _line_comments(source: str) -> dict[int, str]:
    """Line number -> text of the ``# comment`` on that line (without the ``#``)."""
    out: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return out


def _ast_assignments(source: str) -> dict[str, tuple[str, str]]:
    """Top-level ``name = value`` assignments of a cell: name -> (value source, comment of
    its last line), in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    comments = _line_comments(source)
    out: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and value is not None:
            out[target.id] = (ast.get_source_segment(source, value) or "",
                              comments.get(node.end_lineno or node.lineno, ""))
    return out


def read_parameters(notebook: str | os.PathLike) -> dict[str, Parameter]:
    """The parameters of ``notebook``'s ``parameters`` cell, by name, in cell order.

    Uses ``papermill.inspect_notebook`` (names, annotations, help comments); types are inferred
    from the literal defaults, since Papermill only knows a type when the cell annotates it.
    Assignments Papermill's line parser skips (e.g. a help comment containing ``=``) are
    recovered from the cell's syntax tree so no parameter goes unvalidated.

    Raises:
        ValidationError: the notebook has no cell tagged ``parameters``.
    """
    import papermill

    notebook = Path(notebook)
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cell = _find_parameters_cell(nb)
    if cell is None:
        raise ValidationError(f"{notebook} has no code cell tagged 'parameters'")
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    # papermill's line parser warns about (and skips) lines with a second "=" in a comment;
    # those are recovered below, so its warning is only noise here.
    pm_log = logging.getLogger("papermill")
    level = pm_log.level
    pm_log.setLevel(logging.ERROR)
    try:
        inspected = papermill.inspect_notebook(str(notebook))
    finally:
        pm_log.setLevel(level)
    from_ast = _ast_assignments(source)
    params: dict[str, Parameter] = {}
    for name in list(inspected) + [n for n in from_ast if n not in inspected]:
        info = dict(inspected.get(name, {}))
        if name in from_ast and not info.get("help"):
            info["help"] = from_ast[name][1]
        default_source = from_ast[name][0] if name in from_ast else info.get("default", "")
        ok, default = _literal(default_source)
        annotation = info.get("inferred_type_name", "None")
        if annotation and annotation != "None":
            type_name = annotation
        elif ok:
            type_name = "None" if default is None else type(default).__name__
        else:
            type_name = "any"
        params[name] = Parameter(name=name, type_name=type_name, default=default if ok else None,
                                 default_source=default_source, help=info.get("help", "") or "")
    return params


def notebook_title(notebook: str | os.PathLike) -> str:
    """The first markdown cell's title line (leading ``#`` removed), or ``""``."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for line in src.splitlines():
            if line.strip():
                return line.strip().lstrip("#").strip()
        return ""
    return ""


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one ``--set key=value``; the value goes through ``yaml.safe_load``.

    ``"seeds=[0,1]"`` -> ``("seeds", [0, 1])``; ``"lr=1e-3"`` -> ``("lr", 0.001)``;
    ``"name=abc"`` -> ``("name", "abc")``; ``"flag=true"`` -> ``("flag", True)``.

    Raises:
        ValidationError: no ``=``, an empty key, or a value YAML cannot parse.
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValidationError(f"--set {item!r}: expected key=value, e.g. --set seeds=[0,1]")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ValidationError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
    # YAML 1.1 reads "1e-3" as a string; a float is what a user means.
    return key, _fix_yaml_floats(value)


def _fix_yaml_floats(obj: Any) -> Any:
    if isinstance(obj, str) and re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+", obj):
        return float(obj)
    if isinstance(obj, dict):
        return {k: _fix_yaml_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fix_yaml_floats(v) for v in obj]
    return obj


def load_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """``yaml.safe_load`` a file that must hold a mapping (an empty file is ``{}``).

    Exponent floats written without a dot (``1e-3``, which YAML 1.1 reads as a string) are
    converted to floats.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValidationError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationError(f"{path}: expected a mapping of parameter: value, "
                              f"got {type(data).__name__}")
    return _fix_yaml_floats(data)


def _fmt_list(items) -> str:
    items = list(items)
    return ", ".join(items) if items else "(none)"


# ----------------------------------------------------------------------------- plans/outcomes


@dataclass
class StudyPlan:
    """One validated notebook execution.

    Attributes:
        study: study id (notebook stem).
        notebook: the input notebook.
        profile: the profile name (injected as ``profile``).
        output_dir: where the executed notebook, HTML, figures and results.json go.
        parameters: every parameter passed to Papermill (overrides + injected ones).
        overrides: profile YAML + ``--set`` values only (what differs from the notebook).
        device: the device string injected (``auto`` | ``cpu`` | ``cuda``).
    """

    study: str
    notebook: Path
    profile: str
    output_dir: Path
    parameters: dict[str, Any]
    overrides: dict[str, Any]
    device: str


@dataclass
class StudyOutcome:
    """What happened to one study: ``status`` is ``"ok"`` or ``"failed"``."""

    study: str
    status: str
    runtime_s: float
    output_dir: Path
    n_claims: int = 0
    n_reproduced: int = 0
    error: str | None = None
    results: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- runner


class Runner:
    """Validate and execute study notebooks.

    Args:
        notebooks_dir: folder of ``<study>.ipynb`` files (default ``notebooks/``).
        params_dir: folder of ``<study>/<profile>.yaml`` files (default ``params/``).
        output_root: outputs go to ``<output_root>/<profile>/<study>/`` (default ``outputs/``).
        cwd: the kernels' working directory (default the repository root).
        kernel_name: Jupyter kernel (default ``"python3"``).
        render_html: also write ``<study>.html`` with nbconvert (default True).
        progress_bar: Papermill's per-cell progress bar; default: on when stderr is a terminal.
        execution_timeout: seconds allowed per cell (default None: no limit).
        start_timeout: seconds a kernel may take to start (default 300; Papermill's own 60 s
            is too short on a loaded machine, where kernels start slowly).
        log: a text stream for progress lines; ``"stderr"`` (default): ``sys.stderr`` as it
            is when a line is written; ``None`` silences them.
    """

    def __init__(self, notebooks_dir: str | os.PathLike | None = None,
                 params_dir: str | os.PathLike | None = None,
                 output_root: str | os.PathLike | None = None,
                 cwd: str | os.PathLike | None = None, kernel_name: str = "python3",
                 render_html: bool = True, progress_bar: bool | None = None,
                 execution_timeout: int | None = None, start_timeout: int = 300,
                 log: Any = "stderr") -> None:
        self.notebooks_dir = paths.resolve(notebooks_dir or paths.NOTEBOOKS_DIR)
        self.params_dir = paths.resolve(params_dir or paths.PARAMS_DIR)
        self.output_root = paths.resolve(output_root or paths.OUTPUTS_DIR)
        self.cwd = paths.resolve(cwd or paths.REPO_ROOT)
        self.kernel_name = kernel_name
        self.render_html = render_html
        self.progress_bar = progress_bar
        self.execution_timeout = execution_timeout
        self.start_timeout = start_timeout
        self.log = log
        self._param_cache: dict[str, dict[str, Parameter]] = {}

    def _say(self, msg: str) -> None:
        if self.log is not None:
            print(msg, file=sys.stderr if self.log == "stderr" else self.log, flush=True)

    # -- discovery -------------------------------------------------------------------------
    def studies(self) -> list[str]:
        """Study ids (notebook stems), sorted; checkpoint copies are ignored."""
        if not self.notebooks_dir.is_dir():
            return []
        return sorted(p.stem for p in self.notebooks_dir.glob("*.ipynb")
                      if not p.name.startswith("."))

    def notebook(self, study: str) -> Path:
        return self.notebooks_dir / f"{study}.ipynb"

    def parameters(self, study: str, notebook: Path | None = None) -> dict[str, Parameter]:
        """The study's parameters (cached), see :func:`read_parameters`.

        ``notebook`` overrides where the study's notebook is (a plan made by another runner).
        """
        path = Path(notebook) if notebook else self.notebook(study)
        key = str(path)
        if key not in self._param_cache:
            self._param_cache[key] = read_parameters(path)
        return self._param_cache[key]

    def profiles(self, study: str) -> list[str]:
        """Profiles valid for ``study``: ``smoke`` plus one per ``params/<study>/*.yaml``."""
        found = set()
        d = self.params_dir / study
        if d.is_dir():
            found = {p.stem for p in d.glob("*.yaml")} | {p.stem for p in d.glob("*.yml")}
        found.discard(SMOKE)
        return [SMOKE] + sorted(found)

    def profile_overrides(self, study: str, profile: str) -> dict[str, Any]:
        """The overrides a profile YAML holds (``{}`` for smoke without a smoke.yaml)."""
        for ext in (".yaml", ".yml"):
            path = self.params_dir / study / f"{profile}{ext}"
            if path.is_file():
                return load_yaml_mapping(path)
        if profile == SMOKE:
            return {}
        raise ValidationError(
            f"unknown profile {profile!r} for study {study!r}; valid profiles: "
            f"{_fmt_list(self.profiles(study))}")

    # -- validation ------------------------------------------------------------------------
    def check_study(self, study: str) -> None:
        if study not in self.studies():
            raise ValidationError(f"unknown study {study!r}; valid studies: "
                                  f"{_fmt_list(self.studies())}")

    def check_profile(self, study: str, profile: str) -> None:
        if not _NAME_RE.match(profile or ""):
            raise ValidationError(f"invalid profile name {profile!r}; valid profiles for "
                                  f"{study}: {_fmt_list(self.profiles(study))}")
        if profile not in self.profiles(study):
            raise ValidationError(f"unknown profile {profile!r} for study {study!r}; "
                                  f"valid profiles: {_fmt_list(self.profiles(study))}")

    def validate_overrides(self, study: str, overrides: dict[str, Any], *, source: str,
                           allow_device: bool = True) -> None:
        """Check names and types of ``overrides`` against the study's parameters cell.

        Args:
            study: study id.
            overrides: name -> value.
            source: where they come from, for the message (e.g. ``"--set"``,
                ``"params/06_taylor_pruning/default.yaml"``).
            allow_device: whether ``device`` may be given here (it may in a profile YAML).

        Raises:
            ValidationError: an unknown name (listing the valid ones), an injected name
                (``profile``, ``output_dir``) or a value of the wrong type.
        """
        params = self.parameters(study)
        settable = [n for n in params if n not in INJECTED]
        for key, value in overrides.items():
            if not isinstance(key, str):
                raise ValidationError(f"{source}: parameter names must be strings, got {key!r}")
            if key in INJECTED:
                raise ValidationError(
                    f"{source}: {key!r} is set by the runner and may not be overridden "
                    f"(use --profile / --output-root); valid parameters of {study}: "
                    f"{_fmt_list(settable)}")
            if key == "device" and not allow_device:
                raise ValidationError(f"{source}: use --device to choose the device")
            if key not in params:
                raise ValidationError(
                    f"{source}: unknown parameter {key!r} for study {study!r}; valid "
                    f"parameters: {_fmt_list(settable)}")
            p = params[key]
            if not p.accepts(value):
                raise ValidationError(
                    f"{source}: parameter {key!r} of {study!r} expects {p.type_name} "
                    f"(default {p.default_source}), got {type(value).__name__} {value!r}")
            if key == "device" and value not in DEVICES and not str(value).startswith("cuda:"):
                raise ValidationError(f"{source}: device {value!r} is not one of "
                                      f"{_fmt_list(DEVICES)}")

    def output_dir_for(self, profile: str, study: str) -> Path:
        return self.output_root / profile / study

    def plan_one(self, study: str, profile: str, overrides: dict[str, Any] | None = None,
                 *, device: str | None = None, output_dir: str | os.PathLike | None = None,
                 source: str = "overrides") -> StudyPlan:
        """Validate one execution: profile YAML, then ``overrides``, then ``device``.

        Args:
            study: study id.
            profile: profile name (``smoke`` or a YAML under ``params/<study>/``).
            overrides: extra name -> value overrides (``--set``, a sweep point).
            device: ``auto`` | ``cpu`` | ``cuda``; None: the profile's or notebook's own.
            output_dir: where to write (default ``<output_root>/<profile>/<study>``).
            source: how to name ``overrides`` in error messages.
        """
        self.check_study(study)
        self.check_profile(study, profile)
        merged: dict[str, Any] = {}
        prof = self.profile_overrides(study, profile)
        rel = self.params_dir / study / f"{profile}.yaml"
        self.validate_overrides(study, prof, source=_display_path(rel), allow_device=True)
        merged.update(prof)
        extra = dict(overrides or {})
        self.validate_overrides(study, extra, source=source, allow_device=False)
        merged.update(extra)
        if device is not None:
            if device not in DEVICES and not str(device).startswith("cuda:"):
                raise ValidationError(f"--device {device!r} is not one of {_fmt_list(DEVICES)}")
            merged["device"] = device
        params = self.parameters(study)
        dev = merged.get("device", params["device"].default if "device" in params else "auto")
        dev = dev if isinstance(dev, str) else "auto"
        out = paths.resolve(output_dir) if output_dir else self.output_dir_for(profile, study)
        parameters = dict(merged)
        parameters["profile"] = profile
        parameters["output_dir"] = self._injectable_path(out)
        parameters["device"] = dev
        return StudyPlan(study=study, notebook=self.notebook(study), profile=profile,
                         output_dir=out, parameters=parameters, overrides=merged, device=dev)

    def plan(self, profile: str = "default", studies: list[str] | None = None,
             sets: list[str] | None = None, device: str | None = None) -> list[StudyPlan]:
        """Validate a whole ``run`` before anything executes.

        Args:
            profile: the profile for every selected study.
            studies: study ids (default: every notebook in ``notebooks_dir``).
            sets: ``key=value`` strings applied to every selected study.
            device: ``auto`` | ``cpu`` | ``cuda`` or None (the notebook's/profile's own).

        Raises:
            ValidationError: naming the offending item and listing the valid ones.
        """
        all_studies = self.studies()
        selected = list(studies) if studies else all_studies
        seen = set()
        for s in selected:
            if s not in all_studies:
                raise ValidationError(f"unknown study {s!r}; valid studies: "
                                      f"{_fmt_list(all_studies)}")
            if s in seen:
                raise ValidationError(f"study {s!r} is named twice")
            seen.add(s)
        overrides: dict[str, Any] = {}
        for item in sets or []:
            key, value = parse_set(item)
            overrides[key] = value
        return [self.plan_one(s, profile, overrides, device=device, source="--set")
                for s in selected]

    def _injectable_path(self, path: Path) -> str:
        """``path`` relative to the kernels' cwd when inside it (keeps committed notebooks
        free of machine-specific absolute paths), else absolute."""
        try:
            return path.relative_to(self.cwd).as_posix()
        except ValueError:
            return str(path)

    # -- execution -------------------------------------------------------------------------
    def execute(self, plan: StudyPlan) -> StudyOutcome:
        """Execute one validated plan; never raises for a failing notebook.

        The executed notebook goes to ``<output_dir>/<study>.ipynb`` (also when a cell raised:
        the partial notebook is kept), ``<study>.html`` next to it. A stale ``results.json``
        and stale ``figures/*.png`` from an earlier run are removed first, so what is left
        afterwards belongs to this run. If the notebook did not leave a ``results.json`` with
        status ``ok``, one with status ``failed`` and the error is written.
        ``KeyboardInterrupt`` is recorded as a failure and re-raised.
        """
        import nbformat
        import papermill
        from papermill.exceptions import PapermillExecutionError

        out = plan.output_dir
        out.mkdir(parents=True, exist_ok=True)
        results_path = out / "results.json"
        if results_path.exists():
            results_path.unlink()
        figures = out / "figures"
        if figures.is_dir():
            for png in figures.glob("*.png"):
                png.unlink()
        nb_path = out / f"{plan.study}.ipynb"
        error: str | None = None
        detail: dict[str, Any] = {}
        interrupted = False
        tmpdir = Path(tempfile.mkdtemp(prefix=f"studylib-{plan.study}-"))
        tmp_nb = tmpdir / f"{plan.study}.ipynb"
        progress = self.progress_bar if self.progress_bar is not None else sys.stderr.isatty()
        t0 = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(plan.notebook), str(tmp_nb), parameters=plan.parameters,
                kernel_name=self.kernel_name, progress_bar=progress, log_output=False,
                execution_timeout=self.execution_timeout, start_timeout=self.start_timeout,
                # the kernel's cwd, given to nbclient directly: papermill's own ``cwd`` does
                # a process-wide chdir, which races when points run in threads (sweeps).
                resources={"metadata": {"path": str(self.cwd)}})
        except PapermillExecutionError as exc:
            error = f"{exc.ename}: {exc.evalue}"
            detail = {"ename": exc.ename, "evalue": exc.evalue, "cell_index": exc.cell_index,
                      "exec_count": exc.exec_count}
        except KeyboardInterrupt:
            error, detail, interrupted = "KeyboardInterrupt: run interrupted", {
                "ename": "KeyboardInterrupt", "evalue": "run interrupted"}, True
        except Exception as exc:  # kernel died, notebook unreadable, ...
            error = f"{type(exc).__name__}: {exc}"
            detail = {"ename": type(exc).__name__, "evalue": str(exc)}
        runtime = time.perf_counter() - t0
        try:
            if tmp_nb.exists():
                nb = nbformat.read(str(tmp_nb), as_version=4)
                atomic_write_text(nb_path, nbformat.writes(nb))
                if self.render_html:
                    try:
                        self._render_html(nb, out / f"{plan.study}.html")
                    except Exception as exc:  # rendering must not hide the study's result
                        self._say(f"[{plan.study}] HTML rendering failed: {exc}")
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

        results = read_json_object(results_path)
        if error is None and (results is None or results.get("status") != "ok"):
            error = ("notebook finished without writing results.json with status ok "
                     "(is ctx.finish() its last cell?)")
            detail = {"ename": "MissingResults", "evalue": error}
        if error is not None:
            results = self._failed_results(plan, error, detail, runtime, results)
            atomic_write_json(results_path, results)
        claims = results.get("claims", []) if results else []
        outcome = StudyOutcome(
            study=plan.study, status="failed" if error else "ok", runtime_s=runtime,
            output_dir=out, n_claims=len(claims),
            n_reproduced=sum(c.get("verdict") == "reproduced" for c in claims),
            error=error, results=results or {})
        if interrupted:
            raise KeyboardInterrupt
        return outcome

    def _failed_results(self, plan: StudyPlan, error: str, detail: dict[str, Any],
                        runtime: float, partial: dict[str, Any] | None) -> dict[str, Any]:
        try:
            declared = self.parameters(plan.study, plan.notebook)
        except Exception:  # an unreadable notebook is the error being recorded
            declared = {}
        seeds = plan.parameters.get("seeds")
        if seeds is None and "seeds" in declared:
            seeds = declared["seeds"].default
        params = {n: p.default for n, p in declared.items()}
        params.update(plan.parameters)
        partial = partial or {}
        return {
            "study": plan.study,
            "profile": plan.profile,
            "status": "failed",
            "seeds": list(seeds) if isinstance(seeds, (list, tuple)) else [],
            "device": partial.get("device", plan.device),
            "runtime_s": round(runtime, 2),
            "params": dict(sorted(params.items())),
            "metrics": partial.get("metrics", {}),
            "claims": partial.get("claims", []),
            "error": error,
            "error_detail": detail,
        }

    @staticmethod
    def _render_html(nb, path: Path) -> None:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        atomic_write_text(path, body)

    def run_plans(self, plans: list[StudyPlan]) -> list[StudyOutcome]:
        """Execute validated plans one after another; a failure does not stop the rest."""
        outcomes = []
        for i, plan in enumerate(plans, 1):
            self._say(f"[{i}/{len(plans)}] {plan.study} (profile {plan.profile}, device "
                      f"{plan.device}) -> {_display_path(plan.output_dir)}")
            outcome = self.execute(plan)
            msg = f"[{i}/{len(plans)}] {plan.study}: {outcome.status} in {outcome.runtime_s:.1f} s"
            if outcome.error:
                msg += f" ({outcome.error})"
            self._say(msg)
            outcomes.append(outcome)
        return outcomes


def _display_path(path: Path) -> str:
    try:
        return path.relative_to(paths.REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def format_outcomes(outcomes: list[StudyOutcome]) -> str:
    """The final table: study, status, runtime, claims reproduced / total."""
    rows = [("study", "status", "runtime", "claims reproduced")]
    for o in outcomes:
        rows.append((o.study, o.status, f"{o.runtime_s:.1f} s", f"{o.n_reproduced}/{o.n_claims}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI commands


def format_listing(runner: Runner) -> str:
    """Text of ``python -m studylib list``: each study's title, profiles and parameters."""
    blocks = []
    for study in runner.studies():
        lines = [f"{study}: {notebook_title(runner.notebook(study)) or '(no title)'}",
                 f"  profiles: {', '.join(runner.profiles(study))}"]
        params = runner.parameters(study)
        if params:
            nw = max(len(n) for n in params)
            tw = max(len(p.type_name) for p in params.values())
            shown = {n: (p.default_source if len(p.default_source) <= 40
                         else p.default_source[:36] + " ...") for n, p in params.items()}
            dw = max(len(v) for v in shown.values())
            for p in params.values():
                lines.append(f"  {p.name:<{nw}}  {p.type_name:<{tw}}  "
                             f"{shown[p.name]:<{dw}}  {p.help}".rstrip())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else f"no studies under {runner.notebooks_dir}"


def cmd_list(args) -> int:
    runner = Runner(notebooks_dir=args.notebooks_dir, params_dir=args.params_dir, log=None)
    print(format_listing(runner))
    return 0


def cmd_run(args) -> int:
    from .report import write_report

    runner = Runner(notebooks_dir=args.notebooks_dir, params_dir=args.params_dir,
                    output_root=args.output_root,
                    execution_timeout=getattr(args, "timeout", None))
    plans = runner.plan(args.profile, studies=args.study, sets=args.set, device=args.device)
    if not plans:
        print(f"no studies under {runner.notebooks_dir}: nothing to run", file=sys.stderr)
        return 0
    try:
        outcomes = runner.run_plans(plans)
    except KeyboardInterrupt:
        print("\ninterrupted: writing the report of what finished", file=sys.stderr)
        report = write_report(args.profile, runner.output_root)
        print(f"report: {_display_path(report)}")
        return 130
    print()
    print(format_outcomes(outcomes))
    report = write_report(args.profile, runner.output_root)
    print(f"\nreport: {_display_path(report)}")
    failed = [o.study for o in outcomes if o.status != "ok"]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
