"""Writing a run's output so that a failed write loses nothing and tells no lie.

A results directory on a full disk (ENOSPC), over quota, read-only or gone must stop the run at
once with one line that names the file, and leave what was already written intact:
- JSON lines are appended whole: a line that did not fit is cut off again (the file is
  truncated back to its last complete line) and every line is fsynced as it is written;
- run.json and junit.xml are rewritten through a temporary file renamed over the old one, so
  a failed rewrite keeps the previous version and never leaves a truncated file;
- anything else (the console log, gdb logs) raises the same OutputError, which the runner and
  the command line treat as fatal for the run (exit status 2), never as a scenario's error.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import os
import shutil
import tempfile
from pathlib import Path


class OutputError(Exception):
    """A write into the run's output failed. Fatal for the run: what was written stays."""

    def __init__(self, path: Path | str, exc: OSError) -> None:
        self.path = Path(path)
        self.errno = exc.errno
        name = errno_mod.errorcode.get(exc.errno or 0, "error")
        self.code = name
        super().__init__(f"cannot write {path}: {name} ({exc.strerror or exc})")


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` through a temporary file in the same directory (fsynced,
    then renamed): a reader sees the old file or the new one, never half of either."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(path, exc) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def append_line(path: Path, line: str) -> None:
    """Append one line (newline added) and fsync it. On a failed write the file is cut back
    to what it held before, so it keeps only whole lines."""
    data = line.encode() + b"\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(path, exc) from exc
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise OutputError(path, exc) from exc
    finally:
        os.close(fd)


def append_empty(path: Path) -> None:
    """Create `path` empty if it does not exist (an empty results.jsonl is a run too)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    except OSError as exc:
        raise OutputError(path, exc) from exc


def free_bytes(directory: Path) -> int | None:
    """Bytes free for this user where `directory` (or its nearest existing parent) lives."""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None

