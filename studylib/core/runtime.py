"""Device choice, seeding, deterministic mode, progress bars and the ``StudyContext``."""

from __future__ import annotations

import math
import os
import platform
import random
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import paths
from .io import atomic_write_json, to_jsonable
from .results import validate_results

_PROGRESS_OFF = {"0", "false", "no", "off"}


def select_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda if available else cpu; ``"cpu"``; ``"cuda"`` (error if unavailable)."""
    if isinstance(spec, torch.device):
        return spec
    spec = str(spec).lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {spec!r} was asked for but torch sees no CUDA device "
                f"(torch {torch.__version__}); use device='cpu' or 'auto'"
            )
        return torch.device(spec)
    if spec == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {spec!r}")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) generators."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


DETERMINISM_ENV = "STUDYLIB_DETERMINISTIC"


def set_deterministic(enabled: bool = True, *, strict: bool | None = None) -> None:
    """Ask torch for deterministic kernels.

    By default an op without a deterministic kernel warns and runs (on a CPU every op the kit
    uses has one; on CUDA the kit's models avoid the known exceptions, e.g. the ResNet pools
    with a mean instead of ``AdaptiveAvgPool2d``). ``strict=True``, or the environment
    variable ``STUDYLIB_DETERMINISTIC=strict`` (``python -m studylib run
    --strict-determinism``), makes such an op raise instead, so "same seed, same numbers" is
    enforced rather than hoped for.
    """
    if strict is None:
        strict = os.environ.get(DETERMINISM_ENV, "").strip().lower() == "strict"
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=not (enabled and strict))
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = enabled
        torch.backends.cudnn.benchmark = not enabled


def progress_enabled() -> bool:
    """Progress bars are on unless ``STUDYLIB_PROGRESS`` is 0/false/no/off.

    ``make notebooks`` and ``make test`` turn them off so committed notebook outputs and nbval
    re-runs compare equal; Papermill runs through ``python -m studylib run`` keep them, and
    send them to the runner's terminal rather than into the notebook (see :func:`progress`).
    """
    return os.environ.get("STUDYLIB_PROGRESS", "1").strip().lower() not in _PROGRESS_OFF


# ----------------------------------------------------------------------------- the event channel
#
# ``python -m studylib run`` gives every kernel it starts a file to append progress events to
# (``$STUDYLIB_EVENTS``, one JSON object per line) and forwards them to its own terminal
# (``studylib.cli.progress``). Progress bars therefore reach the person running the study, and
# stay out of the executed notebook and its HTML. Without the variable (JupyterLab, nbval, a
# plain ``papermill`` call) bars go to stderr as usual.

#: The environment variable naming the event file of a kernel started by the runner.
EVENTS_ENV = "STUDYLIB_EVENTS"


class _EventChannel:
    """Appends one JSON line per event to ``$STUDYLIB_EVENTS``.

    The file is opened for each event (a bar redraws at most once a second), so no handle
    outlives a kernel or a test that sets the variable.
    """

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()

    def emit(self, event: dict[str, Any]) -> bool:
        import json

        path = os.environ.get(EVENTS_ENV)
        if not path:
            return False
        line = json.dumps(event, default=str) + "\n"
        with self._lock:
            try:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError:  # progress must never fail a study (e.g. a full disk)
                return False
        return True


_CHANNEL = _EventChannel()


def emit_event(kind: str, **fields: Any) -> bool:
    """Send an event to the runner's terminal; False when no runner listens.

    Kinds the runner understands: ``bar`` (``text``: a progress bar's current line; an empty
    text means the bar closed), ``notice`` (``text``: a line to print) and ``cache`` (``kind``,
    ``path``, ``hit``: a cache entry a study read or wrote, kept in the folder's ``run.json``
    so ``run --dry-run`` can say which cached models exist).
    """
    return _CHANNEL.emit({"event": kind, **fields})


def notify(message: str, *, warn: bool = False) -> None:
    """Say something the person running a study must see, e.g. that a cache entry was
    unreadable and is being rebuilt: on the runner's terminal (when a runner listens) and on
    stderr, which is the notebook's output in a kernel and the terminal otherwise.

    ``warn=True`` issues it as a ``UserWarning`` instead of a plain stderr line (so callers
    and tests can catch it with the warnings machinery).
    """
    emit_event("notice", text=message)
    if warn:
        import warnings

        warnings.warn(message, UserWarning, stacklevel=3)
    else:
        print(message, file=sys.stderr, flush=True)


class _BarStream:
    """A file-like target for tqdm that turns each redraw into a ``bar`` event."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        line = text.replace("\n", "\r").split("\r")
        shown = next((part.strip() for part in reversed(line) if part.strip()), "")
        emit_event("bar", text=shown)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def progress(iterable: Iterable | None = None, desc: str | None = None, total: int | None = None,
             leave: bool = False, **kwargs: Any):
    """A plain-text tqdm bar (no widgets, so notebooks render statically).

    Under ``python -m studylib run`` the bar goes to the runner's terminal (the event channel
    above), never into the executed notebook; elsewhere it is drawn on stderr. Off when
    ``STUDYLIB_PROGRESS`` is 0.
    """
    from tqdm import tqdm

    target = _BarStream() if os.environ.get(EVENTS_ENV) else sys.stderr
    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=not progress_enabled(),
                mininterval=1.0, dynamic_ncols=False, ncols=90, file=target, **kwargs)


