"""``python -m studylib data {check,prepare}``: the data sets a profile reads from disk.

``data check`` lists, for every data set the selected studies need at a profile (``paper`` by
default), whether it is found, the path looked at, the layout expected and how to get it, and
exits 1 when one is missing; it only looks at files. ``data prepare`` downloads, with
torchvision, the missing ones that can be downloaded (MNIST, CIFAR-10, GTSRB), then checks
again. Nothing is ever downloaded by any other command unless ``run --download`` is given.

Which data sets a study needs is read from its merged parameters (notebook defaults, profile
YAML, ``--set``): every ``dataset`` (with its sibling ``data_kwargs`` / ``dataset_kwargs``,
nested mappings such as study 06's ``setups`` included), ``datasets``, ``*_dataset`` and
``*_datasets``. Embedded data sets (digits, signs, mammo_phantom) need nothing.

Example::

    python -m studylib data check                       # the paper profile, every study
    python -m studylib data check --profile paper --study 02_mammogram_perturbation
    python -m studylib data prepare --data-root /data/studylib
    python -m studylib data prepare --dataset mnist     # one data set, whatever the profile
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import paths
from .parameters import ValidationError


@dataclass
class Need:
    """One on-disk data set a run reads: its name, the loader arguments that say where its
    files are (``data_root``, ``csv``) and the studies that read it."""

    name: str
    where: dict[str, Any]
    studies: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple:
        return (self.name, tuple(sorted((k, str(v)) for k, v in self.where.items())))


_WHERE_KEYS = ("data_root", "csv")


def needed_data(parameters: dict[str, Any]) -> list[Need]:
    """The on-disk data sets named in a study's merged ``parameters`` (see the module
    docstring), in the order they appear; embedded ones are left out."""
    from ..data import ON_DISK

    found: list[Need] = []

    def add(name: Any, kwargs: Any = None) -> None:
        if isinstance(name, str) and name in ON_DISK:
            kw = kwargs if isinstance(kwargs, dict) else {}
            found.append(Need(name, {k: kw[k] for k in _WHERE_KEYS if kw.get(k) is not None}))

    def walk(mapping: dict[str, Any]) -> None:
        for key, value in mapping.items():
            if not isinstance(key, str):
                continue
            if key == "dataset" or key.endswith("_dataset"):
                sibling = mapping.get("data_kwargs", mapping.get("dataset_kwargs"))
                add(value, sibling if key == "dataset" else None)
            elif key == "datasets" or key.endswith("_datasets"):
                for v in value if isinstance(value, (list, tuple)) else []:
                    add(v)
            elif isinstance(value, dict):
                walk(value)

    walk(parameters)
    return found


def _root(args) -> tuple[Path, str]:
    """The data root to use and where it came from."""
    if getattr(args, "data_root", None):
        return paths.resolve(args.data_root), "--data-root"
    if os.environ.get(paths.DATA_ENV):
        return paths.default_data_root(), f"${paths.DATA_ENV}"
    return paths.default_data_root(), "default"


def _where(root: Path, need: Need) -> dict[str, Any]:
    """The check's arguments with paths made absolute against ``root`` (the loaders take a
    relative ``data_root`` from the data root; ``mammo_folder`` defaults to ``mammograms``)."""
    where = dict(need.where)
    rel = where.get("data_root")
    default = "mammograms" if need.name == "mammo_folder" else None
    if rel is None:
        where["data_root"] = str(root / default) if default else str(root)
    else:
        p = Path(str(rel)).expanduser()
        where["data_root"] = str(p if p.is_absolute() else root / p)
    return where


def collect_needs(args) -> list[Need]:
    """The data sets of ``--dataset`` names, else those the selected studies need at
    ``--profile`` (merged with ``--set``), each with the studies that read it."""
    from ..data import ON_DISK, available
    from .runner import Runner

    if getattr(args, "dataset", None):
        bad = [n for n in args.dataset if n not in available()]
        if bad:
            raise ValidationError(f"unknown data set(s) {bad}; valid names: {available()}")
        return [Need(n, {}, []) for n in dict.fromkeys(args.dataset) if n in ON_DISK]
    runner = Runner(notebooks_dir=args.notebooks_dir, params_dir=args.params_dir, log=None)
    needs: dict[tuple, Need] = {}
    for plan in runner.plan(args.profile, studies=args.study, sets=args.set):
        declared = runner.parameters(plan.study)
        merged = {n: p.default for n, p in declared.items()}
        merged.update(plan.parameters)
        for need in needed_data(merged):
            entry = needs.setdefault(need.key, need)
            if plan.study not in entry.studies:
                entry.studies.append(plan.study)
    return list(needs.values())


def _report(checks: list[tuple[Need, Any]], stream) -> int:
    """Print one block per data set; the number missing."""
    missing = 0
    width = max((len(n.name) for n, _ in checks), default=0)
    for need, check in checks:
        state = "found" if check.found else "MISSING"
        missing += not check.found
        by = f"  (read by {', '.join(need.studies)})" if need.studies else ""
        print(f"{need.name:<{width}}  {state:<7}  {check.path}{by}", file=stream)
        for line in check.problems:
            print(f"  - {line}", file=stream)
        for line in check.notes:
            print(f"  note: {line}", file=stream)
        if not check.found:
            print(f"  expected: {check.layout}", file=stream)
            print(f"  to get it: {check.how_to_get}", file=stream)
    return missing


def cmd_data(args) -> int:
    """``data check`` / ``data prepare`` (see the module docstring). Exit codes: 0 every data
    set found, 1 one is missing (after downloading, for ``prepare``), 2 invalid arguments."""
    from .. import data

    root, origin = _root(args)
    needs = collect_needs(args)
    stream = sys.stdout
    scope = (f"data set(s) {', '.join(args.dataset)}" if getattr(args, "dataset", None)
             else f"profile {args.profile}")
    print(f"data root: {root} (from {origin}); {scope}", file=stream)
    if not needs:
        print("no data set is read from disk: every one is embedded in the kit", file=stream)
        return 0
    if args.data_command == "prepare":
        for need in needs:
            where = _where(root, need)
            check = data.check(need.name, **where)
            if check.found:
                continue
            if need.name not in data.ON_DISK or need.name == "mammo_folder":
                print(f"{need.name}: cannot be downloaded ({check.how_to_get})", file=stream)
                continue
            print(f"{need.name}: downloading into {where['data_root']} ...", file=stream,
                  flush=True)
            try:
                data.download(need.name, data_root=where["data_root"])
            except Exception as exc:  # noqa: BLE001 - reported, then the check says what is left
                print(f"{need.name}: download failed: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
        print(file=stream)
    checks = [(need, data.check(need.name, **_where(root, need))) for need in needs]
    missing = _report(checks, stream)
    if missing:
        hint = ("" if args.data_command == "prepare"
                else "; `python -m studylib data prepare` downloads what torchvision can")
        print(f"\n{missing} of {len(checks)} data set(s) missing{hint}", file=sys.stderr)
        return 1
    print(f"\nall {len(checks)} data set(s) found", file=stream)
    return 0
