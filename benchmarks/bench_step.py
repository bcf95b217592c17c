"""Speed of one GRPO step at the reference configuration, and of `toyrlhf run grpo --steps 500` cold and warm.

Reference configuration (the one measured on this kind of machine before the project began): vocabulary 16, context 4, embedding 16, hidden 128, 16 prompts x G=8,
8 new tokens, one update per rollout (policy forward + frozen reference forward + backward + Adam), k3 KL.
Prints figures and ratios; asserts nothing. With torch installed, the same step in PyTorch eager is timed in the
same process, side by side (torch is not a dependency).

    python benchmarks/bench_step.py            # step timings (+ PyTorch if installed)
    python benchmarks/bench_step.py --cli      # also the whole-process cold / warm `toyrlhf run grpo --steps 500`
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from toyrlhf import tokens as tk
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


def matmul_peak(n=512, reps=20) -> float:
    a, b = np.random.rand(n, n), np.random.rand(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def bench_numpy(steps=300):
    s = GRPOStep()
    for _ in range(20):
        s.update(s.sample())
    t_sample = t_update = 0.0
    n_tok = 0
    for _ in range(steps):
        t0 = time.perf_counter()
        smp = s.sample()
        t1 = time.perf_counter()
        n_tok += s.update(smp)
        t2 = time.perf_counter()
        t_sample += t1 - t0
        t_update += t2 - t1
    return 1000 * t_sample / steps, 1000 * t_update / steps, n_tok / steps


def bench_torch(steps=300):
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    dt = torch.float64
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
        return t1

    for _ in range(20):
        one_step()
    t_sample = t_update = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        t1 = one_step()
        t2 = time.perf_counter()
        t_sample += t1 - t0
        t_update += t2 - t1
    return 1000 * t_sample / steps, 1000 * t_update / steps, torch.__version__, torch.get_num_threads()


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--cli", action="store_true")
    args = ap.parse_args()
    peak = matmul_peak()
    print(f"float64 matmul peak (512x512, NumPy/BLAS): {peak / 1e9:.1f} GFLOP/s")
    sample_ms, update_ms, n_tok = bench_numpy(args.steps)
    total = sample_ms + update_ms
    flops = step_flops(N_PROMPTS * G * T, n_tok)
    print(f"toyrlhf GRPO step (reference config, {N_PROMPTS}x{G} sequences, {T} new tokens, "
          f"{n_tok:.0f} completion tokens): {total:.2f} ms = sampling {sample_ms:.2f} + update {update_ms:.2f}")
    print(f"  {flops / 1e6:.1f} MFLOP per step -> {flops / (total / 1e3) / 1e9:.2f} GFLOP/s, "
          f"{100 * flops / (total / 1e3) / peak:.1f}% of the matmul peak; 500 steps = {total * 0.5:.2f} s")
    tr = bench_torch(args.steps)
    if tr is None:
        print("PyTorch not installed: side-by-side comparison skipped (pip install torch to run it)")
    else:
        ts, tu, ver, nthreads = tr
        print(f"PyTorch {ver} eager, float64, {nthreads} threads: {ts + tu:.2f} ms = sampling {ts:.2f} + update {tu:.2f}")
        print(f"  toyrlhf / PyTorch time ratio: {total / (ts + tu):.2f}  (below 1: toyrlhf is faster)")
    if args.cli:
        for k, v in bench_cli().items():
            print(f"toyrlhf run grpo --steps 500, {k}: {v:.2f} s")


if __name__ == "__main__":
    main()
