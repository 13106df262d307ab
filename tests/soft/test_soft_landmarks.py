"""The landmark samplers against independent, loop-written definitions on rectangular grids.

The float64 layer reference reuses the layer's own sampler, so the spatial layout (raster token order, H vs W,
padding) is pinned here instead: token t sits at row t // W, column t % W.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from soft.grid import landmark_grid
from soft.landmarks import ConvLandmarks, PoolLandmarks


def _ln_gelu(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    return F.gelu(F.layer_norm(x, x.shape[-1:], norm.weight.double(), norm.bias.double(), norm.eps))


def _q(B=2, h=3, H=6, W=10, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, h, H * W, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("H,W,s,policy", [(8, 12, 4, "error"), (6, 10, 2, "error"), (7, 10, 3, "pad")],
                         ids=["8x12-s4", "6x10-s2", "7x10-s3-pad"])
def test_conv_sampler_matches_loops(H, W, s, policy):
    d = 4
    q = _q(H=H, W=W, d=d)
    sampler = ConvLandmarks(d, s, grid_policy=policy).double()
    torch.nn.init.normal_(sampler.conv.weight)
    torch.nn.init.normal_(sampler.norm.weight), torch.nn.init.normal_(sampler.norm.bias)
    gh, gw = math.ceil(H / s), math.ceil(W / s)
    w = sampler.conv.weight.double()  # [d_out, d_in, s, s]
    ref = torch.zeros(q.shape[0], q.shape[1], gh * gw, d, dtype=torch.float64)
    for i in range(gh):
        for j in range(gw):
            for a in range(s):
                for b in range(s):
                    r, c = min(i * s + a, H - 1), min(j * s + b, W - 1)  # replicate padding at the far edges
                    ref[:, :, i * gw + j] += q[:, :, r * W + c] @ w[:, :, a, b].T
    out = sampler(q, (H, W))
    assert out.shape == ref.shape
    torch.testing.assert_close(out, _ln_gelu(ref, sampler.norm), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("H,W,m", [(6, 16, 12), (8, 8, 16), (12, 6, 6)], ids=["6x16-m12", "8x8-m16", "12x6-m6"])
def test_pool_sampler_is_the_mean_of_each_cell(H, W, m):
    d = 4
    q = _q(H=H, W=W, d=d, seed=1)
    sampler = PoolLandmarks(d, m).double()
    torch.nn.init.normal_(sampler.norm.weight), torch.nn.init.normal_(sampler.norm.bias)
    gh, gw = landmark_grid(m, (H, W))
    assert gh * gw == m and (gh <= gw) == (H <= W)  # the long side of the landmark grid follows the token grid
    ref = torch.empty(q.shape[0], q.shape[1], m, d, dtype=torch.float64)
    for i in range(gh):
        rows = range(i * H // gh, -(-(i + 1) * H // gh))
        for j in range(gw):
            cols = range(j * W // gw, -(-(j + 1) * W // gw))
            idx = [r * W + c for r in rows for c in cols]
            ref[:, :, i * gw + j] = q[:, :, idx].mean(dim=2)
    torch.testing.assert_close(sampler(q, (H, W)), _ln_gelu(ref, sampler.norm), rtol=1e-12, atol=1e-12)
