"""Regression check of the smoke runs: a study's ``results.json`` against a committed reference.

Text comparison (nbval) is the wrong tool for numbers that come from trained models: float
differences between CPUs, thread counts and oneDNN kernels change the trained weights, and a
smoke-size model's accuracy then moves by a few points. This module compares what a run must
reproduce exactly (status, seeds, parameters, the claims and their verdicts, the names of the
metrics) and every metric within a tolerance stated for that metric in the reference file.

A reference is built from several runs of the same code under different conditions
(``python -m studylib.cli.regression write``, or ``make smoke-reference``): the value is that of
the first run, and the tolerance is :data:`SPREAD_FACTOR` times the largest deviation seen
across the conditions, but at least the floor of the metric's kind:

- *exact*: any other integer-valued metric equal in every run (a count fixed by the data or
  the architecture): no tolerance;
- *bounded*: a quantity in [-1, 1] by definition, told by its name (:data:`BOUNDED`:
  accuracies, AUCs, fractions, correlations): absolute tolerance, floor :data:`BOUNDED_FLOOR`;
- *unbounded*: anything else (a KL divergence, a logit): relative tolerance, floor
  :data:`RELATIVE_FLOOR`.

Timings and memory (``runtime``, ``seconds``, ``latency``, ``peak``...) are never compared.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import paths
from ..core.io import atomic_write_json, read_json_object

REFERENCE_SCHEMA = 1
REFERENCE_DIR = paths.REPO_ROOT / "tests" / "reference"
SPREAD_FACTOR = 3.0
BOUNDED_FLOOR = 0.05
RELATIVE_FLOOR = 0.10
BOUNDED = re.compile(r"(accuracy|auc|fraction|rate|share|detectable|pointing|spearman|kendall|"
                     r"rho|tau|correlation|ssim)", re.I)
TIMING = re.compile(r"(second|runtime|latency|wall|elapsed|timing|peak|rss|_ms$|_s$|speedup)",
                    re.I)


def reference_path(study: str, profile: str = "smoke", root: Path | None = None) -> Path:
    """Where the reference of ``study`` at ``profile`` lives (``tests/reference/<study>.<profile>.json``)."""
    return (root or REFERENCE_DIR) / f"{study}.{profile}.json"


@dataclass(frozen=True)
class Tolerance:
    """How far a metric may move: ``|new - ref| <= abs + rel * |ref|``."""

    abs: float = 0.0
    rel: float = 0.0

    def allows(self, reference: float | None, value: float | None) -> bool:
        if reference is None or value is None:
            return reference is None and value is None
        if math.isnan(reference) or math.isnan(value):
            return math.isnan(reference) and math.isnan(value)
        return abs(value - reference) <= self.abs + self.rel * abs(reference) + 1e-12


def _round_up(x: float, sig: int = 2) -> float:
    """``x`` rounded *up* to ``sig`` significant digits (tolerances are never rounded down)."""
    if x <= 0 or not math.isfinite(x):
        return x
    scale = 10 ** (math.floor(math.log10(x)) - sig + 1)
    return math.ceil(x / scale - 1e-9) * scale


def metric_kind(name: str, values: Sequence[float | None]) -> str:
    """``exact`` | ``bounded`` | ``unbounded`` | ``missing`` for a metric's values over runs."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < len(values):
        return "missing"
    if BOUNDED.search(name) and all(-1.0 <= v <= 1.0 for v in finite):
        return "bounded"  # also at 0 or 1 in every run: an AUC of 0.0 is not a count
    if all(float(v).is_integer() for v in finite) and len(set(finite)) == 1:
        return "exact"
    return "unbounded"


def tolerance_for(name: str, values: Sequence[float | None]) -> tuple[str, Tolerance, float]:
    """The kind, the tolerance and the observed spread of metric ``name`` over several runs.

    The first value is the reference; the spread is the largest deviation from it.
    """
    kind = metric_kind(name, values)
    if kind in ("missing", "exact"):
        return kind, Tolerance(), 0.0
    ref = float(values[0])
    spread = max(abs(float(v) - ref) for v in values)
    if kind == "bounded":
        return kind, Tolerance(abs=_round_up(max(BOUNDED_FLOOR, SPREAD_FACTOR * spread))), spread
    rel_spread = spread / abs(ref) if ref else math.inf
    rel = RELATIVE_FLOOR if rel_spread == 0 else max(RELATIVE_FLOOR, SPREAD_FACTOR * rel_spread)
    if not math.isfinite(rel):  # a reference of exactly 0 with movement: absolute instead
        return kind, Tolerance(abs=_round_up(SPREAD_FACTOR * spread)), spread
    return kind, Tolerance(rel=_round_up(rel)), spread


