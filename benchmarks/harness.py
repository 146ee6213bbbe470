"""Timing and reporting for ``make bench``: each comparison checks equal results, then times.

A comparison is a function ``case(device, reps) -> CaseResult``. It must first check that the
kit's path and the reference path give the same results (raising :class:`BenchmarkMismatch`
when they do not: a mismatch fails the benchmark instead of printing a speed) and only then
time both sides on the same inputs in this one process.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from studylib.core.io import atomic_write_json, atomic_write_text, replace_between_markers


class BenchmarkMismatch(AssertionError):
    """The two sides of a comparison did not give the same results."""


@dataclass
class Timing:
    """Wall-clock seconds over repetitions (after one untimed warm-up call)."""

    median_s: float
    min_s: float
    max_s: float
    reps: int

    @classmethod
    def of(cls, fn: Callable[[], Any], reps: int = 5, device: torch.device | None = None) -> Timing:
        fn()  # warm-up: allocations, lazy init, caches
        return cls.from_times([_timed(fn, device) for _ in range(max(1, reps))])

    @classmethod
    def from_times(cls, times: list[float]) -> Timing:
        """Median, min and max of measured seconds."""
        if not times:
            raise ValueError("times must not be empty")
        return cls(statistics.median(times), min(times), max(times), len(times))

    @classmethod
    def compare(cls, *fns: Callable[[], Any], reps: int = 5,
                device: torch.device | None = None) -> tuple[Timing, ...]:
        """Time several functions in alternation (a, b, ..., a, b, ...) after one warm-up call
        each, so that all see the same background load; one :class:`Timing` per function, in
        the order given.

        On a shared machine the load drifts over seconds; timing all repetitions of one side
        and then all of the other would let that drift show up as a speed difference."""
        if not fns:
            raise ValueError("compare needs at least one function")
        for fn in fns:
            fn()
        times: list[list[float]] = [[] for _ in fns]
        for _ in range(max(1, reps)):
            for i, fn in enumerate(fns):
                times[i].append(_timed(fn, device))
        return tuple(cls.from_times(t) for t in times)


def _timed(fn: Callable[[], Any], device: torch.device | None) -> float:
    """Seconds of one call of ``fn`` (CUDA work synchronised before and after)."""
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


@dataclass
class CaseResult:
    """One comparison's outcome. ``ratio`` is reference / ours for speed-ups (higher = ours
    faster) unless ``ratio_kind`` says otherwise; ``target_met`` compares it with ``target``."""

    name: str
    description: str
    equality: str
    ours: Timing | None = None
    reference: Timing | None = None
    ratio: float | None = None
    ratio_kind: str = "speed-up (reference time / ours)"
    target: str = ""
    target_met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def machine_info(device: torch.device) -> dict[str, str]:
    info = {"machine": platform.machine(), "processor": platform.processor() or "unknown",
            "cpu_threads": str(torch.get_num_threads()), "torch": torch.__version__,
            "python": platform.python_version(), "device": device.type}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:  # other jobs on the machine slow every timing: say how busy it was
        info["load_average_1min"] = f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} logical CPUs"
    except (AttributeError, OSError):  # pragma: no cover - not on every OS
        pass
    return info


def fmt_timing(t: Timing | None) -> str:
    """``median ms (min-max)`` of a timing, ``-`` for None."""
    return "-" if t is None else f"{t.median_s * 1e3:.1f} ms ({t.min_s * 1e3:.1f}-{t.max_s * 1e3:.1f})"


def fmt_ratio(r: CaseResult) -> str:
    """The ratio column: ``5.20x faster`` for speed-ups (reference / ours), ``1.05x time`` for
    time ratios (ours / reference), ``12.3 min`` for minutes, ``-`` when there is none."""
    if r.ratio is None:
        return "-"
    if r.ratio_kind.startswith("minutes"):
        return f"{r.ratio:.1f} min"
    if r.ratio_kind.startswith("time ratio"):
        return f"{r.ratio:.2f}x time"
    return f"{r.ratio:.2f}x faster"


def write_reports(results: list[CaseResult], device: torch.device, out_dir: Path) -> tuple[Path, Path]:
    """Write ``bench.json`` and ``BENCH.md`` (atomically) into ``out_dir``."""
    info = machine_info(device)
    payload = {"machine": info, "cases": [asdict(r) for r in results]}
    json_path = atomic_write_json(out_dir / "bench.json", payload)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m benchmarks`). Each row first checks that both sides",
        "give the same results, then times them in one process on the same inputs: median of",
        "the repetitions after a warm-up, (min-max) beside it.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        "| # | comparison | equal results | studylib | reference | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        ratio = fmt_ratio(r)
        met = {True: "yes", False: "**no**", None: "-"}[r.target_met]
        if r.error:
            met = f"**error**: {r.error}"
        cells = [str(i), r.description, r.equality, fmt_timing(r.ours), fmt_timing(r.reference),
                 ratio, r.target, met]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    extras = [(r.name, r.extra) for r in results if r.extra]
    if extras:
        lines += ["", "## Details", ""]
        for name, extra in extras:
            lines.append(f"- `{name}`: " + "; ".join(f"{k} = {v}" for k, v in extra.items()))
    md_path = atomic_write_text(out_dir / "BENCH.md", "\n".join(lines) + "\n")
    return json_path, md_path


README_START = "<!-- bench:start (written by `python -m benchmarks --readme README.md`) -->"
README_END = "<!-- bench:end -->"


def readme_markdown(payload: dict[str, Any]) -> str:
    """The README's benchmark table from a ``bench.json`` payload: one row per comparison
    (median times, ratio, target, met) and the machine it was measured on."""
    info = payload.get("machine", {})
    where = ", ".join(str(info[k]) for k in ("cpu", "gpu") if info.get(k)) or "unknown machine"
    lines = [f"Latest `make bench` figures, measured on {where} ({info.get('device', '?')}, "
             f"{info.get('cpu_threads', '?')} torch threads, load average "
             f"{info.get('load_average_1min', '?')}, torch {info.get('torch', '?')}); details in "
             "[`outputs/bench/BENCH.md`](outputs/bench/BENCH.md):", "",
             "| # | comparison | studylib | reference | ratio | target | met |",
             "|---|---|---|---|---|---|---|"]
    for i, case in enumerate(payload.get("cases", []), 1):
        r = CaseResult(**{k: v for k, v in case.items() if k not in ("ours", "reference")},
                       ours=Timing(**case["ours"]) if case.get("ours") else None,
                       reference=Timing(**case["reference"]) if case.get("reference") else None)
        met = "error" if r.error else {True: "yes", False: "**no**", None: "-"}[r.target_met]
        ours = "-" if r.ours is None else f"{r.ours.median_s * 1e3:.0f} ms"
        ref = "-" if r.reference is None else f"{r.reference.median_s * 1e3:.0f} ms"
        cells = [str(i), r.description, ours, ref, fmt_ratio(r), r.target or "-", met]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def update_readme(readme: str | os.PathLike, bench_json: str | os.PathLike) -> Path:
    """Rewrite the benchmark section of ``readme`` (between :data:`README_START` and
    :data:`README_END`) from ``bench_json``."""
    import json

    payload = json.loads(Path(bench_json).read_text(encoding="utf-8"))
    return replace_between_markers(readme, README_START, README_END, readme_markdown(payload))
