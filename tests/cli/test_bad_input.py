"""Bad input everywhere: every command, fed invalid option values, malformed TOML, unknown or wrongly typed --set
keys, missing / truncated / foreign .npz files and hand-edited run folders, ends with ONE line on stderr and exit 2,
creates no --out folder, and leaves every file already in a run folder (and the stage cache) as it was.

The commands are called in-process through `toyrlhf.cli.main.main(argv)` (the console script's entry point), which
costs milliseconds instead of seconds per example; a few cases also go through a real `python -m toyrlhf`
subprocess. An exception escaping `main` is what `python -m toyrlhf` would turn into a traceback and exit 1: the
test reports it as an internal error, with the argv that caused it.

Every generated input is invalid by construction (a valid one would start real training), so each example checks
that the mistake is caught, and caught before any work or any write.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import typing
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from toyrlhf.config import PretrainConfig, RLConfig, RMConfig, SFTConfig
from toyrlhf.model import RM_HEADS
from toyrlhf.optim import LR_SCHEDULES
from toyrlhf.rl import advantages, losses
from toyrlhf.rl.algorithms import PRESETS
from toyrlhf.rl.rollout import REWARD_SOURCES
from toyrlhf.rl.surrogates import SURROGATES
from toyrlhf.runs import tree_hash
from conftest import invoke_cli
from toyrlhf.tasks import TASKS

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

UPSTREAM = ["--set", "prompts_per_step=4", "--set", "group_size=4", "--set", "pretrain.steps=50",
            "--set", "pretrain.corpus_size=2000", "--set", "sft.steps=20", "--set", "rm.steps=20",
            "--set", "rm.pairs=200", "--set", "rm.norm_samples=256"]
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)


# ------------------------------------------------------------------------------------------------ harness
invoke = invoke_cli   # conftest: `toyrlhf ARGV` in this process, (exit code, stdout, stderr)


def assert_bad_input(argv, capsys, protected=(), new_out=None) -> str:
    before = tree_hash(*protected)
    code, out, err = invoke(argv, capsys)
    lines = err.splitlines()
    assert code == 2, f"exit {code} for {argv}\nstderr: {err}\nstdout: {out[:500]}"
    assert len(lines) == 1 and lines[0].startswith("toyrlhf: error: "), f"{argv}: {err!r}"
    assert tree_hash(*protected) == before, f"{argv} modified a protected folder"
    if new_out is not None:
        assert not Path(new_out).exists(), f"{argv} created {new_out}"
    return lines[0]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def env(shared_cache_dir, tmp_path_factory):
    """A real RL run folder and the stage-cache checkpoints, built once; all in-process, curves skipped."""
    import toyrlhf.rl.run   # patched where it is used: the CLI imports it lazily, so patch after the import
    root = tmp_path_factory.mktemp("bad-input")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
        mp.setattr(toyrlhf.rl.run, "plot_run_curves", lambda run_dir, out: out)
        from toyrlhf.cli.main import main
        run = root / "grpo-run"
        main(["run", "grpo", "--steps", "3", "--set", "checkpoint_every=2", *UPSTREAM, "--out", str(run)])
        cache = Path(shared_cache_dir)
        files = {"run": run, "root": root, "cache": cache,
                 "pretrain_ckpt": sorted(cache.glob("pretrain-pref-*.npz"))[0],
                 "sft_ckpt": sorted(cache.glob("sft-pref-*.npz"))[0],
                 "rm_ckpt": sorted(cache.glob("rm-pref-*.npz"))[0]}
        files["foreign"] = make_foreign_files(root / "foreign", run / "checkpoint.npz", files["pretrain_ckpt"],
                                              files["rm_ckpt"])
        yield Env(files)


class Env(dict):
    """The fixture's paths, with a short repr so that hypothesis' falsifying examples stay readable."""

    def __repr__(self):
        return f"<env {self['root']}>"


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def make_foreign_files(folder: Path, rl_ckpt: Path, lm_ckpt: Path, rm_ckpt: Path) -> dict[str, Path]:
    """Files that are not what a command wants: name -> path."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    lm = dict(np.load(lm_ckpt, allow_pickle=False))
    good = lm_ckpt.read_bytes()
    files = {
        "missing": folder / "does-not-exist.npz",
        "empty": b"",
        "random-bytes": rng.bytes(3000),
        "text": b"this is not a checkpoint\n",
        "zip-without-npy": (lambda b: (zipfile.ZipFile(b, "w").writestr("x.txt", "hi"), b)[1])(io.BytesIO()),
        "npz-without-the-keys": _npz_bytes(a=np.arange(3), b=np.ones(2)),
        "npz-with-a-pickle": (lambda b: (np.savez(b, obj=np.array([{"a": 1}], dtype=object)), b)[1])(io.BytesIO()),
        "npy-not-npz": (lambda b: (np.save(b, np.arange(5)), b)[1])(io.BytesIO()),
        "lm-bad-model-config": _npz_bytes(**{**lm, "model_config": np.array("{not json")}),
        "lm-model-config-a-list": _npz_bytes(**{**lm, "model_config": np.array("[1, 2]")}),
        "lm-wrong-size": _npz_bytes(**{**lm, "flat": lm["flat"][:-7]}),
        "lm-non-finite": _npz_bytes(**{**lm, "flat": np.where(np.arange(lm["flat"].size) == 5, np.inf, lm["flat"])}),
        "lm-unknown-task": _npz_bytes(**{**lm, "task": np.array("chess")}),
        "lm-strings-for-weights": _npz_bytes(**{**lm, "flat": np.array(["a"] * lm["flat"].size)}),
        "rl-checkpoint": rl_ckpt.read_bytes(),      # an RL run's checkpoint: not an LM checkpoint
        "rm-checkpoint": rm_ckpt.read_bytes(),      # a reward model: not an LM for sft --init
    }
    for cut in (10, 100, len(good) // 3, len(good) // 2, len(good) - 30):
        files[f"truncated-at-{cut}"] = good[:cut]
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    files["one-byte-flipped"] = bytes(flipped)
    out = {}
    for name, data in files.items():
        if isinstance(data, Path):
            out[name] = data
            continue
        if isinstance(data, io.BytesIO):
            data = data.getvalue()
        out[name] = folder / f"{name}.npz"
        out[name].write_bytes(data)
    (folder / "a-folder-without-checkpoint").mkdir()
    out["folder-without-checkpoint"] = folder / "a-folder-without-checkpoint"
    return out


def fresh(env, prefix="out") -> Path:
    return env["root"] / f"{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------------------------ strategies
def _field_kinds(cls, prefix=""):
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            out.update(_field_kinds(typ, f"{prefix}{f.name}."))
            continue
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        out[prefix + f.name] = (args[0] if args else typ)
    return out


RL_FIELDS = {k: v for k, v in _field_kinds(RLConfig).items() if k not in ("pretrain.task", "pretrain.seed")}
PRETRAIN_FIELDS = _field_kinds(PretrainConfig)
SFT_FIELDS = _field_kinds(SFTConfig)
RM_FIELDS = _field_kinds(RMConfig)

WRONG_TYPE = {
    int: st.sampled_from(["abc", "1.5", "true", "", "1e3", "0x10", "9" * 30, "[1]", "nan"]),
    float: st.sampled_from(["abc", "nan", "inf", "-inf", "", "1,5", "true", "1e400", "[0.1]"]),
    bool: st.sampled_from(["maybe", "2", "", "yes please", "-1", "1.0"]),
}
CHOICES = {"advantage": tuple(advantages.ADVANTAGE_ESTIMATORS), "kl": losses.KL_PLACEMENTS,
           "kl_estimator": tuple(losses.KL_ESTIMATORS), "aggregation": tuple(losses.AGGREGATIONS),
           "ratio": tuple(SURROGATES), "reward": REWARD_SOURCES, "std": advantages.GROUP_STDS,
           "algo": tuple(PRESETS) + ("custom",), "pretrain.arch": ("mlp", "bigram"),
           "arch": ("mlp", "bigram"), "task": tuple(TASKS), "head": RM_HEADS, "rm.head": RM_HEADS,
           "lr_schedule": LR_SCHEDULES, "rm.lr_schedule": LR_SCHEDULES}
OUT_OF_RANGE = {  # values of the right type that the settings forbid
    "run": ["steps=0", "prompts_per_step=0", "group_size=0", "epochs=0", "minibatches=99", "beta=-0.1", "lr=0",
            "lr=-1", "critic_lr=0", "temperature=0", "eps_low=0", "eps_high=1.5", "gamma=1.5", "lam=-0.1",
            "kl_target=-1", "checkpoint_every=0", "max_grad_norm=-1", "value_clip=0", "max_resample=-1",
            "seed=-1", "pretrain.hidden=0", "pretrain.context=-2", "pretrain.embed=0", "pretrain.steps=0",
            "pretrain.lr=0", "sft.lr=-1", "sft.demos=0", "rm.pairs=1", "rm.k=1", "rm.heldout_frac=1.5",
            "rm.tau=-1", "rm.norm_samples=1", "reward_weights=nonsense", "reward_weights=on_topic=x",
            "reward_weights=made_up=1", "pretrain.task=arith", "pretrain.seed=3", "task=chess"],
    "pretrain": ["steps=0", "batch_size=-1", "corpus_size=0", "lr=0", "hidden=0", "embed=-3", "context=0",
                 "arch=transformer", "task=chess", "seed=-5"],
    # compare checks fewer of the run's settings up front (reported to its owner); only those it refuses
    "compare": [],
    "sft": ["steps=0", "batch_size=0", "lr=-1", "demos=0"],
    "rm": ["pairs=1", "k=1", "tau=-0.5", "heldout_frac=0", "heldout_frac=1", "lr=0", "steps=0", "batch_size=0",
           "norm_samples=1", "temperature=0", "weight_decay=-1", "max_grad_norm=-1", "eval_every=-1"],
}

COMPARE_UNCHECKED = {"pretrain.task=arith", "pretrain.seed=3", "reward_weights=made_up=1", "pretrain.hidden=0",
                     "pretrain.context=-2", "pretrain.embed=0"}
OUT_OF_RANGE["compare"] = [v for v in OUT_OF_RANGE["run"] if v not in COMPARE_UNCHECKED]


@st.composite
def bad_set(draw, fields: dict, command: str):
    """One --set item that must be refused: unknown key, wrong type, bad choice, out of range, or malformed."""
    if command == "compare":      # see test_compare_checks_the_model_shape_up_front
        fields = {k: v for k, v in fields.items() if k not in ("pretrain.arch",)}
    kind = draw(st.sampled_from(["unknown", "wrong-type", "choice", "range", "malformed"]))
    if kind == "unknown":
        key = draw(st.from_regex(r"[a-z_]{1,12}(\.[a-z_]{1,8})?", fullmatch=True))
        assume(key not in fields)
        return f"{key}={draw(TEXT)}"
    if kind == "malformed":
        return draw(st.sampled_from(["novalue", "=3", " =1", "", "steps", "==", "a.=1", ".a=1", "pretrain=3"]))
    if kind == "range":
        return draw(st.sampled_from(OUT_OF_RANGE[command]))
    if kind == "choice" and any(k in CHOICES for k in fields):
        key = draw(st.sampled_from(sorted(k for k in fields if k in CHOICES)))
        value = draw(TEXT.filter(lambda v: v.strip() not in CHOICES[key] and v.strip().lower() not in ("none", "null")))
        return f"{key}={value}"
    if kind == "choice":   # a config without choice settings (sft): an unknown key instead
        return f"{draw(st.from_regex(r'[a-z]{1,12}', fullmatch=True).filter(lambda k: k not in fields))}=1"
    key = draw(st.sampled_from(sorted(k for k, t in fields.items() if t in WRONG_TYPE)))
    return f"{key}={draw(WRONG_TYPE[fields[key]])}"


def bad_toml_text():
    """TOML that must be refused: syntax errors, unknown keys, wrong types, bad values, wrong structure."""
    def malformed(text):
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return True
        return False

    structured = st.sampled_from([
        'algo = "grpo"\nsteps = "many"\n', 'algo = "grpo"\nlr = [1, 2]\n', 'algo = "grpo"\nbogus = 1\n',
        'algo = "grpo"\n[pretrain]\nhidden = -1\n', 'algo = "grpo"\npretrain = 3\n', 'algo = "nope"\n',
        'algo = "grpo"\n[pretrain]\nmystery = 1\n', 'algo = "grpo"\nwhiten = "sometimes"\n',
        'algo = "grpo"\nkl_target = {a = 1}\n', 'algo = "grpo"\nsteps = 1.5\n', 'algo = 3\n', 'steps = 5\n',
        'algo = "grpo"\ntask = "chess"\n', 'algo = "grpo"\nbeta = nan\n', 'algo = "grpo"\nlr = inf\n',
        'algo = "grpo"\nstarted = 1979-05-27T07:32:00Z\n', 'algo = "grpo"\nsteps = 99999999999999999999\n',
        'algo = "grpo"\n[rm]\npairs = 1\n', '[[algo]]\nx = 1\n', 'algo = "grpo"\nreward_weights = 5\n',
    ])
    return st.one_of(structured, TEXT.filter(malformed), st.binary(max_size=40).filter(
        lambda b: not _decodes_to_valid_toml(b)))


def _decodes_to_valid_toml(b: bytes) -> bool:
    try:
        tomllib.loads(b.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return True


# ------------------------------------------------------------------------------------------------ option fuzzing
BAD_INT = st.one_of(st.integers(-10**6, 0).map(str), st.sampled_from(["abc", "1.5", "", "1e3", "ten", "--", "0x3"]))
BAD_SEED = st.one_of(st.integers(-10**6, -1).map(str), st.sampled_from(["abc", "1.5", "", "seed"]))
BAD_TASK = TEXT.filter(lambda t: t not in TASKS)
BAD_ALGO = TEXT.filter(lambda t: t not in PRESETS and t != "custom" and not t.startswith("-") and t.strip() != "")


@st.composite
def stage_case(draw, env):
    """(argv, new_out) for pretrain / sft / rm with tiny valid defaults and at least one bad element."""
    command = draw(st.sampled_from(["pretrain", "sft", "rm"]))
    out = fresh(env)
    opts = {"--steps": "2", "--out": str(out)}
    if command == "pretrain":
        opts["--set"] = ["corpus_size=100"]
    elif command == "sft":
        opts["--init"] = str(env["pretrain_ckpt"])
    else:
        opts.update({"--init": str(env["sft_ckpt"]), "--set": ["pairs=40", "norm_samples=32"]})
    fields = {"pretrain": PRETRAIN_FIELDS, "sft": SFT_FIELDS, "rm": RM_FIELDS}[command]
    mutations = ["steps", "seed", "task", "set", "out", "option"] + (["init"] if command != "pretrain" else []) \
        + (["pairs"] if command == "rm" else [])
    chosen = draw(st.lists(st.sampled_from(mutations), min_size=1, max_size=3, unique=True))
    for m in chosen:
        if m == "steps":
            opts["--steps"] = draw(BAD_INT)
        elif m == "seed":
            opts["--seed"] = draw(BAD_SEED)
        elif m == "pairs":
            opts["--pairs"] = draw(st.one_of(st.integers(-100, 1).map(str), st.just("two")))
        elif m == "task":
            if command != "pretrain" or "--init" in opts:   # with --init the task comes from the checkpoint
                opts.pop("--init", None)
            opts["--task"] = draw(BAD_TASK)
        elif m == "set":
            opts.setdefault("--set", [])
            opts["--set"] = opts["--set"] + [draw(bad_set(fields, command))]
        elif m == "init":
            name = draw(st.sampled_from(sorted(k for k in env["foreign"] if k != "rm-checkpoint" or command == "sft")))
            opts["--init"] = str(env["foreign"][name])
        elif m == "out":
            opts["--out"] = str(draw(st.sampled_from([env["run"], env["run"] / "config.json",
                                                      env["run"] / "config.json" / "below-a-file"])))
        elif m == "option":
            opts["--" + draw(st.from_regex(r"[a-z]{3,10}", fullmatch=True).filter(
                lambda o: o not in ("steps", "seed", "task", "set", "out", "init", "pairs", "overwrite", "help")))] = "1"
    argv = [command]
    for k, v in opts.items():
        for item in (v if isinstance(v, list) else [v]):
            argv += [k, item]
    return argv, out


@given(data=st.data())
@settings(FUZZ, max_examples=150)
def test_supervised_stage_commands_refuse_bad_input(env, capsys, data):
    argv, out = data.draw(stage_case(env))
    assert_bad_input(argv, capsys, protected=(env["run"], env["cache"]), new_out=out)


@st.composite
def run_case(draw, env):
    out = fresh(env)
    algo = draw(st.sampled_from(list(PRESETS)))
    opts = {"--steps": "2", "--out": str(out)}
    sets = list(UPSTREAM[1::2])
    positional = [algo]
    chosen = draw(st.lists(st.sampled_from(["algo", "task", "steps", "seed", "set", "set", "config", "out",
                                            "option", "resume-mix", "no-algo"]), min_size=1, max_size=3, unique=True))
    for m in chosen:
        if m == "algo":
            positional = [draw(BAD_ALGO)]
        elif m == "no-algo":
            positional = []
        elif m == "task":
            opts["--task"] = draw(BAD_TASK)
        elif m == "steps":
            opts["--steps"] = draw(BAD_INT)
        elif m == "seed":
            opts["--seed"] = draw(BAD_SEED)
        elif m == "set":
            sets.append(draw(bad_set(RL_FIELDS, "run")))
        elif m == "config":
            cfg = fresh(env, "config") .with_suffix(".toml")
            cfg.write_bytes(t.encode() if isinstance(t := draw(bad_toml_text()), str) else t)
            opts["--config"] = str(cfg)
            positional = []        # the file's algo (or its absence) decides
        elif m == "out":
            opts["--out"] = str(draw(st.sampled_from([env["run"], env["run"] / "metrics.jsonl"])))
        elif m == "option":
            opts["--" + draw(st.sampled_from(["stepz", "lr", "algo", "x", "resum"]))] = "1"
        elif m == "resume-mix":    # --resume with anything else
            opts["--resume"] = str(env["run"])
    argv = ["run", *positional]
    for k, v in opts.items():
        argv += [k, v]
    for s in sets:
        argv += ["--set", s]
    return argv, out


@given(data=st.data())
@settings(FUZZ, max_examples=150)
def test_run_refuses_bad_options_settings_and_config_files(env, capsys, data):
    argv, out = data.draw(run_case(env))
    assert_bad_input(argv, capsys, protected=(env["run"], env["cache"]), new_out=out)


# ------------------------------------------------------------------------------------------------ run folders
def _edit_config(draw, cfg: dict):
    kind = draw(st.sampled_from(["invalid-json", "unknown-key", "wrong-type", "not-a-table", "empty", "binary",
                                 "bad-value", "nested-not-a-table", "other-model-shape", "other-algorithm",
                                 "missing", "steps-below-checkpoint"]))
    if kind == "invalid-json":
        text = json.dumps(cfg, indent=2)
        return text[:draw(st.integers(1, len(text) - 2))]
    if kind == "unknown-key":
        return json.dumps({**cfg, draw(st.from_regex(r"[a-z]{2,10}", fullmatch=True).filter(
            lambda k: k not in cfg)): 1})
    if kind == "wrong-type":
        key = draw(st.sampled_from(["steps", "lr", "whiten", "beta", "group_size", "kl_target"]))
        return json.dumps({**cfg, key: draw(st.sampled_from(["many", [1], {"a": 1}, True if key != "whiten" else 3]))})
    if kind == "not-a-table":
        return json.dumps(draw(st.sampled_from([[1, 2], "grpo", 3, None])))
    if kind == "empty":
        return ""
    if kind == "binary":
        return b"\xff\xfe\x00garbage"
    if kind == "bad-value":
        return json.dumps({**cfg, **draw(st.sampled_from([{"steps": 0}, {"advantage": "magic"}, {"task": "chess"},
                                                          {"eps_low": 2.0}, {"seed": -1}]))})
    if kind == "nested-not-a-table":
        return json.dumps({**cfg, "pretrain": 5})
    if kind == "other-model-shape":   # the checkpoint no longer fits the model config.json describes
        return json.dumps({**cfg, "pretrain": {**cfg["pretrain"], "hidden": 64}})
    if kind == "other-algorithm":     # a critic method now, but the checkpoint has no critic
        return json.dumps({**cfg, "algo": "ppo", "advantage": "gae"})
    if kind == "steps-below-checkpoint":
        return json.dumps({**cfg, "steps": 1})
    return None                       # missing


@given(data=st.data())
@settings(FUZZ, max_examples=100)
def test_resume_of_a_hand_edited_or_damaged_run_folder_is_refused_and_changes_nothing(env, capsys, data):
    run = fresh(env, "edited-run")
    shutil.copytree(env["run"], run)
    what = data.draw(st.sampled_from(["config", "config", "checkpoint", "metrics"]))
    if what == "config":
        new = _edit_config(data.draw, json.loads((run / "config.json").read_text()))
        if new is None:
            (run / "config.json").unlink()
        else:
            (run / "config.json").write_bytes(new if isinstance(new, bytes) else new.encode())
    elif what == "checkpoint":
        name = data.draw(st.sampled_from(sorted(k for k in env["foreign"] if k not in ("missing", "rl-checkpoint"))))
        src = env["foreign"][name]
        (run / "checkpoint.npz").unlink()
        if src.is_dir():
            (run / "checkpoint.npz").mkdir()
        else:
            shutil.copy(src, run / "checkpoint.npz")
    else:
        lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
        how = data.draw(st.sampled_from(["corrupt-middle", "gap", "missing", "not-records"]))
        if how == "corrupt-middle":
            lines[0] = '{"step": 1, "reward": oops}\n'
        elif how == "gap":
            del lines[0]
        elif how == "not-records":
            lines = ["[1, 2, 3]\n"] * len(lines)
        if how == "missing":
            (run / "metrics.jsonl").unlink()
        else:
            (run / "metrics.jsonl").write_text("".join(lines))
    (run / ".checkpoint.npz.stale.tmp").write_bytes(b"left by a kill -9")   # must survive a refused resume
    extra = data.draw(st.sampled_from([[], ["--steps", "2"]]))   # --steps below the checkpoint's 3: refused too
    assert_bad_input(["run", "--resume", run, *extra], capsys, protected=(run, env["cache"]))


def test_run_config_from_a_hand_edited_config_json_is_refused(env, capsys):
    cfg = json.loads((env["run"] / "config.json").read_text())
    for edit in ({"bogus": 1}, {"steps": "many"}, {"pretrain": {"mystery": 2}}, {"kl": "sideways"}):
        path = fresh(env, "config").with_suffix(".json")
        path.write_text(json.dumps({**cfg, **edit}))
        assert_bad_input(["run", "--config", path, "--out", fresh(env)], capsys, protected=(env["run"],))
    path = fresh(env, "config").with_suffix(".json")
    path.write_text('{"algo": "grpo", ')
    assert_bad_input(["run", "--config", path], capsys)


def test_out_on_an_existing_non_empty_folder_is_refused_without_resume_or_overwrite(env, capsys):
    for argv in (["run", "grpo", *UPSTREAM], ["pretrain"], ["sft", "--init", env["pretrain_ckpt"]],
                 ["rm", "--init", env["sft_ckpt"]]):
        line = assert_bad_input([*argv, "--out", env["run"]], capsys, protected=(env["run"],))
        assert "not empty" in line and "--overwrite" in line
    line = assert_bad_input(["run", "--resume", env["run"], "--overwrite"], capsys, protected=(env["run"],))
    assert "--resume takes the run folder only" in line


@pytest.mark.parametrize("name", ["missing", "empty", "random-bytes", "text", "zip-without-npy", "npz-without-the-keys",
                                  "npz-with-a-pickle", "npy-not-npz", "lm-bad-model-config", "lm-model-config-a-list",
                                  "lm-wrong-size", "lm-non-finite", "lm-unknown-task", "lm-strings-for-weights",
                                  "rl-checkpoint", "rm-checkpoint", "one-byte-flipped", "folder-without-checkpoint"])
def test_every_foreign_file_given_to_sft_init_is_one_line(env, capsys, name):
    out = fresh(env)
    line = assert_bad_input(["sft", "--init", env["foreign"][name], "--steps", 2, "--out", out], capsys,
                            protected=(env["run"], env["foreign"][name].parent), new_out=out)
    assert str(env["foreign"][name]) in line or name in ("lm-unknown-task",)


def test_truncated_checkpoints_are_one_line_for_sft_and_rm(env, capsys):
    for name in [k for k in env["foreign"] if k.startswith("truncated")]:
        for command in ("sft", "rm"):
            assert_bad_input([command, "--init", env["foreign"][name], "--steps", 2, "--out", fresh(env)], capsys,
                             protected=(env["run"],))


# ------------------------------------------------------------------------------------------------ other commands
@given(data=st.data())
@settings(FUZZ, max_examples=100)
def test_plot_compare_tasks_algos_and_unknown_commands_refuse_bad_input(env, capsys, data):
    kind = data.draw(st.sampled_from(["plot-missing", "plot-not-a-run", "plot-smooth", "plot-format", "compare-algo",
                                      "compare-count", "compare-set", "compare-task", "tasks-extra", "algos-extra",
                                      "unknown-command", "unknown-global-option"]))
    out = fresh(env)
    if kind == "plot-missing":
        argv = ["plot", env["root"] / "no-such-run", "--out", out / "p.png"]
    elif kind == "plot-not-a-run":
        argv = ["plot", env["foreign"]["folder-without-checkpoint"], "--out", out / "p.png"]
    elif kind == "plot-smooth":
        argv = ["plot", env["run"], "--smooth", data.draw(BAD_INT), "--out", out / "p.png"]
    elif kind == "plot-format":
        argv = ["plot", env["run"], "--out", out / f"p.{data.draw(st.sampled_from(['txt', 'jpgx', 'npz', '']))}"]
    elif kind == "compare-algo":
        argv = ["compare", "grpo", data.draw(BAD_ALGO), "--seeds", 1, "--steps", 1, "--out", out]
    elif kind == "compare-count":
        opt = data.draw(st.sampled_from(["--seeds", "--steps", "--jobs"]))
        argv = ["compare", "grpo", opt, data.draw(BAD_INT), "--out", out]
    elif kind == "compare-set":
        argv = ["compare", "grpo", "--seeds", 1, "--steps", 1, "--out", out, "--set",
                data.draw(st.one_of(bad_set(RL_FIELDS, "compare"), st.sampled_from(["algo=ppo", "seed=1", "task=arith"])))]
    elif kind == "compare-task":   # '' included: an explicit empty task is unknown, as in `run`
        argv = ["compare", "grpo", "--task", data.draw(st.one_of(st.just(""), BAD_TASK)), "--out", out]
    elif kind == "tasks-extra":
        argv = ["tasks", data.draw(st.sampled_from(["extra", "--bogus", "-x"]))]
    elif kind == "algos-extra":
        argv = ["algos", data.draw(st.sampled_from(["ppo", "--all", "-v"]))]
    elif kind == "unknown-command":
        argv = [data.draw(st.from_regex(r"[a-z]{2,9}", fullmatch=True).filter(
            lambda c: c not in ("tasks", "algos", "pretrain", "sft", "rm", "run", "compare", "plot", "check")))]
    else:
        argv = ["--" + data.draw(st.from_regex(r"[a-z]{2,9}", fullmatch=True).filter(
            lambda o: o not in ("help", "version"))), "tasks"]
    assert_bad_input(argv, capsys, protected=(env["run"],), new_out=out)


# ------------------------------------------------------------------------------------------------ real subprocesses
def test_bad_input_through_real_subprocesses_is_one_line_exit_2(env, tmp_path):
    """The same answers from the installed console entry (`python -m toyrlhf`), run from outside the repo."""
    cases = [["run", "grpo", "--set", "lr=abc"],
             ["run", "grpo", "--set", "no_such_setting=1"],
             ["sft", "--init", env["foreign"]["random-bytes"]],
             ["sft", "--init", env["foreign"]["rl-checkpoint"]],
             ["run", "--resume", env["foreign"]["folder-without-checkpoint"]],
             ["pretrain", "--steps", "-3"]]
    procs = [subprocess.Popen([sys.executable, "-m", "toyrlhf", *map(str, c)], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "TOYRLHF_CACHE_DIR": str(env["cache"])}) for c in cases]
    for c, p in zip(cases, procs):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 2, (c, err)
        assert len(err.splitlines()) == 1 and err.startswith("toyrlhf: error: "), (c, err)


@pytest.mark.parametrize("setting", ["pretrain.hidden=0", "pretrain.arch=transformer"])
def test_compare_checks_the_model_shape_up_front(env, capsys, setting):
    out = fresh(env)
    assert_bad_input(["compare", "grpo", "--seeds", 1, "--steps", 1, *UPSTREAM, "--set", setting, "--out", out],
                     capsys, protected=(env["run"],), new_out=out)


# ------------------------------------------------------------------------------------------------ checkpoint members
@pytest.fixture(scope="module")
def ppo_run(env):
    """A finished PPO run with an adaptive entropy coefficient: a checkpoint with critic members and entropy_coef."""
    import toyrlhf.rl.run
    run = env["root"] / "ppo-run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOYRLHF_CACHE_DIR", str(env["cache"]))
        mp.setattr(toyrlhf.rl.run, "plot_run_curves", lambda run_dir, out: out)
        from toyrlhf.cli.main import main
        main(["run", "ppo", "--steps", "3", "--set", "checkpoint_every=2", "--set", "entropy_target=0.5", *UPSTREAM,
              "--out", str(run)])
    return run


