"""Shared helpers for the soft/ tests (a plain module: tests/ has no __init__, and the name must not clash)."""
from __future__ import annotations

import torch


def rel_err(name: str, got: torch.Tensor, want: torch.Tensor) -> float:
    """Max-abs error of ``got`` relative to max-abs of ``want`` (float64); ``name`` labels assertion messages."""
    got, want = got.detach().double(), want.detach().double()
    err = ((got - want).abs().max() / want.abs().max().clamp_min(1e-300)).item()
    print(f"{name}: rel err {err:.3e}")
    return err


def gaussian_points(m: int, d: int, spread: float, *, batch: tuple[int, ...] = (), seed: int = 0,
                    dtype=torch.float64) -> torch.Tensor:
    """m points in R^d whose Gaussian kernel exp(-½ dist²) is better conditioned the larger ``spread`` is."""
    g = torch.Generator().manual_seed(seed)
    return (spread * torch.randn(*batch, m, d, generator=g, dtype=torch.float64)).to(dtype)


def spd_with_condition(m: int, kappa: float, *, seed: int = 0, negative: bool = True) -> torch.Tensor:
    """A float64 SPD matrix with condition number ``kappa`` (random eigenvectors: entries of both signs)."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, -torch.log10(torch.tensor(kappa)).item(), m, dtype=torch.float64)
    return (Q * eig) @ Q.T
