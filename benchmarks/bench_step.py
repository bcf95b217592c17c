"""Speed of one GRPO step at the reference configuration, and of `toyrlhf run grpo --steps 500` cold and warm.

Reference configuration (the one measured on this kind of machine before the project began): vocabulary 16, context 4, embedding 16, hidden 128, 16 prompts x G=8,
8 new tokens, one update per rollout (policy forward + frozen reference forward + backward + Adam), k3 KL.
Prints figures and ratios; asserts nothing. With torch installed, the same step in PyTorch eager (float64 and
float32) is timed in the same process, side by side (torch is not a dependency).

In one run: the float64 matmul peak (1 thread and all threads, 512x512 dgemm) and the FLOP floor of the step;
toyrlhf and PyTorch quiet, then again with a CPU hog (a busy-loop subprocess this script starts and stops); the
cold numba compile (a subprocess with an empty NUMBA_CACHE_DIR) and the warm start. Every timing is the median
(and range) of --reps blocks of --steps steps; the load average is printed, since the machine may be shared.

    python benchmarks/bench_step.py            # everything but the whole-process CLI runs
    python benchmarks/bench_step.py --cli      # also the whole-process cold / warm `toyrlhf run grpo --steps 500`
    python benchmarks/bench_step.py --no-hog --no-compile   # the step alone
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import numpy as np

from toyrlhf import tokens as tk
from toyrlhf.kernels import pool
from toyrlhf.model import ModelConfig, TinyLM
from toyrlhf.optim import Adam, clip_grad_norm
from toyrlhf.rl import advantages, losses, surrogates

V, K, D, H = 16, 4, 16, 128
N_PROMPTS, G, T, P = 16, 8, 8, 4
BETA, EPS = 0.04, 0.2


def reward_of(tokens: np.ndarray) -> np.ndarray:
    """A cheap rule reward (fraction of even task tokens): the benchmark times the algorithm, not the task."""
    comp = tokens[:, P:]
    return ((comp % 2 == 0) & (comp > tk.EOS)).mean(axis=1)


class GRPOStep:
    def __init__(self, seed=0):
        self.policy = TinyLM(ModelConfig(vocab_size=V, context=K, embed=D, hidden=H), seed=seed)
        self.ref = self.policy.copy()
        self.opt = Adam(self.policy.flat.size, lr=1e-3)
        self.rng = np.random.default_rng(seed)

    def sample(self):
        prompts = np.concatenate([np.full((N_PROMPTS, 1), tk.BOS),
                                  self.rng.integers(3, V, (N_PROMPTS, P - 1))], axis=1)
        return self.policy.sample(np.repeat(prompts, G, axis=0), T, self.rng)

    def update(self, s):
        ref_logp, _, _ = self.ref.logp_forward(s.tokens, s.mask)
        logp, _, cache = self.policy.logp_forward(s.tokens, s.mask)
        adv = advantages.broadcast_to_tokens(advantages.group_advantages(reward_of(s.tokens), G), s.mask)
        loss, dlogp, _ = surrogates.policy_loss(logp, logp.copy(), adv, s.mask, eps_low=EPS, eps_high=EPS)
        kl, dkl = losses.kl_loss(logp, ref_logp, s.mask, estimator="k3")
        grad, _ = clip_grad_norm(self.policy.logp_backward(dlogp + BETA * dkl, cache), 1.0)
        self.opt.step(self.policy.flat, grad)
        return s.mask.sum()


def step_flops(n_sample_rows: int, n_tokens: int) -> float:
    """Matrix-product FLOPs of one step (2 per multiply-add): sampling forwards, policy + reference forwards,
    backward (two products per layer: weight gradient and input gradient)."""
    Vo = V - tk.OUT_OFFSET
    fwd_row = 2 * (K * D * H + H * Vo)
    return n_sample_rows * fwd_row + 2 * n_tokens * fwd_row + 2 * n_tokens * fwd_row


def matmul_peak(threads: int | None, n=512, reps=10) -> float:
    """float64 dgemm FLOP/s at n x n with `threads` BLAS threads (None: the library's default)."""
    from threadpoolctl import threadpool_limits
    a, b = np.random.rand(n, n), np.random.rand(n, n)
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ b
        best = np.inf
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 * reps / best


def timed_blocks(step, steps, reps):
    """Median and range (ms per step) of `reps` blocks of `steps` calls of step() -> (sample_s, update_s)."""
    totals, samples, updates = [], [], []
    for _ in range(reps):
        ts = tu = 0.0
        for _ in range(steps):
            a, b = step()
            ts += a
            tu += b
        samples.append(1000 * ts / steps)
        updates.append(1000 * tu / steps)
        totals.append(samples[-1] + updates[-1])
    i = int(np.argsort(totals)[len(totals) // 2])
    return dict(total=float(np.median(totals)), lo=min(totals), hi=max(totals), sample=samples[i], update=updates[i])


def numpy_stepper():
    s = GRPOStep()
    for _ in range(20):
        s.update(s.sample())
    n_tok = []

    def step():
        t0 = time.perf_counter()
        smp = s.sample()
        t1 = time.perf_counter()
        n_tok.append(s.update(smp))
        return t1 - t0, time.perf_counter() - t1

    return step, n_tok


def torch_stepper(dtype_name: str):
    import torch
    torch.manual_seed(0)
    dt = getattr(torch, dtype_name)
    Vo = V - tk.OUT_OFFSET
    emb = torch.randn(V, D, dtype=dt, requires_grad=True)
    W1 = (torch.randn(K * D, H, dtype=dt) / (K * D) ** 0.5).requires_grad_()
    b1 = torch.zeros(H, dtype=dt, requires_grad=True)
    W2 = (0.1 * torch.randn(H, Vo, dtype=dt) / H ** 0.5).requires_grad_()
    b2 = torch.zeros(Vo, dtype=dt, requires_grad=True)
    params = [emb, W1, b1, W2, b2]
    ref = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-3)
    B = N_PROMPTS * G

    def logits_of(ctx, ps):
        e, w1, c1, w2, c2 = ps
        return torch.tanh(e[ctx].reshape(ctx.shape[0], -1) @ w1 + c1) @ w2 + c2

    def one_step():
        t0 = time.perf_counter()
        with torch.no_grad():
            prompts = torch.cat([torch.full((N_PROMPTS, 1), tk.BOS), torch.randint(3, V, (N_PROMPTS, P - 1))], 1)
            seq = prompts.repeat_interleave(G, 0)
            alive = torch.ones(B, dtype=torch.bool)
            mask = torch.zeros(B, P + T, dtype=torch.bool)
            for t in range(T):
                ctx = seq[:, -K:]
                nxt = torch.multinomial(torch.softmax(logits_of(ctx, params), -1), 1)[:, 0] + tk.OUT_OFFSET
                nxt = torch.where(alive, nxt, torch.full_like(nxt, tk.PAD))
                mask[:, P + t] = alive
                alive = alive & (nxt != tk.EOS)
                seq = torch.cat([seq, nxt[:, None]], 1)
        t1 = time.perf_counter()
        padded = torch.cat([torch.full((B, K - 1), tk.BOS), seq], 1)
        ctx = padded.unfold(1, K, 1)[:, P - 1:P + T - 1 + 1][:, :T]          # (B, T, K) windows before each token
        tgt = (seq[:, P:] - tk.OUT_OFFSET).clamp(min=0)
        m = mask[:, P:].to(dt)
        flat_ctx = ctx.reshape(-1, K)
        logp = torch.log_softmax(logits_of(flat_ctx, params), -1).gather(1, tgt.reshape(-1, 1)).reshape(B, T)
        with torch.no_grad():
            ref_lp = torch.log_softmax(logits_of(flat_ctx, ref), -1).gather(1, tgt.reshape(-1, 1)).reshape(B, T)
            r = ((seq[:, P:] % 2 == 0) & (seq[:, P:] > tk.EOS)).to(dt).mean(1).reshape(N_PROMPTS, G)
            a = ((r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=False, keepdim=True) + 1e-6)).reshape(B, 1)
        ratio = torch.exp(logp - logp.detach())
        pg = -torch.minimum(ratio * a, ratio.clamp(1 - EPS, 1 + EPS) * a)
        kl = torch.exp(ref_lp - logp) - (ref_lp - logp) - 1
        per_tok = (pg + BETA * kl) * m
        loss = (per_tok.sum(1) / m.sum(1).clamp(min=1)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return t1 - t0, time.perf_counter() - t1

    for _ in range(20):
        one_step()
    return one_step


@contextmanager
def cpu_hog():
    """A second CPU-bound process (a Python busy loop) for the duration."""
    p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)
    try:
        yield
    finally:
        p.kill()
        p.wait()


COMPILE_PROBE = r"""
import time, sys
t0 = time.perf_counter()
sys.path.insert(0, {bench_dir!r})
from bench_step import GRPOStep
s = GRPOStep()
t1 = time.perf_counter()
s.update(s.sample())
t2 = time.perf_counter()
s.update(s.sample())
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def bench_compile():
    """(import s, first step s, second step s) in a subprocess with an empty numba cache, then with it filled."""
    cache = tempfile.mkdtemp()
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    code = COMPILE_PROBE.format(bench_dir=os.path.dirname(os.path.abspath(__file__)))
    out = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                           cwd=tempfile.gettempdir())
        out.append(tuple(float(x) for x in r.stdout.split()))
    return out


def bench_cli():
    """Whole-process wall time of `toyrlhf run grpo --steps 500`: cold (empty numba cache, stage cache built),
    warm (both caches filled), and first-time user (both empty)."""
    out = {}
    stage = tempfile.mkdtemp()
    numba_cold = tempfile.mkdtemp()

    def run(env_extra):
        env = {**os.environ, "TOYRLHF_CACHE_DIR": stage, "MPLBACKEND": "Agg", **env_extra}
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "toyrlhf", "run", "grpo", "--steps", "500", "--out",
                        tempfile.mkdtemp() + "/r"], env=env, check=True, capture_output=True, cwd=tempfile.gettempdir())
        return time.perf_counter() - t

    out["first-time user (empty numba + stage caches)"] = run({"NUMBA_CACHE_DIR": numba_cold})
    out["cold numba cache (stage cache filled)"] = run({"NUMBA_CACHE_DIR": tempfile.mkdtemp()})
    out["warm (both caches filled)"] = run({"NUMBA_CACHE_DIR": numba_cold})
    return out


def fmt(r):
    return (f"{r['total']:7.2f} ms (range {r['lo']:.2f}-{r['hi']:.2f}) = sampling {r['sample']:.2f} "
            f"+ update {r['update']:.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100, help="steps per timed block")
    ap.add_argument("--reps", type=int, default=5, help="timed blocks (median and range reported)")
    ap.add_argument("--cli", action="store_true")
    ap.add_argument("--no-hog", action="store_true")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    import numba
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; numba {numba.__version__}, "
          f"{numba.config.NUMBA_NUM_THREADS} threads")
    peak1, peak = matmul_peak(1), matmul_peak(None)
    print(f"float64 matmul peak (512x512 dgemm): {peak1 / 1e9:.1f} GFLOP/s on 1 thread, {peak / 1e9:.1f} on all")
    step, n_tok = numpy_stepper()
    try:
        if args.no_torch:
            raise ImportError
        import torch
        steppers = {"PyTorch float64": torch_stepper("float64"), "PyTorch float32": torch_stepper("float32")}
        torch_info = f"PyTorch {torch.__version__} eager, {torch.get_num_threads()} threads"
    except ImportError:
        steppers, torch_info = {}, "PyTorch not installed: side-by-side comparison skipped"
    conditions = [("quiet", None)] + ([] if args.no_hog else [("CPU hog", cpu_hog)])
    results = {}
    for cond, ctx in conditions:
        with (ctx() if ctx else _null()):
            results[(cond, "toyrlhf")] = timed_blocks(step, args.steps, args.reps)
            for name, st in steppers.items():
                results[(cond, name)] = timed_blocks(st, args.steps, args.reps)
        print(f"\n[{cond}] load average {os.getloadavg()[0]:.2f}; {torch_info}; toyrlhf kernel threads "
              f"{pool.threads()}")
        for name in ["toyrlhf"] + list(steppers):
            print(f"  {name:16s} {fmt(results[(cond, name)])}")
        tr = results[(cond, "toyrlhf")]["total"]
        for name in steppers:
            print(f"  {name} / toyrlhf time: {results[(cond, name)]['total'] / tr:.2f}x")
    quiet = results[("quiet", "toyrlhf")]["total"]
    flops = step_flops(N_PROMPTS * G * T, float(np.mean(n_tok)))
    print(f"\ndense FLOPs per step ({N_PROMPTS}x{G} sequences, {T} new tokens, {np.mean(n_tok):.0f} completion "
          f"tokens): {flops / 1e6:.1f} MFLOP; floor at the all-thread peak {1e3 * flops / peak:.2f} ms, at the "
          f"1-thread peak {1e3 * flops / peak1:.2f} ms")
    print(f"  toyrlhf quiet: {flops / (quiet / 1e3) / 1e9:.1f} dense-equivalent GFLOP/s = "
          f"{100 * flops / (quiet / 1e3) / peak:.0f}% of the all-thread peak (the fast path does fewer FLOPs "
          f"than the dense count: the one-hot first layer is a table lookup, see toyrlhf/kernels/)")
    if not args.no_hog:
        print(f"  toyrlhf under a CPU hog / quiet: {results[('CPU hog', 'toyrlhf')]['total'] / quiet:.2f}x")
    if not args.no_compile:
        (imp_c, first_c, second_c), (imp_w, first_w, second_w) = bench_compile()
        print(f"\nnumba compile, empty cache (subprocess): import {imp_c:.2f} s, first step {first_c:.2f} s, "
              f"second {1e3 * second_c:.1f} ms")
        print(f"numba warm cache: import {imp_w:.2f} s, first step {first_w:.2f} s, second {1e3 * second_w:.1f} ms")
    if args.cli:
        for k, v in bench_cli().items():
            print(f"toyrlhf run grpo --steps 500, {k}: {v:.2f} s")


@contextmanager
def _null():
    yield


if __name__ == "__main__":
    main()
