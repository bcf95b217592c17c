"""`toyrlhf`: the command line. Every command validates its input and ends with a short summary.

Exit codes: 0 done; 2 bad input (one line on stderr: unknown name, bad value, missing / corrupt / foreign file,
unwritable folder); 3 numerical divergence (a non-finite loss, gradient or parameter; the last good checkpoint is
kept); 130 interrupted by SIGINT or SIGTERM (what was finished is kept; `toyrlhf run --resume DIR` continues an RL
run); 1 an internal error (a bug: the traceback is printed, please report it)."""
from __future__ import annotations

# Before any heavy import (click, numpy, numba, matplotlib: ~0.8 s): a Ctrl-C or SIGTERM during start-up is one
# line and exit 130 / 143, not a 40-line KeyboardInterrupt traceback or a silent death. main() then installs the
# handlers the commands use (Ctrl-C -> KeyboardInterrupt -> one line, what was written is kept).
import gc
import os
import signal
import sys


def _startup_signal(signum, frame):   # pragma: no cover - exercised in a subprocess
    os.write(2, b"toyrlhf: interrupted while starting; nothing was written\n")
    os._exit(128 + signum)


def _install_startup_handlers() -> dict:
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, _startup_signal)
        except (ValueError, OSError):   # not the main thread: leave signals alone
            pass
    return old


def check_environment(environ=os.environ) -> str | None:
    """The environment variables a library reads at import time and would turn into a traceback: returns a one-line
    complaint, or None. NUMBA_NUM_THREADS must be a whole number of threads in 1..CPUs (numba refuses 0 and warns on
    two lines about text); MPLBACKEND must name a matplotlib backend; TOYRLHF_PROGRESS is auto or off (a typo would
    silently keep the bars)."""
    value = environ.get("NUMBA_NUM_THREADS")
    if value is not None and value.strip() != "":
        cpus = os.cpu_count() or 1
        try:
            n = int(value.strip())
        except ValueError:
            n = None
        if n is None or not 1 <= n <= cpus:
            return f"NUMBA_NUM_THREADS={value[:40]!r}: expected a whole number of threads from 1 to {cpus}"
    progress = environ.get("TOYRLHF_PROGRESS")
    if progress is not None and progress.strip().lower() not in ("", "auto", "on", "1", "off", "0"):
        return f"TOYRLHF_PROGRESS={progress[:40]!r}: expected auto or off"
    backend = environ.get("MPLBACKEND")
    if backend is not None and backend.strip() != "":
        name = backend.strip().lower()
        if not (name.startswith("module://") or name in _MPL_BACKENDS):
            return (f"MPLBACKEND={backend[:40]!r}: not a matplotlib backend (toyrlhf draws with agg; unset it or "
                    f"use MPLBACKEND=agg)")
    return None


_MPL_BACKENDS = ("gtk3agg", "gtk3cairo", "gtk4agg", "gtk4cairo", "macosx", "nbagg", "notebook", "qtagg", "qtcairo",
                 "qt5agg", "qt5cairo", "tkagg", "tkcairo", "webagg", "wx", "wxagg", "wxcairo", "agg", "cairo", "pdf",
                 "pgf", "ps", "svg", "template", "inline", "module://matplotlib_inline.backend_inline")
"""matplotlib's built-in backend names (matplotlib.rcsetup's list), checked without importing matplotlib."""

_STARTUP_HANDLERS = _install_startup_handlers()
_ENV_PROBLEM = check_environment()
if _ENV_PROBLEM:
    # the heavy imports below would fail on it with a traceback (numba reads NUMBA_NUM_THREADS when imported)
    os.write(2, f"toyrlhf: error: {_ENV_PROBLEM}\n".encode())
    os._exit(2)

import click  # noqa: E402

from toyrlhf.errors import UserError  # noqa: E402
from toyrlhf.runs import Interrupted, NumericalError  # noqa: E402
from toyrlhf.threads import blas_single_thread  # noqa: E402

from .commands_stages import pretrain_cmd, rm_cmd, sft_cmd, tasks_cmd  # noqa: E402
from .common import OutputLost, sigterm_as_interrupt  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="toyrlhf")
def app():
    """toyrlhf: a CPU-only simulator of LLM post-training (pretraining, SFT, reward model, PPO/GRPO),
    small enough to enumerate every completion and check each estimator against the exact answer."""


for _cmd in (tasks_cmd, pretrain_cmd, sft_cmd, rm_cmd):
    app.add_command(_cmd)

from . import commands_bon, commands_eval, commands_exact, commands_inspect, commands_plot, commands_rl, commands_sweep  # noqa: E402,E501
from . import commands_settings  # noqa: E402

for _mod in (commands_rl, commands_exact, commands_plot, commands_eval, commands_sweep, commands_bon, commands_inspect,
             commands_settings):
    _mod.register(app)


