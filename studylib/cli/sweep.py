"""Parameter sweeps: one study over a grid of overrides, run locally or on Dask distributed.

A sweep file (YAML, ``params/sweeps/<name>.yaml``) names the study, a base profile and either a
``grid`` (the cartesian product of value lists, in the file's key order) or a list of
``points`` (override dicts)::

    name: taylor_seeds_smoke      # optional, default: the file's stem
    study: 06_taylor_pruning
    profile: smoke                # base profile: smoke or a params/<study>/<profile>.yaml
    device: cpu                   # optional: auto | cpu | cuda
    set: {epochs: 2}              # optional: overrides shared by every point
    grid:
      seeds: [[0], [1], [2]]
    metric: pruned_accuracy       # optional: sweep-report's default metric

Each point's overrides are validated against the notebook's parameters cell (the runner's own
validation, :meth:`studylib.cli.runner.Runner.plan_one`) before anything is submitted. A point runs
Papermill into ``<output_root>/<name>/<point-id>/`` (``outputs/sweeps/`` by default), where the
point id hashes everything its results depend on (:meth:`Runner.inputs`): the merged parameter
values (notebook defaults, profile YAML, shared and point overrides), the device it runs on and
digests of the package code and of the notebook, as the checkpoint cache keys do. A rerun skips
every point whose ``results.json`` already says ``ok``; a rerun on another device, after
editing ``params/<study>/<profile>.yaml``, the notebook or the code gets new ids and runs (the
old points' folders are left as they are). A failed point is retried once and then recorded as
failed without stopping the others; Ctrl-C, SIGTERM and SIGHUP cancel the tasks not yet started.
The sweep's folder is locked while it runs (a second run of the same sweep exits 2).

Executors: ``local`` runs the points one after another in this process; ``dask`` submits one
task per point to a ``distributed.Client``: the scheduler given, or a ``LocalCluster`` on
127.0.0.1. When the device is ``cuda`` every task asks for the worker resource ``GPU=1``.
Dask is used rather than a home-made scheduler: it already handles remote workers, resources,
retries of lost workers and cancellation.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import paths
from ..core.io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json_object
from . import outputs
from .runner import (
    _NAME_RE,
    Interrupted,
    Runner,
    StudyPlan,
    ValidationError,
    _display_path,
    in_private_event_loop,
    load_yaml_mapping,
    termination_as_interrupt,
)

SWEEPS_DIR_NAME = "sweeps"
POINT_FILE = "point.json"
_SPEC_KEYS = {"name", "study", "profile", "device", "set", "grid", "points", "metric",
              "description"}


# ----------------------------------------------------------------------------- the sweep file


@dataclass
class SweepSpec:
    """A parsed sweep file.

    Attributes:
        name: output folder name (``name:`` or the file's stem).
        study: study id.
        profile: base profile.
        device: ``auto`` | ``cpu`` | ``cuda`` or None (the profile's/notebook's own).
        base: overrides shared by every point (``set:``).
        points: one override dict per point (grid expanded), in file order.
        varying: the parameter names that vary across points (grid keys / points' keys).
        metric: default metric for ``sweep-report`` (or None).
        path: the sweep file.
    """

    name: str
    study: str
    profile: str
    device: str | None
    base: dict[str, Any]
    points: list[dict[str, Any]]
    varying: list[str]
    metric: str | None = None
    path: Path | None = None


def load_sweep(path: str | os.PathLike) -> SweepSpec:
    """Parse and structurally check a sweep file (see the module docstring).

    Raises:
        ValidationError: unknown top-level keys, a missing study, both or neither of
            ``grid``/``points``, a grid value that is not a non-empty list, a point that is not
            a mapping, or two points with the same overrides.
    """
    path = paths.resolve(path)
    if not path.is_file():
        raise ValidationError(f"sweep file {path} does not exist")
    spec = load_yaml_mapping(path)
    where = _display_path(path)
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise ValidationError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid "
                              f"keys: {', '.join(sorted(_SPEC_KEYS))}")
    study = spec.get("study")
    if not isinstance(study, str) or not study:
        raise ValidationError(f"{where}: 'study' must name a study, e.g. study: 06_taylor_pruning")
    name = str(spec.get("name") or path.stem)
    if not _NAME_RE.match(name):
        raise ValidationError(f"{where}: name {name!r} may hold only letters, digits, _ . -")
    profile = str(spec.get("profile", "smoke"))
    device = spec.get("device")
    if device is not None:
        from .parameters import check_device

        check_device(device, f"{where}: device")
    base = spec.get("set") or {}
    if not isinstance(base, dict):
        raise ValidationError(f"{where}: 'set' must be a mapping of parameter: value")
    grid, points = spec.get("grid"), spec.get("points")
    if (grid is None) == (points is None):
        raise ValidationError(f"{where}: give exactly one of 'grid' (a mapping of parameter: "
                              f"[values]) or 'points' (a list of override mappings)")
    if grid is not None:
        if not isinstance(grid, dict) or not grid:
            raise ValidationError(f"{where}: 'grid' must be a non-empty mapping of parameter: "
                                  f"[values]")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValidationError(f"{where}: grid values of {key!r} must be a non-empty "
                                      f"list, got {values!r}")
        keys = list(grid)
        expanded = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
        varying = keys
    else:
        if not isinstance(points, list) or not points:
            raise ValidationError(f"{where}: 'points' must be a non-empty list of mappings")
        for i, p in enumerate(points):
            if not isinstance(p, dict):
                raise ValidationError(f"{where}: point {i} must be a mapping, got {p!r}")
        expanded = [dict(p) for p in points]
        varying = []
        for p in expanded:
            varying += [k for k in p if k not in varying]
    seen: dict[str, int] = {}
    for i, p in enumerate(expanded):
        pid = _overrides_key({**base, **p})
        if pid in seen:
            raise ValidationError(f"{where}: points {seen[pid]} and {i} have the same "
                                  f"overrides {p!r}")
        seen[pid] = i
    metric = spec.get("metric")
    return SweepSpec(name=name, study=study, profile=profile, device=device, base=dict(base),
                     points=expanded, varying=varying,
                     metric=str(metric) if metric else None, path=path)


def _overrides_key(overrides: dict[str, Any]) -> str:
    """Canonical JSON of a point's overrides (key order does not matter; 1 and 1.0 differ)."""
    return json.dumps(overrides, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def point_id(inputs: dict[str, Any]) -> str:
    """Id of a point: ``p`` + 10 hex digits of SHA-256 over the canonical JSON of its inputs
    (:meth:`studylib.cli.runner.Runner.inputs`: study, profile, merged parameter values,
    device, code and notebook digests). Key order does not matter; ``1`` and ``1.0`` differ."""
    return "p" + outputs.fingerprint(inputs)[:10]


@dataclass
class SweepPoint:
    """One validated point: its id, its own overrides, and the runner's plan."""

    id: str
    overrides: dict[str, Any]
    plan: StudyPlan

    @property
    def output_dir(self) -> Path:
        return self.plan.output_dir


def plan_sweep(spec: SweepSpec, runner: Runner, output_root: str | os.PathLike | None = None,
               device: str | None = None) -> list[SweepPoint]:
    """Validate every point against the study's parameters; nothing runs or is written.

    Args:
        spec: the parsed sweep file.
        runner: a :class:`~studylib.cli.runner.Runner` (its notebooks and params folders are used).
        output_root: sweeps root (default ``outputs/sweeps``); points go to
            ``<output_root>/<spec.name>/<point id>/``.
        device: overrides ``spec.device`` when given.

    Raises:
        ValidationError: naming the sweep file, the offending key (or point) and the valid
            parameters.
    """
    root = paths.resolve(output_root or paths.OUTPUTS_DIR / SWEEPS_DIR_NAME)
    where = _display_path(spec.path) if spec.path else spec.name
    runner.check_study(spec.study)
    runner.check_profile(spec.study, spec.profile)
    runner.validate_overrides(spec.study, spec.base, source=f"{where}: set",
                              allow_device=False)
    # grid / points keys first, for a message that names the key rather than a point
    names = [k for k in spec.varying if k not in runner.parameters(spec.study)]
    if names:
        runner.validate_overrides(spec.study, {names[0]: None}, source=f"{where}: grid",
                                  allow_device=False)
    dev = device or spec.device
    out: list[SweepPoint] = []
    for i, p in enumerate(spec.points):
        merged = {**spec.base, **p}
        plan = runner.plan_one(spec.study, spec.profile, merged, device=dev,
                               output_dir=root / spec.name / "pending",
                               source=f"{where}: point {i} ({_describe(p)})")
        pid = point_id(runner.inputs(plan))
        plan.output_dir = root / spec.name / pid
        plan.parameters["output_dir"] = runner._injectable_path(plan.output_dir)
        out.append(SweepPoint(id=pid, overrides=p, plan=plan))
    return out


def _describe(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items()) or "(no overrides)"


# ----------------------------------------------------------------------------- one point


@dataclass
class PointResult:
    """What happened to one point (``status``: ok | failed | skipped | cancelled)."""

    id: str
    overrides: dict[str, Any]
    status: str
    attempts: int = 0
    runtime_s: float = 0.0
    error: str | None = None
    n_claims: int = 0
    n_reproduced: int = 0


def run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Execute one point with up to ``1 + task["retries"]`` attempts (a Dask task function).

    Args:
        task: ``{"id", "overrides", "plan": StudyPlan, "cwd", "kernel_name", "render_html",
            "retries", "cache_dir", "data_root", "download"}`` (a plain dict so it pickles to
            any worker).

    Returns:
        A :class:`PointResult` as a dict. Also writes ``point.json`` (id, overrides, status,
        attempts, runtime) next to the point's ``results.json``.
    """
    return in_private_event_loop(lambda: _run_point(task))


def _run_point(task: dict[str, Any]) -> dict[str, Any]:
    plan: StudyPlan = task["plan"]
    runner = Runner(cwd=task.get("cwd"), kernel_name=task.get("kernel_name", "python3"),
                    render_html=task.get("render_html", True), progress_bar=False, log=None,
                    cache_dir=task.get("cache_dir"), data_root=task.get("data_root"),
                    download=bool(task.get("download", False)))
    retries = int(task.get("retries", 1))
    total = 0.0
    attempts = 0
    outcome = None
    for _ in range(1 + retries):
        attempts += 1
        outcome = runner.execute(plan)
        total += outcome.runtime_s
        if outcome.status == "ok":
            break
    assert outcome is not None
    result = PointResult(id=task["id"], overrides=task["overrides"], status=outcome.status,
                         attempts=attempts, runtime_s=round(total, 2), error=outcome.error,
                         n_claims=outcome.n_claims, n_reproduced=outcome.n_reproduced)
    _write_point_file(plan, result)
    return result.__dict__


def _write_point_file(plan: StudyPlan, result: PointResult) -> None:
    atomic_write_json(plan.output_dir / POINT_FILE, {
        "id": result.id, "study": plan.study, "profile": plan.profile, "device": plan.device,
        "overrides": result.overrides, "status": result.status, "attempts": result.attempts,
        "runtime_s": result.runtime_s, "error": result.error})


# ----------------------------------------------------------------------------- running


@dataclass
class SweepRun:
    """The outcome of :func:`run_sweep`: per-point results in the sweep's order."""

    spec: SweepSpec
    results: list[PointResult] = field(default_factory=list)
    interrupted: bool = False
    signal: str | None = None

    @property
    def failed(self) -> list[PointResult]:
        return [r for r in self.results if r.status == "failed"]


def _is_done(point: SweepPoint) -> bool:
    """The point's folder holds a valid results.json with status ok (its id already names
    its inputs, so those results are this point's)."""
    return outputs.has_good_results(point.output_dir)


def run_sweep(spec: SweepSpec, points: list[SweepPoint], *, executor: str = "local",
              scheduler: str | None = None, workers: int | None = None,
              processes: bool = True, retries: int = 1, render_html: bool = True,
              cwd: str | os.PathLike | None = None,
              point_fn: Callable[[dict[str, Any]], dict[str, Any]] = run_point,
              log: Any = "stderr", cache_dir: str | os.PathLike | None = None,
              data_root: str | os.PathLike | None = None, download: bool = False) -> SweepRun:
    """Run validated ``points`` and return their results (also written to ``sweep.json``).

    Args:
        spec: the sweep (for its name and folder).
        points: from :func:`plan_sweep`.
        executor: ``"local"`` (in this process, one after another) or ``"dask"``.
        scheduler: ``tcp://host:port`` of a running Dask scheduler; None starts a
            ``LocalCluster`` on 127.0.0.1 (dask only).
        workers: LocalCluster workers (default 2).
        processes: LocalCluster workers as processes (default) or threads of this process.
        retries: extra attempts for a failed point (default 1).
        render_html: render each point's notebook to HTML (default True).
        cwd: the kernels' working directory (default the repository root).
        point_fn: the task function (default :func:`run_point`).
        log: a text stream for progress lines (default ``"stderr"``: the current
            ``sys.stderr``; None: silent).
        cache_dir: the cache root of the points' kernels (default: $STUDYLIB_CACHE or
            outputs/cache, as seen by each worker).
        data_root, download: the data root of the points' kernels and whether their loaders
            may download (default: $STUDYLIB_DATA as each worker sees it; no downloads).

    Points whose ``results.json`` says ``ok`` are skipped. On Ctrl-C (or SIGTERM / SIGHUP
    inside :func:`termination_as_interrupt`) the points not yet started are cancelled,
    ``interrupted`` is set, and what finished is recorded.
    """
    if executor not in ("local", "dask"):
        raise ValidationError(f"--executor {executor!r} is not one of local, dask")
    run = SweepRun(spec=spec)
    by_id: dict[str, PointResult] = {}
    todo: list[SweepPoint] = []
    for p in points:
        if _is_done(p):
            by_id[p.id] = PointResult(id=p.id, overrides=p.overrides, status="skipped")
        else:
            todo.append(p)
    n_skip = len(points) - len(todo)

    def say(msg: str) -> None:
        if log is not None:
            print(msg, file=sys.stderr if log == "stderr" else log, flush=True)

    say(f"sweep {spec.name}: {len(points)} points of {spec.study} (profile {spec.profile}), "
        f"{n_skip} already ok and skipped, {len(todo)} to run with the {executor} executor")
    tasks = {p.id: {"id": p.id, "overrides": p.overrides, "plan": p.plan,
                    "cwd": str(paths.resolve(cwd or paths.REPO_ROOT)),
                    "kernel_name": "python3", "render_html": render_html, "retries": retries,
                    "cache_dir": str(paths.resolve(cache_dir)) if cache_dir else None,
                    "data_root": str(paths.resolve(data_root)) if data_root else None,
                    "download": bool(download)}
             for p in todo}
    done = 0

    def record(res: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        r = PointResult(**res)
        by_id[r.id] = r
        say(f"[{done}/{len(todo)}] {r.id} ({_describe(r.overrides)}): {r.status} in "
            f"{r.runtime_s:.1f} s, {r.attempts} attempt{'s' if r.attempts != 1 else ''}"
            + (f" ({r.error})" if r.error else ""))

    try:
        if executor == "local" or not todo:
            for p in todo:
                record(point_fn(tasks[p.id]))
        else:
            _run_dask(todo, tasks, record, scheduler=scheduler, workers=workers,
                      processes=processes, point_fn=point_fn, say=say)
    except KeyboardInterrupt as exc:
        run.interrupted = True
        run.signal = exc.signame if isinstance(exc, Interrupted) else "SIGINT"
        say(f"interrupted ({run.signal}): outstanding points cancelled")
    for p in points:
        run.results.append(by_id.get(p.id) or PointResult(id=p.id, overrides=p.overrides,
                                                          status="cancelled"))
    _write_manifest(spec, points, run)
    return run


def task_resources(points: list[SweepPoint]) -> dict[str, int] | None:
    """Dask worker resources a sweep's tasks need: ``{"GPU": 1}`` when the device is cuda."""
    if any(str(p.plan.device).startswith("cuda") for p in points):
        return {"GPU": 1}
    return None


def _run_dask(todo, tasks, record, *, scheduler, workers, processes, point_fn, say) -> None:
    from distributed import Client, LocalCluster, as_completed

    resources = task_resources(todo)
    cluster = None
    if scheduler:
        client = Client(scheduler)
        say(f"dask: connected to {scheduler}")
    else:
        n = workers or 2
        kwargs: dict[str, Any] = {}
        if resources:
            kwargs["resources"] = resources
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                               host="127.0.0.1", protocol="tcp://", dashboard_address=None,
                               **kwargs)
        client = Client(cluster)
        say(f"dask: LocalCluster with {n} worker{'s' if n != 1 else ''} at "
            f"{cluster.scheduler_address}")
    from distributed import Event

    # Set before the futures are cancelled: a worker may already hold a queued task when the
    # scheduler's cancellation reaches it, and the guard keeps such a task from starting.
    stop = Event(f"studylib-sweep-stop-{uuid.uuid4().hex}", client=client)
    futures = []
    try:
        for p in todo:
            futures.append(client.submit(_unless_stopped, point_fn, tasks[p.id], stop.name,
                                         key=f"point-{p.id}", pure=False, retries=1,
                                         resources=resources))
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except Exception as exc:  # the task itself died twice (e.g. a lost worker)
                tid = fut.key.removeprefix("point-")
                res = _task_crash(tasks[tid], exc)
            record(res)
    except KeyboardInterrupt:
        stop.set()
        client.cancel([f for f in futures if not f.done()])
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _unless_stopped(point_fn: Callable[[dict[str, Any]], dict[str, Any]], task: dict[str, Any],
                    stop_event: str) -> dict[str, Any]:
    """Run ``point_fn(task)`` on a Dask worker unless the sweep was interrupted meanwhile."""
    from distributed import Event

    if Event(stop_event).is_set():
        return {"id": task["id"], "overrides": task["overrides"], "status": "cancelled",
                "attempts": 0}
    return point_fn(task)


def _task_crash(task: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """Record a point whose task raised (not a notebook error: the worker or task died)."""
    plan: StudyPlan = task["plan"]
    error = f"{type(exc).__name__}: {exc}"
    result = PointResult(id=task["id"], overrides=task["overrides"], status="failed",
                         attempts=2, error=error)
    res_path = plan.output_dir / "results.json"
    prev = read_json_object(res_path)
    if not prev or prev.get("status") != "ok":
        atomic_write_json(res_path, {
            "study": plan.study, "profile": plan.profile, "status": "failed",
            "seeds": list(plan.parameters.get("seeds") or []), "device": plan.device,
            "runtime_s": 0.0, "params": plan.parameters, "metrics": {}, "claims": [],
            "error": error, "error_detail": {"ename": type(exc).__name__, "evalue": str(exc)}})
    _write_point_file(plan, result)
    return result.__dict__


def _write_manifest(spec: SweepSpec, points: list[SweepPoint], run: SweepRun) -> None:
    if not points:
        return
    sweep_dir = points[0].output_dir.parent
    atomic_write_json(sweep_dir / "sweep.json", {
        "name": spec.name, "study": spec.study, "profile": spec.profile,
        "file": _display_path(spec.path) if spec.path else None,
        "interrupted": run.interrupted,
        "points": [r.__dict__ for r in run.results]})


def format_sweep_table(run: SweepRun) -> str:
    """Text table: point id, overrides, status, attempts, runtime, claims reproduced."""
    rows = [("point", "overrides", "status", "attempts", "runtime", "claims")]
    for r in run.results:
        rows.append((r.id, _describe(r.overrides), r.status, str(r.attempts),
                     f"{r.runtime_s:.1f} s" if r.attempts else "",
                     f"{r.n_reproduced}/{r.n_claims}" if r.attempts else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_sweep_plan(points: list[SweepPoint]) -> str:
    """What ``sweep --dry-run`` prints: each point's id, overrides and whether it would run."""
    rows = [("point", "overrides", "state")]
    for p in points:
        state = "done (skipped)" if _is_done(p) else "would run"
        rows.append((p.id, _describe(p.overrides), state))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_sweep(args) -> int:
    spec = load_sweep(args.file)
    runner = Runner(notebooks_dir=getattr(args, "notebooks_dir", None),
                    params_dir=getattr(args, "params_dir", None), log=None,
                    cache_dir=getattr(args, "cache_dir", None),
                    data_root=getattr(args, "data_root", None))
    points = plan_sweep(spec, runner, args.output_root, device=args.device)
    if args.scheduler and args.executor != "dask":
        raise ValidationError("--scheduler needs --executor dask")
    if args.workers is not None and args.workers < 1:
        raise ValidationError(f"--workers must be at least 1, got {args.workers}")
    if not points:
        return 0
    sweep_dir = points[0].output_dir.parent
    if getattr(args, "dry_run", False):
        runner.check_writable([p.plan for p in points], create=False)
        print(f"dry run of sweep {spec.name}: {len(points)} points of {spec.study} (profile "
              f"{spec.profile}) into {_display_path(sweep_dir)}; nothing is executed\n")
        print(format_sweep_plan(points))
        return 0
    runner.check_writable([p.plan for p in points])
    with outputs.FolderLock(sweep_dir), termination_as_interrupt():
        run = run_sweep(spec, points, executor=args.executor, scheduler=args.scheduler,
                        workers=args.workers, cache_dir=getattr(args, "cache_dir", None),
                        data_root=getattr(args, "data_root", None),
                        download=getattr(args, "download", False))
    print()
    print(format_sweep_table(run))
    print(f"\noutputs: {_display_path(sweep_dir)}  (table and figure: "
          f"python -m studylib sweep-report --file {args.file})")
    if run.interrupted:
        return Interrupted(run.signal or "SIGINT").exit_code
    return 1 if run.failed else 0


# ----------------------------------------------------------------------------- sweep-report


def _cell(value: Any) -> str:
    if isinstance(value, (list, dict, bool)) or value is None:
        return json.dumps(value)
    return str(value)


def point_ids(spec: SweepSpec, sweep_dir: Path, runner: Runner | None = None) -> list[str]:
    """The folder name of each point of ``spec``, in order.

    A point's id as planned now (:func:`plan_sweep`) when that folder exists; else the id the
    last run recorded for the same overrides in ``sweep.json`` (a point run before the code,
    the notebook or the profile changed) when that folder exists; else the planned id.
    """
    manifest = read_json_object(sweep_dir / "sweep.json") or {}
    recorded = {_overrides_key(pt.get("overrides") or {}): pt.get("id")
                for pt in manifest.get("points", []) if isinstance(pt, dict)}
    try:
        planned = [p.id for p in plan_sweep(spec, runner or Runner(log=None),
                                            sweep_dir.parent)]
    except ValidationError:  # the study is not here (a report on another machine)
        planned = [None] * len(spec.points)
    ids = []
    for p, pid in zip(spec.points, planned, strict=True):
        old = recorded.get(_overrides_key(p))
        if pid and (sweep_dir / pid).is_dir():
            ids.append(pid)
        elif old and (sweep_dir / str(old)).is_dir():
            ids.append(str(old))
        else:
            ids.append(pid or str(old or "p-unknown"))
    return ids


def sweep_table(spec: SweepSpec, sweep_dir: Path, runner: Runner | None = None
                ) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the sweep report, one row per point of the sweep file.

    Columns: ``point``, the varying parameters, ``status``, ``attempts``, ``runtime_s``, each
    metric (``metric:<name>``) and each claim's verdict (``claim:<id>``). A point that never
    ran has status ``not run``. ``runner`` finds the study's notebook and profiles (default:
    the repository's).
    """
    rows: list[dict[str, Any]] = []
    metrics: list[str] = []
    claims: list[str] = []
    for p, pid in zip(spec.points, point_ids(spec, sweep_dir, runner), strict=True):
        res = read_json_object(sweep_dir / pid / "results.json") or {}
        info = read_json_object(sweep_dir / pid / POINT_FILE) or {}
        row: dict[str, Any] = {"point": pid}
        for k in spec.varying:
            row[k] = p.get(k, spec.base.get(k))
        row["status"] = res.get("status", "not run")
        row["attempts"] = info.get("attempts", "")
        row["runtime_s"] = res.get("runtime_s", "")
        point_metrics = res.get("metrics") if isinstance(res.get("metrics"), dict) else {}
        for name, value in point_metrics.items():
            col = f"metric:{name}"
            if col not in metrics:
                metrics.append(col)
            row[col] = value
        point_claims = res.get("claims") if isinstance(res.get("claims"), list) else []
        for c in point_claims:
            if not isinstance(c, dict):
                continue
            col = f"claim:{c.get('id')}"
            if col not in claims:
                claims.append(col)
            row[col] = c.get("verdict")
        rows.append(row)
    columns = ["point", *spec.varying, "status", "attempts", "runtime_s", *metrics, *claims]
    return columns, rows


def _plot_metric(rows, metric_col: str, x: str, hue: str | None, title: str) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import seaborn as sns

    try:
        from ..core.plotting import set_theme
        set_theme()
    except Exception:  # the theme is cosmetic
        sns.set_theme(style="whitegrid")
    data = [r for r in rows if r.get("status") == "ok" and isinstance(r.get(metric_col),
                                                                       (int, float))]
    if not data:
        return None
    xs = [r[x] for r in data]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xs)
    df = pd.DataFrame({
        "x": [v if numeric else _cell(v) for v in xs],
        "y": [float(r[metric_col]) for r in data],
        **({"hue": [_cell(r[hue]) for r in data]} if hue else {}),
    })
    order = sorted(set(df["x"])) if numeric else list(dict.fromkeys(df["x"]))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    sns.pointplot(data=df, x="x", y="y", hue="hue" if hue else None, order=order,
                  errorbar=("ci", 95), ax=ax, dodge=0.2 if hue else False)
    if not hue:
        sns.stripplot(data=df, x="x", y="y", order=order, color="0.3", size=3, alpha=0.6,
                      ax=ax, legend=False)
        if len(df) >= 2:  # the spread across all points, e.g. a sweep over seeds
            from ..stats import t_interval

            summary = t_interval(df["y"].tolist())
            lo, hi = summary.ci95
            ax.axhline(summary.estimate, color="0.4", lw=1, ls="--",
                       label=f"mean of {len(df)} points")
            if np.isfinite(lo) and np.isfinite(hi):
                ax.axhspan(lo, hi, color="0.5", alpha=0.15, label="95% CI of the mean")
            ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(x)
    ax.set_ylabel(metric_col.removeprefix("metric:"))
    ax.set_title(title)
    if hue:
        ax.legend(title=hue)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def write_sweep_report(spec: SweepSpec, output_root: str | os.PathLike | None = None,
                       metric: str | None = None, x: str | None = None,
                       runner: Runner | None = None) -> dict[str, Path]:
    """Write ``sweep_report.csv``, ``SWEEP_REPORT.md`` and ``<metric>.png`` for a sweep.

    Args:
        spec: the sweep file, parsed.
        output_root: sweeps root (default ``outputs/sweeps``).
        metric: metric to plot (default ``spec.metric``, else the first one recorded).
        x: parameter on the x axis (default the first varying one); the second varying
            parameter, if any, becomes the hue.
        runner: finds the study's notebook and profiles, for the point ids (default: the
            repository's).

    Returns:
        ``{"csv": path, "markdown": path, "figure": path}`` (no ``figure`` when no point
        recorded the metric).

    Raises:
        ValidationError: unknown metric or x parameter (listing the valid ones).
    """
    root = paths.resolve(output_root or paths.OUTPUTS_DIR / SWEEPS_DIR_NAME)
    sweep_dir = root / spec.name
    columns, rows = sweep_table(spec, sweep_dir, runner)
    metric_cols = [c for c in columns if c.startswith("metric:")]
    metric = metric or spec.metric
    if metric is not None and f"metric:{metric}" not in metric_cols:
        raise ValidationError(f"unknown metric {metric!r} for sweep {spec.name}; recorded "
                              f"metrics: {', '.join(c[7:] for c in metric_cols) or '(none)'}")
    if metric is None and metric_cols:
        metric = metric_cols[0][7:]
    if x is not None and x not in spec.varying:
        raise ValidationError(f"--x {x!r} is not a parameter of the sweep's grid; valid: "
                              f"{', '.join(spec.varying)}")
    varying = [k for k in spec.varying if len({_cell(r[k]) for r in rows}) > 1] or spec.varying
    x = x or varying[0]
    hue = next((k for k in varying if k != x), None)

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: _cell(r[c]) if c in r else "" for c in columns})
    out = {"csv": atomic_write_text(sweep_dir / "sweep_report.csv", buf.getvalue())}

    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    md = [f"# Sweep `{spec.name}`: {spec.study} (profile `{spec.profile}`)", "",
          f"{len(rows)} points: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
          + ". Written by `python -m studylib sweep-report`; each point's notebook, figures "
          "and results.json are in the folder named by its id.", ""]
    if spec.base:
        md += ["Shared overrides: " + _describe(spec.base), ""]
    md.append("| " + " | ".join(columns) + " |")
    md.append("|" + "---|" * len(columns))
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            if c == "point":
                v = f"[{v}]({v}/)"
            elif isinstance(v, float):
                v = f"{v:.4g}"
            else:
                v = _cell(v) if v != "" else ""
            cells.append(str(v).replace("|", "\\|"))
        md.append("| " + " | ".join(cells) + " |")
    md.append("")
    if metric:
        png = _plot_metric(rows, f"metric:{metric}", x, hue,
                           f"{spec.study}: {metric} by {x}")
        if png is not None:
            fig_name = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in metric)
            out["figure"] = atomic_write_bytes(sweep_dir / f"{fig_name}.png", png)
            md += [f"![{metric} by {x}]({fig_name}.png)", ""]
    out["markdown"] = atomic_write_text(sweep_dir / "SWEEP_REPORT.md", "\n".join(md))
    return out


def cmd_sweep_report(args) -> int:
    spec = load_sweep(args.file)
    runner = Runner(notebooks_dir=getattr(args, "notebooks_dir", None),
                    params_dir=getattr(args, "params_dir", None), log=None)
    out = write_sweep_report(spec, args.output_root, metric=args.metric, x=args.x,
                             runner=runner)
    for kind, path in out.items():
        print(f"{kind}: {_display_path(path)}")
    return 0
