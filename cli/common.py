"""Progress bars on stderr (so stdout stays the summary) with live figures."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import deque

import click

QUIET_SECONDS = 1.0
"""Off a terminal, the header comes after one second, not at the bar's start: an outer bar that never moves (`run`'s
upstream bar with every stage cached) and work that ends at once print nothing."""
PROGRESS_ENV = "TOYRLHF_PROGRESS"
"""`off` silences every bar (a CI log that wants only the summaries; the test suite, whose stderr checks are about
the one-line errors); unset or `auto`: a bar on a terminal, plain lines elsewhere."""
PROGRESS_VALUES = {"auto": True, "on": True, "1": True, "off": False, "0": False}


def progress_enabled(environ=os.environ) -> bool:
    """False when $TOYRLHF_PROGRESS says off (its value is checked at start-up by toyrlhf.cli.main)."""
    return PROGRESS_VALUES.get(environ.get(PROGRESS_ENV, "auto").strip().lower() or "auto", True)
LINE_FRACTION = 0.1
LINE_SECONDS = 30.0
"""Off a terminal, a plain line at every 10% of the work, and at least every 30 s while a step is slow."""
RATE_WINDOW = 20
"""The ETA is the rate over the last 20 updates, never counting the first step (numba compiles in it)."""


def terminal_columns(stream) -> int:
    """Columns of the terminal behind `stream` ($COLUMNS first, as shells set it), 80 when it cannot be asked."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 80


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


_SCREEN = {"owner": None, "updated": None}
"""owner: the bar whose line is on the terminal now (a new bar first ends that line if it shows progress);
updated: the bar updated last. Bars nest (`run` opens the upstream bar, then the run's, before either moves)."""
_OPEN: list = []


def _current_bar():
    """The bar the work is in: the one updated last if still open, else the newest one."""
    last = _SCREEN["updated"]
    return last if last in _OPEN else (_OPEN[-1] if _OPEN else None)


class Progress:
    """A progress display for `total` steps on `stream`, fed by update(step, metrics).

    Hand-written rather than click.progressbar, which estimates the ETA from the mean time per item since the start
    (the first step's numba compile makes it read half an hour for a 10 s run), cannot cut its line to the terminal
    (an 80-column terminal got one wrapped line per redraw) and, off a terminal, prints the label only. tqdm is not
    a dependency, and off a terminal it still writes carriage-return redraws.

    On a terminal: one line redrawn in place (at most 10 times a second), cut to the terminal's width: label, bar,
    step/total, percent, ETA from the recent rate, the named metrics. Elsewhere (a pipe, a file, a subprocess):
    after QUIET_SECONDS the header, then a plain line at every LINE_FRACTION of the work or LINE_SECONDS, and a last
    line when the work ends."""

    def __init__(self, total: int, label: str, keys: tuple[str, ...] = (), stream=None, tty: bool | None = None,
                 now=time.monotonic):
        self.total, self.label, self.keys = max(int(total), 0), label, tuple(keys)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.now = now
        self.t0 = now()
        self.step = 0
        self.metrics: dict = {}
        self.marks: deque = deque(maxlen=RATE_WINDOW + 1)   # (time, step) after the first update
        self.drawn = 0.0           # time of the last terminal redraw
        self.on_screen = False     # a terminal line of ours is showing
        self.shown = None          # (step, metrics) of the last redraw
        self.started = False       # off a terminal: the header is out
        self.next_fraction = LINE_FRACTION
        self.last_line = self.t0
        self.lock = threading.Lock()
        self.timer = None
        _OPEN.append(self)
        if not self.tty:
            self.timer = threading.Timer(QUIET_SECONDS, self._wake)
            self.timer.daemon = True
            self.timer.start()

    # ------------------------------------------------------------------ figures
    def eta(self) -> float | None:
        """Seconds left at the rate of the recent updates; None until two updates after the first one."""
        if len(self.marks) < 2:
            return None
        (t_a, s_a), (t_b, s_b) = self.marks[0], self.marks[-1]
        if s_b <= s_a:
            return None
        return max(self.total - self.step, 0) * (t_b - t_a) / (s_b - s_a)

    def figures(self) -> list[str]:
        parts = []
        for k in self.keys:
            v = self.metrics.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                parts.append(f"{k}={v:.3f}")
        return parts

    def counts(self) -> str:
        pct = 100.0 * self.step / self.total if self.total else 100.0
        return f"{self.step}/{self.total} {pct:3.0f}%"

    def terminal_line(self, columns: int) -> str:
        """The redrawn line, never longer than columns - 1 (the last column would wrap on some terminals): the bar
        shrinks from 30 to 10 characters first, then the figures go from the right, then the label is cut."""
        room = max(columns - 1, 20)
        tail = f" {self.counts()} eta {clock(self.eta())}"
        figures = self.figures()
        label = self.label
        fixed = len(label) + len(tail) + 3            # ' [' and ']'
        while figures and fixed + 10 + len(" ".join(figures)) + 1 > room:
            figures.pop()
        text = " ".join(figures)
        bar_w = max(10, min(30, room - fixed - (len(text) + 1 if text else 0)))
        if fixed + bar_w > room:
            label = label[:max(room - len(tail) - bar_w - 4, 1)] + "…"
        filled = int(bar_w * self.step / self.total) if self.total else bar_w
        line = f"{label} [{'#' * filled}{'.' * (bar_w - filled)}]{tail}" + (f" {text}" if text else "")
        return line[:room]

    def plain_line(self) -> str:
        elapsed = self.now() - self.t0
        figures = " ".join(self.figures())
        return (f"{self.label}: {self.counts()}, {clock(elapsed)} elapsed, eta {clock(self.eta())}"
                + (f", {figures}" if figures else ""))

    # ------------------------------------------------------------------ output
    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):   # progress is a courtesy: a closed or full stderr must not stop the work
            pass

    def _header(self) -> None:
        self.started = True
        self._write(f"{self.label}: {self.total} steps\n")

    def _wake(self) -> None:
        with self.lock:
            # an open outer bar that is not the one working stays silent (a cached upstream stage)
            if not self.started and self.timer is not None and _current_bar() is self:
                self._header()
                self.last_line = self.now()

    def _draw(self) -> None:
        owner = _SCREEN["owner"]
        if owner is not None and owner is not self and owner.on_screen:
            if owner.step > 0:          # keep the other bar's line, brought up to date (redraws are throttled)
                self._write("\r" + owner.terminal_line(terminal_columns(self.stream)) + "\x1b[K\n")
            owner.on_screen = False
        _SCREEN["owner"] = self
        self._write("\r" + self.terminal_line(terminal_columns(self.stream)) + "\x1b[K")
        self.on_screen = True
        self.shown = (self.step, self.metrics)

    def update(self, step: int, metrics: dict | None = None) -> None:
        t = self.now()
        with self.lock:
            self.step = min(max(int(step), 0), self.total) if self.total else int(step)
            self.metrics = dict(metrics or {})
            # the first mark is the end of the first update, never the start: its compile stays out of the rate
            self.marks.append((t, self.step))
            _SCREEN["updated"] = self
            if self.tty:
                if t - self.drawn >= 0.1 or self.step >= self.total:
                    self.drawn = t
                    self._draw()
                return
            if not self.started:
                if t - self.t0 < QUIET_SECONDS:
                    return
                self._header()
            done = self.step / self.total if self.total else 1.0
            if done >= self.next_fraction - 1e-12 or t - self.last_line >= LINE_SECONDS:
                while self.next_fraction <= done + 1e-12:
                    self.next_fraction += LINE_FRACTION
                self.last_line = t
                self._write(self.plain_line() + "\n")

    def close(self) -> None:
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if self.tty:
                if self.on_screen:
                    if self.step > 0:
                        if self.shown != (self.step, self.metrics):   # the last redraw was throttled away
                            self._draw()
                        self._write("\n")
                    else:                      # nothing ran (a cached stage): leave no line behind
                        self._write("\r\x1b[K")
                    self.on_screen = False
                if _SCREEN["owner"] is self:
                    _SCREEN["owner"] = None
            elif self.started and self.step > 0 and self.next_fraction <= 1.0 + 1e-12:   # the last line is not out
                self._write(self.plain_line() + "\n")
            if self in _OPEN:
                _OPEN.remove(self)
            if _SCREEN["updated"] is self:
                _SCREEN["updated"] = None


