"""The grid file of `toyrlhf sweep`: fixed settings and a [grid] table of value lists; its points, their run names
and resolved RLConfigs, and the upstream stages (pretraining, SFT, reward model) the points need.

    task = "pref"                 # fixed settings: any RLConfig key, the stages as tables ([sft] steps = 50)
    steps = 200
    [grid]                        # every combination of these lists is one run
    algo = ["grpo", "ppo"]        # presets (default: grpo)
    seed = [0, 1]                 # default: [0]
    lr = [1e-3, 3e-3]
    "rm.steps" = [200, 400]       # dotted keys reach the stages
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import PretrainConfig, RLConfig, RMConfig, SFTConfig
from ..errors import UserError
from ..rl.algorithms import PRESETS
from ..rl.trainer import resolve_reward_source
from ..settings import config_hash, from_dict, load_config_file, to_dict, with_overrides
from ..tasks import get_task

MAX_RUNS = 10_000
"""A grid with more points than this is refused (a typo such as a 1e5-element list, not a sweep)."""


def flatten(data: dict, prefix: str = "") -> dict[str, object]:
    """{'sft': {'steps': 5}, 'lr': 1} -> {'sft.steps': 5, 'lr': 1}."""
    out = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@dataclass
class Point:
    """One run of the sweep: its grid values, name and resolved config."""

    values: dict[str, object]
    """The grid's keys -> this point's values (algo and seed included)."""
    config: RLConfig
    name: str
    """Run folder name: algo, the other grid values, seed (e.g. grpo-lr=0.001-s0)."""
    label: str
    """The row of the table: the grid values without the seed (e.g. 'grpo lr=0.001')."""

    @property
    def key(self) -> str:
        """Hash of the full resolved config: two points with the same key are the same run."""
        return config_hash(self.config)


@dataclass
class Grid:
    fixed: dict[str, object]
    """Dotted key -> value, applied to every point."""
    axes: dict[str, list]
    """Dotted key -> the values to sweep, in the file's order (algo and seed always present)."""
    points: list[Point] = field(default_factory=list)

    @property
    def swept(self) -> list[str]:
        """Grid keys with more than one value, except seed (they label the rows)."""
        return [k for k, v in self.axes.items() if k != "seed" and len(v) > 1]


def _value_text(v) -> str:
    text = repr(v) if isinstance(v, float) else str(v).lower() if isinstance(v, bool) else str(v)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def load_grid(path, sets: dict[str, str] | None = None) -> Grid:
    """The grid file at `path` with `--set` overrides of its fixed settings (UserError, one line, for any problem)."""
    data = load_config_file(path)
    return make_grid(data, sets, source=str(path))


def make_grid(data: dict, sets: dict[str, str] | None = None, source: str = "grid") -> Grid:
    data = dict(data)
    axes_raw = data.pop("grid", None)
    if not isinstance(axes_raw, dict) or not axes_raw:
        raise UserError(f"{source}: needs a [grid] table of value lists, e.g. [grid] seed = [0, 1]")
    axes = flatten(axes_raw)
    for k, v in axes.items():
        if not isinstance(v, list) or not v:
            raise UserError(f"{source}: grid.{k} must be a non-empty list of values, got {v!r}"[:200])
        if len({repr(x) for x in v}) != len(v):
            raise UserError(f"{source}: grid.{k} lists a value twice")
    fixed = {**flatten(data), **(sets or {})}
    both = sorted(set(fixed) & set(axes))
    if both:
        raise UserError(f"{source}: {both[0]!r} is both a fixed setting and a grid axis")
    if "algo" not in axes:
        axes = {"algo": [fixed.pop("algo", "grpo")], **axes}
    if "seed" not in axes:
        axes = {**axes, "seed": [fixed.pop("seed", 0)]}
    for a in axes["algo"]:
        if a not in PRESETS:
            raise UserError(f"{source}: unknown algorithm {a!r} in grid.algo; choose from {', '.join(PRESETS)}")
    n = 1
    for v in axes.values():
        n *= len(v)
    if n > MAX_RUNS:
        raise UserError(f"{source}: the grid has {n:,} points, more than {MAX_RUNS:,}")
    grid = Grid(fixed=fixed, axes=axes)
    keys = list(axes)
    swept = grid.swept
    for combo in itertools.product(*(axes[k] for k in keys)):
        values = dict(zip(keys, combo))
        grid.points.append(_point(values, fixed, swept, source))
    names = [p.name for p in grid.points]
    if len(set(names)) != len(names):
        raise UserError(f"{source}: two grid points would share the run folder {names[0]!r}")
    return grid


