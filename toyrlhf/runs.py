"""Run folders: config.json, metrics.jsonl (appended and flushed per step), summary.json, checkpoint.npz.

Everything that replaces a file is written atomically (temporary file in the same folder, fsync, rename),
so an interrupted or killed process leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from .errors import UserError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
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
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
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
    except OSError as e:
        raise UserError(f"{path}: cannot create run folder ({e.strerror})") from None
    return path


class MetricsLog:
    """Append-only JSON-lines log; each record is flushed to the OS as it is written, so a run interrupted or
    killed (even with kill -9) keeps every finished step. No fsync per record: it cost ~50 ms per step here
    and only guards against power loss; checkpoints and summaries are fsynced and renamed atomically."""

    def __init__(self, path, truncate_to_step: int | None = None):
        self.path = Path(path)
        if truncate_to_step is not None and self.path.exists():
            # resume: drop records written after the checkpoint's step (they will be recomputed identically)
            kept = [l for l in self.path.read_text().splitlines()
                    if l.strip() and json.loads(l)["step"] <= truncate_to_step]
            atomic_write_bytes(self.path, "".join(l + "\n" for l in kept).encode())
        self._f = open(self.path, "a")

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir}: no metrics.jsonl (not a run folder?)")
    out = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            raise UserError(f"{path}:{i + 1}: not valid JSON") from None
    return out