@contextlib.contextmanager
def progress_bar(total: int, label: str, keys: tuple[str, ...] = ()):
    """Yields callback(step, metrics) that advances a `Progress` for `total` steps on stderr and shows the named
    metrics. Bad input is refused before a command opens its bar, so such errors stay one line. Nothing at all with
    TOYRLHF_PROGRESS=off."""
    if not progress_enabled():
        yield lambda step, metrics: None
        return
    bar = Progress(total, label, keys)
    if bar.tty:
        with bar.lock:
            bar._draw()            # at once: the first step may take seconds (numba compiles)
    try:
        yield bar.update
    finally:
        bar.close()


def counted(bar):
    """A progress callback that advances `bar` by one step per call: for work made of several stages that each count
    from 0 (pretraining then SFT)."""
    done = [0]

    def callback(step, metrics):
        done[0] += 1
        bar(done[0], metrics)
    return callback


RUNS_FAILED = 4
"""Exit code of `compare` and `sweep` when some of their runs failed or diverged (each is named on one stderr line;
the finished runs, their table and figures are kept). 1 stays reserved for a bug."""


def timed(fn):
    """Run fn() and return (result, seconds)."""
    import time
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


class OutputLost(Exception):
    """The command's work is finished and saved, but its summary could not be written to stdout (a full device, a
    closed pipe): toyrlhf.cli.main says so on one stderr line and exits 0 (a closed pipe: quietly)."""

    def __init__(self, message: str, broken_pipe: bool = False):
        super().__init__(message)
        self.broken_pipe = broken_pipe


@contextlib.contextmanager
def finished_output(what: str):
    """Around the output a command prints after its work is saved: a failing stdout becomes OutputLost."""
    try:
        yield
    except BrokenPipeError:
        raise OutputLost(what, broken_pipe=True) from None
    except OSError as e:
        raise OutputLost(f"{what}; its summary could not be written to standard output "
                         f"({e.strerror or e.__class__.__name__})") from None


def echo_summary(title: str, rows: list[tuple[str, object]]) -> None:
    """The short summary every command ends with: a title and aligned key: value lines on stdout. Called once the
    work is saved: a stdout that cannot take it (full device, closed pipe) raises OutputLost."""
    with finished_output(f"done and saved ({title})"):
        click.echo(title)
        width = max((len(k) for k, _ in rows), default=0)
        for k, v in rows:
            if isinstance(v, float):
                v = f"{v:.4g}"
            click.echo(f"  {k:<{width}}  {v}")


def whole_process() -> bool:
    """Is this command the whole process: `toyrlhf ...` or `python -m toyrlhf ...` (main() reading sys.argv), not
    main(argv) or a click runner called from Python? Only such a process starts helper processes for itself."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return isinstance(obj, dict) and obj.get("whole_process") is True


def set_option(f):
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help="Override any config setting (repeatable), e.g. --set lr=1e-3; `toyrlhf settings` "
                             "lists every key with its type, default and meaning.")(f)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM outside a training loop (which defers it to the end of a step) takes the Ctrl-C path: exit 130
    with one line, keeping what was written, instead of the default silent death."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
