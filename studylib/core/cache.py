"""Cache entries that never fail a study: an entry is read, or discarded and rebuilt.

Every cache of the kit (trained checkpoints, posteriors, MCMC samples, pruning runs) keeps one
file per content-addressed key (:func:`studylib.core.io.cache_key`) under the cache root
(:func:`studylib.core.paths.cache_root`: ``$STUDYLIB_CACHE`` or ``outputs/cache``; ``run
--cache-dir`` sets it). Files are written atomically, yet one can still be unreadable: a copy
cut short, a disk error, a file written by another torch version, a foreign file under the
key's name. :func:`load_entry` treats all of these alike: it deletes the entry, says so on the
terminal of the person running the study (through the runner's event channel, and on stderr,
which in a kernel is the notebook), and returns None so that the caller rebuilds and rewrites
the entry. Entries hold plain tensors and are read with ``torch.load(weights_only=True)``; an
entry that loader refuses is rebuilt, never unpickled, so the message leaves out torch's advice
to retry with ``weights_only=False``.

Each read and write is also reported as a ``cache`` event (what, path, hit), which the runner
keeps in the study folder's ``run.json``: ``run --dry-run`` then says which cached models of the
last run still exist.

Example:
    >>> value, from_cache = load_or_build(path, lambda: {"w": torch.zeros(3)},
    ...                                   what="toy entry", check=lambda obj: "w" in obj)

or, when building needs more than a callable::

    entry = load_entry(path, what="VI posterior", check=lambda ck: "locs" in ck)
    if entry is None:
        entry = ...                       # compute it
        save_entry(path, entry, what="VI posterior")
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .io import atomic_torch_save
from .runtime import emit_event, notify

Check = Callable[[Any], bool]


def _reason(exc: BaseException) -> str:
    """A one-line reason for a discarded entry, without torch's weights_only advice."""
    text = str(exc).strip()
    if "weights_only" in text or "Weights only load failed" in text:
        text = "it holds more than plain tensors (refused by torch's weights-only loader)"
    else:
        text = text.splitlines()[0] if text else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def discard_entry(path: str | os.PathLike, reason: str, *, what: str = "cache entry") -> None:
    """Delete an unusable cache entry and announce it (terminal and notebook)."""
    path = Path(path)
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # a read-only cache: the entry stays, the study still rebuilds
        reason += f"; could not delete it ({exc.strerror or exc})"
    notify(f"cache: discarding unreadable {what} {path} ({reason}); rebuilding it", warn=True)


def load_entry(path: str | os.PathLike, *, what: str = "cache entry", check: Check | None = None,
               map_location: Any = "cpu") -> Any | None:
    """The object stored at ``path``, or None when there is none or it cannot be used.

    Args:
        path: the entry's file.
        what: what the entry is, for messages (``"checkpoint"``, ``"VI posterior"``).
        check: optional test of the loaded object's layout (e.g. ``lambda ck: "state_dict" in
            ck``); a false result or an exception counts as unreadable.
        map_location: ``torch.load``'s ``map_location`` (default ``"cpu"``).

    Returns:
        The loaded object, or None: the file is missing, or it was unreadable and has been
        deleted (announced by :func:`discard_entry`).
    """
    import torch

    path = Path(path)
    if not path.exists():
        return None
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
        if check is not None and not check(obj):
            raise ValueError(f"not a studylib {what} (unexpected contents)")
    except Exception as exc:  # truncated, foreign or from another version: rebuild
        discard_entry(path, _reason(exc), what=what)
        return None
    emit_event("cache", what=what, path=str(path), hit=True)
    return obj


def save_entry(path: str | os.PathLike, obj: Any, *, what: str = "cache entry") -> Path | None:
    """Write ``obj`` to ``path`` atomically (``torch.save``); return the path.

    A cache that cannot be written (full disk, read-only folder) costs a rebuild next time,
    never the study: the error is announced and None returned.
    """
    path = Path(path)
    try:
        atomic_torch_save(obj, path)
    except OSError as exc:
        notify(f"cache: could not write {what} {path} ({exc.strerror or exc}); "
               "the study goes on without caching it")
        return None
    emit_event("cache", what=what, path=str(path), hit=False)
    return path


def load_or_build(path: str | os.PathLike, build: Callable[[], Any], *,
                  what: str = "cache entry", check: Check | None = None,
                  map_location: Any = "cpu", enabled: bool = True) -> tuple[Any, bool]:
    """``(value, from_cache)``: the entry at ``path`` if it is readable, else ``build()``,
    which is then saved there.

    Args:
        path: the entry's file (content-addressed: its name is the key).
        build: computes the value when the entry is missing or unreadable.
        what, check, map_location: as for :func:`load_entry`.
        enabled: False skips the cache entirely (``build()`` every time, nothing written).
    """
    if enabled:
        obj = load_entry(path, what=what, check=check, map_location=map_location)
        if obj is not None:
            return obj, True
    obj = build()
    if enabled:
        save_entry(path, obj, what=what)
    return obj, False
