"""`toyrlhf settings`: every key `--set` and config files accept, with its type, default and description (the
field docstrings of toyrlhf/config.py, read once from the source, so they are written in one place)."""
from __future__ import annotations

import json

import click


def _value_text(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@click.command("settings")
@click.option("--json", "as_json", is_flag=True, help="One JSON list of {key, type, default, description}.")
@click.argument("match", required=False, metavar="[TEXT]")
def settings_cmd(as_json, match):
    """Every setting of `toyrlhf run --set KEY=VALUE` (and of --config files): key, type, default, description.
    Nested keys (pretrain.*, sft.*, rm.*) set the upstream stages. TEXT keeps the keys that contain it."""
    from toyrlhf.config import RLConfig
    from toyrlhf.settings import setting_rows

    rows = setting_rows(RLConfig)
    if match:
        rows = [r for r in rows if match in r["key"]]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no setting contains {match!r}")
        return
    w = [max(len(r["key"]) for r in rows), max(len(r["type"]) for r in rows),
         max(len(_value_text(r["default"])) for r in rows)]
    for r in rows:
        click.echo(f"{r['key']:<{w[0]}}  {r['type']:<{w[1]}}  {_value_text(r['default']):<{w[2]}}  "
                   f"{r['description']}".rstrip())
    click.echo(f"\n{len(rows)} settings; set any with `toyrlhf run ALGO --set KEY=VALUE` or a --config TOML file")


def register(app) -> None:
    app.add_command(settings_cmd)
