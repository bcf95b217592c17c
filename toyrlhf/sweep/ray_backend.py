"""The Ray backend: the sweep on an existing Ray cluster (`ray start --head` on one machine, `ray start --address`
on the others), through Ray's own API. The workers need toyrlhf installed, not the driver's disk: every stage file
and every result travels through Ray. The driver `ray.put`s each stage file once (object store); a task installs
the files it needs into a private, temporary stage cache on its node, builds a stage or trains a run there, and
returns the new files as bytes (the task's return value); the driver writes them into its own stage cache and run
folders. A task whose worker or node dies is retried (Ray's `max_retries`) and, the runs being deterministic,
gives the same result. `ray` is imported here only, and only when this backend is used (`pip install
'toyrlhf[ray]'`)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..runs import atomic_write_bytes
from ..settings import to_dict
from . import work
from .grid import Stage, stages_of, upstream_of

MAX_RETRIES = 3
"""Retries of a task whose worker process or node died (Ray's default for tasks, made explicit)."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray on this machine and on the cluster: pip install 'toyrlhf[ray]'") from None
    return ray


# ------------------------------------------------------------------------------------------ on a worker
@contextlib.contextmanager
def private_cache(files: dict[str, bytes]):
    """A temporary folder on the worker's node holding a stage cache with `files`, set as $TOYRLHF_CACHE_DIR for the
    task (a Ray worker runs one task at a time) and removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="toyrlhf-ray-"))
    cache = tmp / "cache"
    cache.mkdir()
    for name, data in files.items():
        (cache / name).write_bytes(data)
    saved = os.environ.get("TOYRLHF_CACHE_DIR")
    os.environ["TOYRLHF_CACHE_DIR"] = str(cache)
    try:
        yield cache
    finally:
        if saved is None:
            os.environ.pop("TOYRLHF_CACHE_DIR", None)
        else:
            os.environ["TOYRLHF_CACHE_DIR"] = saved
        shutil.rmtree(tmp, ignore_errors=True)


def build_stage_task(stage: Stage, names: list[str], *blobs: bytes) -> dict[str, bytes]:
    """Ray task: build `stage` from its upstream file(s) (names, blobs); returns the new stage file(s) as bytes."""
    with private_cache(dict(zip(names, blobs))) as cache:
        work.build_stage(stage)
        return {p.name: p.read_bytes() for p in sorted(cache.iterdir())
                if p.suffix == ".npz" and p.name not in names}


def train_run_task(cfg_dict: dict, resume_files: dict[str, bytes], names: list[str], *blobs: bytes) -> dict:
    """Ray task: one run (resumed from resume_files, the driver's copy of an interrupted run's folder, if any) on
    the stage files (names, blobs); returns {'summary' | 'error', 'files': {name: bytes} of the run folder}."""
    with private_cache(dict(zip(names, blobs))) as cache:
        run_dir = cache.parent / "run"
        run_dir.mkdir()
        for name, data in resume_files.items():
            (run_dir / name).write_bytes(data)
        result = work.train_run(cfg_dict, run_dir, resume=bool(resume_files))
        result["files"] = {f: (run_dir / f).read_bytes() for f in work.RUN_FILES if (run_dir / f).is_file()}
        result["node"] = os.uname().nodename
        return result


# ------------------------------------------------------------------------------------------ on the driver
class RayBackend:
    def __init__(self, address: str, max_retries: int = MAX_RETRIES):
        ray = import_ray()
        self.ray, self.address = ray, address
        if not ray.is_initialized():
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise UserError(f"--ray {address}: cannot connect to a Ray cluster "
                                f"({' '.join(str(e).split())[:200]})") from None
        opts = {"num_cpus": 1, "max_retries": max_retries, "retry_exceptions": False}
        self._build = ray.remote(**opts)(build_stage_task)
        self._train = ray.remote(**opts)(train_run_task)
        self._refs: dict[str, object] = {}

    def describe(self) -> str:
        cpus = int(self.ray.cluster_resources().get("CPU", 0))
        nodes = sum(1 for n in self.ray.nodes() if n.get("Alive"))
        return f"the Ray cluster at {self.address} ({cpus} CPUs, {nodes} node{'s' if nodes != 1 else ''})"

    def close(self) -> None:
        self.ray.shutdown()

    def _ref(self, cache: Path, name: str):
        """The object-store copy of a stage file (put once, shared by every task that needs it)."""
        if name not in self._refs:
            self._refs[name] = self.ray.put((cache / name).read_bytes())
        return self._refs[name]

    def _results(self, pending: dict):
        """(key, result) as each task finishes; on Ctrl-C the unfinished tasks are cancelled."""
        ray = self.ray
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                key = pending.pop(ready[0])
                try:
                    yield key, ray.get(ready[0])
                except (ray.exceptions.RayError, OSError) as e:   # failed after its retries
                    yield key, {"error": work.error_text(e).splitlines()[0][:400]}
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def build_stages(self, levels, cache: Path, echo: Callable[[str], None]) -> None:
        for level in levels:
            pending = {}
            for st in level:
                up = upstream_of(st)
                names = [up.file_name] if up else []
                pending[self._build.remote(st, names, *(self._ref(cache, n) for n in names))] = st
            for st, files in self._results(pending):
                if "error" in files:
                    raise UserError(f"building {st.file_name} on the Ray cluster failed: {files['error']}")
                for name, data in files.items():
                    atomic_write_bytes(cache / name, data)
                    echo(f"  built {name} ({len(data):,} bytes back through Ray)")

    def run(self, jobs, cache: Path, on_result: Callable) -> None:
        pending = {}
        for j in jobs:
            names = [s.file_name for s in stages_of(j.point.config) if s.stage != "pretrain"]
            resume = {f: (j.run_dir / f).read_bytes() for f in work.RUN_FILES
                      if j.resume and (j.run_dir / f).is_file()}
            ref = self._train.remote(to_dict(j.point.config), resume, names, *(self._ref(cache, n) for n in names))
            pending[ref] = j
        for j, result in self._results(pending):
            files = result.pop("files", {})
            for name in sorted(files, key=lambda f: f == "summary.json"):   # summary.json last: "finished"
                atomic_write_bytes(j.run_dir / name, files[name])
            on_result(j, result)
