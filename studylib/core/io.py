"""Atomic file writes: write to a temporary file in the same folder, then rename.

An interrupted run therefore never leaves a truncated ``results.json`` or checkpoint behind:
readers see either the old file or the complete new one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # torch tensors
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once at import: os.umask can only be read by setting it, which is not thread-safe
_UMASK = _read_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def replace_between_markers(path: str | os.PathLike, start: str, end: str, body: str) -> Path:
    """Replace the text between the lines ``start`` and ``end`` of a text file (atomically).

    Used to keep generated sections of the README (headline verdicts, benchmark table) in
    step with the results they summarise; the markers themselves are kept.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if start not in text or end not in text or text.index(start) > text.index(end):
        raise ValueError(f"{path} has no markers {start} ... {end} around the generated section")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return atomic_write_text(path, f"{head}{start}\n{body.strip()}\n{end}{tail}")


_NOT_IN_DIGEST = ("cli", "stats")


@functools.lru_cache(maxsize=4)
def _package_digest(excluded: tuple[str, ...]) -> str:
    """SHA-256 of the source of every module of ``studylib`` except the subpackages named in
    ``excluded``; read once per process and per ``excluded``."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root)
        if rel.parts[0] in excluded:
            continue
        h.update(rel.as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def code_digest() -> str:
    """SHA-256 of the source of every module of ``studylib`` and its subpackages, except the
    command line (``cli/``) and the statistics of the claims (``stats/``), read once per
    process.

    Part of every cache key (:func:`cache_key`): a trained model or posterior depends on the
    training loop, the model classes, the data generators, the techniques and the study code
    that drives them, so after any change to that code the caches miss and rebuild instead of
    serving results of older code. How a claim is decided, printed or reported never changes
    a cached model, so those two subpackages stay out of the key. Notebooks and parameters are
    not part of it either (they enter keys through their values).
    """
    return _package_digest(_NOT_IN_DIGEST)


def results_digest() -> str:
    """SHA-256 of every module of ``studylib`` except the command line (``cli/``).

    What a study's results depend on: unlike :func:`code_digest` it includes ``stats/``, since
    a change to an interval or a rule changes the verdicts in results.json. Part of the inputs
    a sweep point id and ``run --resume`` compare, so a rerun after editing the package runs
    again instead of keeping results of older code.
    """
    return _package_digest(("cli",))


def cache_key(blob: dict[str, Any]) -> str:
    """Hex SHA-256 of ``blob`` (JSON, keys sorted) together with :func:`code_digest`."""
    payload = {"blob": blob, "code": code_digest()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def read_json_object(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file is missing, unreadable, not JSON or
    not an object (e.g. a results.json a crashed run never finished)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def to_jsonable(obj: Any) -> Any:
    """Round-trip ``obj`` through JSON (numpy scalars/arrays and tensors become lists/floats)."""
    return json.loads(json.dumps(obj, default=_json_default))


def _finite_or_null(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (JSON ``null``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_null(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON atomically.

    numpy scalars/arrays and tensors are converted; NaN and infinities (e.g. the confidence
    interval of a single seed) are written as ``null``, so any JSON parser can read the file.
    """
    text = json.dumps(_finite_or_null(to_jsonable(obj)), indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())