def _point(values: dict, fixed: dict, swept: list[str], source: str) -> Point:
    algo = values["algo"]
    overrides = {**fixed, **{k: v for k, v in values.items() if k != "algo"}}
    try:
        cfg = with_overrides(from_dict(RLConfig, {**PRESETS[algo].knobs, "algo": algo}), overrides)
        cfg.check_task()
    except ValueError as e:
        raise UserError(f"{source}: {str(e).splitlines()[0]}") from None
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
    others = [f"{k}={_value_text(values[k])}" for k in swept if k != "algo"]
    name = "-".join([str(algo), *others, f"s{_value_text(values['seed'])}"])
    label = " ".join([str(algo), *others])
    return Point(values=values, config=cfg, name=name, label=label)


# ------------------------------------------------------------------------------------------ upstream stages
STAGES = ("pretrain", "sft", "rm")


@dataclass(frozen=True)
class Stage:
    """One upstream stage file: which stage, and the configs (as dicts) that identify it, upstream first."""

    stage: str
    configs: tuple[tuple[str, dict], ...]

    @property
    def file_name(self) -> str:
        """The stage cache's file name (stages.cached_pretrained / cached_sft, reward_model.cached_reward_model:
        <stage>-<task>-s<seed>-<config_hash of the configs, upstream first>.npz); checked when a stage is built."""
        pc = dict(self.configs)["pretrain"]
        return f"{self.stage}-{pc['task']}-s{pc['seed']}-{config_hash(*(c for _, c in self.configs))}.npz"

    def typed(self) -> dict:
        classes = {"pretrain": PretrainConfig, "sft": SFTConfig, "rm": RMConfig}
        return {name: from_dict(classes[name], c) for name, c in self.configs}

    def __hash__(self):
        return hash(self.file_name)

    def __eq__(self, other):
        return isinstance(other, Stage) and self.file_name == other.file_name


def stages_of(cfg: RLConfig) -> list[Stage]:
    """The stage files a run stands on, upstream first (the reward model only for a learned reward)."""
    pc, sc = ("pretrain", to_dict(cfg.pretrain)), ("sft", to_dict(cfg.sft))
    out = [Stage("pretrain", (pc,)), Stage("sft", (pc, sc))]
    if resolve_reward_source(cfg, get_task(cfg.task)) == "rm":
        out.append(Stage("rm", (pc, sc, ("rm", to_dict(cfg.rm)))))
    return out


def stage_levels(configs) -> list[list[Stage]]:
    """The distinct stages the configs need, by level (all pretraining, then SFT, then reward models): the stages
    of one level are independent and can be built in parallel, each once."""
    levels = {s: [] for s in STAGES}
    for cfg in configs:
        for st in stages_of(cfg):
            if st not in levels[st.stage]:
                levels[st.stage].append(st)
    return [levels[s] for s in STAGES if levels[s]]


def missing_stage_levels(configs, cache: Path) -> list[list[Stage]]:
    """stage_levels without the stages already in the cache (and without the levels left empty)."""
    levels = [[s for s in level if not stage_file_exists(cache, s)] for level in stage_levels(configs)]
    return [lv for lv in levels if lv]


def upstream_of(stage: Stage) -> Stage | None:
    """The stage file `stage` is trained from (None for pretraining)."""
    if stage.stage == "pretrain":
        return None
    if stage.stage == "sft":
        return Stage("pretrain", stage.configs[:1])
    return Stage("sft", stage.configs[:2])


def stage_file_exists(cache: Path, stage: Stage) -> bool:
    return (Path(cache) / stage.file_name).is_file()
