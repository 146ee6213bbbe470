"""The Papermill runner behind ``python -m studylib list | run``.

A *study* is a notebook ``<notebooks_dir>/<study>.ipynb`` whose ``parameters`` cell is the single
source of truth for parameter names, types, value constraints and defaults (the ``smoke``
profile; :mod:`studylib.cli.parameters`). A *profile* ``P`` other than ``smoke`` is a YAML file
``<params_dir>/<study>/<P>.yaml`` that overrides some of those parameters. ``--set key=value``
overrides win over the profile; values are parsed as YAML so ``seeds=[0,1]`` gives a list and
``lr=1e-3`` a float.

Everything is validated before the first notebook starts (:meth:`Runner.plan`; then
:meth:`Runner.check_writable` and the folder locks in :func:`cmd_run`), so a typo in a YAML file,
a bad value, a read-only output folder or a second run into the same folder costs nothing.
Each study then runs with Papermill (kernel ``python3``, working directory = repository root,
``profile``, ``output_dir`` and ``device`` injected) into a staging folder inside
``<output_root>/<profile>/<study>/``, is rendered to HTML with nbconvert, and is swapped into
place only when it has finished (:mod:`studylib.cli.outputs`): a study that raises, is stopped
(Ctrl-C, SIGTERM, SIGHUP) or meets an I/O error keeps the last good results and gets a
``"status": "failed"`` record beside them, and the other studies still run. Progress goes to
the terminal, not into the notebook (:mod:`studylib.cli.progress`).

Example:
    >>> runner = Runner()                                  # the repository's notebooks/params
    >>> plans = runner.plan("default", studies=["06_taylor_pruning"], sets=["seeds=[0]"])
    >>> outcomes = runner.run_plans(plans)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import paths
from ..core.io import atomic_write_json, atomic_write_text, read_json_object
from . import outputs
from .parameters import (
    DEVICES,
    INJECTED,
    NAME_RE,
    Parameter,
    ValidationError,
    check_device,
    fmt_list,
    load_yaml_mapping,
    merge_override,
    notebook_title,
    parse_set,
    read_parameters,
)

# Names other modules and tests import from here.
__all__ = ["DEVICES", "INJECTED", "Interrupted", "Parameter", "Runner", "StudyOutcome",
           "StudyPlan", "ValidationError", "cmd_list", "cmd_run", "format_outcomes",
           "load_yaml_mapping", "notebook_title", "parse_set", "read_parameters"]

SMOKE = "smoke"
_NAME_RE = NAME_RE
_fmt_list = fmt_list


# ----------------------------------------------------------------------------- signals


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal: SIGINT (Ctrl-C), SIGTERM (``kill``, a batch system's
    walltime) or SIGHUP (the terminal closed). Handled like Ctrl-C: the kernel is stopped,
    a failed record written, REPORT.md updated, temporary files removed.

    Attributes:
        signame: ``"SIGINT"``, ``"SIGTERM"`` or ``"SIGHUP"``.
        exit_code: 128 + the signal number (130, 143, 129), as a shell reports it.
    """

    def __init__(self, signame: str = "SIGINT") -> None:
        super().__init__(signame)
        self.signame = signame
        self.exit_code = 128 + int(getattr(signal, signame, signal.SIGINT))


def _signame(exc: BaseException) -> str:
    return exc.signame if isinstance(exc, Interrupted) else "SIGINT"


