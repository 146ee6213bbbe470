"""``CHANGES.md``: every claim's verdict before and after a round of changes, with the reason.

``python -m studylib changes --before REV --profile default --reasons CHANGES.yaml`` reads each
study's ``results.json`` as it was committed at git revision ``REV`` (``git show``) and as it is
now under ``outputs/<profile>/``, and writes one table row per claim: its verdict, estimate and
95% CI before and after, and why it changed. The reasons come from a YAML file written by whoever
made the changes (``study/claim_id: {kind: ..., why: ...}``, ``kind`` one of :data:`KINDS`);
every claim whose verdict moved, that is new, or that was removed must have one, or the command
names the missing ones and writes nothing (exit 2). A claim whose verdict did not move may have a
reason too (an estimate that moved for a stated cause).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..core import paths
from ..core.formatting import fmt
from ..core.io import atomic_write_text
from .report import md_escape

KINDS = ("statistics", "protocol", "generator", "new claim", "removed claim", "unchanged")

Results = Mapping[str, Mapping[str, Any]]  # study -> its results.json


def _claims(results: Results) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(study, c["id"]): c for study, r in results.items() for c in r.get("claims", [])}


def _cell(claim: Mapping[str, Any] | None) -> str:
    if claim is None:
        return "-"
    est, ci = claim.get("estimate"), claim.get("ci95") or [None, None]
    if est is None:
        return f"{claim['verdict']}"
    lo, hi = ("n/a" if v is None else fmt(v) for v in ci)
    return f"{claim['verdict']} {fmt(est)} [{lo}, {hi}]"


def missing_reasons(before: Results, after: Results,
                    reasons: Mapping[str, Mapping[str, str]]) -> list[str]:
    """``study/claim`` keys whose verdict moved (or that are new or gone) and have no reason,
    or whose reason names an unknown ``kind``."""
    b, a = _claims(before), _claims(after)
    out = []
    for key in sorted(set(b) | set(a)):
        name = "/".join(key)
        moved = key not in b or key not in a or b[key]["verdict"] != a[key]["verdict"]
        r = reasons.get(name)
        if (moved and not r) or (r and r.get("kind") not in KINDS):
            out.append(name)
    return out


def changes_markdown(before: Results, after: Results, reasons: Mapping[str, Mapping[str, str]],
                     *, before_label: str, after_label: str) -> str:
    """The CHANGES.md text: a count of the verdicts that moved, then one row per claim."""
    b, a = _claims(before), _claims(after)
    keys = sorted(set(b) | set(a))
    moved = [k for k in keys if k not in b or k not in a or b[k]["verdict"] != a[k]["verdict"]]
    lines = ["# Changes of verdicts", "",
             f"Before: the committed `results.json` at {before_label}. After: {after_label}. "
             f"{len(keys)} claims; {len(moved)} changed verdict, were added or were removed. "
             "Kinds: *statistics* (an interval, a rule or the number of seeds), *protocol* "
             "(what is measured: grids, budgets, controls, training), *generator* (the "
             "procedural data), *new claim* / *removed claim*.", "",
             "| study | claim | before | after | kind | why |", "|---|---|---|---|---|---|"]
    for key in keys:
        r = reasons.get("/".join(key), {})
        kind = r.get("kind", "unchanged")
        lines.append(f"| {key[0]} | `{key[1]}` | {md_escape(_cell(b.get(key)))} | "
                     f"{md_escape(_cell(a.get(key)))} | {kind} | {md_escape(r.get('why', ''))} |")
    return "\n".join(lines) + "\n"


def results_at_revision(rev: str, profile: str, repo: Path | None = None) -> dict[str, Any]:
    """study -> results.json as committed at git revision ``rev`` under outputs/<profile>/."""
    repo = repo or paths.REPO_ROOT
    prefix = f"outputs/{profile}/"
    names = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", rev, prefix],
                           check=True, capture_output=True, text=True).stdout.split()
    out = {}
    for name in names:
        if name.endswith("/results.json") and name.count("/") == 3:
            text = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{name}"], check=True,
                                  capture_output=True, text=True).stdout
            out[name.split("/")[2]] = json.loads(text)
    return out


def results_in_folder(folder: Path) -> dict[str, Any]:
    """study -> results.json of every study folder under ``folder``."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(folder.glob("*/results.json"))}


def cmd_changes(args) -> int:
    before = results_at_revision(args.before, args.profile)
    after = results_in_folder(paths.OUTPUTS_DIR / args.profile)
    reasons = yaml.safe_load(Path(args.reasons).read_text()) if args.reasons else {}
    reasons = reasons or {}
    missing = missing_reasons(before, after, reasons)
    if missing:
        print("changes: no (valid) reason for: " + ", ".join(missing), file=sys.stderr)
        return 2
    text = changes_markdown(before, after, reasons, before_label=f"`{args.before}`",
                            after_label=f"`outputs/{args.profile}/` now")
    atomic_write_text(Path(args.out), text)
    print(f"changes: {args.out}")
    return 0
