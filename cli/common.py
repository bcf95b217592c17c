"""Progress bars on stderr (so stdout stays the summary) with live figures."""
from __future__ import annotations

import contextlib
import sys

import click


@contextlib.contextmanager
def progress_bar(total: int, label: str, keys: tuple[str, ...] = ()):
    """Yields callback(step, metrics) that advances the bar and shows the named metrics. Drawn only when stderr is
    a terminal: in a log file or a pipe click can only print the label, which would add lines to the one-line
    error messages the commands promise."""
    if not sys.stderr.isatty():
        yield lambda step, metrics: None
        return
    state = {"text": ""}

    def show(_):
        return state["text"]

    with click.progressbar(length=total, label=label, file=sys.stderr, item_show_func=show,
                           show_eta=True, width=24) as bar:
        last = {"step": -1}

        def update(step: int, metrics: dict) -> None:
            parts = [f"{k}={metrics[k]:.3f}" for k in keys if k in metrics and metrics[k] is not None]
            state["text"] = " ".join(parts)
            bar.update(step - last["step"])
            last["step"] = step

        yield update


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


def set_option(f):
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help="Override any config setting (repeatable), e.g. --set lr=1e-3")(f)


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
