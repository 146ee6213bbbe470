"""Import direction: each layer of studylib imports only the layers above it.

    core -> stats -> data -> models / training / attacks -> techniques -> studies -> cli

``stats`` imports nothing of studylib but the number formatting in ``core``; ``techniques``
never imports ``studies`` or ``cli``; nothing below ``cli`` imports it. The subpackages named
in the layout exist.

One exception, by design: the results contract (``core.results``) and ``StudyContext``
(``core.runtime``) check every claim a study writes against ``stats.Claim``'s schema, so those
two may import ``stats``. There is no cycle: ``stats`` reaches into ``core`` only for
``core.formatting``, which imports nothing of studylib.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import studylib

ROOT = Path(studylib.__file__).resolve().parent
LAYERS = ["core", "stats", "data", "models", "training", "attacks", "techniques", "studies",
          "cli"]
# models, training and attacks form one layer: they may import one another.
RANK = {"core": 0, "stats": 1, "data": 2, "models": 3, "training": 3, "attacks": 3,
        "techniques": 4, "studies": 5, "cli": 6}


def _module_parts(path: Path) -> list[str]:
    return list(path.relative_to(ROOT).with_suffix("").parts)


def _studylib_imports(path: Path) -> set[str]:
    """Dotted names below studylib (e.g. ``core.io``) of every studylib module ``path``
    imports."""
    parts = _module_parts(path)
    package = parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
            elif node.module and node.module.split(".")[0] == "studylib":
                base = []
            else:
                continue
            mod = (node.module or "") if node.level else ".".join(node.module.split(".")[1:])
            target = base + ([m for m in mod.split(".") if m])
            if target:
                out.add(".".join(target))
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("studylib."):
                    out.add(a.name.split(".", 1)[1])
    return out


CONTRACT = {("core", "results"), ("core", "runtime")}


def _layer(dotted: str) -> str:
    return dotted.split(".")[0]


def _modules():
    return [p for p in ROOT.rglob("*.py") if _module_parts(p)[0] in RANK]


def test_the_layout_exists():
    for name in LAYERS:
        assert (ROOT / name).is_dir() or (ROOT / f"{name}.py").is_file(), name
    for pkg in ("core", "stats", "data", "techniques", "studies", "cli"):
        assert (ROOT / pkg / "__init__.py").is_file(), pkg


def test_formatting_imports_nothing_of_studylib():
    assert not _studylib_imports(ROOT / "core" / "formatting.py")


def test_stats_imports_only_formatting():
    for path in (ROOT / "stats").glob("*.py"):
        assert _studylib_imports(path) <= {"stats", "core.formatting", "core"} | {
            f"stats.{p.stem}" for p in (ROOT / "stats").glob("*.py")}, path.name


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_layer_imports_only_the_layers_above_it(path):
    parts = _module_parts(path)
    own = RANK["stats"] if tuple(parts) in CONTRACT else RANK[parts[0]]
    bad = sorted(m for m in _studylib_imports(path) if RANK.get(_layer(m), -1) > own)
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_techniques_never_import_studies_or_the_command_line():
    for path in (ROOT / "techniques").glob("*.py"):
        bad = {_layer(m) for m in _studylib_imports(path)} & {"studies", "cli"}
        assert not bad, f"{path.name} imports {sorted(bad)}"
