"""Progress on the runner's terminal, never in the reader's notebook.

While a study runs, the person who started it sees what it is doing: one line per finished
code cell with its time and the section it belongs to (the last markdown heading above it),
the notices a study sends (a cache entry discarded and rebuilt), and, on a terminal, one status
line with the current cell and progress bar, redrawn in place. Written to a log file (Slurm,
``nohup``), the bar's state is printed as a line at most every :data:`HEARTBEAT_S` seconds, so a
long cell is not silent and the log stays short.

Bars reach the runner through the kernel's event file (``$STUDYLIB_EVENTS``, written by
:mod:`studylib.core.runtime`), so they never enter the executed notebook or its HTML;
:func:`strip_progress_outputs` also removes any bar a third-party library drew on stderr.
Cell events come from a Papermill engine (:data:`ENGINE_NAME`) that reports each cell's start
and end.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

ENGINE_NAME = "studylib"
#: Seconds between two progress lines of one bar when the runner's stderr is not a terminal.
HEARTBEAT_S = 30.0
_BAR_RE = re.compile(r"\d+%\|.*\||\|\s*\d+/\d+\s*\[|\d+(\.\d+)?\s*(it/s|s/it)\]")


# ----------------------------------------------------------------------------- the kernel's events


class EventTail:
    """Follows a JSON-lines event file in a thread and hands each event to ``handler``.

    Args:
        path: the file the kernel appends to (it may not exist yet).
        handler: called with each event dict, in order, from the tail thread (and from
            :meth:`stop` for the last ones).
        poll_s: seconds between reads (a polling interval, not a deadline).
    """

    def __init__(self, path: Path, handler: Callable[[dict[str, Any]], None],
                 poll_s: float = 0.25) -> None:
        self.path = Path(path)
        self.handler = handler
        self.poll_s = poll_s
        self._offset = 0
        self._partial = b""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="studylib-events", daemon=True)

    def start(self) -> EventTail:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.drain()

    def drain(self) -> None:
        """Read and hand over every complete line written since the last read."""
        with self._lock:
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(self._offset)
                    data = fh.read()
            except OSError:
                return
            self._offset += len(data)
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    try:
                        self.handler(event)
                    except Exception:  # progress must never fail a study
                        pass

    def stop(self) -> None:
        """Stop following and hand over what is left."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.drain()


# ----------------------------------------------------------------------------- the terminal


def _sections(nb: Any) -> list[tuple[int, str]]:
    """Per cell: (number among code cells, 1-based; the last markdown heading above it)."""
    out, code, section = [], 0, ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in str(cell.source).splitlines():
                if line.lstrip().startswith("#"):
                    section = line.strip().lstrip("#").strip()
                    break
        if cell.cell_type == "code":
            code += 1
        out.append((code, section))
    return out


