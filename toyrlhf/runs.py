"""Run folders: config.json, metrics.jsonl (appended and flushed per step), summary.json, checkpoint.npz.

Everything that replaces a file is written atomically (temporary file in the same folder, fsync, rename),
so an interrupted or killed process leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from .errors import UserError


TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()   # what open() would give; mkstemp alone creates 0600 files


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), _FILE_MODE)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e.__class__.__name__})") from None


def save_npz(path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write a .npz (no pickles: every value an array or a JSON string stored as a 0-d array)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load a checkpoint written by `save_npz`; any defect becomes a one-line UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint")
    if path.is_dir():
        path = path / "checkpoint.npz"
        if not path.exists():
            raise UserError(f"{path}: no such checkpoint")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):   # a bare .npy array: not an archive of named arrays
            raise ValueError("an .npy array, not an .npz archive")
        with z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, RuntimeError, NotImplementedError,
            MemoryError) as e:
        # RuntimeError / NotImplementedError: zipfile's reaction to some corrupt or exotic archives;
        # MemoryError: a corrupt array header that claims an enormous shape
        raise UserError(f"{path}: not a readable toyrlhf checkpoint ({e.__class__.__name__})") from None
    missing = [k for k in required if k not in out]
    if missing:
        raise UserError(f"{path}: not a toyrlhf checkpoint of this kind (missing {', '.join(missing)})")
    return out


def json_array(obj) -> np.ndarray:
    return np.array(json.dumps(obj, sort_keys=True))


def from_json_array(arr: np.ndarray):
    return json.loads(str(arr))


def default_run_dir(name: str, root: str = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{name}-{stamp}"
    i = 1
    while path.exists():
        path = Path(root) / f"{name}-{stamp}-{i}"
        i += 1
    return path


def prepare_run_dir(out: str | os.PathLike | None, name: str, *, overwrite: bool = False) -> Path:
    """Create the run folder; refuse a non-empty existing one unless `overwrite`."""
    path = Path(out) if out else default_run_dir(name)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UserError(f"{path}: folder is not empty (use --overwrite, or --resume to continue a run)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for f in ("metrics.jsonl", "summary.json", "checkpoint.npz", "curves.png"):
                (path / f).unlink(missing_ok=True)
            remove_stale_temp_files(path)
    except OSError as e:
        raise UserError(f"{path}: cannot create run folder ({e.strerror})") from None
    return path


def remove_stale_temp_files(run_dir) -> None:
    """Delete the `.NAME.XXXX.tmp` files a killed atomic write can leave behind (never a finished file)."""
    for f in Path(run_dir).glob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            f.unlink()


def _parse_metrics(path: Path) -> list[tuple[str, dict]]:
    """(line, record) pairs of a metrics log. A torn last line (no newline: the process was killed while writing
    it) is dropped; any other unreadable line is a UserError."""
    text = path.read_text(errors="replace")
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
                raise ValueError
        except ValueError:
            if i == len(lines) - 1:       # the unterminated tail
                continue
            raise UserError(f"{path}:{i + 1}: not a metrics record") from None
        out.append((line, rec))
    return out


class MetricsLog:
    """Append-only JSON-lines log; each record is flushed to the OS as it is written, so a run interrupted or
    killed (even with kill -9) keeps every finished step. No fsync per record: it cost ~50 ms per step here
    and only guards against power loss; checkpoints and summaries are fsynced and renamed atomically."""

    def __init__(self, path, truncate_to_step: int | None = None):
        self.path = Path(path)
        if truncate_to_step is not None:
            # resume: drop records written after the checkpoint's step (they will be recomputed identically)
            kept = self.records_upto(self.path, truncate_to_step)
            atomic_write_bytes(self.path, "".join(l + "\n" for l in kept).encode())
        self._f = open(self.path, "a")

    @staticmethod
    def records_upto(path, step: int) -> list[str]:
        """The log lines of steps 1..step, checked to be exactly those steps (UserError otherwise). Reads only:
        call it before changing anything, so a run folder that cannot be resumed is left as it was."""
        path = Path(path)
        if step == 0:
            return []
        if not path.is_file():
            raise UserError(f"{path}: missing, but the checkpoint is at step {step}; cannot resume")
        kept = [(l, r) for l, r in _parse_metrics(path) if r["step"] <= step]
        if [r["step"] for _, r in kept] != list(range(1, step + 1)):
            raise UserError(f"{path}: does not hold steps 1..{step} of the checkpoint in order; cannot resume")
        return [l for l, _ in kept]

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir}: no metrics.jsonl (not a run folder?)")
    return [r for _, r in _parse_metrics(path)]


# ------------------------------------------------------------------------------------------ stopping a run
class NumericalError(Exception):
    """A non-finite loss, gradient or parameter: the run stops and keeps its last good checkpoint (CLI exit 3)."""


class Interrupted(Exception):
    """The work stopped on SIGINT / SIGTERM at a step boundary; what could be kept is written (CLI exit 130)."""

    def __init__(self, message: str, code: int = 130):
        super().__init__(message)
        self.code = code


@contextlib.contextmanager
def deferred_signals():
    """SIGINT / SIGTERM set a flag instead of raising mid-step; the loop checks it between steps (yields the
    flag dict: flag["signal"] is the first signal's number, or None). A second signal is not deferred: it raises
    KeyboardInterrupt at once (files stay whole: every replaced file is written atomically)."""
    flag = {"signal": None}

    def handler(signum, frame):
        if flag["signal"] is not None:
            raise KeyboardInterrupt
        flag["signal"] = signum

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not in the main thread (e.g. a worker): leave signals alone
            pass
    try:
        yield flag
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
