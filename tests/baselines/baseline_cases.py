"""Shared cases and a named relative-error check for the baselines tests (not a test module).

Named ``baseline_cases`` (not ``conftest``/``helpers``) because pytest's default import mode puts each test
folder on ``sys.path``; a distinctive name cannot clash with other test folders.
"""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from attnbench.registry import get_attention, list_attentions
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


# Every registered attention whose class lives in baselines/, with its registry defaults under the test_hparams of its
# class metadata (small m/k so that N=64..128 exercises the method), plus cases that are no registry entry.
EXTRA_CASES = {"softmax-sdpa-math": ("softmax", {"backend": "math"})}  # SDPA forced onto its math kernel
CASES = [n for n in list_attentions() if get_attention(n).cls.__module__.startswith("baselines.")] + list(EXTRA_CASES)


def case_hparams(name: str, N: int) -> tuple[type[nn.Module], dict[str, Any]]:
    """(class, hyper-parameters for a sequence of N tokens) of case ``name``."""
    entry = _entry(name)
    return entry.cls, entry.hparams({**entry.test_hparams, **EXTRA_CASES.get(name, (name, {}))[1]}, seq_len=N)


def _entry(name: str):
    return get_attention(EXTRA_CASES.get(name, (name, {}))[0])


def build(name: str, N: int, *, seed: int = 0, **over: Any) -> nn.Module:
    """The module of case ``name`` for N tokens, seeded, in eval mode (dropout off, Performer frozen); skips where
    the attention cannot run on this machine's CPU (its ``not_supported_reason``)."""
    cls, hp = case_hparams(name, N)
    hp = {**hp, **over}
    reason = _entry(name).not_supported_reason(device="cpu", seq_len=N, hparams=hp)
    if reason:
        pytest.skip(reason)
    torch.manual_seed(seed)
    return cls(DIM, HEADS, **hp).eval()


def cpu_backends() -> list[str]:
    q = torch.zeros(1, 1, 8, 8)
    return runnable_sdpa_backends(q, q, q)


def reference(module: nn.Module, x: Tensor) -> Tensor:
    """Float64 naive forward of a softmax-family module (its exact target)."""
    return naive.naive_module_forward(module, x, lambda q, k, v: naive.naive_softmax_attention(q, k, v))
