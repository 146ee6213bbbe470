"""Import direction: studies build on techniques and stats, never the other way round.

The layout of issue "Claims you can trust" is reached step by step; this holds for what exists:
``studylib.stats`` imports nothing of studylib but the formatting helper, and no module below
the studies (the technique modules, data, models, training, attacks) imports
``studylib.studies`` or the command line (``__main__``, ``runner``, ``sweep``, ``report``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import studylib

ROOT = Path(studylib.__file__).resolve().parent
UPPER = {"studies", "__main__", "runner", "sweep", "report", "regression"}


def _studylib_imports(path: Path) -> set[str]:
    """First component below studylib of every studylib module that ``path`` imports."""
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts[0]] if parts else [a.name for a in node.names]
            elif node.module and node.module.split(".")[0] == "studylib":
                parts = node.module.split(".")[1:]
                names = [parts[0]] if parts else [a.name for a in node.names]
            else:
                continue
            out.update(names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("studylib."):
                    out.add(a.name.split(".")[1])
    return out


def test_stats_imports_only_formatting():
    for path in (ROOT / "stats").glob("*.py"):
        assert _studylib_imports(path) <= {"stats", "formatting"}, path.name


def test_lower_layers_never_import_studies_or_the_command_line():
    for path in ROOT.glob("*.py"):
        if path.stem in UPPER:
            continue
        bad = _studylib_imports(path) & UPPER
        assert not bad, f"{path.name} imports {sorted(bad)}"