INJECTED = ("output_dir",)  # parameters the runner sets per run: where it writes


def _params(results: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (results.get("params") or {}).items() if k not in INJECTED}


def _verdicts(results: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in results.get("claims", [])}


def build_reference(runs: Sequence[dict[str, Any]], conditions: Sequence[str]) -> dict[str, Any]:
    """A reference from ``runs`` (results.json objects of one study, same code, other conditions).

    Raises:
        ValueError: when the runs disagree on anything that must be exact (status, verdicts,
            parameters, the set of metrics): such a study is not reproducible at this profile,
            and that must be fixed in the study, not hidden by a tolerance.
    """
    if not runs or len(runs) != len(conditions):
        raise ValueError("give one condition label per run, and at least one run")
    first = runs[0]
    for run, cond in zip(runs, conditions, strict=True):
        if run.get("status") != "ok":
            raise ValueError(f"{first.get('study')}: the run under {cond!r} did not end ok: "
                             f"{run.get('error')}")
        for key in ("study", "profile", "seeds"):
            if run.get(key) != first.get(key):
                raise ValueError(f"{first['study']}: {key} differs under {cond!r}")
        if _params(run) != _params(first):
            raise ValueError(f"{first['study']}: params differ under {cond!r}")
        if _verdicts(run) != _verdicts(first):
            diff = {k: (v, _verdicts(run).get(k)) for k, v in _verdicts(first).items()
                    if _verdicts(run).get(k) != v}
            raise ValueError(f"{first['study']}: verdicts differ under {cond!r}: {diff}")
        if set(run.get("metrics", {})) != set(first.get("metrics", {})):
            raise ValueError(f"{first['study']}: the recorded metrics differ under {cond!r}")
    metrics: dict[str, Any] = {}
    not_compared: list[str] = []
    for name, ref in first.get("metrics", {}).items():
        if TIMING.search(name):
            not_compared.append(name)
            continue
        values = [run["metrics"][name] for run in runs]
        kind, tol, spread = tolerance_for(name, values)
        entry: dict[str, Any] = {"value": ref, "kind": kind}
        if tol.abs:
            entry["abs"] = tol.abs
        if tol.rel:
            entry["rel"] = tol.rel
        entry["spread"] = float(f"{spread:.3g}")
        metrics[name] = entry
    return {
        "schema": REFERENCE_SCHEMA,
        "study": first["study"],
        "profile": first["profile"],
        "how": (f"value: the run under {conditions[0]!r}; tolerance: {SPREAD_FACTOR:g} x the "
                f"largest deviation over the conditions below, at least {BOUNDED_FLOOR:g} "
                f"absolute for quantities in [-1, 1] and {RELATIVE_FLOOR:.0%} relative for "
                "others; exact for counts"),
        "conditions": list(conditions),
        "seeds": first["seeds"],
        "params": _params(first),
        "verdicts": _verdicts(first),
        "statements": {c["id"]: c.get("statement") for c in first.get("claims", [])},
        "metrics": metrics,
        "not_compared": sorted(not_compared),
    }