class StudyProgress:
    """What the terminal shows of one running study (see the module docstring).

    Args:
        label: prefix of every line, e.g. ``"[2/6] 02_mammogram_perturbation"``.
        stream: where to write (default ``sys.stderr`` as it is at each write).
        tty: draw a status line in place (default: whether ``stream`` is a terminal).
        show: False collects cache events only and prints nothing (sweep points).

    Attributes:
        cache: the ``cache`` events received (``what``, ``path``, ``hit``), in order.
        notices: the text of every ``notice`` event.
    """

    def __init__(self, label: str, stream: TextIO | None = None, tty: bool | None = None,
                 show: bool = True) -> None:
        self.label = label
        self._stream = stream
        self.show = show
        self.tty = bool(tty if tty is not None else getattr(self.stream, "isatty", lambda: False)())
        self.cache: list[dict[str, Any]] = []
        self.notices: list[str] = []
        self._lock = threading.Lock()
        self._map: list[tuple[int, str]] | None = None
        self._n_code = 0
        self._cell = ""
        self._bar = ""
        self._status_shown = False
        self._last_beat = 0.0

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    # -- output ----------------------------------------------------------------------------
    def _clear_status(self) -> None:
        if self._status_shown:
            self.stream.write("\r\033[K")
            self._status_shown = False

    def _draw_status(self) -> None:
        if not (self.tty and self.show):
            return
        text = f"{self.label}: {self._cell}" + (f" | {self._bar}" if self._bar else "")
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        self.stream.write("\r\033[K" + text[:width])
        self.stream.flush()
        self._status_shown = True

    def line(self, text: str) -> None:
        """Print one line (above the status line on a terminal)."""
        if not self.show:
            return
        with self._lock:
            self._clear_status()
            self.stream.write(f"{self.label}: {text}\n")
            self.stream.flush()
            self._draw_status()

    def close(self) -> None:
        """Remove the status line (the study ended)."""
        if self.show:
            with self._lock:
                self._clear_status()
                self.stream.flush()

    # -- events ----------------------------------------------------------------------------
    def on_cell(self, phase: str, nb: Any, index: int) -> None:
        """Papermill engine hook: ``phase`` is ``"start"`` or ``"complete"``."""
        if self._map is None:
            self._map = _sections(nb)
            self._n_code = self._map[-1][0] if self._map else 0
        cell = nb.cells[index]
        if cell.cell_type != "code":
            return
        number, section = self._map[index]
        where = f"cell {number}/{self._n_code}" + (f" ({section})" if section else "")
        if phase == "start":
            self._cell, self._bar = where, ""
            self._last_beat = time.monotonic()
            with self._lock:
                self._draw_status()
            return
        meta = cell.get("metadata", {}).get("papermill", {})
        duration = meta.get("duration")
        failed = meta.get("exception") or meta.get("status") == "failed"
        took = f" in {duration:.1f} s" if isinstance(duration, (int, float)) else ""
        self.line(f"{where} {'failed' if failed else 'done'}{took}")

    def on_event(self, event: dict[str, Any]) -> None:
        """Event-file hook: ``bar``, ``notice`` and ``cache`` events."""
        kind = event.get("event")
        if kind == "cache":
            self.cache.append({k: event.get(k) for k in ("what", "path", "hit")})
        elif kind == "notice":
            self.notices.append(str(event.get("text", "")))
            self.line(str(event.get("text", "")))
        elif kind == "bar":
            text = str(event.get("text", "")).strip()
            self._bar = text
            if self.tty:
                with self._lock:
                    self._draw_status()
            elif text and self.show:
                now = time.monotonic()
                if now - self._last_beat >= HEARTBEAT_S:
                    self._last_beat = now
                    self.line(f"{self._cell} | {text}")


# ----------------------------------------------------------------------------- the notebook


def _is_bar(segment: str) -> bool:
    return bool(_BAR_RE.search(segment))


def strip_progress_outputs(nb: Any) -> int:
    """Remove progress-bar text from the stderr outputs of ``nb`` (in place); return how many
    bar redraws were removed. Other stderr text (warnings, messages) is kept."""
    removed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept_outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") != "stream" or out.get("name") != "stderr":
                kept_outputs.append(out)
                continue
            kept = []
            for line in str(out.get("text", "")).splitlines(keepends=True):
                body, end = line.rstrip("\n"), line[len(line.rstrip("\n")):]
                if "\r" not in body and not _is_bar(body):
                    kept.append(line)
                    continue
                parts = body.split("\r")
                removed += sum(_is_bar(part) for part in parts)
                rest = [part for part in parts if part.strip() and not _is_bar(part)]
                if rest:
                    kept.append(rest[-1] + end)
            text = "".join(kept)
            if text.strip():
                out["text"] = text
                kept_outputs.append(out)
        cell["outputs"] = kept_outputs
    return removed


# ----------------------------------------------------------------------------- Papermill engine


def register_engine() -> str:
    """Register (once) the Papermill engine that reports cell starts and ends to an
    ``on_cell(phase, nb, index)`` callback passed to ``execute_notebook``; return its name."""
    from papermill.engines import NBClientEngine, papermill_engines

    if ENGINE_NAME in papermill_engines._engines:  # noqa: SLF001 - papermill has no lookup API
        return ENGINE_NAME

    class CellReportingEngine(NBClientEngine):
        """nbclient execution, with ``on_cell`` called at each cell's start and end."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, on_cell=None, **kwargs):
            if on_cell is not None:
                start, complete = nb_man.cell_start, nb_man.cell_complete

                def cell_start(cell, cell_index=None, **kw):
                    start(cell, cell_index, **kw)
                    _safe(on_cell, "start", nb_man.nb, cell_index)

                def cell_complete(cell, cell_index=None, **kw):
                    complete(cell, cell_index, **kw)
                    _safe(on_cell, "complete", nb_man.nb, cell_index)

                nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(ENGINE_NAME, CellReportingEngine)
    return ENGINE_NAME


def _safe(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # progress must never fail a study
        pass
