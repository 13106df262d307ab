"""Linformer: the k = N identity limit, the fixed-N contract, sharing modes, the zero-padding equivalence."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import baselines as B
from baseline_cases import DIM, HEADS, assert_close, reference
from baselines import naive
from baselines.linformer import linformer_attention

N = 32


def _limit_module(P: torch.Tensor, sharing: str = "headwise") -> B.LinformerAttention:
    """A module whose E = F = P, an N x N matrix: k = N, which the constructor refuses (it saves nothing), so the
    module is built with k = N - 1 and its projections are then replaced (forward reads k from their shape)."""
    torch.manual_seed(0)
    m = B.LinformerAttention(DIM, HEADS, seq_len=N, k=N - 1, sharing=sharing).double().eval()
    m.E = nn.Parameter(P.clone())
    if m.F is not None:
        m.F = nn.Parameter(P.clone())
    return m


@pytest.mark.parametrize("sharing", ["headwise", "kv"])
def test_identity_projections_equal_softmax(sharing):
    """E = F = I_N with k = N reproduces softmax (measured 0.0)."""
    m = _limit_module(torch.eye(N, dtype=torch.float64), sharing)
    x = torch.randn(2, N, DIM, dtype=torch.float64)
    assert_close("Linformer E=F=I vs softmax", m(x), reference(m, x), 1e-13)


def test_shared_permutation_equals_softmax():
    """Any permutation applied to both K and V only reorders the keys: softmax is unchanged (2e-16)."""
    m = _limit_module(torch.eye(N, dtype=torch.float64)[torch.randperm(N)])
    x = torch.randn(2, N, DIM, dtype=torch.float64)
    assert_close("Linformer E=F=permutation vs softmax", m(x), reference(m, x), 1e-13)


def test_core_matches_float64_reference():
    q, k, v = torch.randn(3, 2, HEADS, N, 16, dtype=torch.float64).unbind(0)
    E, F = torch.randn(2, 8, N, dtype=torch.float64).unbind(0)
    assert_close("linformer_attention", linformer_attention(q, k, v, E, F, scale=0.25),
                 naive.naive_linformer_attention(q, k, v, E, F, scale=0.25), 1e-13)


def test_zero_padding_equals_sliced_projection():
    """Keys/values zero-padded to N give the result of E, F restricted to the first n' columns."""
    n_short = 20
    q, k, v = torch.randn(3, 1, HEADS, n_short, 16, dtype=torch.float64).unbind(0)
    E, F = torch.randn(2, 8, N, dtype=torch.float64).unbind(0)
    pad = torch.zeros(1, HEADS, N - n_short, 16, dtype=torch.float64)
    padded = linformer_attention(q, torch.cat([k, pad], -2), torch.cat([v, pad], -2), E, F, scale=0.25)
    sliced = linformer_attention(q, k, v, E[:, :n_short], F[:, :n_short], scale=0.25)
    assert_close("padded vs sliced", padded, sliced, 1e-13)


def test_other_sequence_length_names_the_built_one():
    m = B.LinformerAttention(DIM, HEADS, seq_len=N, k=8)
    with pytest.raises(ValueError, match=r"built for seq_len=32 tokens, got N=31"):
        m(torch.randn(1, N - 1, DIM))


@pytest.mark.parametrize("k", [N, N + 5])
def test_k_not_below_seq_len_is_refused(k):
    with pytest.raises(ValueError, match=rf"k={k} must satisfy 1 <= k < seq_len={N}.*saves nothing"):
        B.LinformerAttention(DIM, HEADS, seq_len=N, k=k)


def test_seq_len_is_required():
    with pytest.raises(TypeError, match="seq_len"):
        B.LinformerAttention(DIM, HEADS)


def test_sharing_modes():
    headwise = B.LinformerAttention(DIM, HEADS, seq_len=N, k=8, sharing="headwise")
    kv = B.LinformerAttention(DIM, HEADS, seq_len=N, k=8, sharing="kv")
    assert headwise.F is not None and not torch.equal(headwise.E, headwise.F)
    assert kv.F is None  # E projects both K and V
    shared = nn.Parameter(torch.randn(8, N))
    layers = nn.ModuleList(B.LinformerAttention(DIM, HEADS, seq_len=N, k=8, sharing="layerwise", shared_proj=shared)
                           for _ in range(3))
    seq_projs = [p for name, p in layers.named_parameters() if name.endswith(".E")]
    assert len(seq_projs) == 1 and seq_projs[0] is shared  # one E for every layer, K, V and head
    own = B.LinformerAttention(DIM, HEADS, seq_len=N, k=8, sharing="layerwise")
    assert own.F is None and own.E.shape == (8, N)
    with pytest.raises(ValueError, match=r"shared_proj must have shape \(k, seq_len\) = \(8, 32\)"):
        B.LinformerAttention(DIM, HEADS, seq_len=N, k=8, sharing="layerwise",
                             shared_proj=nn.Parameter(torch.ones(4, N)))
    with pytest.raises(ValueError, match="only used with sharing='layerwise'"):
        B.LinformerAttention(DIM, HEADS, seq_len=N, k=8, shared_proj=shared)
    with pytest.raises(ValueError, match="sharing='none' is not supported; accepted: 'headwise', 'kv', 'layerwise'"):
        B.LinformerAttention(DIM, HEADS, seq_len=N, k=8, sharing="none")
