"""toyrlhf/checkpoints.py and the member reading of toyrlhf/runs.py: the RL checkpoint layout is exactly what the
trainer writes, and a crafted member over its limit (a 3 GB one included) is refused before a byte of it is read."""
from __future__ import annotations

import io
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

from toyrlhf.checkpoints import METADATA_BYTES, model_params, rl_checkpoint_layout
from toyrlhf.config import preset_config
from toyrlhf.errors import UserError
from toyrlhf.runs import load_npz, npz_members

UPSTREAM = {"steps": 50, "corpus_size": 2000}   # tests/test_reliability.py's upstream: the shared cache has them


def _trainer(algo, shared_cache_dir, monkeypatch, **kw):
    from toyrlhf.rl.trainer import Trainer, build_models
    monkeypatch.setenv("TOYRLHF_CACHE_DIR", str(shared_cache_dir))
    cfg = preset_config(algo, prompts_per_step=4, group_size=4, **kw)
    cfg.pretrain.steps, cfg.pretrain.corpus_size = UPSTREAM["steps"], UPSTREAM["corpus_size"]
    cfg.sft.steps, cfg.rm.steps, cfg.rm.pairs, cfg.rm.norm_samples = 20, 20, 200, 256
    return Trainer(cfg, build_models(cfg))


@pytest.mark.parametrize("algo,kw", [("grpo", {}), ("ppo", {}), ("ppo", {"entropy_target": 0.5})])
def test_rl_layout_names_exactly_the_members_the_trainer_writes_within_their_limits(algo, kw, shared_cache_dir,
                                                                                    monkeypatch):
    tr = _trainer(algo, shared_cache_dir, monkeypatch, **kw)
    m = tr.models
    layout = rl_checkpoint_layout(m.policy.flat.size, None if m.critic is None else m.critic.flat.size,
                                  entropy_coef=tr.cfg.entropy_target is not None)
    arrays = tr.state_arrays()
    assert sorted(layout["required"]) == sorted(arrays) and layout["optional"] == ()
    for k, a in arrays.items():
        assert a.nbytes <= layout["limits"].get(k, layout["max_bytes"]), k
    assert model_params(m.policy.config) == m.policy.flat.size


class _RepeatedDeflate:
    """The deflate stream of one chunk written over and over, without compressing it each time: after a
    Z_FULL_FLUSH zlib starts afresh, byte-aligned, so every later copy of the chunk compresses to the bytes of its
    first copy in a fresh stream. Stands in for zipfile's compressor of a member (3 GB of zeros: 9.8 s -> 2.1 s, the
    rest is zipfile's CRC); the member is the same valid deflate stream of the same bytes, CRC and sizes."""

    def __init__(self, compressor, chunk: bytes, level: int):
        self._c, self._chunk, self._first = compressor, chunk, True
        fresh = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._block = fresh.compress(chunk) + fresh.flush(zlib.Z_FULL_FLUSH)

    def compress(self, data: bytes) -> bytes:
        assert data is self._chunk
        if self._first:                 # the .npy header is still pending in zipfile's own compressor
            self._first = False
            return self._c.compress(data) + self._c.flush(zlib.Z_FULL_FLUSH)
        return self._block

    def flush(self) -> bytes:
        return self._c.flush()


def _with_member(path, arrays: dict, name: str, nbytes: int) -> None:
    """An .npz of `arrays` plus member `name`: nbytes of float64 zeros, streamed deflated (~4 MB per GB on disk)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(f"{name}.npy", "w", force_zip64=True) as w:
            np.lib.format.write_array_header_2_0(w, {"descr": "<f8", "fortran_order": False, "shape": (nbytes // 8,)})
            chunk = bytes(1 << 26)
            if hasattr(w, "_compressor"):   # zipfile's internals: without them, the chunks are compressed for real
                w._compressor = _RepeatedDeflate(w._compressor, chunk, 1)
            for _ in range(nbytes // len(chunk)):
                w.write(chunk)


def test_a_3_gb_member_is_refused_unread_and_an_unexpected_one_is_not_read(tmp_path):
    path = tmp_path / "crafted.npz"
    small = {"step": np.array(3), "config": np.array("{}")}
    _with_member(path, small, "policy", 3 << 30)
    assert npz_members(path)["policy"] > 3 << 30
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="'policy' declares .* refused unread"):
        load_npz(path, **rl_checkpoint_layout(1000))
    # every requested member's declared size is checked before any is read; members not requested are not read
    z = load_npz(path, required=("step", "config"), optional=(), max_bytes=METADATA_BYTES)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sorted(z) == ["config", "step"] and int(z["step"]) == 3
    assert peak < 50 << 20 and time.perf_counter() - t0 < 5


def test_a_member_one_value_over_its_limit_is_refused_and_one_at_it_is_read(tmp_path):
    n = 1000
    for size, ok in ((n, True), (n + (1 << 13) + 1, False)):   # the limit allows a 64 KiB .npy header
        path = tmp_path / f"m{size}.npz"
        np.savez(path, policy=np.zeros(size))
        if ok:
            assert load_npz(path, required=("policy",), optional=(), limits={"policy": 8 * n})["policy"].size == n
        else:
            with pytest.raises(UserError, match="refused unread"):
                load_npz(path, required=("policy",), optional=(), limits={"policy": 8 * n})
