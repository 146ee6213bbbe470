"""The nbval sanitize file hides what varies between runs, and nothing else.

A notebook is written with stored outputs that differ from what its cells print now only in
memory addresses, timings, temporary paths, absolute repository paths and device names (must
pass), plus one cell whose number differs (must fail): nbval has to report exactly one failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

SANITIZE = Path(__file__).resolve().parent / "nbval_sanitize.cfg"


def _patterns() -> list[tuple[str, str]]:
    return re.findall(r"^regex: (.*)$\n^replace: (.*)$", SANITIZE.read_text(), flags=re.M)


def _sanitize(text: str) -> str:
    for regex, replace in _patterns():
        text = re.sub(regex, replace, text)
    return text


def test_patterns_hide_run_to_run_noise_but_keep_results():
    a = ("<object at 0x7f3a2b4c5d60> took 12.3 s (450ms), saved /tmp/tmpab12/x.png\n"
         "train:  50%|#####     | 5/10 [00:01<00:01,  4.52it/s]\n"
         "/work/main/outputs/smoke/06/results.json on cuda:0 (NVIDIA H100 80GB HBM3)\n"
         "/usr/lib/python3/site-packages/torch/nn.py:123: UserWarning: x\n")
    b = ("<object at 0x55aa00ff11> took 0.8 s (3ms), saved /tmp/tmpzz99/x.png\n"
         "train:  90%|######### | 9/10 [00:02<00:00,  5.1it/s]\n"
         "/ci/clone/outputs/smoke/06/results.json on cpu (cpu)\n"
         "/opt/env/lib/python3.11/site-packages/torch/nn.py:130: UserWarning: x\n")
    assert _sanitize(a) == _sanitize(b)
    # numbers that are results, not noise, survive
    for kept in ("accuracy 0.9312", "10 seeds", "eps = 0.1", "spearman rho 0.94 [0.91, 0.96]"):
        assert _sanitize(kept) == kept


def test_nbval_passes_noise_and_catches_a_changed_number(tmp_path):
    noisy = new_code_cell(
        "import tempfile, time\n"
        "print(hex(id(object())), f'took {time.perf_counter() % 7 + 0.1:.2f} s',\n"
        "      tempfile.mkdtemp())")
    noisy.execution_count = 1
    noisy.outputs = [new_output("stream", name="stdout",
                                text="0x7f0000000001 took 9.99 s /tmp/tmpstored\n")]
    changed = new_code_cell("print(round(0.1 * 5, 3))")
    changed.execution_count = 2
    changed.outputs = [new_output("stream", name="stdout", text="0.25\n")]
    ignored = new_code_cell("# NBVAL_IGNORE_OUTPUT\nprint('anything')")
    ignored.execution_count = 3
    ignored.outputs = [new_output("stream", name="stdout", text="something else\n")]
    nb = new_notebook(cells=[noisy, changed, ignored])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    path = tmp_path / "check.ipynb"
    nbformat.write(nb, path)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", str(path), "--nbval-current-env",
         "--nbval-sanitize-with", str(SANITIZE), "-p", "no:cacheprovider", "-q",
         "-o", "addopts=", "--rootdir", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=900)  # a hang guard only
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert re.search(r"\b1 failed, 2 passed\b", out), out
    assert "check.ipynb::Cell 1" in out  # the changed number, and only it


# ----------------------------------------------------------------------------- committed notebooks

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
_VERDICT_ROW = re.compile(r"^  (\S+)\s+(reproduced|not reproduced|inconclusive)$", re.M)


def _ignored(cell) -> bool:
    lines = [ln.strip() for ln in "".join(cell.source).splitlines()]
    return ("# NBVAL_IGNORE_OUTPUT" in lines or "# NBVAL_SKIP" in lines
            or "nbval-ignore-output" in cell.get("metadata", {}).get("tags", []))


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")


def test_every_notebook_compares_its_verdict_lines():
    """The cell that calls ctx.finish() prints one verdict line per claim, and nbval compares it
    (cells with numbers from trained models may be ignored: the smoke regression test checks
    those numbers with tolerances)."""
    assert len(NOTEBOOKS) == 6
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        (finish,) = [c for c in code if "ctx.finish()" in "".join(c.source)]
        assert not _ignored(finish), f"{path.name}: the verdict summary must be compared"
        rows = dict(_VERDICT_ROW.findall(_stdout(finish)))
        claimed = re.findall(r"^\[(?:reproduced|not reproduced|inconclusive)\] (\S+)$",
                             "".join(_stdout(c) for c in code), flags=re.M)
        assert claimed and sorted(rows) == sorted(claimed), path.name


def test_no_committed_output_prints_float_noise():
    """Every number a notebook prints went through studylib.fmt: at most 3 significant digits."""
    token = re.compile(r"(?<![\w.])-?(\d+\.\d+|\d+(\.\d+)?e[-+]?\d+)(?![\w.])")
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            for out in cell.get("outputs", []):
                text = "".join(out.get("text", "")) + "".join(
                    out.get("data", {}).get("text/plain", ""))
                for m in token.finditer(text):
                    mantissa = m.group(1).lower().split("e")[0].replace(".", "").lstrip("0")
                    assert len(mantissa) <= 3, f"{path.name} cell {i} prints {m.group(0)}"
