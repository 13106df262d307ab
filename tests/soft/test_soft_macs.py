"""Closed-form MACs == fvcore (matmul-class ops) == FlopCounterMode / 2."""
from __future__ import annotations

import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch.utils.flop_counter import FlopCounterMode

from soft import SoftAttention, soft_attention_mac_breakdown, soft_attention_macs

# fvcore's matmul-class handles (one MAC counted as one flop); its norm/pool/upsample handles are elementwise
MATMUL_OPS = {"addmm", "bmm", "conv", "einsum", "matmul", "mm", "linear"}

CONFIGS = {
    "pool49": (2, 256, None, dict()),
    "pool48-rect": (1, 12 * 20, (12, 20), dict(landmarks=48)),
    "conv-s4-k5": (2, 256, None, dict(sampler="conv", sr_ratio=4, conv_kernel=5)),
    "conv-pad": (1, 10 * 14, (10, 14), dict(sampler="conv", sr_ratio=4, grid_policy="pad")),
    "soft++": (2, 256, None, dict(symmetric_norm=True)),
    "soft++-project-variant": (2, 256, None, dict(symmetric_norm=True, newton_variant="soft")),
    "conv-auto-32x32-pad": (1, 1024, None, dict(sampler="conv", seq_len=1024, conv_kernel=9)),
    "conv-auto-rect": (1, 32 * 64, (32, 64), dict(sampler="conv", seq_len=2048, conv_kernel=9, symmetric_norm=True)),
    "no-local-conv": (2, 256, None, dict(conv_kernel=0)),
    "T7": (1, 256, None, dict(newton_iters=7)),
    "identity": (1, 64, None, dict(sampler="identity")),
}


def fvcore_matmul_macs(module: torch.nn.Module, *inputs) -> int:
    fa = FlopCountAnalysis(module, inputs)
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    return sum(v for k, v in fa.by_operator().items() if k in MATMUL_OPS)


class _WithHW(torch.nn.Module):
    def __init__(self, attn, hw):
        super().__init__()
        self.attn, self.hw = attn, hw

    def forward(self, x):
        return self.attn(x, hw=self.hw)


@pytest.mark.parametrize("B,N,hw,kw", CONFIGS.values(), ids=CONFIGS.keys())
def test_formula_equals_fvcore_and_flop_counter(B, N, hw, kw):
    layer = SoftAttention(64, 2, **kw).eval()
    x = torch.randn(B, N, 64)
    want = soft_attention_macs(B, N, 64, 2, hw, **kw)
    with torch.no_grad():
        got_fvcore = fvcore_matmul_macs(_WithHW(layer, hw), x)
        with FlopCounterMode(display=False) as counter:
            layer(x, hw=hw)
    assert got_fvcore == want
    assert counter.get_total_flops() == 2 * want


def test_fvcore_sees_the_newton_matmuls():
    x = torch.randn(1, 256, 64)
    with torch.no_grad():
        m20 = fvcore_matmul_macs(SoftAttention(64, 2, newton_iters=20).eval(), x)
        m0 = fvcore_matmul_macs(SoftAttention(64, 2, newton_iters=0).eval(), x)
    assert m20 - m0 == soft_attention_mac_breakdown(1, 256, 64, 2)["newton"] == 2 * 20 * 2 * 49 ** 3


def test_track_residual_adds_one_m_cubed_matmul():
    x = torch.randn(1, 256, 64)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        SoftAttention(64, 2, track_residual=True)(x)
    assert counter.get_total_flops() == 2 * soft_attention_macs(1, 256, 64, 2, track_residual=True)
    assert soft_attention_macs(1, 256, 64, 2, track_residual=True) - soft_attention_macs(1, 256, 64, 2) == 2 * 49 ** 3


def test_soft_norm_start_value_costs_one_m_cubed_matmul():
    base = soft_attention_mac_breakdown(1, 256, 64, 2, symmetric_norm=True, newton_variant="soft")["newton"]
    assert soft_attention_mac_breakdown(1, 256, 64, 2, symmetric_norm=True)["newton"] - base == 2 * 49 ** 3


def test_conv_stride_defaults_to_the_layer_built_for_n():
    # without seq_len the formula assumes a layer built for this N, as the harness builds one per N
    for n, m, s in ((1024, 49, 5), (4096, 49, 10), (16384, 49, 19)):
        parts = soft_attention_mac_breakdown(1, n, 192, 3, sampler="conv")
        assert parts == soft_attention_mac_breakdown(1, n, 192, 3, sampler="conv", seq_len=n)
        assert parts["sampler"] == 3 * m * 64 * 64 * s * s


def test_linear_in_n_at_fixed_m():
    macs = [soft_attention_macs(1, n, 192, 3) for n in (1024, 4096, 16384)]
    h, d, m, T = 3, 64, 49, 20
    fixed = h * 2 * T * m ** 3 + h * m * m * d  # Newton + landmark kernel A: independent of N
    slopes = [(b - a) / (nb - na) for a, b, na, nb in zip(macs, macs[1:], (1024, 4096), (4096, 16384))]
    assert slopes[0] == slopes[1]  # exactly affine in N
    assert macs[0] - 1024 * slopes[0] == fixed


def test_unknown_hparam_raises():
    with pytest.raises(ValueError, match="unknown SoftAttention hparams"):
        soft_attention_macs(1, 256, 64, 2, landmark=49)
