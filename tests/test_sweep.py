"""toyrlhf sweep: the grid file, run names and stages (fast); a local sweep end to end, resumed; and on a real Ray
cluster on 127.0.0.1 (a head and a second node, each with its own temporary folders: nothing shared on disk with
the driver), end to end and with a worker killed mid-sweep (Ray retries its task; the results are identical)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from toyrlhf.errors import UserError
from toyrlhf.sweep.grid import make_grid, stage_levels

from conftest import run_cli
from tiny import TINY

GRID = {**TINY, "steps": 4, "grid": {"algo": ["grpo", "ppo"], "seed": [0, 1]}}


def _toml(data: dict) -> str:
    """The small TOML subset the grids here need (tomllib only reads)."""
    def value(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()
    top = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [f"[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items())
              for k, v in data.items() if isinstance(v, dict)]
    return "\n".join(top + tables) + "\n"


# ------------------------------------------------------------------------------------------ the grid
def test_grid_points_names_labels_and_stages():
    g = make_grid({**TINY, "steps": 4, "grid": {"algo": ["grpo", "ppo"], "seed": [0, 1], "lr": [1e-3, 3e-3]}})
    assert len(g.points) == 8
    assert [p.name for p in g.points[:2]] == ["grpo-lr=0.001-s0", "grpo-lr=0.003-s0"]
    assert g.points[0].label == "grpo lr=0.001" and g.points[0].config.sft.steps == 10
    assert g.points[0].config.lr == 1e-3 and g.points[-1].config.algo == "ppo"
    levels = stage_levels(p.config for p in g.points)
    # two seeds: two of each stage, shared by the 4 runs of a seed (algorithms and lr do not change them)
    assert [(lv[0].stage, len(lv)) for lv in levels] == [("pretrain", 2), ("sft", 2), ("rm", 2)]
    g2 = make_grid({"task": "arith", "grid": {"sft.steps": [5, 10]}})
    assert [p.name for p in g2.points] == ["grpo-sft.steps=5-s0", "grpo-sft.steps=10-s0"]
    # a rule reward needs no reward model; two SFT settings share one pretrained model
    assert [(lv[0].stage, len(lv)) for lv in stage_levels(p.config for p in g2.points)] == [("pretrain", 1),
                                                                                              ("sft", 2)]


@pytest.mark.parametrize("data, message", [
    ({"steps": 3}, "needs a \\[grid\\] table"),
    ({"grid": {"lr": []}}, "non-empty list"),
    ({"grid": {"lr": 0.1}}, "non-empty list"),
    ({"grid": {"algo": ["nope"]}}, "unknown algorithm"),
    ({"grid": {"no_such": [1]}}, "unknown setting"),
    ({"lr": 1e-3, "grid": {"lr": [1e-3]}}, "both a fixed setting and a grid axis"),
    ({"grid": {"lr": [-1.0]}}, "lr must be > 0"),
])
def test_bad_grids_are_one_line_errors(data, message):
    with pytest.raises(UserError, match=message):
        make_grid(data)


# ------------------------------------------------------------------------------------------ local backend
@pytest.mark.slow
def test_local_sweep_table_figure_and_resume(tmp_path, cache_dir):
    grid = tmp_path / "g.toml"
    grid.write_text(_toml({**GRID, "grid": {"algo": ["grpo", "rloo"], "seed": [0]}}))
    out = tmp_path / "sweep"
    p = run_cli(["sweep", grid, "--out", out, "--jobs", "2"], cwd=tmp_path,
                env_extra={"TOYRLHF_CACHE_DIR": str(cache_dir)}, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "3 stages to build (1 pretrain, 1 sft, 1 rm)" in p.stderr
    for f in ("sweep.csv", "sweep.md", "sweep.png", "grpo-s0/summary.json", "rloo-s0/summary.json"):
        assert (out / f).is_file(), f
    csv_lines = (out / "sweep.csv").read_text().splitlines()
    assert csv_lines[0].startswith("label,algo,seeds,steps,final_gold_reward")
    assert [l.split(",")[0] for l in csv_lines[1:]] == ["grpo", "rloo"]
    # interrupted: rloo's summary is gone, its checkpoint is at the last step; grpo is finished
    (out / "rloo-s0" / "summary.json").unlink()
    before = (out / "grpo-s0" / "metrics.jsonl").read_bytes()
    p = run_cli(["sweep", grid, "--out", out], cwd=tmp_path, env_extra={"TOYRLHF_CACHE_DIR": str(cache_dir)},
                timeout=300)
    assert p.returncode == 0, p.stderr
    assert "1 of 2 runs already finished" in p.stderr and "1 interrupted run resumed" in p.stderr
    assert "stages to build" not in p.stderr and (out / "rloo-s0" / "summary.json").is_file()
    assert (out / "grpo-s0" / "metrics.jsonl").read_bytes() == before
    # the same folder with other settings is refused
    p = run_cli(["sweep", grid, "--out", out, "--set", "steps=5"], cwd=tmp_path,
                env_extra={"TOYRLHF_CACHE_DIR": str(cache_dir)}, timeout=120)
    assert p.returncode == 2 and "holds a run with other settings" in p.stderr


# ------------------------------------------------------------------------------------------ Ray
def _ray_available():
    try:
        import ray  # noqa: F401
        return True
    except ImportError:
        return False


needs_ray = pytest.mark.skipif(not _ray_available(), reason="Ray is not installed (pip install 'toyrlhf[ray]')")


def _node(args, folder: Path, log: Path):
    """`ray start ... --block` in its own session (killed as a group), with its own temporary folders."""
    folder.mkdir(parents=True)
    (folder / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(folder / "tmp"), "TOYRLHF_CACHE_DIR": str(folder / "cache"),
           "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    return subprocess.Popen([ray_cli, "start", "--block", "--num-cpus=1", "--object-store-memory=80000000",
                             "--disable-usage-stats", *args], env=env, start_new_session=True,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _session_processes(proc):
    """The node's processes: `ray start` leads its own session; Ray's workers have their own process groups in it."""
    import psutil
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getsid(p.info["pid"]) == proc.pid:
                out.append(p)
        except (ProcessLookupError, PermissionError):
            pass
    return out


def _stop(proc) -> None:
    """Stop one node: SIGTERM to `ray start --block` (it stops its raylet and workers), then SIGKILL to whatever
    of its session is left. Other Ray clusters on the machine are not touched (no `ray stop`)."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    for p in _session_processes(proc):
        try:
            p.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A Ray head and a second node on 127.0.0.1, one CPU each, every node with its own TMPDIR, Ray temp folder and
    TOYRLHF_CACHE_DIR; stopped (process groups killed) at the end whatever happens."""
    root = tmp_path_factory.mktemp("ray")
    # Ray's sockets live under its temp folder, and a Unix socket path is at most 107 bytes: pytest's folders
    # (/tmp/pytest-of-USER/pytest-NNN/...) plus Ray's session name overflow it, so Ray gets a short folder of its own
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp" if Path("/tmp").is_dir() else None))
    head = worker = None
    try:
        head = _node(["--head", "--port=0", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                      f"--temp-dir={ray_tmp}"], root / "head", root / "head.log")
        current = ray_tmp / "ray_current_cluster"
        deadline = time.time() + 60
        while not current.is_file() and time.time() < deadline:
            assert head.poll() is None, (root / "head.log").read_text()[-2000:]
            time.sleep(0.2)
        address = current.read_text().strip()
        worker = _node([f"--address={address}", "--node-ip-address=127.0.0.1"], root / "worker", root / "worker.log")
        env = {**os.environ, "RAY_ADDRESS": address}
        code = ("import ray, time; ray.init(address='auto', log_to_driver=False); t = time.time()\n"
                "while sum(n['Alive'] for n in ray.nodes()) < 2 and time.time() - t < 60: time.sleep(0.2)\n"
                "print(sum(n['Alive'] for n in ray.nodes()))")
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=90)
        assert p.stdout.strip() == "2", (p.stderr[-2000:], (root / "worker.log").read_text()[-2000:])
        yield {"address": address, "root": root, "head": head, "worker": worker}
    finally:
        _stop(worker)
        _stop(head)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _digest(run_dir: Path):
    metrics = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for m in metrics:
        m.pop("time_s")
    with np.load(run_dir / "checkpoint.npz") as z:
        arrays = {k: z[k].tobytes() for k in z.files}
    return metrics, arrays


@pytest.mark.slow
@needs_ray
def test_ray_sweep_end_to_end_then_a_worker_killed_mid_sweep(ray_cluster, tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(_toml({**GRID, "steps": 8}))
    driver_cache = tmp_path / "driver-cache"
    env = {"TOYRLHF_CACHE_DIR": str(driver_cache)}
    t0 = time.time()
    p = run_cli(["sweep", grid, "--ray", ray_cluster["address"], "--out", tmp_path / "a"], cwd=tmp_path,
                env_extra=env, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "6 stages to build (2 pretrain, 2 sft, 2 rm)" in p.stderr and "(2 CPUs, 2 nodes)" in p.stderr
    names = ["grpo-s0", "grpo-s1", "ppo-s0", "ppo-s1"]
    for n in names:
        assert (tmp_path / "a" / n / "summary.json").is_file()
    # the stages came back through Ray into the driver's cache; the nodes' own caches were never used
    assert len(list(driver_cache.glob("*.npz"))) == 6
    for node in ("head", "worker"):
        assert not list((ray_cluster["root"] / node).glob("cache/*")), node
    t1 = time.time()

    # the same sweep into another folder; kill the second node's worker while it trains a run
    proc = subprocess.Popen([sys.executable, "-m", "toyrlhf", "sweep", str(grid), "--ray", ray_cluster["address"],
                             "--out", str(tmp_path / "b")], cwd=tmp_path, env={**os.environ, **env,
                                                                                "MPLBACKEND": "Agg"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.time() + 60
    while killed is None and time.time() < deadline and proc.poll() is None:
        for q in _session_processes(ray_cluster["worker"]):
            try:
                if "train_run_task" in " ".join(q.cmdline()):
                    q.kill()
                    killed = q.pid
                    break
            except Exception:  # noqa: BLE001 - the process ended meanwhile
                pass
        time.sleep(0.05)
    out, err = proc.communicate(timeout=180)
    assert killed is not None, "no run started on the second node"
    assert proc.returncode == 0, err[-3000:]
    assert "stages to build" not in err          # the driver's cache already had them
    for n in names:
        assert _digest(tmp_path / "a" / n) == _digest(tmp_path / "b" / n), n
    strip = lambda text: [l.rsplit(",", 1)[0] for l in text.splitlines()]   # noqa: E731 - wall time differs
    assert strip((tmp_path / "a" / "sweep.csv").read_text()) == strip((tmp_path / "b" / "sweep.csv").read_text())
    print(f"ray sweep: {t1 - t0:.1f} s, again with a worker killed: {time.time() - t1:.1f} s")
