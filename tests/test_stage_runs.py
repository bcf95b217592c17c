"""The supervised stages' run folders and the stage cache: every stage's folder is complete, learning curves
included (issue 11 item 5), and holds under hostile input (issue 13, items 2, 3, 7 and 9): divergence anywhere in
the pipeline is exit 3 with nothing cached, a failed stage removes every file it wrote, FIFOs, huge checkpoint
members and deeply nested JSON are one-line refusals."""
import json
import os
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from toyrlhf import checkpoints, reward_model, stages
from toyrlhf.config import RMConfig, SFTConfig
from toyrlhf.errors import UserError
from toyrlhf.runs import from_json_array, load_npz, read_json

from conftest import run_cli


UPSTREAM = ["--set", "prompts_per_step=4", "--set", "group_size=4", "--set", "pretrain.steps=30",
            "--set", "pretrain.corpus_size=500", "--set", "sft.steps=10", "--set", "rm.pairs=200",
            "--set", "rm.norm_samples=64"]


# ------------------------------------------------------------------------------------------ issue 11 item 5
STAGE_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoint.npz", "curves.png")


def test_every_stage_s_library_run_writes_a_complete_folder_with_its_learning_curves(tmp_path, cache_dir):
    """run_pretrain, run_sft and run_rm (what `toyrlhf pretrain | sft | rm` call) write the whole folder, curves.png
    included, each logging one metrics record per step; the SFT and RM runs start from the folder before them."""
    pt, s = stages.run_pretrain(stages.PretrainConfig(steps=12, corpus_size=300), tmp_path / "pt")
    sft, _ = stages.run_sft(SFTConfig(steps=6), tmp_path / "sft", init=pt / "checkpoint.npz")
    rm, _ = reward_model.run_rm(RMConfig(pairs=80, steps=5, norm_samples=32, eval_every=2, exact=False),
                                tmp_path / "rm", init=sft / "checkpoint.npz")
    for folder, steps in ((pt, 12), (sft, 6), (rm, 5)):
        assert sorted(p.name for p in folder.iterdir()) == sorted(STAGE_FILES), folder
        assert (folder / "curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == list(range(1, steps + 1)) and all("loss" in r for r in rows)
    assert s["heldout_loss"] > 0 and not list(cache_dir.iterdir())          # --init: nothing from the cache


# ------------------------------------------------------------------------------------------ item 2: divergence
@pytest.mark.parametrize("setting", ["pretrain.lr=1e308", "sft.lr=1e308", "rm.lr=1e308", "rm.weight_decay=1e308"])
def test_a_diverged_upstream_stage_is_exit_3_early_and_caches_nothing(tmp_path, setting):
    """`run grpo --set sft.lr=1e308` saved the non-finite SFT model into the stage cache (exit 2 then, and on every
    later run); rm.lr / rm.weight_decay trained all 4000 steps and ended in a traceback. Now the stage's loop stops
    at the first non-finite loss: exit 3, one line, and no file of the diverged stage (or after it) in the cache."""
    cache = tmp_path / "cache"
    t0 = time.time()
    r = run_cli(["run", "grpo", "--steps", 1, *UPSTREAM, "--set", setting, "--out", tmp_path / "run"],
                cwd=tmp_path, env_extra={"TOYRLHF_CACHE_DIR": str(cache)}, timeout=300)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("toyrlhf: error: non-finite training loss at step "), r.stderr
    stage = setting.split(".")[0]
    later = {"pretrain": ("pretrain", "sft", "rm"), "sft": ("sft", "rm"), "rm": ("rm",)}[stage]
    cached = sorted(p.name for p in cache.iterdir())
    assert not [n for n in cached if n.startswith(later)], cached
    assert int(lines[0].split("at step ")[1].split()[0]) <= 3          # stopped at once, not after 4000 steps
    assert time.time() - t0 < 60


def test_the_stage_cache_never_stores_non_finite_weights(cache_dir):
    cfg = stages.PretrainConfig(task="length", steps=5, corpus_size=50)
    with pytest.raises(checkpoints.NumericalError, match="non-finite parameters"):
        checkpoints.cached_model("pretrain", {"pretrain": cfg}, lambda: (_poisoned(cfg), {}))
    assert not list(cache_dir.iterdir())


def _poisoned(cfg):
    model = stages.TinyLM(cfg.model_config(), seed=0)
    model.flat[3] = np.nan
    return model


# ------------------------------------------------------------------------------------------ item 9
def test_pretrain_set_task_labels_the_folder_and_checkpoint_with_that_task(tmp_path):
    r = run_cli(["pretrain", "--steps", 2, "--set", "task=arith", "--set", "corpus_size=50"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("pretrain-arith-s0-")
    _, z = stages.load_model(run / "checkpoint.npz", "lm")
    assert str(z["task"]) == "arith"
    assert json.loads((run / "summary.json").read_text())["task"] == "arith"


def test_a_fifo_in_place_of_a_checkpoint_or_cache_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / "checkpoint.npz"
    os.mkfifo(fifo)
    r = run_cli(["sft", "--init", fifo, "--steps", 2, "--out", tmp_path / "sft"], cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == f"toyrlhf: error: {fifo}: not a regular file", r.stderr
    assert not (tmp_path / "sft").exists()
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {"TOYRLHF_CACHE_DIR": str(cache)}
    os.mkfifo(_cache_file(cache, stages.PretrainConfig()))
    r = run_cli(["sft", "--steps", 2, "--out", tmp_path / "sft2"], cwd=tmp_path, env_extra=env, timeout=60)
    assert r.returncode == 2 and "not a regular file" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert not (tmp_path / "sft2").exists()
    with pytest.raises(UserError, match="not a regular file"):
        read_json(fifo)


def _cache_file(cache, cfg):
    from toyrlhf.settings import config_hash
    return cache / f"pretrain-{cfg.task}-s{cfg.seed}-{config_hash(cfg)}.npz"


@pytest.mark.parametrize("stage", ["pretrain", "rm"])
def test_a_stage_stopped_after_its_checkpoint_was_written_removes_every_file(tmp_path, capsys, monkeypatch, stage):
    """A second Ctrl-C (KeyboardInterrupt) while summary.json is written: the checkpoint (and for rm, metrics.jsonl)
    were already there, and only config.json was removed, so the rerun was refused ("folder is not empty")."""
    from toyrlhf.cli.main import main
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(tmp_path / "cache"))
    real_dumps = json.dumps

    def dumps(obj, *args, **kwargs):
        if isinstance(obj, dict) and "wall_time_s" in obj:      # the summary
            raise KeyboardInterrupt
        return real_dumps(obj, *args, **kwargs)

    out = tmp_path / "out"
    if stage == "pretrain":
        argv = ["pretrain", "--steps", 3, "--set", "corpus_size=50", "--out", out]
    else:
        main(["pretrain", "--steps", 3, "--set", "corpus_size=200", "--out", tmp_path / "pt"])
        main(["sft", "--init", tmp_path / "pt", "--steps", 3, "--out", tmp_path / "sft"])
        argv = ["rm", "--init", tmp_path / "sft", "--steps", 3, "--pairs", 60, "--set", "norm_samples=16",
                "--set", "exact=false", "--out", out]
    monkeypatch.setattr(json, "dumps", dumps)
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    assert e.value.code == 130
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists(), sorted(p.name for p in out.iterdir())


# ------------------------------------------------------------------------------------------ item 7: huge members
def _small_checkpoint(path):
    cfg = stages.PretrainConfig(task="length", hidden=8)
    checkpoints.save_model(path, stages.TinyLM(cfg.model_config(), seed=0), kind="lm", task="length", config={})
    return path


def _add_zeros_member(path, name, nbytes, drop=()):
    """Rewrite the archive without `drop`, plus a deflated member `name` of nbytes zeros (a few KB on disk)."""
    keep = {i.filename: zipfile.ZipFile(path).read(i) for i in zipfile.ZipFile(path).infolist()
            if i.filename[:-4] not in drop}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n, data in keep.items():
            zf.writestr(n, data)
        with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False,
                                                     "shape": (nbytes // 8,)})
            chunk = bytes(1 << 22)
            for _ in range(nbytes // len(chunk)):
                f.write(chunk)
    return path


def _peak_mb(fn):
    tracemalloc.start()
    try:
        fn()
    except UserError:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def test_a_checkpoint_member_that_is_not_expected_is_never_read(tmp_path):
    path = _add_zeros_member(_small_checkpoint(tmp_path / "c.npz"), "junk", 64 << 20)
    assert path.stat().st_size < 1 << 20
    assert _peak_mb(lambda: stages.load_model(path, "lm")) < 16
    model, z = stages.load_model(path, "lm")
    assert "junk" not in z


def test_a_member_larger_than_the_model_it_claims_is_refused_unread(tmp_path):
    path = _add_zeros_member(_small_checkpoint(tmp_path / "c.npz"), "flat", 64 << 20, drop=("flat",))
    with pytest.raises(UserError, match="'flat' declares"):
        stages.load_model(path, "lm")
    assert _peak_mb(lambda: stages.load_model(path, "lm")) < 16
    with pytest.raises(UserError, match="declares"):            # the general reader: a limit for every member
        load_npz(path, max_bytes=1 << 20)


# ------------------------------------------------------------------------------------------ item 3: nested JSON
def test_deeply_nested_json_is_a_one_line_user_error(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "config.json").write_text(deep)
    with pytest.raises(UserError, match="nested too deeply"):
        read_json(tmp_path / "config.json")
    with pytest.raises(ValueError):
        from_json_array(np.array(deep))
    path = _small_checkpoint(tmp_path / "c.npz")
    arrays = dict(np.load(path))
    np.savez(path, **{**arrays, "model_config": np.array(deep)})
    with pytest.raises(UserError, match="corrupt checkpoint"):
        stages.load_model(path, "lm")


@pytest.mark.parametrize("argv", [["pretrain", "--set", "steps=1000000000000"],
                                  ["sft", "--set", "steps=1000000000000"],
                                  ["rm", "--set", "steps=1000000000000"],
                                  ["pretrain", "--set", "hidden=100000"]])
def test_a_stage_that_cannot_finish_or_fit_is_refused_up_front_with_the_estimate(argv, tmp_path):
    """Issue 13 item 4: the stage commands run the same budget check as `run`, before anything is written."""
    out = tmp_path / "never"
    p = run_cli([*argv, "--out", out], cwd=tmp_path, env_extra={"TOYRLHF_CACHE_DIR": str(tmp_path / "cache")},
                timeout=120)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and ("h" in p.stderr or "GiB" in p.stderr)
    assert not out.exists()
