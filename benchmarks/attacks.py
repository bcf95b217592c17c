"""Issue 13's attacks, rerunnable: every attack the issue lists, plus a seeded sample of generated bad `--set` /
`--config` values and an enumeration of damaged checkpoint members, tried against the CLI in a temporary folder
with a private stage cache. Prints one line per attack that got through and the totals (inputs tried, held, clean
refusals, tracebacks, hangs, data lost). Never asserts: the tests (tests/test_reliability.py, tests/test_robustness.py,
tests/cli/test_bad_input.py, tests/test_checkpoints.py) do that.

    python benchmarks/attacks.py [--fuzz N] [--seed S] [-v]

Run it from outside the repository root (the source tree would shadow the installed package); ~3-5 minutes on two
loaded cores. Most attacks go through `toyrlhf.cli.main.main(argv)` in this process (milliseconds each, an escaping
exception is what `python -m toyrlhf` turns into a traceback); environment, signal, pipe and concurrency attacks run
real `python -m toyrlhf` subprocesses.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

import numpy as np

from toyrlhf.runs import tree_hash

TINY = ["pretrain.steps=30", "pretrain.corpus_size=500", "sft.steps=10", "sft.demos=16", "rm.pairs=200",
        "rm.steps=20", "rm.norm_samples=64", "rm.exact=false", "rm.eval_every=0", "prompts_per_step=4",
        "group_size=4"]
"""tests/tiny.py's TINY_SETS: every upstream stage in a second or two."""
TINY_STAGE = {"pretrain": ["steps=30", "corpus_size=500"], "sft": ["steps=10", "demos=16"]}


def sets(*items) -> list[str]:
    return [a for s in items for a in ("--set", s)]


# ------------------------------------------------------------------------------------------------ running one input
@dataclasses.dataclass
class Result:
    code: int | None          # None: did not end within the timeout
    out: str = ""
    err: str = ""
    traceback: str = ""       # an exception escaped main (in-process) or a traceback on stderr
    seconds: float = 0.0


class _Hang(BaseException):
    """Raised by SIGALRM inside an in-process command that did not end in time (a BaseException, so that no
    `except Exception` in the code under attack swallows it)."""


def _alarm(signum, frame):
    raise _Hang


def inproc(argv, timeout: float = 120, env: dict | None = None) -> Result:
    from toyrlhf.cli.main import main
    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    t0 = time.perf_counter()
    res = Result(code=0)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(argv)
    except SystemExit as e:
        res.code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except _Hang:
        res.code = None
    except BaseException:  # noqa: BLE001 - what `python -m toyrlhf` would print as a traceback, exit 1
        res.code, res.traceback = 1, traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    res.out, res.err, res.seconds = out.getvalue(), err.getvalue(), time.perf_counter() - t0
    return res


def cli_env(**extra) -> dict:
    return {**os.environ, "MPLBACKEND": "Agg", **extra}


def popen(argv, cwd, env=None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "toyrlhf", *map(str, argv)], cwd=cwd, env=env or cli_env(),
                            text=True, start_new_session=True, **{"stdout": subprocess.PIPE,
                                                                  "stderr": subprocess.PIPE, **kw})


def finish(p: subprocess.Popen, timeout: float = 120) -> Result:
    t0 = time.perf_counter()
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return Result(None, out or "", err or "", seconds=time.perf_counter() - t0)
    return Result(p.returncode, out or "", err or "", traceback=err if "Traceback" in (err or "") else "",
                  seconds=time.perf_counter() - t0)


def proc(argv, cwd, timeout: float = 120, env=None, **kw) -> Result:
    return finish(popen(argv, cwd, env, **kw), timeout)


# ------------------------------------------------------------------------------------------------ verdicts
@dataclasses.dataclass
class Verdict:
    name: str
    item: str
    outcome: str              # held | through | traceback | hang | data-lost
    refusal: bool = False     # the attack was meant to be refused, and was, on one line
    detail: str = ""


