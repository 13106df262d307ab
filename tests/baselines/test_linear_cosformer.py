"""elu+1 linear attention and cosFormer: the right-product form equals the quadratic form."""
from __future__ import annotations

import pytest
import torch

import baselines as B
from baseline_cases import DIM, assert_close
from baselines import naive
from baselines.cosformer import cosformer_attention
from baselines.linear import linear_attention

CORES = {
    "linear": (linear_attention, naive.naive_linear_attention, B.LinearAttention),
    "cosformer": (cosformer_attention, naive.naive_cosformer_attention, B.CosformerAttention),
}


@pytest.mark.parametrize("name", CORES)
@pytest.mark.parametrize("n", [3, 37, 128])
def test_right_product_equals_quadratic_form_with_gradients(name, n):
    fast, slow, _ = CORES[name]
    q, k, v = (t.requires_grad_() for t in torch.randn(3, 2, 3, n, 16, dtype=torch.float64).unbind(0))
    o, ref = fast(q, k, v), slow(q, k, v)
    assert_close(f"{name} output", o, ref, 1e-12)
    g = torch.randn_like(o)
    grads = torch.autograd.grad(o, (q, k, v), g)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    for t, a, b in zip("qkv", grads, ref_grads):
        assert_close(f"{name} d{t}", a, b, 1e-11)


@pytest.mark.parametrize("name", CORES)
def test_module_matches_quadratic_reference(name):
    fast, slow, cls = CORES[name]
    torch.manual_seed(0)
    m = cls(DIM, 3).double().eval()
    x = torch.randn(2, 50, DIM, dtype=torch.float64)
    assert_close(f"{name} module", m(x), naive.naive_module_forward(m, x, slow), 1e-12)


def test_cosformer_reweighting_is_local():
    """cos(π/2·(i−j)/N): weight 1 on the diagonal, falling to cos(π/2·(N−1)/N) ≈ 0 at the far end."""
    n = 64
    q = k = torch.ones(1, 1, n, 1, dtype=torch.float64)
    v = torch.eye(n, dtype=torch.float64)[None, None]  # output row i = row i of the normalised weights
    w = cosformer_attention(q, k, v)[0, 0]
    assert w.argmax(dim=-1).equal(torch.arange(n))
    assert w[0, -1] < 0.03 * w[0, 0]
