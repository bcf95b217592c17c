"""One process at a time per run folder: an exclusive, non-blocking flock on the folder itself, held for the run.

Locking the folder's own descriptor (not a lock file inside it) leaves the folder's contents untouched, so an empty
new folder still counts as empty, and the lock is released by the kernel however the process ends (kill -9 too).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None


@contextlib.contextmanager
def folder_lock(path, what: str = "run folder"):
    """Hold an exclusive lock on folder `path` (created if missing) for the `with` block. Another process holding
    it: a one-line UserError at once (no waiting)."""
    path = Path(path)
    if fcntl is None:  # pragma: no cover
        yield path
        return
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as e:
        raise UserError(f"{path}: cannot create {what} ({e.strerror or e.__class__.__name__})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{path}: another toyrlhf process is using this {what}; wait for it to finish or "
                            f"choose another --out") from None
        except OSError:   # a file system without flock (some network mounts): run unlocked
            pass
        yield path
    finally:
        os.close(fd)