def _over_limit(member: str, value: np.ndarray) -> np.ndarray:
    """A member just larger than load_npz may read for it: the weight vectors 8 bytes per parameter, the rest
    checkpoints.METADATA_BYTES (the same check refuses a 3 GB one, tests/test_checkpoints.py)."""
    from toyrlhf.checkpoints import METADATA_BYTES
    n = value.size + (1 << 13) + 1 if value.ndim == 1 else METADATA_BYTES // 8 + (1 << 13) + 1
    return np.zeros(n)


@st.composite
def bad_member(draw, z: dict):
    """(member, replacement or None to delete it): a wrong dtype, shape or value that no run could have written."""
    member = draw(st.sampled_from(sorted(z)))
    value = z[member]
    kind = draw(st.sampled_from(["delete", "over-limit", "dtype", "shape", "value"]))
    if kind == "delete":
        return member, None
    if kind == "over-limit":
        return member, _over_limit(member, value)
    if value.dtype.kind == "U":                           # JSON or a name
        if kind == "dtype":
            return member, np.array(draw(st.sampled_from([5, 1.5, True])))
        if kind == "shape":
            return member, np.array([str(value)] * 2)
        if member in ("kind", "task"):
            return member, np.array(draw(TEXT.filter(lambda s: s != str(value))))
        if member == "kl_ctl":
            beta = draw(st.sampled_from(["NaN", "Infinity", "-1.0", "true", '"x"', "null", "[]"]))
            return member, np.array(draw(st.sampled_from([f'{{"beta": {beta}}}', "{}", "[1]", "{not json"])))
        deep = "[" * 100_000 + "]" * 100_000
        return member, np.array(draw(st.sampled_from(["{not json", "null", "[]", "{}", "3", deep, '"x"'])))
    if value.ndim == 0:                                   # step, opt_t, critic_opt_t, entropy_coef
        if kind == "dtype":
            return member, np.array(draw(st.sampled_from(["x", True, 1 + 2j] + ([2.5, 1e30] if value.dtype.kind
                                                                                 == "i" else [1]))))
        if kind == "shape":
            return member, np.full(draw(st.integers(0, 3)), value)
        if member == "entropy_coef":
            return member, np.array(draw(st.sampled_from([np.nan, np.inf, -1e-3, 1e6])))
        return member, np.array(draw(st.integers(-2**62, -1)) if member != "step" else 5)   # step 5 > steps 4
    if kind == "dtype":                                    # the weight and Adam vectors
        dtype = draw(st.sampled_from([np.float32, np.float16, np.int64, np.bool_, np.complex128, "<U2"]))
        return member, value.astype(dtype)
    if kind == "shape":
        shape = draw(st.sampled_from([(value.size - 1,), (value.size + 1,), (1, value.size), (), (0,)]))
        return member, np.resize(value, shape)
    bad = value.copy()
    i = draw(st.integers(0, value.size - 1))
    choices = [np.nan, np.inf, -np.inf] + ([-draw(st.floats(1e-300, 1e300))] if member.endswith("opt_v") else [])
    bad[i] = draw(st.sampled_from(choices))
    return member, bad