def judge(res: Result, codes=(2,), *, lost: str = "") -> tuple[str, bool, str]:
    """(outcome, clean refusal, detail) of one input meant to end with one of `codes` (0 included: accepted)."""
    lines = res.err.strip().splitlines()
    if res.code is None:
        return "hang", False, f"no end within {res.seconds:.0f} s"
    if res.traceback or res.code == 1:
        return "traceback", False, (res.traceback or res.err).strip().splitlines()[-1][:200] if (
            res.traceback or res.err).strip() else "exit 1"
    if lost:
        return "data-lost", False, lost
    if res.code not in codes:
        return "through", False, f"exit {res.code} (expected {'/'.join(map(str, codes))}): {res.err.strip()[:200]}"
    if res.code != 0 and len(lines) != 1:
        return "through", False, f"exit {res.code} with {len(lines)} stderr lines: {res.err.strip()[:200]}"
    return "held", res.code != 0, ""


class Tally:
    def __init__(self, verbose: bool):
        self.verdicts: list[Verdict] = []
        self.verbose = verbose

    def add(self, name, item, res: Result | None = None, codes=(2,), *, lost: str = "", outcome=None, detail=""):
        if res is not None:
            outcome, refusal, detail = judge(res, codes, lost=lost)
        else:
            refusal = False
        v = Verdict(name, item, outcome, refusal, detail)
        self.verdicts.append(v)
        if v.outcome != "held" or self.verbose:
            print(f"  [{v.outcome}] item {item}: {name}" + (f" -- {detail}" if detail else ""), flush=True)
        return v

    def report(self) -> None:
        by = {k: sum(v.outcome == k for v in self.verdicts) for k in ("held", "through", "traceback", "hang",
                                                                       "data-lost")}
        print(f"\ninputs tried {len(self.verdicts)}; held {by['held']} (clean refusals "
              f"{sum(v.refusal for v in self.verdicts)}); got through {len(self.verdicts) - by['held']}: "
              f"tracebacks {by['traceback']}, hangs {by['hang']}, data lost {by['data-lost']}, "
              f"other {by['through']}")
        items = sorted({v.item for v in self.verdicts}, key=lambda s: (len(s), s))
        print("per item: " + ", ".join(f"{i}: {sum(v.outcome == 'held' for v in self.verdicts if v.item == i)}/"
                                       f"{sum(v.item == i for v in self.verdicts)}" for i in items))


# ------------------------------------------------------------------------------------------------ fixtures
class World:
    """The temporary folder: a private stage cache, finished runs to attack, a 3 GB zero member."""

    def __init__(self, root: Path):
        self.root = root
        self.cache = root / "cache"
        self.cache.mkdir()
        os.environ["TOYRLHF_CACHE_DIR"] = str(self.cache)
        os.environ.setdefault("MPLBACKEND", "Agg")
        # off a terminal the bars print plain lines on stderr; the one-line rule is about the error (the attacks on
        # long supervised stages switch them on to see progress from the first seconds)
        os.environ["TOYRLHF_PROGRESS"] = "off"
        self.n = 0
        self.grpo = self.run("grpo", "--steps", "3", *sets("checkpoint_every=2"))
        self.ppo = self.run("ppo", "--steps", "3", *sets("checkpoint_every=2", "entropy_target=0.5"))
        self.seed1 = self.run("grpo", "--steps", "3", "--seed", "1", *sets("checkpoint_every=2"))
        self.arith = self.run("grpo", "--steps", "3", "--task", "arith", *sets("checkpoint_every=2"))

    def fresh(self, prefix="x") -> Path:
        self.n += 1
        return self.root / f"{prefix}-{self.n}"

    def run(self, algo, *args) -> Path:
        out = self.fresh(f"base-{algo}")
        res = inproc(["run", algo, *args, *sets(*TINY), "--out", out], timeout=600)
        if res.code != 0:
            raise SystemExit(f"could not build the base run {algo} {args}: {res.err or res.traceback}")
        return out

    def copy(self, run: Path) -> Path:
        d = self.fresh("attacked")
        shutil.copytree(run, d)
        return d


