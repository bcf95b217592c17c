"""Run folders: config.json, metrics.jsonl (appended and flushed per step), summary.json, checkpoint.npz.

Everything that replaces a file is written atomically (temporary file in the same folder, fsync, rename),
so an interrupted or killed process leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

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


def _regular_file(path: Path, what: str) -> Path:
    """`path` if it is a regular file; a FIFO, device or folder in its place is refused (opening a FIFO would wait
    forever for a writer)."""
    if not path.exists():
        raise UserError(f"{path}: no such {what}")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file")
    return path


def read_json(path) -> dict:
    path = _regular_file(Path(path), "file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e.__class__.__name__})") from None
    except RecursionError:
        raise UserError(f"{path}: not valid JSON (nested too deeply)") from None


def save_npz(path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write a .npz (no pickles: every value an array or a JSON string stored as a 0-d array)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


MAX_MEMBER_BYTES = 1 << 30
"""Largest array a checkpoint member may hold unless the caller sets a tighter limit (the biggest real one, a
policy with its Adam moments, is a few MB)."""
_NPY_HEADER_BYTES = 1 << 16   # the .npy header in front of the data: at most 64 KiB (format 2.0)


_READ_ERRORS = (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, RuntimeError, NotImplementedError,
                MemoryError)
"""What numpy and zipfile raise for a damaged archive. RuntimeError / NotImplementedError: zipfile's reaction to some
corrupt or exotic archives; MemoryError: a corrupt array header that claims an enormous shape."""


@contextlib.contextmanager
def _archive(path):
    """(path, the open NpzFile, name -> declared data bytes of each member); any defect a one-line UserError."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    _regular_file(path, "checkpoint")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):   # a bare .npy array: not an archive of named arrays
            raise ValueError("an .npy array, not an .npz archive")
        with z:
            sizes = {(i.filename[:-4] if i.filename.endswith(".npy") else i.filename): i.file_size
                     for i in z.zip.infolist()}
            yield path, z, sizes
    except _READ_ERRORS as e:
        raise UserError(f"{path}: not a readable toyrlhf checkpoint ({e.__class__.__name__})") from None


def npz_members(path) -> dict[str, int]:
    """Name -> size in bytes that each member of a checkpoint declares, from the zip directory alone (nothing read)."""
    with _archive(path) as (_, _, sizes):
        return sizes


def load_npz(path, required: tuple[str, ...] = (), optional: tuple[str, ...] | None = None, *,
             limits: dict[str, int] | None = None, max_bytes: int = MAX_MEMBER_BYTES) -> dict[str, np.ndarray]:
    """Load a checkpoint written by `save_npz`; any defect becomes a one-line UserError.

    Reads only the members `required` + `optional` (every member when optional is None). Before a member is read,
    its size as declared in the zip directory is checked against limits[name] (default max_bytes) bytes of data,
    so a crafted archive with a huge (or huge when decompressed) member is refused without reading it."""
    with _archive(path) as (path, z, sizes):
        names = z.files if optional is None else [k for k in (*required, *optional) if k in z.files]
        for k in names:
            limit = (limits or {}).get(k, max_bytes)
            if sizes.get(k, 0) > limit + _NPY_HEADER_BYTES:
                raise UserError(f"{path}: member {k!r} declares {sizes[k]} bytes, more than the "
                                f"{limit} this checkpoint's {k} can hold; refused unread")
        out = {k: z[k] for k in names}
    missing = [k for k in required if k not in out]
    if missing:
        raise UserError(f"{path}: not a toyrlhf checkpoint of this kind (missing {', '.join(missing)})")
    return out


def json_array(obj) -> np.ndarray:
    return np.array(json.dumps(obj, sort_keys=True))


def from_json_array(arr: np.ndarray):
    """The JSON value stored by `json_array` (ValueError if it is not JSON, including JSON nested too deeply)."""
    try:
        return json.loads(str(arr))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


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
            if not isinstance(rec, dict) or type(rec.get("step")) is not int:   # a bool is no step
                raise ValueError
        except (ValueError, RecursionError):
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


# ------------------------------------------------------------------------------------------ supervised stages' runs
# The supervised stages (stages.run_pretrain, stages.run_sft, reward_model.run_rm) are short and do not resume:
# SIGINT / SIGTERM stop them at the end of the current step (Interrupted, exit 130), a non-finite loss or parameter
# stops them (NumericalError, exit 3), bad input is a UserError (exit 2). On any of these, on a second Ctrl-C and on
# any other failure the files the run wrote are removed again (and the folder, if the run made it), so the folder
# is as it was and the same command can simply be run again. `bars(total, label, keys)` is an optional progress
# display: a context manager yielding a callback (step, figures), e.g. the CLI's progress bar.
@contextlib.contextmanager
def no_bars(total: int, label: str, keys: tuple[str, ...]):
    yield lambda step, figures: None