@given(data=st.data())
@settings(FUZZ, max_examples=80)
def test_resume_refuses_every_damaged_checkpoint_member_on_one_line_changing_nothing(env, ppo_run, capsys, data):
    """Issue 13 items 3 and 7 broadly: any member of an RL checkpoint (GRPO; PPO with critic and entropy_coef)
    deleted, over its size limit, of a wrong dtype or shape, or holding a value no run writes (NaN / inf weights, a
    negative Adam second moment, a negative or non-integer count, a corrupt RNG, KL-controller or entropy state, a
    foreign kind, task, config or model shape): resume is exit 2 with one line, and neither the run folder nor the
    stage cache changes."""
    base = data.draw(st.sampled_from([env["run"], ppo_run]), label="run")
    with np.load(base / "checkpoint.npz", allow_pickle=False) as f:
        z = {k: f[k] for k in f.files}
    member, bad = data.draw(bad_member(z), label="member")
    run = fresh(env, "damaged-member")
    shutil.copytree(base, run)
    arrays = {k: v for k, v in z.items() if k != member}
    if bad is not None:
        arrays[member] = bad
    (run / "checkpoint.npz").write_bytes(_npz_bytes(**arrays))
    assert_bad_input(["run", "--resume", run, "--steps", "4"], capsys, protected=(run, env["cache"]))


def test_resume_ignores_members_it_does_not_expect(env, capsys, monkeypatch):
    """Only the members Trainer.state_arrays writes are read: an extra one does not stop the run. It declares
    1.5 GiB (zeros, deflated to a few MB), over load_npz's default limit, so code reading every member would refuse
    the file."""
    import toyrlhf.rl.run
    monkeypatch.setattr(toyrlhf.rl.run, "plot_run_curves", lambda run_dir, out: out)
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(env["cache"]))
    run = fresh(env, "extra-member")
    shutil.copytree(env["run"], run)
    with zipfile.ZipFile(run / "checkpoint.npz", "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("junk.npy", "w", force_zip64=True) as w:
            np.lib.format.write_array_header_2_0(w, {"descr": "<f8", "fortran_order": False,
                                                     "shape": (3 << 26,)})
            for _ in range(3 << 3):
                w.write(bytes(1 << 26))
    code, out, err = invoke(["run", "--resume", run, "--steps", "4"], capsys)
    assert code == 0, err
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
