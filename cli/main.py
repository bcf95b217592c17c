"""`toyrlhf`: the command line. Every command validates its input and ends with a short summary.

Exit codes: 0 done; 2 bad input (one line on stderr: unknown name, bad value, missing / corrupt / foreign file,
unwritable folder); 3 numerical divergence (a non-finite loss, gradient or parameter; the last good checkpoint is
kept); 130 interrupted by SIGINT or SIGTERM (what was finished is kept; `toyrlhf run --resume DIR` continues an RL
run); 1 an internal error (a bug: the traceback is printed, please report it)."""
from __future__ import annotations

import sys

import click

from toyrlhf.errors import UserError
from toyrlhf.runs import Interrupted, NumericalError

from .commands_stages import pretrain_cmd, rm_cmd, sft_cmd, tasks_cmd
from .common import sigterm_as_interrupt


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="toyrlhf")
def app():
    """toyrlhf: a CPU-only simulator of LLM post-training (pretraining, SFT, reward model, PPO/GRPO),
    small enough to enumerate every completion and check each estimator against the exact answer."""


for _cmd in (tasks_cmd, pretrain_cmd, sft_cmd, rm_cmd):
    app.add_command(_cmd)

from . import commands_exact, commands_plot, commands_rl  # noqa: E402

for _mod in (commands_rl, commands_exact, commands_plot):
    _mod.register(app)


def fail(message: str, code: int = 2) -> None:
    click.echo(f"toyrlhf: error: {message}", err=True)
    sys.exit(code)


# click >= 8.2 raises NoArgsIsHelpError for a group called without a command; older versions print the help
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", None) or \
    getattr(click.exceptions, "NoArgsIsHelp", None) or ()




def main(argv=None) -> None:
    """Entry point: click in non-standalone mode so that every usage error is one line, exit 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        click.echo(app.get_help(click.Context(app, info_name="toyrlhf")))
        return
    try:
        with sigterm_as_interrupt():
            app.main(args=argv, prog_name="toyrlhf", standalone_mode=False)
    except _NO_ARGS_IS_HELP as e:  # pragma: no cover - click >= 8.2
        click.echo(e.ctx.get_help() if e.ctx else str(e))
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except click.ClickException as e:
        fail(" ".join(e.format_message().split()))
    except UserError as e:
        fail(" ".join(str(e).split()))
    except NumericalError as e:
        fail(" ".join(str(e).split()), 3)
    except Interrupted as e:
        if sys.stderr.isatty():
            click.echo("", err=True)   # end the progress bar's line
        click.echo(f"toyrlhf: {' '.join(str(e).split())}", err=True)
        sys.exit(e.code)
    except KeyboardInterrupt:
        fail("interrupted; everything written so far is kept", 130)
    except BrokenPipeError:  # `toyrlhf algos | head`
        sys.exit(0)
    except MemoryError:   # sizes (prompts_per_step, corpus_size, ...) too large for this machine
        fail("out of memory: lower the sizes you set (prompts_per_step, group_size, corpus_size, pairs, ...)")
    except OSError as e:   # a folder or file the environment will not let us write or read
        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{e.strerror or e.__class__.__name__}")