def compare(results: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """What differs between ``results`` (a results.json object) and ``reference``; [] if none.

    Each problem is one readable line naming the field, the reference and the new value.
    """
    problems: list[str] = []
    if reference.get("schema") != REFERENCE_SCHEMA:
        return [f"reference schema {reference.get('schema')!r}, expected {REFERENCE_SCHEMA}"]
    if results.get("status") != "ok":
        return [f"status {results.get('status')!r}: {results.get('error')}"]
    for key in ("study", "profile", "seeds"):
        if results.get(key) != reference.get(key):
            problems.append(f"{key}: reference {reference.get(key)!r}, now {results.get(key)!r}")
    params, ref_params = _params(results), reference.get("params", {})
    for key in sorted(set(params) | set(ref_params)):
        if params.get(key) != ref_params.get(key):
            problems.append(f"parameter {key}: reference {ref_params.get(key)!r}, "
                            f"now {params.get(key)!r}")
    got = _verdicts(results)
    want = reference.get("verdicts", {})
    for cid in sorted(set(got) | set(want)):
        if cid not in got:
            problems.append(f"claim {cid}: in the reference, not recorded now")
        elif cid not in want:
            problems.append(f"claim {cid}: recorded now, not in the reference")
        elif got[cid] != want[cid]:
            problems.append(f"claim {cid}: verdict {want[cid]!r} in the reference, now {got[cid]!r}")
    metrics = results.get("metrics", {})
    ignored = set(reference.get("not_compared", []))
    for name in sorted(set(metrics) - set(reference.get("metrics", {})) - ignored):
        problems.append(f"metric {name}: recorded now, not in the reference")
    for name, entry in reference.get("metrics", {}).items():
        if name not in metrics:
            problems.append(f"metric {name}: in the reference, not recorded now")
            continue
        tol = Tolerance(abs=entry.get("abs", 0.0), rel=entry.get("rel", 0.0))
        if not tol.allows(entry["value"], metrics[name]):
            problems.append(f"metric {name}: reference {entry['value']!r} "
                            f"(+- {tol.abs:g} abs, {tol.rel:g} rel), now {metrics[name]!r}")
    return problems


def load_reference(study: str, profile: str = "smoke", root: Path | None = None) -> dict[str, Any]:
    path = reference_path(study, profile, root)
    ref = read_json_object(path)
    if ref is None:
        raise FileNotFoundError(f"no reference for {study} at {path}; write one with "
                                "`make smoke-reference`")
    return ref


# ----------------------------------------------------------------------------- command line


def _cmd_write(args: argparse.Namespace) -> int:
    """Write references from runs laid out as ``<run_root>/<condition>/smoke/<study>/results.json``."""
    root = Path(args.runs)
    conditions = args.conditions or sorted(p.name for p in root.iterdir() if p.is_dir())
    studies = args.study or sorted({p.parent.name for c in conditions
                                    for p in (root / c / "smoke").glob("*/results.json")})
    for study in studies:
        runs = []
        for cond in conditions:
            res = read_json_object(root / cond / "smoke" / study / "results.json")
            if res is None:
                print(f"{study}: no results under {cond}", file=sys.stderr)
                return 1
            runs.append(res)
        ref = build_reference(runs, conditions)
        path = atomic_write_json(reference_path(study, "smoke", args.out and Path(args.out)), ref)
        wide = [f"{k} (+-{v.get('abs', 0) or v.get('rel', 0)})" for k, v in ref["metrics"].items()
                if v.get("abs", 0) > 2 * BOUNDED_FLOOR or v.get("rel", 0) > 2 * RELATIVE_FLOOR]
        print(f"{study}: {len(ref['metrics'])} metrics, {len(ref['verdicts'])} verdicts -> "
              f"{os.path.relpath(path)}" + (f"; wide: {', '.join(wide)}" if wide else ""))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    bad = 0
    since = Path(args.newer_than).stat().st_mtime if args.newer_than else None
    results = list(args.results)
    if args.smoke_runs:
        results += [str(paths.REPO_ROOT / "outputs" / "smoke" / nb.stem / "results.json")
                    for nb in sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))]
    if not results:
        print("nothing to check: give results.json files or --smoke-runs", file=sys.stderr)
        return 2
    for path in results:
        res = read_json_object(path)
        if res is None:
            print(f"{path}: not a results.json", file=sys.stderr)
            bad += 1
            continue
        if since is not None and Path(path).stat().st_mtime < since:
            print(f"{path}: older than {args.newer_than}, so not written by this run "
                  "(did the notebook stop before ctx.finish()?)", file=sys.stderr)
            bad += 1
            continue
        problems = compare(res, load_reference(res["study"], res.get("profile", "smoke")))
        print(f"{res['study']}: " + ("matches the reference" if not problems else
                                     "\n  ".join(["differs:", *problems])))
        bad += bool(problems)
    return 1 if bad else 0


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studylib.cli.regression", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write tests/reference/<study>.smoke.json from several runs")
    w.add_argument("--runs", required=True,
                   help="folder of <condition>/smoke/<study>/results.json (first = reference)")
    w.add_argument("--conditions", nargs="*", help="condition folders in order (default: sorted)")
    w.add_argument("--study", action="append", help="only these studies")
    w.add_argument("--out", help="folder to write to (default tests/reference)")
    c = sub.add_parser("check", help="compare results.json files with their references")
    c.add_argument("results", nargs="*")
    c.add_argument("--smoke-runs", action="store_true",
                   help="also every notebook's smoke-default results "
                        "(outputs/smoke/<study>/results.json, where nbval's execution writes them)")
    c.add_argument("--newer-than", metavar="FILE",
                   help="fail on a results.json older than FILE (make test touches FILE before "
                        "nbval executes the notebooks, so a stale file cannot pass)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    return _cmd_write(args) if args.cmd == "write" else _cmd_check(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