def fail(message: str, code: int = 2) -> None:
    if len(message) > 400:   # e.g. click echoing a 5,000-digit --steps value
        message = message[:397] + "..."
    click.echo(f"toyrlhf: error: {message}", err=True)
    sys.exit(code)


# click >= 8.2 raises NoArgsIsHelpError for a group called without a command; older versions print the help
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", None) or \
    getattr(click.exceptions, "NoArgsIsHelp", None) or ()




def _restore_signals() -> None:
    for sig, old in _STARTUP_HANDLERS.items():
        try:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else old)
        except (ValueError, OSError, TypeError):  # pragma: no cover
            pass


def _quiet_stdout() -> None:
    """stdout is gone (a closed pipe, a full device): point it at /dev/null so the interpreter's final flush
    cannot print an 'Exception ignored' traceback or change the exit code."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):  # pragma: no cover
        pass


def _flush_finished_output() -> None:
    """The command has finished and saved its work; its summary may still sit in stdout's buffer. If stdout cannot
    take it (a full device: ENOSPC, EIO), the work is not lost: say so on one stderr line and exit 0 (the exit code
    reports the work, the summary can be re-read from the run folder's summary.json). A closed pipe: exit 0 quietly."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    except OSError as e:
        _quiet_stdout()
        click.echo(f"toyrlhf: done and saved, but its summary could not be written to standard output "
                   f"({e.strerror or e.__class__.__name__})", err=True)


def main(argv=None) -> None:
    """Entry point: click in non-standalone mode so that every usage error is one line, exit 2."""
    _restore_signals()
    problem = check_environment()
    if problem:
        fail(problem)
    obj = {"whole_process": argv is None}   # common.whole_process
    try:
        _main(sys.argv[1:] if argv is None else list(argv), obj)
    finally:
        if obj["whole_process"]:
            # the process ends here: its exit no longer runs full garbage collections over numba's and the
            # models' objects, which took 0.3-0.6 s after a run (what is freed by reference counts still is)
            gc.freeze()


def _main(argv: list[str], obj: dict) -> None:
    """main() for the command line `argv`; `obj` is click's context object."""
    try:
        if not argv:
            click.echo(app.get_help(click.Context(app, info_name="toyrlhf")))
            sys.stdout.flush()
            return
        with sigterm_as_interrupt(), blas_single_thread():   # no BLAS thread fight, any thread count
            rc = app.main(args=argv, prog_name="toyrlhf", standalone_mode=False, obj=obj)
        _flush_finished_output()
        if isinstance(rc, int) and rc != 0:   # standalone_mode=False returns a command's Exit(code) instead
            sys.exit(rc)
    except _NO_ARGS_IS_HELP as e:  # pragma: no cover - click >= 8.2
        click.echo(e.ctx.get_help() if e.ctx else str(e))
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except OutputLost as e:   # the work is done and saved; only its summary on stdout was lost
        _quiet_stdout()
        if not e.broken_pipe:
            click.echo(f"toyrlhf: {' '.join(str(e).split())}", err=True)
        sys.exit(0)
    except SystemExit as e:
        # click turns a closed stdout (EPIPE, `toyrlhf tasks | head -1`) into exit 1 after wrapping sys.stdout
        if e.code == 1 and type(sys.stdout).__name__.lstrip("_") == "PacifyFlushWrapper":
            _quiet_stdout()
            sys.exit(0)
        raise
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except click.ClickException as e:
        fail(" ".join(e.format_message().split()))
    except UserError as e:
        fail(" ".join(str(e).split()))
    except NumericalError as e:
        fail(" ".join(str(e).split()), 3)
    except Interrupted as e:   # the progress bar has ended its line on the way out
        click.echo(f"toyrlhf: {' '.join(str(e).split())}", err=True)
        sys.exit(e.code)
    except KeyboardInterrupt:
        fail("interrupted; everything written so far is kept", 130)
    except BrokenPipeError:  # `toyrlhf algos | head`: the reader has what it wanted
        _quiet_stdout()
        sys.exit(0)
    except MemoryError:   # sizes (prompts_per_step, corpus_size, ...) too large for this machine
        fail("out of memory: lower the sizes you set (prompts_per_step, group_size, corpus_size, pairs, ...)")
    except OSError as e:   # a folder or file the environment will not let us write or read
        if e.filename is None and _stdout_broken():
            _quiet_stdout()
            fail(f"cannot write to standard output ({e.strerror or e.__class__.__name__}); what the command "
                 f"finished is saved")
        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{e.strerror or e.__class__.__name__}")


def _stdout_broken() -> bool:
    """True if stdout cannot take a flush (a full device, a closed or broken pipe)."""
    try:
        sys.stdout.flush()
        return False
    except (OSError, ValueError):
        return True