class StageRun:
    """One supervised stage's run folder: remembers every file it writes (to remove them on failure), checks the
    deferred signal after every step and keeps the per-step records for metrics.jsonl."""

    def __init__(self, run_dir: Path, flag: dict, bars: Callable):
        self.dir, self.flag, self.bars = run_dir, flag, bars
        self.written: list[Path] = []
        self.records: list[dict] = []

    def watch(self, bar: Callable, what: str, log: bool = True) -> Callable:
        """A progress callback: shows the step, logs it (if `log`), and stops the stage on a deferred signal."""
        def callback(step, figures):
            bar(step + 1, figures)   # steps done: the stages count from 0
            if log:
                self.records.append({"step": step + 1, **figures})
            self.check_signal(f"{what} (after step {step + 1})")
        return callback

    def check_signal(self, where: str) -> None:
        if self.flag["signal"] is not None:
            raise Interrupted(f"{signal_name(self.flag['signal'])} during {where}: the supervised stages do not "
                              f"resume; nothing saved, run the command again")

    def train(self, steps: int, label: str, keys: tuple[str, ...], what: str, fn: Callable, log: bool = True):
        """fn(progress) under a progress display of `steps` steps; returns (fn's result, seconds)."""
        with self.bars(steps, label, keys) as bar:
            t0 = time.perf_counter()
            out = fn(self.watch(bar, what, log))
        return out, time.perf_counter() - t0

    def write(self, name: str, writer: Callable[[Path], None]) -> None:
        path = self.dir / name
        self.written.append(path)      # before writing: a write cut short is removed too
        writer(path)

    def finish(self, save_checkpoint: Callable[[Path], None], summary: dict,
               curves: Callable[[Path, Path], object] | None = None) -> None:
        """The results, written together once the stage is complete (a signal during its evaluation still stops
        it with nothing saved; one arriving while these few files are written lets them finish). `curves(run
        folder, out)` draws curves.png from the metrics.jsonl and summary.json just written (plot_run_curves)."""
        self.check_signal("the evaluation after training")
        self.write("checkpoint.npz", save_checkpoint)
        self.write("metrics.jsonl", lambda p: atomic_write_bytes(
            p, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records).encode()))
        self.write("summary.json", lambda p: write_json(p, summary))
        if curves is not None:
            self.write("curves.png", lambda p: curves(self.dir, p))

    def remove_written(self, created: bool) -> None:
        for path in self.written:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        if created:
            _remove_if_empty(self.dir)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):   # rmdir refuses a folder that is not empty
        folder.rmdir()


@contextlib.contextmanager
def removed_on_failure(folder, created: bool):
    """On any failure inside the block (an interruption too), remove `folder` if this process created it and it was
    left empty: an RL run that never started leaves no folder behind (rl.run.train removes its config.json)."""
    try:
        yield
    except BaseException:
        if created:
            _remove_if_empty(Path(folder))
        raise


@contextlib.contextmanager
def stage_run(out, name: str, overwrite: bool, bars: Callable | None):
    """Prepare the run folder (refusing a non-empty one unless `overwrite`) and yield its StageRun, with SIGINT /
    SIGTERM deferred; on any failure remove what the run wrote (and the folder, if it made it)."""
    existed = out is not None and Path(out).exists()
    with deferred_signals() as flag:
        run = StageRun(prepare_run_dir(out, name, overwrite=overwrite), flag, bars or no_bars)
        try:
            yield run
        except BaseException:
            run.remove_written(created=not existed)
            raise


INITIAL_STEPS = 10
"""summary.json's initial_* figures: the mean over the first INITIAL_STEPS logged steps."""


def final_window(n_steps: int) -> int:
    """How many of the last steps summary.json's final_* figures average: max(1, min(25, n // 5)) (a few steps of a
    short run, 25 of a long one: less noise than the last step alone, still the end of the run)."""
    return max(1, min(25, n_steps // 5))


def tree_hash(*folders) -> dict[str, str]:
    """{path: sha256 of its bytes, or "dir"} for everything under `folders`: equal before and after a command iff it
    changed nothing there (how the bad-input tests and benchmarks/attacks.py check that nothing written was lost)."""
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out