_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}
_PARAM_TYPES = (bool, int, float, str, list, tuple, dict, type(None))


def capture_parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """The notebook's parameters: JSON-able plain values among the globals, sorted by name.

    Call it right after the ``parameters`` cell (and Papermill's injected cell), before any
    other variable exists: ``params = capture_parameters(globals())``. Modules, functions,
    IPython's own names and names starting with ``_`` are left out.
    """
    out: dict[str, Any] = {}
    for name, value in namespace.items():
        if name.startswith("_") or name in _IPYTHON_NAMES or not isinstance(value, _PARAM_TYPES):
            continue
        try:
            out[name] = to_jsonable(value)
        except TypeError:
            continue
    return dict(sorted(out.items()))


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process so far, in MiB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024, 1)


def apply_thread_setting() -> int:
    """Honour ``STUDYLIB_THREADS`` (torch intra-op threads); return the thread count in use.

    Left unset, torch's default (one thread per physical core) is kept. Results are identical
    for any thread count on the kit's CPU code paths, but a machine shared with other jobs
    runs much faster with 1 thread than with oversubscribed spinning threads.
    """
    value = os.environ.get("STUDYLIB_THREADS", "").strip()
    if value:
        n = int(value)
        if n < 1:
            raise ValueError(f"STUDYLIB_THREADS must be a positive integer, got {value!r}")
        torch.set_num_threads(n)
    return torch.get_num_threads()


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: as they are), restored after."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


#: Cores one study may use, set by the runner for each study when several run at once
#: (``studylib run --jobs N``): :func:`cpu_workers` starts no more worker processes than this.
CPUS_ENV = "STUDYLIB_CPUS"


def available_cpus() -> int:
    """Cores this study may use: ``$STUDYLIB_CPUS`` when the runner set it (several studies
    share the machine), else the cores this process may run on."""
    cores = len(os.sched_getaffinity(0))
    value = os.environ.get(CPUS_ENV, "").strip()
    if not value:
        return cores
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{CPUS_ENV} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{CPUS_ENV} must be a positive integer, got {value!r}")
    return min(n, cores)


def cpu_workers(requested: int, n_jobs: int, device: torch.device) -> int:
    """How many worker processes to run ``n_jobs`` independent jobs in: ``requested`` (0: one
    per core this study may use, :func:`available_cpus`), at most ``n_jobs``, and at most
    ``$STUDYLIB_CPUS`` when the runner shares the machine between studies; 1 (this process)
    off the CPU. Each worker runs one torch thread, and a single worker's jobs run in this
    process with one thread, so the count never changes a number."""
    if device.type != "cpu":
        return 1
    n = requested or available_cpus()
    if os.environ.get(CPUS_ENV, "").strip():
        n = min(n, available_cpus())
    return max(1, min(n, n_jobs))


def _cpu_worker_init(cache_dir: str, checkpoint_dir: str) -> None:
    torch.set_num_threads(1)
    paths.CACHE_DIR, paths.CHECKPOINT_DIR = Path(cache_dir), Path(checkpoint_dir)


