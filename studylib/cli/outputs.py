"""A study's output folder: its lock, staged runs swapped in at the end, and the run record.

Layout of ``<output_root>/<profile>/<study>/`` (a sweep point's folder is the same):

```
results.json, <study>.ipynb, <study>.html, figures/   the last finished run
run.json            the runner's record of that run: its inputs and their fingerprint
                    (merged parameters, device, code and notebook digests), timings,
                    the files it wrote and the cache entries it read or wrote
failed/             only when the latest run failed while an earlier run's good results are
                    kept above: its failed results.json, partial notebook and run.json
.staging/           the run in progress (the notebook's output_dir); gone when it ends
.lock               held by the run in progress: pid, host, start time, command
```

A run writes only into ``.staging/``; :func:`swap_in` moves the finished run into place, so a
run that fails or is stopped never deletes the last good results: they stay, and the failed
run's record lands beside them in ``failed/``. A run with nothing good to keep (the first run,
or one after a failure) takes the folder's top level, as before.

:class:`FolderLock` is an advisory ``flock`` on ``.lock``, which names its holder; a second run
into a held folder stops at once (:class:`FolderBusy`, exit 2), and a lock file left by a
process that died (the ``flock`` went with it) is taken over with a warning.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..core.io import atomic_write_json, read_json_object
from .parameters import ValidationError

LOCK_NAME = ".lock"
STAGING_NAME = ".staging"
FAILED_NAME = "failed"
RUN_RECORD = "run.json"
RESULTS = "results.json"
#: Entries a run of the kit writes into its folder, besides those its run.json lists (a folder
#: written before run.json existed is cleaned of these when a new run takes its place).
_KNOWN_ENTRIES = ("figures", RESULTS, RUN_RECORD)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


# ----------------------------------------------------------------------------- the lock


class FolderBusy(ValidationError):
    """Another run holds the output folder's lock (the CLI exits with code 2)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _describe_holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "an unknown process"
    text = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
    if info.get("started"):
        text += f" since {info['started']}"
    if info.get("command"):
        text += f" ({info['command']})"
    return text


class FolderLock:
    """An advisory lock on one output folder (``<folder>/.lock``, ``fcntl.flock``).

    Args:
        folder: the output folder (created if missing).
        say: where warnings go (a stale lock taken over); default stderr.

    Use as a context manager or with :meth:`acquire` / :meth:`release`. The lock file holds
    the holder's pid, host, start time and command line, so a second run can name it.
    """

    def __init__(self, folder: str | os.PathLike, say: Callable[[str], None] | None = None
                 ) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))

    def holder(self) -> dict[str, Any] | None:
        """What the lock file says about its holder (None: no readable lock file)."""
        return read_json_object(self.path)

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`FolderBusy` naming the holder.

        A lock file whose ``flock`` is free belongs to a run that ended without removing it
        (killed, or its machine went down): it is taken over with a warning.
        """
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise FolderBusy(
                    f"output folder {self.folder} is in use by another run: "
                    f"{_describe_holder(self.holder())}; wait for it to finish or stop it "
                    "(each folder takes one run at a time)") from None
            # the file may have been removed (and recreated) by its last holder between our
            # open and our flock: then the lock is on a dead inode, try again
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = self.holder()
        if previous and previous.get("pid") != os.getpid():
            alive = previous.get("host") == socket.gethostname() and \
                isinstance(previous.get("pid"), int) and _pid_alive(previous["pid"])
            self._say(f"warning: taking over the stale lock of {self.folder}: "
                      f"{_describe_holder(previous)} "
                      + ("still runs but does not hold the lock" if alive
                         else "is no longer running"))
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": now_iso(),
                "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (safe to call twice)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class LockSet:
    """Locks on several folders, taken together: all, or none (then FolderBusy)."""

    def __init__(self, folders: list[Path], say: Callable[[str], None] | None = None) -> None:
        self.locks = [FolderLock(f, say) for f in dict.fromkeys(folders)]

    def acquire(self) -> LockSet:
        taken = []
        try:
            for lock in self.locks:
                taken.append(lock.acquire())
        except BaseException:
            for lock in taken:
                lock.release()
            raise
        return self

    def release(self) -> None:
        for lock in self.locks:
            lock.release()

    def __enter__(self) -> LockSet:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# ----------------------------------------------------------------------------- writability


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def writable_problem(folder: str | os.PathLike, *, create: bool = True) -> str | None:
    """Why ``folder`` cannot take a run's outputs, or None when it can.

    ``create=True`` creates the folder and writes and removes a probe file in it (what a
    run does, so a read-only file system or a full disk is found before anything runs);
    ``create=False`` (``--dry-run``) only looks: the nearest existing folder must be a
    writable folder.
    """
    folder = Path(folder)
    if not create:
        base = _nearest_existing(folder)
        if not base.is_dir():
            return f"{base} is not a folder"
        if not os.access(base, os.W_OK | os.X_OK):
            return f"{base} is not writable"
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", suffix=".tmp", dir=folder)
        try:
            os.write(fd, b"probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        where = exc.filename or folder
        return f"{where}: {exc.strerror or exc}"
    return None


# ----------------------------------------------------------------------------- staging and swap


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back while the block runs (the swap of a finished run
    into place), then deliver them. Only the main thread can do this; elsewhere a no-op."""
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def prepare_staging(folder: Path) -> Path:
    """An empty ``<folder>/.staging/`` (what a killed run left there is removed first)."""
    staging = folder / STAGING_NAME
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def results_problem(folder: Path) -> str | None:
    """Why ``folder/results.json`` is not a valid record of a study that finished ok, or None
    when it is."""
    from ..core.results import contract_problem

    path = folder / RESULTS
    if not path.exists():
        return "no results.json yet"
    res = read_json_object(path)
    if res is None:
        return "results.json is unreadable"
    problem = contract_problem(res)
    if problem:
        return problem
    if res.get("status") != "ok":
        return f"the last run's status is {res.get('status')!r}"
    return None


