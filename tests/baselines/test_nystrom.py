"""Nyströmformer: the m = N limit, uneven segment means, the per-matrix pseudo-inverse, the conv skip."""
from __future__ import annotations

import pytest
import torch

import baselines as B
from baseline_cases import DIM, HEADS, assert_close, reference
from baselines import naive
from baselines.nystrom import iterative_pinv, nystrom_attention, segment_means, sequence_conv

N = 48


def _limit_module(**kw) -> B.NystromAttention:
    torch.manual_seed(0)
    return B.NystromAttention(DIM, HEADS, num_landmarks=N, conv_kernel=0, **kw).double().eval()


@pytest.mark.parametrize("kw", [{"pinv": "exact"}, {"pinv_iters": 30}, {"pinv_iters": 50}],
                         ids=["exact-pinv", "30-iterations", "50-iterations"])
def test_m_equal_n_equals_softmax(kw):
    """With one token per segment, k1 = k2 = k3 = A and A A⁺ A = A: exact with an exact pinv,
    ~1e-12 with enough iterations (conv skip off)."""
    m = _limit_module(**kw)
    x = torch.randn(2, N, DIM, dtype=torch.float64)
    assert_close("Nystrom m=N vs softmax", m(x), reference(m, x), 1e-9)


def test_six_iterations_are_not_enough_at_m_equal_n():
    """The paper's 6 iterations leave a visible error in the limit (4–9e-2, docs/methods.md); more fix it."""
    x = torch.randn(2, N, DIM, dtype=torch.float64)
    err6 = (_limit_module(pinv_iters=6)(x) - reference(_limit_module(), x)).norm()
    err30 = (_limit_module(pinv_iters=30)(x) - reference(_limit_module(), x)).norm()
    assert err6 > 1e3 * err30


@pytest.mark.parametrize("n,m", [(48, 8), (70, 8), (197, 64), (10, 10), (10, 1)],
                         ids=lambda v: str(v))
def test_segment_means_are_uneven_segments(n, m):
    """Segments of ⌊n/m⌋+1 tokens first, then ⌊n/m⌋ (never zero padding), each landmark their mean."""
    x = torch.randn(2, HEADS, n, 16, dtype=torch.float64)
    got = segment_means(x, m)
    segments = torch.tensor_split(x, m, dim=-2)
    sizes = [s.shape[-2] for s in segments]
    assert sorted(set(sizes)) == sorted({n // m, -(-n // m)}) and sum(sizes) == n
    assert_close("segment means", got, torch.stack([s.mean(-2) for s in segments], dim=-2), 1e-15)


def test_iterative_pinv_satisfies_penrose_and_is_per_matrix():
    torch.manual_seed(0)
    A = torch.softmax(torch.randn(4, 16, 16, dtype=torch.float64) * torch.tensor([0.5, 1, 2, 4.])[:, None, None], -1)
    Z = iterative_pinv(A, 40)
    assert (A @ Z @ A - A).norm() / A.norm() < 1e-10
    for i in range(4):  # the initialisation is per matrix: a matrix's result does not depend on its batch
        assert_close(f"pinv of matrix {i} alone", iterative_pinv(A[i:i + 1], 40)[0], Z[i], 1e-13)


def test_core_matches_float64_reference_uneven():
    q, k, v = torch.randn(3, 2, HEADS, 70, 16, dtype=torch.float64).unbind(0)
    assert_close("nystrom_attention (exact pinv)",
                 nystrom_attention(q, k, v, num_landmarks=8, scale=0.25, pinv="exact"),
                 naive.naive_nystrom_attention(q, k, v, 8, scale=0.25), 1e-10)


def test_conv_skip_is_a_depthwise_sequence_conv_of_v():
    torch.manual_seed(0)
    m = B.NystromAttention(DIM, HEADS, num_landmarks=8, conv_kernel=5).double().eval()
    assert m.conv.weight.shape == (HEADS, 1, 5, 1)
    off = B.NystromAttention(DIM, HEADS, num_landmarks=8, conv_kernel=0).double().eval()
    off.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("conv")})
    x = torch.randn(1, 40, DIM, dtype=torch.float64)
    assert not torch.allclose(m(x), off(x))
    with torch.no_grad():
        m.conv.weight.zero_()
    assert_close("zero conv == no conv", m(x), off(x), 1e-15)


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="num_landmarks=64 exceeds N=40 tokens"):
        B.NystromAttention(DIM, HEADS, num_landmarks=64)(torch.randn(1, 40, DIM))
    with pytest.raises(ValueError, match="conv_kernel=4 must be 0 \\(off\\) or odd"):
        B.NystromAttention(DIM, HEADS, conv_kernel=4)
    with pytest.raises(ValueError, match="pinv='svd' is not supported; accepted: 'iterative', 'exact'"):
        B.NystromAttention(DIM, HEADS, pinv="svd")


@pytest.mark.parametrize("n", [40, 130], ids=lambda n: f"N{n}")  # 130: the weight gradient's last block is partial
def test_sequence_conv_equals_the_module_conv_and_its_gradients(n):
    """The fast conv (channels-last, custom weight gradient) against nn.Conv2d(h, h, (K, 1), groups=h), float64."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(HEADS, HEADS, (5, 1), padding=(2, 0), groups=HEADS, bias=False).double()
    qkv = torch.randn(2, n, 3 * DIM, dtype=torch.float64, requires_grad=True)
    v = qkv[..., 2 * DIM:].reshape(2, n, HEADS, DIM // HEADS).transpose(1, 2)  # [B, h, N, d] as the shell makes it
    w = torch.randn_like(v)
    got = sequence_conv(v, conv.weight)
    ref = conv(v)
    assert_close("sequence_conv forward", got, ref, 1e-15)
    g_got = torch.autograd.grad((got * w).sum(), (qkv, conv.weight))
    g_ref = torch.autograd.grad((ref * w).sum(), (qkv, conv.weight))
    assert_close("sequence_conv input gradient", g_got[0], g_ref[0], 1e-13)
    assert_close("sequence_conv weight gradient", g_got[1], g_ref[1], 1e-13)
