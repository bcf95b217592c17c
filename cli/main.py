"""`toyrlhf`: the command line. Every command validates its input and ends with a short summary;
wrong input is one line on stderr and exit code 2; an interrupt keeps what was written (exit 130)."""
from __future__ import annotations

import sys

import click

from toyrlhf.errors import UserError

from .commands_stages import pretrain_cmd, rm_cmd, sft_cmd, tasks_cmd


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


def main(argv=None) -> None:
    """Entry point: click in non-standalone mode so that every usage error is one line, exit 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        click.echo(app.get_help(click.Context(app, info_name="toyrlhf")))
        return
    try:
        app.main(args=argv, prog_name="toyrlhf", standalone_mode=False)
    except click.exceptions.NoArgsIsHelp as e:  # pragma: no cover - click >= 8.2
        click.echo(e.ctx.get_help() if e.ctx else str(e))
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except click.ClickException as e:
        fail(" ".join(e.format_message().split()))
    except UserError as e:
        fail(" ".join(str(e).split()))
    except KeyboardInterrupt:
        fail("interrupted; everything written so far is kept", 130)
    except BrokenPipeError:  # `toyrlhf algos | head`
        sys.exit(0)