class Cancel:
    """A stop request for studies that run outside the main thread (``--jobs``): the main
    thread receives the signal and calls :meth:`set`; each study's waiting thread sees it
    within a fraction of a second and stops as the main thread would (:class:`Interrupted`
    with the same signal name)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signame = "SIGINT"

    def set(self, signame: str = "SIGINT") -> None:
        self.signame = signame
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@contextlib.contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread,
    as SIGINT raises ``KeyboardInterrupt``. Outside the main thread: no change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def in_private_event_loop(fn: Callable[[], Any]) -> Any:
    """Call ``fn()`` in a fresh ``contextvars`` context and close the event loop it made.

    Papermill's client (nbclient, via jupyter_core) keeps its asyncio loop in a context
    variable. A thread started from a context that already executed a notebook (a Dask task
    runs in a *copy* of a context) would share that loop ("This event loop is already
    running"). A fresh context gives each execution its own loop, closed afterwards so long
    runs do not leak file descriptors.
    """
    def call() -> Any:
        try:
            return fn()
        finally:
            try:
                loop = asyncio.get_event_loop_policy().get_event_loop()
            except RuntimeError:  # no loop was set on this thread
                loop = None
            if loop is not None and not loop.is_running():
                loop.close()
                asyncio.set_event_loop(None)

    return contextvars.Context().run(call)


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
        device: the device string injected (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``).
        sources: where each value of ``parameters`` came from: the profile YAML's path,
            ``--set`` (or the sweep point), ``--device`` or ``runner``; a parameter not
            named here keeps the notebook's default.
    """

    study: str
    notebook: Path
    profile: str
    output_dir: Path
    parameters: dict[str, Any]
    overrides: dict[str, Any]
    device: str
    sources: dict[str, str] = field(default_factory=dict)


@dataclass
class StudyOutcome:
    """What happened to one study: ``status`` is ``"ok"``, ``"failed"`` or ``"skipped"``
    (``--resume`` found its results up to date)."""

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
        progress_bar: forward each study's progress (cells, bars, notices) to ``log``;
            default: on whenever ``log`` is set.
        execution_timeout: seconds allowed per cell (default None: no limit).
        start_timeout: seconds a kernel may take to start (default 300; Papermill's own 60 s
            is too short on a loaded machine, where kernels start slowly).
        log: a text stream for progress lines; ``"stderr"`` (default): ``sys.stderr`` as it
            is when a line is written; ``None`` silences them.
        cache_dir: the cache root the kernels use (``$STUDYLIB_CACHE`` for them); default:
            this process's (``$STUDYLIB_CACHE`` or ``outputs/cache``).
        data_root: the data root every study reads its data sets from (``$STUDYLIB_DATA`` for
            the kernels, so it reaches every loader without a parameter of its own; a study's
            explicit ``data_root`` argument, relative paths included, is taken from it);
            default: this process's (``$STUDYLIB_DATA`` or ``~/.cache/studylib/data``).
        download: let the kernels' loaders download a missing torchvision data set
            (``$STUDYLIB_DOWNLOAD=1`` for them); default False.
        jobs: how many studies run at once (default 1). With ``jobs > 1`` the machine's cores
            are shared: each kernel gets ``$STUDYLIB_CPUS`` = cores // jobs (its worker
            pools start no more processes) and, unless ``$STUDYLIB_THREADS`` is set, as many
            torch threads; the longest studies (by their last recorded runtime) start first,
            and progress is printed as labelled lines, not redrawn bars.
    """

    def __init__(self, notebooks_dir: str | os.PathLike | None = None,
                 params_dir: str | os.PathLike | None = None,
                 output_root: str | os.PathLike | None = None,
                 cwd: str | os.PathLike | None = None, kernel_name: str = "python3",
                 render_html: bool = True, progress_bar: bool | None = None,
                 execution_timeout: int | None = None, start_timeout: int = 300,
                 log: Any = "stderr", cache_dir: str | os.PathLike | None = None,
                 data_root: str | os.PathLike | None = None, download: bool = False,
                 jobs: int = 1) -> None:
        if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
            raise ValidationError(f"jobs must be an integer >= 1, got {jobs!r}")
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
        self.cache_dir = paths.resolve(cache_dir) if cache_dir else None
        self.data_root = paths.resolve(data_root) if data_root else None
        self.download = bool(download)
        self.jobs = jobs
        self._param_cache: dict[str, dict[str, Parameter]] = {}

    @property
    def stream(self):
        return sys.stderr if self.log == "stderr" else self.log

    def _say(self, msg: str) -> None:
        if self.log is not None:
            print(msg, file=self.stream, flush=True)

    def effective_cache_dir(self) -> Path:
        """The cache root the kernels will use."""
        return self.cache_dir or paths.cache_root()

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

    def all_profiles(self) -> list[str]:
        """Every profile some study has (``smoke`` first)."""
        found = {p for s in self.studies() for p in self.profiles(s)}
        found.discard(SMOKE)
        return [SMOKE] + sorted(found)

    def _profile_path(self, study: str, profile: str) -> Path | None:
        for ext in (".yaml", ".yml"):
            path = self.params_dir / study / f"{profile}{ext}"
            if path.is_file():
                return path
        return None

    def profile_overrides(self, study: str, profile: str) -> dict[str, Any]:
        """The overrides a profile YAML holds (``{}`` for smoke without a smoke.yaml)."""
        path = self._profile_path(study, profile)
        if path is not None:
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
        """Check names, types and value constraints of ``overrides`` against the study's
        parameters cell.

        Args:
            study: study id.
            overrides: name -> value.
            source: where they come from, for the message (e.g. ``"--set"``,
                ``"params/06_taylor_pruning/default.yaml"``).
            allow_device: whether ``device`` may be given here (it may in a profile YAML).

        Raises:
            ValidationError: an unknown name (listing the valid ones), an injected name
                (``profile``, ``output_dir``), a value of the wrong type, or a value that
                breaks the parameter's constraints (naming them).
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
            if key == "device":
                check_device(value, source)
                continue
            broken = p.violations(value)
            if broken:
                raise ValidationError(
                    f"{source}: parameter {key!r} of {study!r} must be {'; '.join(broken)} "
                    f"(default {p.default_source}), got {value!r}")

    def output_dir_for(self, profile: str, study: str) -> Path:
        return self.output_root / profile / study

    def plan_one(self, study: str, profile: str, overrides: dict[str, Any] | None = None,
                 *, device: str | None = None, output_dir: str | os.PathLike | None = None,
                 source: str = "overrides", merge: bool = False,
                 replace: frozenset[str] | set[str] = frozenset()) -> StudyPlan:
        """Validate one execution: profile YAML, then ``overrides``, then ``device``.

        Args:
            study: study id.
            profile: profile name (``smoke`` or a YAML under ``params/<study>/``).
            overrides: extra name -> value overrides (``--set``, a sweep point).
            device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``; None: the profile's or
                notebook's own.
            output_dir: where to write (default ``<output_root>/<profile>/<study>``).
            source: how to name ``overrides`` in error messages (and in ``sources``).
            merge: a mapping override merges into the profile's (or notebook's) mapping key by
                key (:func:`merge_override`) instead of replacing it; ``run --set`` does this,
                sweep points replace (default False).
            replace: names whose override replaces the value even with ``merge`` (``run
                --replace``).
        """
        self.check_study(study)
        self.check_profile(study, profile)
        merged: dict[str, Any] = {}
        sources: dict[str, str] = {}
        prof = self.profile_overrides(study, profile)
        rel = self._profile_path(study, profile) or self.params_dir / study / f"{profile}.yaml"
        self.validate_overrides(study, prof, source=_display_path(rel), allow_device=True)
        merged.update(prof)
        sources.update({k: _display_path(rel) for k in prof})
        extra = dict(overrides or {})
        if merge:
            declared = self.parameters(study)
            for key, value in extra.items():
                if key in replace or key not in declared:
                    continue  # an unknown name is reported by the validation below
                extra[key] = merge_override(merged.get(key, declared[key].default), value)
        self.validate_overrides(study, extra, source=source, allow_device=False)
        merged.update(extra)
        sources.update({k: source for k in extra})
        if device is not None:
            check_device(device)
            merged["device"] = device
            sources["device"] = "--device"
        params = self.parameters(study)
        dev = merged.get("device", params["device"].default if "device" in params else "auto")
        dev = dev if isinstance(dev, str) else "auto"
        out = paths.resolve(output_dir) if output_dir else self.output_dir_for(profile, study)
        parameters = dict(merged)
        parameters["profile"] = profile
        parameters["output_dir"] = self._injectable_path(out)
        parameters["device"] = dev
        sources.update({"profile": "runner", "output_dir": "runner"})
        return StudyPlan(study=study, notebook=self.notebook(study), profile=profile,
                         output_dir=out, parameters=parameters, overrides=merged, device=dev,
                         sources=sources)

    def plan(self, profile: str = "default", studies: list[str] | None = None,
             sets: list[str] | None = None, device: str | None = None,
             replaces: list[str] | None = None) -> list[StudyPlan]:
        """Validate a whole ``run`` before anything executes (nothing is written).

        Args:
            profile: the profile for every selected study.
            studies: study ids (default: every notebook in ``notebooks_dir``).
            sets: ``key=value`` strings applied to every selected study; a mapping value merges
                into the profile's mapping key by key (``--set data_kwargs={csv: b.csv}`` keeps
                the profile's other ``data_kwargs``).
            replaces: ``key=value`` strings that replace the value whole (``--replace``).
            device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` or None (the
                notebook's/profile's own).

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
        replace: set[str] = set()
        for flag, items in (("--set", sets or []), ("--replace", replaces or [])):
            for item in items:
                key, value = parse_set(item)
                if key in overrides:
                    raise ValidationError(f"{flag} {key}=... is given twice (--set and --replace "
                                          f"together name each parameter once)")
                overrides[key] = value
                if flag == "--replace":
                    replace.add(key)
        return [self.plan_one(s, profile, overrides, device=device, source="--set", merge=True,
                              replace=replace)
                for s in selected]

    def check_writable(self, plans: list[StudyPlan], *, create: bool = True) -> None:
        """Every output folder, the report's folder and the cache root can be written.

        ``create=True`` (before a run) creates them and writes a probe file in each, so a
        read-only or full file system stops the run before anything executes.

        Raises:
            ValidationError: naming each folder that cannot be written and why.
        """
        folders = [p.output_dir for p in plans]
        folders += sorted({p.output_dir.parent for p in plans})
        folders.append(self.effective_cache_dir())
        problems = [f"{_display_path(f)} ({why})" for f in dict.fromkeys(folders)
                    if (why := outputs.writable_problem(f, create=create))]
        if problems:
            raise ValidationError("output folder(s) cannot be written: " + "; ".join(problems)
                                  + " (choose others with --output-root / --cache-dir)")

    def _injectable_path(self, path: Path) -> str:
        """``path`` relative to the kernels' cwd when inside it (keeps committed notebooks
        free of machine-specific absolute paths), else absolute."""
        try:
            return path.relative_to(self.cwd).as_posix()
        except ValueError:
            return str(path)

    # -- inputs and resume -----------------------------------------------------------------
    def inputs(self, plan: StudyPlan) -> dict[str, Any]:
        """What a run's results depend on: the merged parameter values (notebook defaults,
        profile, overrides), the device it will run on, and digests of the package code and
        of the notebook's cells. Compared by ``--resume`` and hashed into sweep point ids."""
        from ..core.io import results_digest

        declared = self.parameters(plan.study, plan.notebook)
        merged = {n: p.default for n, p in declared.items() if n not in ("output_dir", "device")}
        merged.update({k: v for k, v in plan.parameters.items()
                       if k not in ("output_dir", "device")})
        inputs = {"study": plan.study, "profile": plan.profile,
                  "parameters": dict(sorted(merged.items())),
                  "device": outputs.resolve_device(plan.device),
                  "code": results_digest(), "notebook": outputs.notebook_digest(plan.notebook)}
        if self.data_root is not None:  # only when given, so earlier records stay comparable
            inputs["data_root"] = str(self.data_root)
        return inputs

    def up_to_date(self, plan: StudyPlan) -> tuple[bool, str]:
        """Whether ``plan``'s folder already holds its results: ``(True, why)`` when the
        results.json is valid and ok, no later run failed, and the inputs the last run
        recorded equal this plan's; else ``(False, what differs)``."""
        out = plan.output_dir
        problem = outputs.results_problem(out)
        if problem:
            return False, problem
        if (out / outputs.FAILED_NAME).exists():
            return False, "the latest run failed"
        record = outputs.read_run_record(out) or {}
        last = record.get("inputs")
        if not isinstance(last, dict):
            return False, "no record of the inputs of the last run"
        now = self.inputs(plan)
        if outputs.fingerprint(last) == outputs.fingerprint(now):
            return True, "results up to date (same parameters, device, code and notebook)"
        changed = [k for k in ("device", "data_root", "code", "notebook")
                   if last.get(k) != now.get(k)]
        before, after = last.get("parameters") or {}, now["parameters"]
        params = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        if params:
            changed.insert(0, "parameters " + ", ".join(params))
        return False, "inputs changed since the last run: " + (", ".join(changed) or "other")

    # -- dry run ---------------------------------------------------------------------------
    def describe(self, plan: StudyPlan) -> str:
        """What ``run --dry-run`` prints for one plan (see :func:`cmd_run`)."""
        out = plan.output_dir
        declared = self.parameters(plan.study, plan.notebook)
        device = outputs.resolve_device(plan.device)
        lines = [f"{plan.study} (profile {plan.profile}, device {plan.device}"
                 + (f" -> {device}" if device != plan.device else "") + ")"]
        why = outputs.writable_problem(out, create=False)
        lines.append(f"  output folder: {_display_path(out)} "
                     f"({'writable' if why is None else 'NOT writable: ' + why})")
        holder = outputs.FolderLock(out).holder() if (out / outputs.LOCK_NAME).exists() else None
        if holder:
            lines.append(f"  lock: held by pid {holder.get('pid')} on {holder.get('host')} "
                         f"since {holder.get('started')}")
        res = read_json_object(out / outputs.RESULTS)
        record = outputs.read_run_record(out) or {}
        if res and isinstance(res.get("runtime_s"), (int, float)):
            lines.append(f"  last run: {res.get('status', '?')} in {float(res['runtime_s']):.1f} s"
                         + (f" (finished {record['finished']})" if record.get("finished")
                            else ""))
        else:
            lines.append("  last run: none recorded")
        lines.append(f"  data root: {self.data_root or paths.default_data_root()}"
                     + (" (from --data-root)" if self.data_root else "")
                     + ("; missing torchvision data sets are downloaded" if self.download
                        else ""))
        fresh, reason = self.up_to_date(plan)
        lines.append(f"  --resume: {'skip' if fresh else 'run'} ({reason})")
        cache = self.effective_cache_dir()
        used = record.get("cache") if isinstance(record.get("cache"), list) else []
        entries = {e.get("path"): e.get("what", "entry") for e in used if isinstance(e, dict)}
        if entries:
            by_what: dict[str, list[int]] = {}
            for path, what in entries.items():
                counts = by_what.setdefault(str(what), [0, 0])
                counts[0] += paths.resolve(str(path)).exists()
                counts[1] += 1
            shown = ", ".join(f"{w} {a}/{n}" for w, (a, n) in sorted(by_what.items()))
            lines.append(f"  cache: {_display_path(cache)}; of the entries the last run used, "
                         f"present: {shown}")
        else:
            n = sum(1 for _ in cache.rglob("*.pt")) if cache.is_dir() else 0
            lines.append(f"  cache: {_display_path(cache)} ({n} entries; no record of which "
                         "this study uses: its last run predates run.json or used none)")
        lines.append("  parameters (value, from):")
        names = list(dict.fromkeys([*declared, *plan.parameters]))
        width = max(len(n) for n in names)
        for name in names:
            value = plan.parameters.get(name, declared[name].default if name in declared
                                        else None)
            text = json.dumps(value, default=str)
            if len(text) > 60:
                text = text[:56] + " ..."
            where = plan.sources.get(name, "notebook")
            lines.append(f"    {name:<{width}}  {text:<60}  {where}".rstrip())
        return "\n".join(lines)

    # -- execution -------------------------------------------------------------------------
    def _kernel_env(self, events: Path) -> dict[str, str]:
        env = dict(os.environ)
        env["STUDYLIB_EVENTS"] = str(events)
        if self.cache_dir is not None:
            env[paths.CACHE_ENV] = str(self.cache_dir)
        if self.data_root is not None:
            env[paths.DATA_ENV] = str(self.data_root)
        if self.download:
            env[paths.DOWNLOAD_ENV] = "1"
        if self.jobs > 1:
            from ..core.runtime import CPUS_ENV

            share = str(self.cpu_share())
            env[CPUS_ENV] = share
            if not os.environ.get("STUDYLIB_THREADS", "").strip():
                env["STUDYLIB_THREADS"] = share
        return env

    def cpu_share(self) -> int:
        """Cores each of the :attr:`jobs` studies that run at once may use (at least 1)."""
        return max(1, len(os.sched_getaffinity(0)) // self.jobs)

    def _run_papermill(self, plan: StudyPlan, output: Path, parameters: dict[str, Any],
                       env: dict[str, str], on_cell: Callable[..., None] | None,
                       cancel: Cancel | None = None) -> None:
        """Execute the notebook in a worker thread, with a kernel this process started.

        The calling thread only waits, so Ctrl-C, SIGTERM and SIGHUP reach it at once when it
        is the main thread; it then shuts the kernel down (the worker's execution ends with
        it) and re-raises. A caller that is not the main thread (``--jobs``) is stopped the
        same way through ``cancel``: once it is set, :class:`Interrupted` is raised here.
        Running nbclient outside the main thread also keeps it from installing signal
        handlers of its own.
        """
        import papermill
        from jupyter_client.manager import KernelManager

        from .progress import register_engine

        engine = register_engine()
        km = KernelManager(kernel_name=self.kernel_name)
        km.start_kernel(cwd=str(self.cwd), env=env)
        box: dict[str, BaseException] = {}

        def execute() -> None:
            try:
                papermill.execute_notebook(
                    str(plan.notebook), str(output), parameters=parameters,
                    engine_name=engine, kernel_name=self.kernel_name, progress_bar=False,
                    log_output=False, execution_timeout=self.execution_timeout,
                    start_timeout=self.start_timeout, km=km, on_cell=on_cell,
                    resources={"metadata": {"path": str(self.cwd)}})
            except BaseException as exc:  # handed to the waiting thread
                box["error"] = exc

        worker = threading.Thread(target=lambda: in_private_event_loop(execute),
                                  name=f"studylib-{plan.study}", daemon=True)
        try:
            worker.start()
            while worker.is_alive():
                worker.join(timeout=None if cancel is None else 0.2)
                if cancel is not None and cancel.is_set():
                    raise Interrupted(cancel.signame)
        except BaseException:
            _shutdown_kernel(km)
            # A hang guard: stopped from the main thread, the worker ends once the kernel is
            # gone. Stopped through ``cancel``, nbclient's blocking read of the dead kernel's
            # output never returns (measured: the full guard every time), so the worker, a
            # daemon thread blocked on a socket that gets no more messages, is left behind.
            worker.join(timeout=120 if cancel is None else 2)
            raise
        finally:
            _shutdown_kernel(km)
        if "error" in box:
            raise box["error"]

    def execute(self, plan: StudyPlan, *, label: str | None = None,
                cancel: Cancel | None = None) -> StudyOutcome:
        """Execute one validated plan; never raises for a failing notebook or an I/O error.

        The notebook runs into ``<output_dir>/.staging/`` and is swapped into place when it
        ends (:func:`studylib.cli.outputs.swap_in`): a run that finished ok replaces the
        previous results; a run that failed is recorded with status ``failed`` and its error,
        beside the last good results (in ``failed/``) when there are any. The partial
        notebook is kept either way. A signal (:class:`Interrupted`, ``KeyboardInterrupt``)
        stops the kernel, is recorded as a failure, and is re-raised; so is ``cancel`` once
        it is set (how :meth:`run_plans` stops the studies it runs in other threads).
        """
        from papermill.exceptions import PapermillExecutionError

        from .progress import EventTail, StudyProgress

        out = plan.output_dir
        show = self.log is not None and self.progress_bar is not False
        progress = StudyProgress(label or plan.study, stream=self.stream if show else None,
                                 show=show, tty=False if self.jobs > 1 else None)
        error: str | None = None
        detail: dict[str, Any] = {}
        interrupted: BaseException | None = None
        started = outputs.now_iso()
        t0 = time.perf_counter()
        try:
            staging = outputs.prepare_staging(out)
        except OSError as exc:
            return self._io_failure(plan, exc, time.perf_counter() - t0)
        events = staging / ".events.jsonl"
        tail = EventTail(events, progress.on_event).start()
        parameters = dict(plan.parameters, output_dir=self._injectable_path(staging))
        def on_cell(phase: str, nb: Any, index: int) -> None:
            tail.drain()  # the cell's own events first, then its line
            progress.on_cell(phase, nb, index)

        try:
            self._run_papermill(plan, staging / f"{plan.study}.ipynb", parameters,
                                self._kernel_env(events), on_cell, cancel)
        except PapermillExecutionError as exc:
            error = f"{exc.ename}: {exc.evalue}"
            detail = {"ename": exc.ename, "evalue": exc.evalue, "cell_index": exc.cell_index,
                      "exec_count": exc.exec_count}
        except KeyboardInterrupt as exc:
            interrupted = exc
            name = _signame(exc)
            error = f"Interrupted: run stopped by {name}"
            detail = {"ename": "Interrupted", "evalue": f"run stopped by {name}",
                      "signal": name}
        except Exception as exc:  # kernel died, notebook unreadable, ...
            error = f"{type(exc).__name__}: {exc}"
            detail = {"ename": type(exc).__name__, "evalue": str(exc)}
        finally:
            tail.stop()
            progress.close()
        runtime = time.perf_counter() - t0
        try:
            with outputs.signals_deferred():
                outcome = self._finish(plan, staging, error, detail, runtime, started,
                                       progress.cache)
        except OSError as exc:
            outcome = self._io_failure(plan, exc, runtime)
        if interrupted is not None:
            raise interrupted
        return outcome

    def _finish(self, plan: StudyPlan, staging: Path, error: str | None,
                detail: dict[str, Any], runtime: float, started: str,
                cache_events: list[dict[str, Any]]) -> StudyOutcome:
        """Tidy the staged run (bars out of the notebook, staging paths replaced by the final
        ones, HTML, a failed record if needed, run.json) and swap it into place."""
        import nbformat

        from .progress import strip_progress_outputs

        out = plan.output_dir
        nb_path = staging / f"{plan.study}.ipynb"
        results_path = staging / outputs.RESULTS
        final = {str(staging): str(out), self._injectable_path(staging): plan.parameters[
            "output_dir"]}
        if nb_path.exists():
            nb = nbformat.read(str(nb_path), as_version=4)
            strip_progress_outputs(nb)
            atomic_write_text(nb_path, nbformat.writes(nb))
            outputs.rewrite_paths(nb_path, final)
            if self.render_html:
                try:
                    self._render_html(nbformat.read(str(nb_path), as_version=4),
                                      staging / f"{plan.study}.html")
                except OSError:
                    raise
                except Exception as exc:  # rendering must not hide the study's result
                    self._say(f"[{plan.study}] HTML rendering failed: {exc}")
        if results_path.exists():
            outputs.rewrite_paths(results_path, final)
        results = read_json_object(results_path)
        if error is None:
            problem = _results_problem(results)
            if problem:
                error = problem
                detail = {"ename": "MissingResults", "evalue": error}
        if error is not None:
            results = self._failed_results(plan, error, detail, runtime, results)
            atomic_write_json(results_path, results)
        status = "failed" if error else "ok"
        files = sorted(p.name for p in staging.iterdir() if not p.name.startswith("."))
        record = {"study": plan.study, "profile": plan.profile, "status": status,
                  "error": error, "started": started, "finished": outputs.now_iso(),
                  "runtime_s": round(runtime, 2), "host": socket.gethostname(),
                  "inputs": self.inputs(plan), "files": files + [outputs.RUN_RECORD],
                  # repository-relative where possible, so a committed run.json names no
                  # machine's paths
                  "cache": [dict(e, path=_display_path(Path(str(e.get("path")))))
                            for e in cache_events]}
        record["fingerprint"] = outputs.fingerprint(record["inputs"])
        outputs.write_run_record(staging, record)
        where = outputs.swap_in(staging, out, ok=error is None,
                                known=(f"{plan.study}.html", f"{plan.study}.ipynb"))
        if error is not None and where != out:
            self._say(f"[{plan.study}] kept the last good results; this run's record and "
                      f"partial notebook: {_display_path(where)}")
        claims = results.get("claims", []) if results else []
        return StudyOutcome(
            study=plan.study, status=status, runtime_s=runtime, output_dir=out,
            n_claims=len(claims) if isinstance(claims, list) else 0,
            n_reproduced=sum(isinstance(c, dict) and c.get("verdict") == "reproduced"
                             for c in claims) if isinstance(claims, list) else 0,
            error=error, results=results or {})

    def _io_failure(self, plan: StudyPlan, exc: OSError, runtime: float) -> StudyOutcome:
        """An I/O error while staging or swapping: record the failure where possible (beside
        the last good results), say so in one line, and let the next study run."""
        error = f"{type(exc).__name__}: {exc}"
        self._say(f"[{plan.study}] failed: I/O error: {exc}")
        out = plan.output_dir
        results = self._failed_results(plan, error, {"ename": type(exc).__name__,
                                                     "evalue": str(exc), "io_error": True},
                                       runtime, None)
        target = out / outputs.FAILED_NAME if outputs.has_good_results(out) else out
        try:
            atomic_write_json(target / outputs.RESULTS, results)
        except OSError as again:
            self._say(f"[{plan.study}] could not write its failed record either: {again}")
        outputs.discard_staging(out)
        return StudyOutcome(study=plan.study, status="failed", runtime_s=runtime,
                            output_dir=out, error=error, results=results)

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
        partial = partial if isinstance(partial, dict) else {}
        metrics = partial.get("metrics") if isinstance(partial.get("metrics"), dict) else {}
        claims = partial.get("claims") if isinstance(partial.get("claims"), list) else []
        device = partial.get("device") if isinstance(partial.get("device"), str) else plan.device
        return {
            "study": plan.study,
            "profile": plan.profile,
            "status": "failed",
            "seeds": list(seeds) if isinstance(seeds, (list, tuple)) else [],
            "device": device,
            "runtime_s": round(runtime, 2),
            "params": dict(sorted(params.items())),
            "metrics": metrics,
            "claims": claims,
            "error": error,
            "error_detail": detail,
        }

    @staticmethod
    def _render_html(nb, path: Path) -> None:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        atomic_write_text(path, body)

    def run_plans(self, plans: list[StudyPlan], *, resume: bool = False) -> list[StudyOutcome]:
        """Execute validated plans, :attr:`jobs` at a time; a failure does not stop the rest.

        ``resume``: skip a plan whose folder already holds its results
        (:meth:`up_to_date`), reporting it as ``skipped``. Outcomes come back in the order of
        ``plans`` whatever order they ran in. A signal stops every running study (each records
        its failure) and starts no other; it is then re-raised.
        """
        outcomes: dict[int, StudyOutcome] = {}
        todo: list[tuple[int, str, StudyPlan]] = []
        for i, plan in enumerate(plans, 1):
            tag = f"[{i}/{len(plans)}] {plan.study}"
            if resume:
                fresh, reason = self.up_to_date(plan)
                if fresh:
                    res = read_json_object(plan.output_dir / outputs.RESULTS) or {}
                    claims = res.get("claims", []) or []
                    self._say(f"{tag}: skipped ({reason})")
                    outcomes[i] = StudyOutcome(
                        study=plan.study, status="skipped",
                        runtime_s=float(res.get("runtime_s") or 0.0),
                        output_dir=plan.output_dir, n_claims=len(claims),
                        n_reproduced=sum(c.get("verdict") == "reproduced" for c in claims),
                        results=res)
                    continue
            todo.append((i, tag, plan))
        if self.jobs == 1 or len(todo) <= 1:
            for i, tag, plan in todo:
                outcomes[i] = self._execute_said(plan, tag)
        else:
            self._run_concurrently(todo, outcomes)
        return [outcomes[i] for i in sorted(outcomes)]

    def _execute_said(self, plan: StudyPlan, tag: str, cancel: Cancel | None = None
                      ) -> StudyOutcome:
        self._say(f"{tag} (profile {plan.profile}, device {plan.device}) -> "
                  f"{_display_path(plan.output_dir)}")
        outcome = self.execute(plan, label=tag, cancel=cancel)
        msg = f"{tag}: {outcome.status} in {outcome.runtime_s:.1f} s"
        if outcome.error:
            msg += f" ({outcome.error})"
        self._say(msg)
        return outcome

    def last_runtime(self, plan: StudyPlan) -> float | None:
        """The runtime its folder's last results record (None when there is none)."""
        res = read_json_object(plan.output_dir / outputs.RESULTS)
        value = res.get("runtime_s") if res else None
        return float(value) if isinstance(value, (int, float)) else None

    def _run_concurrently(self, todo: list[tuple[int, str, StudyPlan]],
                          outcomes: dict[int, StudyOutcome]) -> None:
        """:attr:`jobs` studies at a time in threads, the longest (last runtime) first, so
        the last to finish is a short one; studies never run before wait at the end."""
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        order = sorted(todo, key=lambda t: (-(self.last_runtime(t[2]) or -1.0), t[0]))
        self._say(f"running {len(todo)} studies {self.jobs} at a time, "
                  f"{self.cpu_share()} core{'s' if self.cpu_share() != 1 else ''} each; "
                  f"start order: {', '.join(p.study for _, _, p in order)}")
        cancel = Cancel()
        pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="studylib-job")
        futures = {pool.submit(self._execute_said, plan, tag, cancel): i
                   for i, tag, plan in order}
        pending = set(futures)
        stop: BaseException | None = None
        try:
            while pending:
                try:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP as Interrupted
                    stop = exc
                    cancel.set(_signame(exc))
                    for fut in pending:
                        fut.cancel()  # those not started yet never start
                    continue
                for fut in done:
                    if fut.cancelled():
                        continue
                    try:
                        outcomes[futures[fut]] = fut.result()
                    except KeyboardInterrupt as exc:  # the study recorded its stop
                        stop = stop or exc
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if stop is not None:
            raise stop


