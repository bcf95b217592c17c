"""`toyrlhf settings` (issue 17): every `--set` key, with type, default and the field docstring of
toyrlhf/config.py, and a pointer to it in `toyrlhf run --help`."""
from __future__ import annotations

import json

from toyrlhf.config import RLConfig
from toyrlhf.settings import _flat_keys, field_docs, setting_rows, to_dict, with_overrides


def test_every_set_key_is_listed_once_and_accepts_its_listed_default():
    rows = setting_rows(RLConfig)
    keys = [r["key"] for r in rows]
    assert sorted(keys) == sorted(_flat_keys(to_dict(RLConfig()))) and len(set(keys)) == len(keys)
    assert {"pretrain.lr", "sft.steps", "rm.head", "group_size"} <= set(keys)
    cfg = RLConfig()
    for r in rows:
        assert r["description"], r["key"]                    # every field has its docstring
        with_overrides(cfg, {r["key"]: r["default"]})         # the listed default is a valid value of the key


def test_descriptions_types_and_defaults_come_from_the_dataclasses():
    rows = {r["key"]: r for r in setting_rows(RLConfig)}
    assert rows["group_size"]["description"] == field_docs(RLConfig)["group_size"]
    assert rows["group_size"]["description"].startswith("G: completions per prompt")
    assert rows["group_size"] | {} == {**rows["group_size"], "type": "int", "default": RLConfig().group_size}
    assert rows["sampler_temperature"]["type"] == "float or none" and rows["sampler_temperature"]["default"] is None
    assert "\n" not in rows["rollout_correction"]["description"]       # a multi-line docstring is one line


def test_settings_command_text_and_json_and_the_run_help_pointer(capsys):
    from toyrlhf.cli.main import main
    main(["settings", "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert listed == json.loads(json.dumps(setting_rows(RLConfig)))
    main(["settings", "rm."])
    text = capsys.readouterr().out
    lines = [l for l in text.splitlines() if l.startswith("rm.")]
    assert len(lines) == sum(r["key"].startswith("rm.") for r in listed) and "rm.head" in text
    assert "lr" not in [l.split()[0] for l in lines]                   # the filter kept rm.* only
    try:
        main(["run", "--help"])
    except SystemExit:
        pass
    assert "toyrlhf settings" in " ".join(capsys.readouterr().out.split())
