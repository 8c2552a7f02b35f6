"""Files that several edgesql processes share (the caches, the shell's history, the question log), written so that no
process ever reads half of one.

A whole file is written to a temporary name in its own folder and renamed over the old one (:func:`write_atomically`):
a reader sees the old file or the new one, never a mix. A log line is appended in one ``write`` under an exclusive
lock (:func:`append_line`). Files that one process writes in turn under a lock of their folder use :func:`locked`.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> write_atomically(folder / "a.json", b'{"ok": true}')
>>> (folder / "a.json").read_bytes(), sorted(p.name for p in folder.iterdir())
(b'{"ok": true}', ['a.json'])
>>> (folder / "log").write_bytes(b'{"cut": "sho')  # a line cut short by a crash
12
>>> append_line(folder / "log", '{"next": 1}')
>>> (folder / "log").read_text().splitlines()[-1]
'{"next": 1}'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, the renames still keep files whole
    fcntl = None

#: A temporary file older than this was left by a process that died while writing it: it may be removed.
STALE_SECONDS = 3600.0

TEMPORARY_SUFFIX = ".partial"


def temporary_path(path: Path) -> Path:
    """A name beside ``path`` that no other process uses, for a writer that needs a path (llama.cpp's state files)."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    os.close(handle)
    return Path(name)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``: to a temporary name first, flushed to disk, then renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_path(path)
    try:
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def rename_into_place(partial: Path, path: Path) -> None:
    """Publish a file written at a :func:`temporary_path`: flushed to disk, then renamed over ``path``."""
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, path)


def append_line(path: Path, line: str) -> None:
    """Append ``line`` and a newline in one write, holding an exclusive lock on the file. When the file does not end
    with a newline (a write cut short, a truncated copy), the line starts on a line of its own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    handle = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        size = os.fstat(handle).st_size
        if size and os.pread(handle, 1, size - 1) != b"\n":
            data = b"\n" + data
        while data:
            data = data[os.write(handle, data):]
    finally:
        os.close(handle)  # closing releases the lock


@contextlib.contextmanager
def locked(folder: Path):
    """Hold an exclusive lock on ``folder`` (created if missing) while a file in it is read, changed and replaced."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder, os.O_RDONLY)
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def remove_stale_partials(folder: Path, *, older_than: float = STALE_SECONDS) -> None:
    """Remove temporary files that a process killed while writing left behind."""
    now = time.time()
    for partial in Path(folder).glob(f".*{TEMPORARY_SUFFIX}"):
        with contextlib.suppress(OSError):
            if now - partial.stat().st_mtime > older_than:
                partial.unlink()