def cpu_worker_pool(n_workers: int):
    """A ``spawn`` process pool of ``n_workers`` for CPU jobs: each worker runs one torch thread
    (so a job's numbers do not depend on how many run at once) and uses this process's cache
    folders (``paths.CACHE_DIR``, ``paths.CHECKPOINT_DIR``, also when a test redirected them)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(n_workers, mp_context=get_context("spawn"),
                               initializer=_cpu_worker_init,
                               initargs=(str(paths.CACHE_DIR), str(paths.CHECKPOINT_DIR)))


def environment_info(device: torch.device) -> dict[str, str]:
    """Versions and hardware that produced a result (recorded in results.json)."""
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__.split("+")[0],
        "platform": platform.machine(),
        "cpu_threads": str(torch.get_num_threads()),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class StudyContext:
    """Everything a study notebook shares: where to write, which seeds, which device, results.

    Args:
        study: the study id, e.g. ``"06_taylor_pruning"``.
        profile: ``"smoke"`` | ``"default"`` | ``"paper"`` (free text, recorded).
        output_dir: folder for ``results.json`` and ``figures/``; relative paths are taken from
            the repository root (see :func:`studylib.core.paths.resolve`).
        device: ``"auto"`` | ``"cpu"`` | ``"cuda"`` or a ``torch.device``.
        seeds: the seeds the study loops over (a non-empty list of ints).
        params: the notebook's parameters (``capture_parameters(globals())``), recorded.
        deterministic: turn on torch's deterministic mode (default True).

    Example:
        >>> ctx = StudyContext("06_taylor_pruning", "smoke", "outputs/smoke/06", "cpu", [0], {})
        >>> ctx.record_metric("accuracy", 0.91)
        >>> path = ctx.finish()
    """

    def __init__(self, study: str, profile: str = "smoke", output_dir: str | Path | None = None,
                 device: str | torch.device = "auto", seeds: Iterable[int] = (0,),
                 params: dict[str, Any] | None = None, *, deterministic: bool = True) -> None:
        from .plotting import set_theme

        self.study = str(study)
        self.profile = str(profile)
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("seeds must name at least one seed, e.g. [0, 1, 2]")
        self.device = select_device(device)
        self.output_dir = paths.resolve(output_dir or f"outputs/{self.profile}/{self.study}")
        self.figures_dir = self.output_dir / "figures"
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        self.params = to_jsonable(params or {})
        self.metrics: dict[str, float | None] = {}
        self.claims: list[dict[str, Any]] = []
        self._t0 = time.perf_counter()
        apply_thread_setting()
        set_deterministic(deterministic)
        seed_everything(self.seeds[0])
        set_theme()

    def banner(self) -> str:
        """What this render shows, for the top of a notebook: the profile, where its values
        come from, and the seeds. A rendered notebook in ``outputs/<profile>/`` and the
        committed one (the notebook's own defaults, the smoke profile) then say which they are.
        """
        src = (f"params/{self.study}/{self.profile}.yaml over the notebook's defaults"
               if self.profile != "smoke" else "the notebook's own defaults")
        data = ("real data sets read from the data root" if self.profile == "paper"
                else "embedded data (scikit-learn digits, procedural generators)")
        seeds = self.seeds if len(self.seeds) <= 3 else f"{len(self.seeds)} seeds " \
            f"({self.seeds[0]}..{self.seeds[-1]})"
        return (f"This render: profile `{self.profile}` ({src}); {data}; seeds {seeds}. Every "
                "number below comes from this profile.")

    # -- results ---------------------------------------------------------------------------
    def record_metric(self, name: str, value: float | int | None) -> float | None:
        """Record a scalar metric under ``name`` (NaN and None are stored as null)."""
        if value is None:
            self.metrics[name] = None
            return None
        v = float(value)
        self.metrics[name] = None if math.isnan(v) else v
        return self.metrics[name]

    def add(self, claim) -> None:
        """Record a typed claim (:class:`studylib.stats.Claim`) and show its readable block.

        Returns None, so that a cell ending in ``ctx.add(...)`` shows the block only."""
        if any(c["id"] == claim.id for c in self.claims):
            raise ValueError(f"claim {claim.id!r} was recorded twice")
        self.claims.append(claim.to_json())
        print(claim.block())

    def save_figure(self, fig, name: str, **kwargs: Any) -> Path:
        """Save ``fig`` as ``figures/<name>.png`` and show it inline (see plotting.save_figure)."""
        from .plotting import save_figure

        return save_figure(fig, name, self.figures_dir, **kwargs)

    @property
    def runtime_s(self) -> float:
        return time.perf_counter() - self._t0

    def results(self, status: str = "ok", error: str | None = None) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "study": self.study,
            "profile": self.profile,
            "status": status,
            "seeds": self.seeds,
            "device": self.device.type,
            "runtime_s": round(self.runtime_s, 2),
            "peak_rss_mib": peak_rss_mib(),
            "environment": environment_info(self.device),
            "params": self.params,
            "metrics": self.metrics,
            "claims": self.claims,
        }
        if error:
            obj["error"] = error
        return validate_results(obj)

    def finish(self) -> Path:
        """Write ``results.json`` (atomically) and print the table of claims."""
        path = atomic_write_json(self.output_dir / "results.json", self.results())
        n_rep = sum(c["verdict"] == "reproduced" for c in self.claims)
        print(f"{self.study} ({self.profile}): {n_rep}/{len(self.claims)} claims reproduced")
        width = max((len(c["id"]) for c in self.claims), default=10)
        for c in self.claims:
            print(f"  {c['id']:<{width}}  {c['verdict']}")
        return path