def npz_arrays(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_npz(path: Path, arrays: dict, big: dict[str, int] | None = None) -> None:
    """An .npz of `arrays`, plus members of `big[name]` zero bytes, streamed deflated (a few MB on disk)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    if big:
        from numpy.lib import format as npy
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, nbytes in big.items():
                hdr = io.BytesIO()
                npy.write_array_header_2_0(hdr, {"descr": "<f8", "fortran_order": False, "shape": (nbytes // 8,)})
                with zf.open(f"{name}.npy", "w", force_zip64=True) as w:
                    w.write(hdr.getvalue())
                    chunk = bytes(1 << 24)
                    for _ in range(nbytes // len(chunk)):
                        w.write(chunk)


# ------------------------------------------------------------------------------------------------ the attacks
def resume_attack(t: Tally, w: World, name: str, item: str, base: Path, mutate, codes=(2,), extra=("--steps", "4")):
    """Copy `base`, damage it with mutate(folder), resume; a refusal must leave the folder and the cache as they
    were."""
    d = w.copy(base)
    mutate(d)
    before = tree_hash(d, w.cache)
    res = inproc(["run", "--resume", d, *extra])
    lost = ""
    if res.code != 0 and tree_hash(d, w.cache) != before:
        lost = "a refused resume changed the run folder or the stage cache"
    return t.add(name, item, res, codes, lost=lost)


def checkpoint_member_attacks(t: Tally, w: World) -> None:
    """Every member of an RL checkpoint (GRPO, and PPO with a critic and an adaptive entropy coefficient) replaced
    by a wrong dtype, shape or value, deleted, or declared 3 GB."""
    for base in (w.grpo, w.ppo):
        z = npz_arrays(base / "checkpoint.npz")
        for member, value in sorted(z.items()):
            for label, bad in member_mutations(member, value):
                def mutate(d, member=member, bad=bad):
                    arrays = dict(z)
                    if bad is None:
                        del arrays[member]
                        write_npz(d / "checkpoint.npz", arrays)
                    elif isinstance(bad, int) and not isinstance(bad, bool) and bad >= 1 << 30:
                        del arrays[member]
                        write_npz(d / "checkpoint.npz", arrays, big={member: bad})
                    else:
                        arrays[member] = bad
                        write_npz(d / "checkpoint.npz", arrays)
                resume_attack(t, w, f"{base.name} checkpoint member {member}: {label}", "7", base, mutate)

        # an extra member is not read: the resume goes on (exit 0), fast, without reading 3 GB
        for big in (False, True):
            d = w.copy(base)
            write_npz(d / "checkpoint.npz", {**z, **({} if big else {"junk": np.arange(5)})},
                      big={"junk": 3 << 30} if big else None)
            res = inproc(["run", "--resume", d, "--steps", "4"])
            v = t.add(f"{base.name} checkpoint with an extra {'3 GB ' if big else ''}member", "7", res, (0,))
            if v.outcome == "held" and res.seconds > 30:
                v.outcome, v.detail = "through", f"took {res.seconds:.0f} s (read the unexpected member?)"


def member_mutations(member: str, value: np.ndarray):
    yield "deleted", None
    if member in ("policy", "opt_v", "critic", "config", "rng", "step"):
        yield "declared 3 GB", 3 << 30
    if value.dtype.kind in "US":      # JSON or a name
        yield "not JSON / a foreign name", np.array("{not json")
        yield "a number", np.array(5)
        yield "deeply nested JSON", np.array("[" * 100_000 + "]" * 100_000)
        yield "JSON null", np.array("null")
        yield "an empty table", np.array("{}")
        yield "2 MB of text", np.array("x" * (2 << 20))
        if member == "kind":
            yield "an LM's kind", np.array("lm")
        if member == "task":
            yield "another task", np.array("arith")
        if member == "rng":
            yield "a corrupt PCG64 state", np.array(json.dumps({"bit_generator": "PCG64", "state": {
                "state": -1, "inc": "x"}, "has_uint32": 0, "uinteger": 0}))
        if member == "kl_ctl":
            for beta in ("NaN", "-1.0", "true", "1e999"):
                yield f"beta {beta}", np.array(f'{{"beta": {beta}}}')
        return
    if value.ndim == 0:               # step, opt_t, entropy_coef
        yield "-1", np.array(-1)
        yield "a string", np.array("x")
        yield "a vector", np.array([1, 2])
        yield "NaN", np.array(np.nan)
        yield "1e30", np.array(1e30)
        yield "a boolean", np.array(True)
        if value.dtype.kind == "i":
            yield "2.5", np.array(2.5)
        return
    yield "one weight fewer", value[:-1]
    yield "a 2-D array", value.reshape(1, -1)
    yield "float32", value.astype(np.float32)
    yield "int64", value.astype(np.int64)
    yield "strings", np.array(["a"] * value.size)
    yield "complex", value.astype(np.complex128)
    for label, x in (("NaN", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
        v = value.copy()
        v[0] = x
        yield f"one {label}", v
    if member.endswith("opt_v"):
        v = value.copy()
        v[0] = -1.0
        yield "a negative second moment", v


def set_fuzz(t: Tally, w: World, n: int, seed: int) -> None:
    """n seeded (key, nasty value) pairs from every RLConfig / stage field, half as --set, half in a --config file.
    Accepted values train one tiny step (exit 0); the rest must be exit 2 (or 3) on one line."""
    from toyrlhf.config import PretrainConfig, RLConfig, RMConfig, SFTConfig
    keys = [f.name for f in dataclasses.fields(RLConfig) if f.name not in ("pretrain", "sft", "rm")]
    for prefix, cls in (("pretrain", PretrainConfig), ("sft", SFTConfig), ("rm", RMConfig)):
        keys += [f"{prefix}.{f.name}" for f in dataclasses.fields(cls)]
    values = ["nan", "inf", "-inf", "-1", "0", "1e308", "1e-320", "9" * 5000, "-9223372036854775809",
              str(2 ** 63), str(10 ** 12), "", "true", "[1, 2]", "{}", "x", "'", "\u0661", " 5 ", "1e400", "0x10",
              "1_0", "grpo", "auto", "none", "-0.0"]
    rng = random.Random(seed)
    for i in range(n):
        key, value = rng.choice(keys), rng.choice(values)
        out = w.fresh("fuzz")
        argv = ["run", "grpo", "--steps", "1", *sets(*TINY)]
        if i % 2:
            f = w.root / f"fuzz-{i}.toml"
            section, _, leaf = key.rpartition(".")
            f.write_text((f"[{section}]\n" if section else "") + f"{leaf} = {json.dumps(value)}\n")
            argv += ["--config", f]
            how = f"--config {key} = {value[:20]!r}"
        else:
            argv += ["--set", f"{key}={value}"]
            how = f"--set {key}={value[:20]!r}"
        before = tree_hash(w.cache)
        res = inproc([*argv, "--out", out], timeout=180)
        lost = ""
        if res.code not in (0, None) and out.exists() and any(out.iterdir()):
            lost = f"left {sorted(p.name for p in out.iterdir())} in a run folder whose run did not finish a step"
        elif res.code == 3 and tree_hash(w.cache) != before and any(
                not np.all(np.isfinite(npz_arrays(p).get("flat", 0))) for p in w.cache.glob("*.npz")):
            lost = "a non-finite model in the stage cache"
        t.add(how, "3", res, (0, 2, 3), lost=lost)


def issue_attacks(t: Tally, w: World) -> None:
    root = w.root
    # ---------------------------------------------------------------- 1: thread counts
    for algo, task, extra in (("grpo", "pref", []), ("ppo", "arith", ["--exact"]), ("dapo", "arith", [])):
        runs = {}
        for threads in ("1", "2", "8"):
            cache = w.fresh("threads-cache")
            out = w.fresh(f"threads-{algo}-{threads}")
            res = proc(["run", algo, "--task", task, "--steps", "3", *extra, *sets(*TINY), "--out", out], root,
                       env=cli_env(TOYRLHF_CACHE_DIR=str(cache), OPENBLAS_NUM_THREADS=threads,
                                   NUMBA_NUM_THREADS=str(min(int(threads), os.cpu_count() or 1))), timeout=300)
            runs[threads] = (res, out)
        ref = _metrics(runs["1"][1]) if runs["1"][0].code == 0 else None
        for threads in ("2", "8"):
            res, out = runs[threads]
            diff = ""
            if res.code == 0 and ref is not None:
                if _metrics(out) != ref or npz_arrays(out / "checkpoint.npz").keys() != \
                        npz_arrays(runs["1"][1] / "checkpoint.npz").keys() or any(
                        not np.array_equal(a, b) for a, b in zip(npz_arrays(out / "checkpoint.npz").values(),
                                                                  npz_arrays(runs["1"][1] / "checkpoint.npz").values())):
                    diff = "metrics or weights differ from the 1-thread run"
            t.add(f"{algo} {task} {' '.join(extra)} with {threads} threads vs 1 (each its own cache)", "1", res, (0,),
                  lost=diff)

    # ---------------------------------------------------------------- 2: divergence upstream
    for setting in ("sft.lr=1e308", "pretrain.lr=1e308", "rm.lr=1e308", "rm.weight_decay=1e308"):
        cache = w.fresh("diverge-cache")
        cache.mkdir()
        out = w.fresh("diverge")
        res = inproc(["run", "grpo", "--steps", "1", *sets(*TINY, setting), "--out", out],
                     env={"TOYRLHF_CACHE_DIR": str(cache)})
        stage = setting.split(".")[0]
        lost = ""
        if list(cache.glob(f"{stage}-*.npz")):
            lost = f"the diverged {stage} model was cached"
        elif out.exists() and any(out.iterdir()):
            lost = f"left {sorted(p.name for p in out.iterdir())} in a folder whose run never started"
        elif out.exists():
            lost = "left an empty run folder behind"
        t.add(f"run grpo --set {setting}", "2", res, (3,), lost=lost)
    for stage in ("pretrain", "sft"):
        out = w.fresh(f"{stage}-diverge")
        res = inproc([stage, *sets(*TINY_STAGE[stage], "lr=1e308"), "--out", out])
        t.add(f"{stage} --set lr=1e308", "2", res, (3,), lost="files left" if out.exists() else "")

    # ---------------------------------------------------------------- 3: tracebacks for bad input
    files = {"deep.json": '{"a":' * 100_000 + "1" + "}" * 100_000,
             "deep.toml": "a = " + "[" * 100_000 + "]" * 100_000 + "\n",
             "big.toml": "steps = " + "9" * 5000 + "\n", "big.json": '{"steps": ' + "9" * 5000 + "}"}
    for name, text in files.items():
        (root / name).write_text(text)
        out = w.fresh("never")
        t.add(f"run --config {name}", "3", inproc(["run", "grpo", "--config", root / name, "--out", out]),
              lost="created --out" if out.exists() else "")
    for setting in ("steps=" + "9" * 5000, "rm.steps=" + "7" * 4301, "group_size=9223372036854775807",
                    "kl_target=1 kl_horizon=0", "kl_target=0.1 kl_horizon=-5", "seed=-1"):
        out = w.fresh("never")
        t.add(f"run --set {setting[:40]}", "3", inproc(["run", "grpo", *sets(*setting.split()), "--out", out]),
              lost="created --out" if out.exists() else "")
    t.add("check --seed -1", "3", inproc(["check", "--seed", "-1"]))
    resume_attack(t, w, "resume with a corrupt RNG state", "3", w.grpo, lambda d: _edit_ckpt(
        d, rng=np.array(json.dumps({"bit_generator": "PCG64", "state": {"state": 2 ** 200, "inc": 2 ** 200},
                                    "has_uint32": 0, "uinteger": 0}))))
    resume_attack(t, w, "resume with metrics records without numeric time_s", "3", w.grpo,
                  lambda d: _edit_metrics(d, lambda r: r.pop("time_s")), extra=("--steps", "5"))
    d = w.fresh("plot-no-metric")
    d.mkdir()
    (d / "metrics.jsonl").write_text(json.dumps({"step": 1, "note": "x"}) + "\n")
    t.add("plot of records with no numeric metric", "3", inproc(["plot", d, "--out", root / "p.png"]))
    for name, value in (("NUMBA_NUM_THREADS", "0"), ("NUMBA_NUM_THREADS", "abc"), ("MPLBACKEND", "nosuch")):
        t.add(f"{name}={value}", "3", proc(["tasks"], root, env=cli_env(**{name: value})))
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        p = popen(["algos"], root, stdout=subprocess.DEVNULL)
        time.sleep(0.25)
        p.send_signal(sig)
        res = finish(p)
        t.add(f"{signal.Signals(sig).name} during start-up", "3", res, (code, 0))

    # ---------------------------------------------------------------- 4: unbounded work
    for args in (["--steps", str(10 ** 12)], sets(f"epochs={10 ** 9}"), sets(f"rm.steps={10 ** 12}"),
                 sets(f"pretrain.steps={10 ** 12}"), sets("pretrain.hidden=100000"),
                 sets("dynamic_sampling=true", f"max_resample={10 ** 12}", "temperature=0.001")):
        out = w.fresh("never")
        t.add(f"run grpo {' '.join(args)}", "4", inproc(["run", "grpo", *args, "--out", out], timeout=60),
              lost="created --out" if out.exists() else "")
    t.add("pretrain --set hidden=100000", "4", inproc(["pretrain", "--set", "hidden=100000", "--out",
                                                       w.fresh("never")], timeout=60))
    t.add("compare --seeds 100000", "4", inproc(["compare", "grpo", "--seeds", "100000", "--out", w.fresh("c")],
                                               timeout=60))

    # ---------------------------------------------------------------- 5: compare
    res = proc(["compare", "grpo", "--seeds", "1", "--steps", "2", "--jobs", "1", *sets(*TINY, "lr=1e308"),
                "--out", w.fresh("compare-diverge")], root, timeout=300)
    # compare reports its progress and then each failed run on one "toyrlhf:" line, and exits 1 (runs failed) or 3;
    # never 0
    errors = [line for line in res.err.splitlines() if line.startswith("toyrlhf:")]
    ok = res.code in (1, 3) and "Traceback" not in res.err and len(errors) == 1
    t.add("compare whose run diverges", "5", outcome="held" if ok else "through",
          detail="" if ok else f"exit {res.code}: {res.err.strip()[-200:]}")
    t.add("kill -9 of compare leaves no worker", "5", **_kill_compare(w))

    # ---------------------------------------------------------------- 6: the same --out twice at once
    for trial in range(3):
        out = w.fresh("twice")
        ps = [popen(["run", "grpo", "--steps", "20", *sets(*TINY), "--out", out], root) for _ in range(2)]
        rs = [finish(p, 300) for p in ps]
        codes = sorted(r.code for r in rs)
        steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] if (
            out / "metrics.jsonl").is_file() else []
        bad = codes != [0, 2] or steps != list(range(1, 21))
        t.add(f"two runs with the same --out at once (trial {trial + 1})", "6",
              outcome="through" if bad else "held", detail=f"exit codes {codes}, steps {steps[:5]}..." if bad else "")

    # ---------------------------------------------------------------- 7: foreign state
    resume_attack(t, w, "resume with another seed's checkpoint", "7", w.grpo,
                  lambda d: shutil.copy(w.seed1 / "checkpoint.npz", d / "checkpoint.npz"))
    resume_attack(t, w, "resume with another task's checkpoint", "7", w.grpo,
                  lambda d: shutil.copy(w.arith / "checkpoint.npz", d / "checkpoint.npz"))
    resume_attack(t, w, "resume with another run's config.json", "7", w.grpo,
                  lambda d: shutil.copy(w.seed1 / "config.json", d / "config.json"))
    resume_attack(t, w, "resume with a NaN KL-controller beta", "7", w.grpo,
                  lambda d: _edit_ckpt(d, kl_ctl=np.array('{"beta": NaN}')))
    resume_attack(t, w, "resume with a negative Adam second moment", "7", w.grpo,
                  lambda d: _edit_ckpt(d, opt_v=-np.abs(npz_arrays(d / "checkpoint.npz")["opt_v"]) - 1))
    resume_attack(t, w, 'resume with a metrics record {"step": true}', "7", w.grpo,
                  lambda d: _edit_metrics(d, lambda r: r.update(step=True), first_only=True))

    # ---------------------------------------------------------------- 8: adaptive KL gain
    t.add("run --set kl_target=1 kl_horizon=1", "8",
          inproc(["run", "grpo", *sets("kl_target=1", "kl_horizon=1"), "--out", w.fresh("never")]))

    # ---------------------------------------------------------------- 9: smaller
    for weights in ("accuracy=nan", "accuracy=inf,format=0.2"):
        t.add(f"reward_weights={weights}", "9", inproc(["run", "grpo", "--task", "arith", "--set",
                                                        f"reward_weights={weights}", "--out", w.fresh("never")]))
    p = subprocess.Popen(f"{sys.executable} -m toyrlhf tasks | head -1", shell=True, cwd=root, env=cli_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         executable="/bin/bash")
    _, err = p.communicate(timeout=120)
    rc = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m toyrlhf tasks | head -1 >/dev/null"],
                        cwd=root, env=cli_env(), capture_output=True, text=True, timeout=120).returncode
    t.add("toyrlhf tasks | head -1", "9", Result(rc, err=err), (0,))
    with open("/dev/full", "w") as full:
        res = proc(["run", "grpo", "--steps", "1", *sets(*TINY), "--out", w.fresh("full")], root, stdout=full)
    t.add("a finished run's summary to /dev/full", "9", res, (0,))
    out = w.fresh("pretrain-arith")
    res = inproc(["pretrain", "--set", "task=arith", *sets(*TINY_STAGE["pretrain"]), "--out", out])
    label = str(npz_arrays(out / "checkpoint.npz").get("task")) if (out / "checkpoint.npz").is_file() else None
    t.add("pretrain --set task=arith labels its checkpoint", "9", res, (0,),
          lost="" if label == "arith" else f"checkpoint labelled {label}")
    d = w.copy(w.grpo)
    (d / "checkpoint.npz").unlink()
    os.mkfifo(d / "checkpoint.npz")
    t.add("a FIFO in place of the checkpoint", "9", inproc(["run", "--resume", d, "--steps", "4"], timeout=30))
    fifo_cache = w.fresh("fifo-cache")
    shutil.copytree(w.cache, fifo_cache)
    victim = sorted(fifo_cache.glob("sft-pref-*.npz"))[0]
    victim.unlink()
    os.mkfifo(victim)
    t.add("a FIFO in place of a stage-cache file", "9",
          inproc(["run", "grpo", "--steps", "1", *sets(*TINY), "--out", w.fresh("never")], timeout=30,
                 env={"TOYRLHF_CACHE_DIR": str(fifo_cache)}))
    for stage in ("pretrain", "sft"):
        out = w.fresh(f"{stage}-sigint")
        p = popen([stage, "--steps", "100000", "--out", out], root,
                  env=cli_env(TOYRLHF_CACHE_DIR=str(w.cache), TOYRLHF_PROGRESS="auto"))
        time.sleep(6)
        p.send_signal(signal.SIGINT)
        res = finish(p)
        progress = [line for line in res.err.splitlines() if not line.startswith("toyrlhf:")]
        res.err = "\n".join(line for line in res.err.splitlines() if line.startswith("toyrlhf:"))
        problem = f"left {sorted(x.name for x in out.iterdir())}" if out.exists() else ""
        if not progress or any("Traceback" in line for line in progress):
            problem = problem or "no progress line on stderr in the first 6 s of a long stage"
        t.add(f"SIGINT during {stage} (progress shown, one error line)", "4, 9", res, (130,), lost=problem)
    home = w.fresh("home")
    home.mkdir()
    home.chmod(0o500)
    res = proc(["plot", w.grpo, "--out", w.fresh("plot") / "p.png"], root,
               env=cli_env(HOME=str(home), MPLCONFIGDIR="", XDG_CACHE_HOME="", XDG_CONFIG_HOME=""))
    t.add("plot under an unwritable HOME says nothing on stderr", "9", res, (0,),
          lost="" if not res.err.strip() or os.geteuid() == 0 else f"stderr: {res.err.strip()[:100]}")

    # ---------------------------------------------------------------- interruption keeps what was logged
    for how in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        out = w.fresh(f"stopped-{how.name}")
        args = ["run", "grpo", "--steps", "40", *sets(*TINY, "checkpoint_every=5")]
        p = popen([*args, "--out", out], root)
        for _ in range(600):   # until a few steps are logged
            if (out / "metrics.jsonl").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) >= 7:
                break
            time.sleep(0.05)
        os.kill(p.pid, how)
        first = finish(p)
        res = proc(["run", "--resume", out], root, timeout=300)
        ref = w.fresh("uninterrupted")
        proc([*args, "--out", ref], root, timeout=300)
        lost = "" if (out / "metrics.jsonl").is_file() and _metrics(out) == _metrics(ref) else \
            "the resumed run's metrics differ from the uninterrupted run's"
        expected = {signal.SIGKILL: -9}.get(how, 130)
        if first.code not in (expected, 0):
            lost = lost or f"the {how.name}'d run ended with exit {first.code}"
        t.add(f"{how.name} after ~7 steps, then --resume", "9", res, (0,), lost=lost)


def _metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def _edit_ckpt(d: Path, **changes) -> None:
    arrays = npz_arrays(d / "checkpoint.npz")
    arrays.update(changes)
    write_npz(d / "checkpoint.npz", arrays)


def _edit_metrics(d: Path, edit, first_only=False) -> None:
    lines = (d / "metrics.jsonl").read_text().splitlines()
    for i, line in enumerate(lines[:1] if first_only else lines):
        r = json.loads(line)
        edit(r)
        lines[i] = json.dumps(r)
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (d / "summary.json").unlink(missing_ok=True)


def _kill_compare(w: World) -> dict:
    p = popen(["compare", "grpo", "--seeds", "2", "--jobs", "2", "--steps", "2000", *sets(*TINY),
               "--out", w.fresh("compare-kill")], w.root)
    workers: list[int] = []
    for _ in range(600):
        workers = _children(p.pid)
        if len(workers) >= 2:
            break
        time.sleep(0.05)
    time.sleep(1)
    workers = _children(p.pid)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    deadline = time.time() + 15
    alive = workers
    while alive and time.time() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        time.sleep(0.2)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if not workers:
        return {"outcome": "through", "detail": "saw no worker to check"}
    return {"outcome": "held" if not alive else "through",
            "detail": f"{len(alive)} of {len(workers)} workers outlived compare by 15 s" if alive else ""}


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fuzz", type=int, default=120, help="generated --set / --config inputs (default 120)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-v", action="store_true", help="one line per attack, held ones too")
    args = ap.parse_args()
    t0 = time.perf_counter()
    tally = Tally(args.v)
    with tempfile.TemporaryDirectory(prefix="toyrlhf-attacks-") as tmp:
        root = Path(tmp)
        os.chdir(root)
        print(f"building the runs to attack in {root} (private stage cache) ...", flush=True)
        world = World(root)
        print("checkpoint members:", flush=True)
        checkpoint_member_attacks(tally, world)
        print("the issue's attacks:", flush=True)
        issue_attacks(tally, world)
        print(f"generated --set / --config values ({args.fuzz}, seed {args.seed}):", flush=True)
        set_fuzz(tally, world, args.fuzz, args.seed)
        for p in root.rglob("*"):   # the unwritable HOME, so that the folder can be removed
            with contextlib.suppress(OSError):
                if p.is_dir():
                    p.chmod(0o700)
    tally.report()
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
