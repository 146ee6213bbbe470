"""Device choice, seeding, deterministic mode, progress bars and the ``StudyContext``."""

from __future__ import annotations

import math
import os
import platform
import random
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import paths
from .io import atomic_write_json, to_jsonable
from .results import VERDICTS, validate_results

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


def set_deterministic(enabled: bool = True) -> None:
    """Ask torch for deterministic kernels (warn, don't fail, where an op has none)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = enabled
        torch.backends.cudnn.benchmark = not enabled


def progress_enabled() -> bool:
    """Progress bars are on unless ``STUDYLIB_PROGRESS`` is 0/false/no/off.

    ``make notebooks`` and ``make test`` turn them off so committed notebook outputs and nbval
    re-runs compare equal; Papermill runs through ``python -m studylib run`` keep them.
    """
    return os.environ.get("STUDYLIB_PROGRESS", "1").strip().lower() not in _PROGRESS_OFF


def progress(iterable: Iterable | None = None, desc: str | None = None, total: int | None = None,
             leave: bool = False, **kwargs: Any):
    """A plain-text tqdm bar (no widgets, so notebooks render statically) on stderr."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=not progress_enabled(),
                mininterval=1.0, dynamic_ncols=False, ncols=90, file=sys.stderr, **kwargs)


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

    # -- results ---------------------------------------------------------------------------
    def record_metric(self, name: str, value: float | int | None) -> float | None:
        """Record a scalar metric under ``name`` (NaN and None are stored as null)."""
        if value is None:
            self.metrics[name] = None
            return None
        v = float(value)
        self.metrics[name] = None if math.isnan(v) else v
        return self.metrics[name]

    def claim(self, id: str, statement: str, verdict: str, evidence: dict[str, Any]) -> dict:
        """Record a claim with its computed verdict and the numbers behind it."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
        if any(c["id"] == id for c in self.claims):
            raise ValueError(f"claim {id!r} was recorded twice")
        entry = {"id": id, "statement": statement, "verdict": verdict,
                 "evidence": to_jsonable(evidence)}
        self.claims.append(entry)
        # The verdict line only: the evidence is in results.json, and its raw numbers would
        # print float noise (the notebook prints what a reader needs, through studylib.fmt).
        print(f"[{verdict}] {id}")
        return entry

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
