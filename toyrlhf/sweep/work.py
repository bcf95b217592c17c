"""What a sweep's worker does, on either backend: build one upstream stage into the stage cache, train one run."""
from __future__ import annotations

from pathlib import Path

from ..config import Pipeline, RLConfig
from ..reward_model import cached_reward_model
from ..rl.run import train
from ..settings import from_dict, to_dict
from .. import stages
from .grid import Stage

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.npz", "summary.json", "curves.png", "completions.jsonl",
             "metrics.csv")
"""The files of an RL run folder (what a remote worker sends back, what a restarted run clears)."""


def build_stage(stage: Stage) -> Path:
    """Build (or find) `stage` in the stage cache ($TOYRLHF_CACHE_DIR); returns its file. Its upstream stage is
    expected in the cache already (the driver builds level by level), so each stage is trained exactly once."""
    typed = stage.typed()
    pipe = Pipeline(pretrain=typed["pretrain"], **({"sft": typed["sft"]} if "sft" in typed else {}))
    if stage.stage == "pretrain":
        _, path = stages.cached_pretrained(typed["pretrain"])
    elif stage.stage == "sft":
        _, path = stages.cached_sft(pipe)
    else:
        _, path = cached_reward_model(pipe, typed["rm"])
    if Path(path).name != stage.file_name:   # the stage cache renamed its files: the sweep must follow
        raise RuntimeError(f"stage cache file {Path(path).name} is not the expected {stage.file_name}")
    return Path(path)


def error_text(e: BaseException) -> str:
    return f"{e.__class__.__name__}: {' '.join(str(e).split())}"


def train_run(cfg_dict: dict, run_dir, resume: bool, progress=None) -> dict:
    """One RL run into run_dir (resumed from its checkpoint if `resume`): {'summary': ...} or {'error': one line}."""
    try:
        return {"summary": train(from_dict(RLConfig, cfg_dict), Path(run_dir), resume=resume, progress=progress)}
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - reported per run by the driver
        return {"error": error_text(e)}


def config_dict(cfg: RLConfig) -> dict:
    return to_dict(cfg)
