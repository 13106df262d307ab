"""Shared cases and a named relative-error check for the baselines tests (not a test module).

Named ``baseline_cases`` (not ``conftest``/``helpers``) because pytest's default import mode puts each test
folder on ``sys.path``; a distinctive name cannot clash with other test folders.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

import baselines as B
from baselines import naive
from baselines.softmax import runnable_sdpa_backends

DIM, HEADS = 48, 3  # head width 16: small and fast, still multi-head


def rel_err(got: Tensor, ref: Tensor) -> float:
    """‖got − ref‖ / ‖ref‖ in float64."""
    got, ref = got.detach().double(), ref.detach().double()
    return ((got - ref).norm() / ref.norm()).item()


def assert_close(name: str, got: Tensor, ref: Tensor, tol: float) -> None:
    """Fail with the quantity's name and its relative error when it exceeds ``tol``."""
    assert got.shape == ref.shape, f"{name}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    err = rel_err(got, ref)
    assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.0e}"


# name -> (class, hyper-parameters for a sequence of N tokens); small m/k so that N=64..128 exercises the method.
def case_hparams(name: str, N: int) -> tuple[type[nn.Module], dict[str, Any]]:
    return {
        "softmax-sdpa": (B.SoftmaxAttention, {}),
        "softmax-sdpa-math": (B.SoftmaxAttention, {"backend": "math"}),
        "softmax-explicit": (B.SoftmaxAttention, {"impl": "explicit"}),
        "performer": (B.PerformerAttention, {"nb_features": 32}),
        "linformer": (B.LinformerAttention, {"seq_len": N, "k": 16}),
        "nystrom": (B.NystromAttention, {"num_landmarks": 8, "conv_kernel": 5}),
        "linear": (B.LinearAttention, {}),
        "cosformer": (B.CosformerAttention, {}),
    }[name]


CASES = ["softmax-sdpa", "softmax-sdpa-math", "softmax-explicit", "performer", "linformer", "nystrom", "linear",
         "cosformer"]

# The MAC formula of each class.
MACS = {B.SoftmaxAttention: B.softmax_macs, B.PerformerAttention: B.performer_macs,
        B.LinformerAttention: B.linformer_macs, B.NystromAttention: B.nystrom_macs,
        B.LinearAttention: B.linear_macs, B.CosformerAttention: B.cosformer_macs}


def build(name: str, N: int, *, seed: int = 0, **over: Any) -> nn.Module:
    """The module of case ``name`` for N tokens, seeded, in eval mode (dropout off, Performer frozen)."""
    cls, hp = case_hparams(name, N)
    torch.manual_seed(seed)
    return cls(DIM, HEADS, **{**hp, **over}).eval()


def cpu_backends() -> list[str]:
    q = torch.zeros(1, 1, 8, 8)
    return runnable_sdpa_backends(q, q, q)


def reference(module: nn.Module, x: Tensor) -> Tensor:
    """Float64 naive forward of a softmax-family module (its exact target)."""
    return naive.naive_module_forward(module, x, lambda q, k, v: naive.naive_softmax_attention(q, k, v))
