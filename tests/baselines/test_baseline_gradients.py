"""Every fast core's gradients equal its float64 reference's (style §3: output *and* every gradient).

Softmax (module dx) and linear/cosFormer (dq, dk, dv) are checked in their own files; here FAVOR+, Linformer and
Nyström, in float64 so that the tolerances are tight.
"""
from __future__ import annotations

import pytest
import torch

import baselines._common

from baseline_cases import assert_close
from baselines import naive
from baselines.linformer import linformer_attention
from baselines.nystrom import nystrom_attention
from baselines.performer import favor_attention, gaussian_orthogonal_random_matrix

N, d, h = 40, 16, 2
_W = gaussian_orthogonal_random_matrix(32, d, generator=torch.Generator().manual_seed(1)).double()
_E, _F = torch.randn(2, 8, N, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).unbind(0)

CORES = {
    # name: (fast(q, k, v, *extra), reference(q, k, v, *extra), extra tensors that also get gradients, tolerance)
    "performer": (lambda q, k, v: favor_attention(q, k, v, _W, eps=0.),
                  lambda q, k, v: naive.naive_favor_attention(q, k, v, _W), (), 1e-10),
    "linformer": (lambda q, k, v, E, F: linformer_attention(q, k, v, E, F, scale=d ** -0.5),
                  lambda q, k, v, E, F: naive.naive_linformer_attention(q, k, v, E, F), (_E, _F), 1e-11),
    "nystrom-exact": (lambda q, k, v: nystrom_attention(q, k, v, num_landmarks=6, scale=d ** -0.5, pinv="exact"),
                      lambda q, k, v: naive.naive_nystrom_attention(q, k, v, 6), (), 1e-9),
    "nystrom-40-iterations": (lambda q, k, v: nystrom_attention(q, k, v, num_landmarks=6, scale=d ** -0.5,
                                                                pinv_iters=40),
                              lambda q, k, v: naive.naive_nystrom_attention(q, k, v, 6), (), 1e-8),
}


# Each core's tiles are [rows, per_row]: FAVOR+'s features (m = 32), Linformer's scores (k = 8), Nyström's (m = 6).
PER_ROW = {"performer": 32, "linformer": 8, "nystrom-exact": 6, "nystrom-40-iterations": 6}
B = 3


@pytest.mark.parametrize("tiling", ["one-tile", "per-head", "per-head-kept", "all-heads"])
@pytest.mark.parametrize("name", CORES)
def test_gradients_match_float64_reference(name, tiling, monkeypatch):
    """``per-head``: each (batch, head) in row tiles of 6 to 25 rows (the last one partial), ``all-heads``: row tiles
    of 33 over all batches and heads; both keep nothing for the backward, as at large N, and ``per-head-kept`` keeps
    every tile's temporaries, as at middle N. The keys grow along the sequence, so that FAVOR+'s running key max
    rises from tile to tile."""
    fast, ref_fn, extra, tol = CORES[name]
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, h, N, d, dtype=torch.float64, generator=g) for _ in range(3))
    if tiling != "one-tile":
        per_row = PER_ROW[name]
        monkeypatch.setattr(baselines._common, "TILE_ELEMS", 200 if tiling.startswith("per-head") else 200 * per_row)
        if tiling != "per-head-kept":
            monkeypatch.setattr(baselines._common, "KEEP_ELEMS", 0)
        ts = baselines._common.tiles(B, h, N, per_row)
        assert len(ts) > B * h if tiling.startswith("per-head") else (len(ts) == 2 and ts[0][1] == slice(None))
        assert baselines._common.keeps(B, h, N, per_row) == (tiling == "per-head-kept")
        k = k * torch.linspace(0.2, 1.5, N, dtype=torch.float64)[:, None]
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    extra = tuple(t.clone().requires_grad_() for t in extra)
    inputs = (q, k, v, *extra)
    o, ref = fast(*inputs), ref_fn(*inputs)
    assert_close(f"{name} output", o, ref, tol)
    go = torch.randn(o.shape, dtype=torch.float64, generator=g)
    for t, a, b in zip("qkvEF", torch.autograd.grad(o, inputs, go), torch.autograd.grad(ref, inputs, go)):
        assert_close(f"{name} d{t}", a, b, tol * 10)