def has_good_results(folder: Path) -> bool:
    """Whether ``folder/results.json`` is a valid record of a study that finished ok."""
    return results_problem(folder) is None


def _move_aside(path: Path, trash: Path) -> None:
    trash.mkdir(exist_ok=True)
    path.rename(trash / f"{path.name}-{uuid.uuid4().hex[:8]}")


def swap_in(staging: Path, folder: Path, *, ok: bool, known: tuple[str, ...] = ()) -> Path:
    """Move a finished run from ``staging`` into ``folder``; return where it went.

    ``ok`` (the run finished with status ok), or nothing good to keep in ``folder``: the run
    takes the folder's top level. Each entry replaces its namesake by a rename (a folder such
    as ``figures/`` as a whole, so no stale figure survives); entries the previous run wrote
    and this one did not are removed, and so is an old ``failed/``; ``results.json`` and
    ``run.json`` move last. Otherwise the run becomes ``folder/failed/`` and the last good
    results stay as they are.

    Files starting with ``.`` in ``staging`` (the event file) are not moved. ``known``: more
    names a run of this study writes (``<study>.html``), removed when this run did not.
    """
    for hidden in [p for p in staging.iterdir() if p.name.startswith(".")]:
        if hidden.is_dir():
            shutil.rmtree(hidden, ignore_errors=True)
        else:
            hidden.unlink(missing_ok=True)
    if not ok and has_good_results(folder):
        target = folder / FAILED_NAME
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        return target
    trash = folder / f".trash-{uuid.uuid4().hex[:8]}"
    new = {p.name for p in staging.iterdir()}
    old_record = read_json_object(folder / RUN_RECORD) or {}
    stale = set(old_record.get("files", [])) | set(_KNOWN_ENTRIES) | set(known) | {FAILED_NAME}
    try:
        for name in sorted(stale - new):
            p = folder / name
            if p.exists() or p.is_symlink():
                _move_aside(p, trash)
        last = [RESULTS, RUN_RECORD]
        for name in sorted(new - set(last)) + [n for n in last if n in new]:
            src, dst = staging / name, folder / name
            if dst.is_dir() and not dst.is_symlink():
                _move_aside(dst, trash)
            os.replace(src, dst)
    finally:
        if trash.exists():
            shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    return folder


def discard_staging(folder: Path) -> None:
    """Remove ``<folder>/.staging`` and any ``.trash-*`` left by an interrupted swap."""
    shutil.rmtree(folder / STAGING_NAME, ignore_errors=True)
    for p in folder.glob(".trash-*"):
        shutil.rmtree(p, ignore_errors=True)


def rewrite_paths(path: Path, replacements: dict[str, str]) -> None:
    """Replace each key of ``replacements`` by its value in the text file ``path`` (the
    staging folder's name in a notebook or results.json, so both read as written in place)."""
    from ..core.io import atomic_write_text

    text = path.read_text(encoding="utf-8")
    new = text
    for old, repl in replacements.items():
        for o, r in ((old, repl), (json.dumps(old)[1:-1], json.dumps(repl)[1:-1])):
            new = new.replace(o, r)
    if new != text:
        atomic_write_text(path, new)


# ----------------------------------------------------------------------------- inputs


def notebook_digest(notebook: Path) -> str:
    """SHA-256 of a notebook's cells (type, source and tags), not of its outputs: executing
    the notebook does not change it, editing a cell does."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    cells = [{"type": c.get("cell_type"),
              "source": c["source"] if isinstance(c.get("source"), str)
              else "".join(c.get("source", [])),
              "tags": sorted(c.get("metadata", {}).get("tags", []))}
             for c in nb.get("cells", [])]
    return hashlib.sha256(json.dumps(cells, sort_keys=True).encode()).hexdigest()


def resolve_device(device: str) -> str:
    """The device a study will run on: ``auto`` becomes ``cuda`` when torch sees a GPU here,
    else ``cpu``; other values are kept (``cuda:1``)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fingerprint(inputs: dict[str, Any]) -> str:
    """Hex SHA-256 of ``inputs`` as canonical JSON (keys sorted)."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_run_record(folder: Path) -> dict[str, Any] | None:
    return read_json_object(Path(folder) / RUN_RECORD)


def write_run_record(folder: Path, record: dict[str, Any]) -> Path:
    return atomic_write_json(Path(folder) / RUN_RECORD, record)