def _shutdown_kernel(km) -> None:
    """Stop a kernel now (safe to call twice, and when it never started)."""
    try:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    except Exception:  # it may be gone already; make sure the process is
        with contextlib.suppress(Exception):
            km.kill_kernel()
    with contextlib.suppress(Exception):
        km.cleanup_resources()


def _results_problem(results: dict[str, Any] | None) -> str | None:
    """Why a results.json a notebook wrote is not a finished study's, or None."""
    from ..core.results import contract_problem

    if results is None or results.get("status") != "ok":
        return ("notebook finished without writing results.json with status ok "
                "(is ctx.finish() its last cell?)")
    return contract_problem(results)


def _display_path(path: Path) -> str:
    try:
        return Path(path).relative_to(paths.REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def format_outcomes(outcomes: list[StudyOutcome], *, wall_s: float | None = None,
                    jobs: int = 1) -> str:
    """The final table: study, status, runtime, claims reproduced / total; with ``wall_s``
    a last line with the run's wall clock against the summed runtimes (they differ when
    ``jobs`` > 1 studies ran at once)."""
    rows = [("study", "status", "runtime", "claims reproduced")]
    for o in outcomes:
        rows.append((o.study, o.status, f"{o.runtime_s:.1f} s", f"{o.n_reproduced}/{o.n_claims}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if wall_s is not None:
        total = sum(o.runtime_s for o in outcomes)
        lines.append(f"\n{len(outcomes)} stud{'y' if len(outcomes) == 1 else 'ies'} in "
                     f"{wall_s / 60:.1f} min wall clock, {jobs} at a time ({total / 60:.1f} min "
                     f"summed over the studies)")
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


def _write_report_safely(profile: str, root: Path) -> Path | None:
    """REPORT.md, or a one-line message (and None) when it cannot be written."""
    from .report import write_report

    try:
        return write_report(profile, root)
    except Exception as exc:  # the studies' own records are written already
        print(f"error: REPORT.md could not be written: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return None


def cmd_run(args) -> int:
    """``python -m studylib run``: plan, check, lock, run, report (see the module docstring).

    Exit codes: 0 all ok (or skipped), 1 a study failed, 2 invalid input or a folder in use
    (nothing ran), 128 + N stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
    """
    if getattr(args, "strict_determinism", False):
        from ..core.runtime import DETERMINISM_ENV

        os.environ[DETERMINISM_ENV] = "strict"  # the kernels inherit this process's environment
    runner = Runner(notebooks_dir=args.notebooks_dir, params_dir=args.params_dir,
                    output_root=args.output_root,
                    execution_timeout=getattr(args, "timeout", None),
                    cache_dir=getattr(args, "cache_dir", None),
                    data_root=getattr(args, "data_root", None),
                    download=getattr(args, "download", False),
                    jobs=getattr(args, "jobs", 1) or 1)
    plans = runner.plan(args.profile, studies=args.study, sets=args.set, device=args.device,
                        replaces=getattr(args, "replace", None))
    if not plans:
        print(f"no studies under {runner.notebooks_dir}: nothing to run", file=sys.stderr)
        return 0
    if getattr(args, "dry_run", False):
        runner.check_writable(plans, create=False)
        print(f"dry run: {len(plans)} stud{'y' if len(plans) == 1 else 'ies'}, profile "
              f"{args.profile}; nothing is executed or written\n")
        print("\n\n".join(runner.describe(p) for p in plans))
        return 0
    runner.check_writable(plans)
    locks = outputs.LockSet([p.output_dir for p in plans]).acquire()
    root = runner.output_root
    try:
        with termination_as_interrupt():
            try:
                began = time.monotonic()
                outcomes = runner.run_plans(plans, resume=getattr(args, "resume", False))
                wall = time.monotonic() - began
            except KeyboardInterrupt as exc:
                code = exc.exit_code if isinstance(exc, Interrupted) else 130
                print(f"\ninterrupted ({_signame(exc)}): writing the report of what finished",
                      file=sys.stderr)
                with outputs.signals_deferred():
                    report = _write_report_safely(args.profile, root)
                if report is not None:
                    print(f"report: {_display_path(report)}")
                return code
            print()
            print(format_outcomes(outcomes, wall_s=wall, jobs=runner.jobs))
            report = _write_report_safely(args.profile, root)
    finally:
        locks.release()
    if report is not None:
        print(f"\nreport: {_display_path(report)}")
    failed = [o.study for o in outcomes if o.status == "failed"]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0 if report is not None else 1
