"""Measure each baseline: its error in its limit, and the forward latency and CPU peak memory of one layer.

Not a test (pytest does not collect it); run ``python tests/baselines/measure_baselines.py [--ns 1024 4096]``.
Latency: ``torch.utils.benchmark.Timer.blocked_autorange`` median (1 thread, the Timer's default), forward under
``inference_mode``, batch 1, fp32. Peak memory: each cell in a fresh subprocess, growth of ``VmHWM`` over the
baseline after the module and input are built (reset by writing 5 to ``/proc/self/clear_refs``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
from torch import nn
from torch.utils import benchmark

import baselines as B
from baselines import naive
from baselines.performer import favor_attention, gaussian_orthogonal_random_matrix

DIM, HEADS = 192, 3
CELLS = {  # name -> (class, hyper-parameters; Linformer's seq_len is filled in per N)
    "softmax (sdpa auto)": (B.SoftmaxAttention, {}),
    "softmax (sdpa math)": (B.SoftmaxAttention, {"backend": "math"}),
    "softmax (explicit)": (B.SoftmaxAttention, {"impl": "explicit"}),
    "performer m=256": (B.PerformerAttention, {"nb_features": 256}),
    "linformer k=256": (B.LinformerAttention, {"k": 256}),
    "nystrom m=64": (B.NystromAttention, {"num_landmarks": 64}),
    "linear elu+1": (B.LinearAttention, {}),
    "cosformer": (B.CosformerAttention, {}),
}


def build(name: str, N: int) -> nn.Module:
    cls, hp = CELLS[name]
    if cls is B.LinformerAttention:
        hp = {**hp, "seq_len": N}
    torch.manual_seed(0)
    return cls(DIM, HEADS, **hp).eval()


def rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def limit_errors(N: int = 256) -> dict[str, float]:
    """Relative error of each mechanism in its limit (float64 unless said)."""
    torch.manual_seed(0)
    out = {}
    x32 = torch.randn(2, N, DIM)
    for name in ("softmax (sdpa auto)", "softmax (sdpa math)", "softmax (explicit)"):
        m = build(name, N)
        ref = naive.naive_module_forward(m, x32, naive.naive_softmax_attention)
        out[f"{name}, fp32 vs float64"] = rel(m(x32), ref)
    x = x32.double()
    m = B.LinformerAttention(DIM, HEADS, seq_len=N, k=N - 1).double().eval()
    m.E, m.F = nn.Parameter(torch.eye(N, dtype=torch.float64)), nn.Parameter(torch.eye(N, dtype=torch.float64))
    out["linformer E=F=I, k=N"] = rel(m(x), naive.naive_module_forward(m, x, naive.naive_softmax_attention))
    for label, kw in (("exact pinv", {"pinv": "exact"}), ("6 iters", {}), ("30 iters", {"pinv_iters": 30})):
        m = B.NystromAttention(DIM, HEADS, num_landmarks=N, conv_kernel=0, **kw).double().eval()
        out[f"nystrom m=N, {label}"] = rel(m(x), naive.naive_module_forward(m, x, naive.naive_softmax_attention))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 256, 64, generator=g, dtype=torch.float64) * s for s in (0.25, 0.25, 1.))
    exact = naive.naive_softmax_attention(q, k, v)
    for mf in (16, 256, 4096):
        W = gaussian_orthogonal_random_matrix(mf, 64, generator=torch.Generator().manual_seed(1)).double()
        out[f"performer m={mf} vs softmax (q,k~N(0,0.25^2), d=64)"] = rel(favor_attention(q, k, v, W, eps=0.), exact)
    q, k, v = torch.randn(3, 2, HEADS, N, 64, dtype=torch.float64).unbind(0)
    out["linear right vs quadratic"] = rel(B.linear.linear_attention(q, k, v), naive.naive_linear_attention(q, k, v))
    out["cosformer right vs quadratic"] = rel(B.cosformer.cosformer_attention(q, k, v),
                                              naive.naive_cosformer_attention(q, k, v))
    return out


def latency_ms(name: str, N: int) -> tuple[float, float]:
    m, x = build(name, N), torch.randn(1, N, DIM)
    with torch.inference_mode():
        m(x)  # warm-up
        t = benchmark.Timer("m(x)", globals={"m": m, "x": x}, num_threads=1).blocked_autorange(min_run_time=1.0)
    return t.median * 1e3, t.iqr * 1e3


def _vmhwm() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


def peak_child(name: str, N: int) -> None:
    """In a fresh process: peak RSS growth of one forward over the baseline after build."""
    torch.set_num_threads(1)
    m, x = build(name, N), torch.randn(1, N, DIM)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _vmhwm()
    with torch.inference_mode():
        m(x)
    print(json.dumps({"peak": _vmhwm() - base, "backend": getattr(m, "last_backend", None)}))


def peak_bytes(name: str, N: int) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", name, str(N)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ns", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--child", nargs=2)
    a = p.parse_args()
    if a.child:
        return peak_child(a.child[0], int(a.child[1]))
    print(f"torch {torch.__version__}, threads=1, dim={DIM}, heads={HEADS}, batch 1, fp32")
    print("\n## limit errors")
    for k, v in limit_errors().items():
        print(f"{k:60s} {v:.2e}")
    print("\n## forward latency (median, IQR) and peak RSS growth")
    for N in a.ns:
        for name in CELLS:
            med, iqr = latency_ms(name, N)
            pk = peak_bytes(name, N)
            cls, hp = CELLS[name]
            gmacs = cls.macs(1, N, DIM, HEADS, **hp) / 1e9
            print(f"N={N:5d} {name:22s} {gmacs:6.3f} GMACs {med:9.2f} ms (IQR {iqr:6.2f})  "
                  f"peak {pk['peak'] / 2**20:8.1f} MiB"
                  + (f"  [{pk['backend']}]" if pk["backend"] else ""), flush=True)


if __name__ == "__main__":
    main()
