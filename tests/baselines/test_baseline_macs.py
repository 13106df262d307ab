"""Each closed-form MAC count equals what real counters measure on the module (docs/methods.md, Counting conventions).

Two counters: ``torch.utils.flop_counter.FlopCounterMode`` (reports 2 x MACs; it has no formula for the CPU flash
SDPA kernel, so SDPA is counted under the MATH backend) and fvcore's ``FlopCountAnalysis`` (MACs; traces with
``torch.jit.trace`` and has no handle for ``aten::scaled_dot_product_attention``). ``FVCORE_UNCOUNTED`` pins the aten
ops each module leaves uncounted in fvcore's trace, the list the harness adds handles for.
"""
from __future__ import annotations

import logging

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import baselines as B
from attnbench.registry import get_attention
from baseline_cases import DIM, HEADS, build, case_hparams
from baselines._common import projection_macs

fvcore_nn = pytest.importorskip("fvcore.nn")

MATMUL_CLASS = {"linear", "matmul", "bmm", "mm", "addmm", "einsum", "conv"}  # fvcore's by_operator keys

# case -> (extra hparams over baseline_cases, aten ops fvcore's trace leaves uncounted)
_ELEMENTWISE_NYSTROM = {"aten::mul", "aten::mean", "aten::softmax", "aten::abs", "aten::sum", "aten::amax",
                        "aten::div", "aten::eye", "aten::sub", "aten::add", "aten::repeat_interleave"}
FVCORE_CASES = {
    "softmax": ({}, {"aten::scaled_dot_product_attention"}),
    "softmax-math": ({}, {"aten::mul", "aten::softmax"}),
    "performer": ({}, {"aten::mul", "aten::mul_", "aten::sum", "aten::div", "aten::amax", "aten::sub_", "aten::exp_",
                       "aten::add_"}),
    "linformer": ({}, {"aten::mul", "aten::softmax"}),
    "nystromformer": ({}, _ELEMENTWISE_NYSTROM),
    "nystromformer-exact-noconv": ({"pinv": "exact", "conv_kernel": 0},
                                   {"aten::mul", "aten::mean", "aten::softmax", "aten::linalg_pinv"}),
    "linear": ({}, {"aten::elu", "aten::add", "aten::sum", "aten::div"}),
    "cosformer": ({}, {"aten::mul", "aten::div", "aten::sin", "aten::cos", "aten::sum", "aten::clamp_min"}),
}


def _case(case: str, N: int):
    name = case.removesuffix("-exact-noconv")
    extra = FVCORE_CASES.get(case, ({}, None))[0]
    cls, hp = case_hparams(name, N)
    return build(name, N, **extra), cls.macs, {**hp, **extra}


# Every registered attention is checked against FlopCounterMode in tests/attnbench/test_registry.py; here the
# settings that are no registry entry.
@pytest.mark.parametrize("N", [64, 70], ids=lambda n: f"N{n}")
@pytest.mark.parametrize("case", ["softmax-sdpa-math", "nystromformer-exact-noconv"])
def test_formula_equals_flop_counter_mode(case, N):
    m, macs, hp = _case(case, N)
    x = torch.randn(2, N, DIM)
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        m(x)
    assert counter.get_total_flops() == 2 * macs(2, N, DIM, HEADS, **hp)


@pytest.mark.parametrize("case", list(FVCORE_CASES))
def test_formula_equals_fvcore_matmul_ops(case):
    N = 70  # uneven Nyström segments
    m, macs, hp = _case(case, N)
    x = torch.randn(2, N, DIM)
    logging.getLogger("fvcore").setLevel(logging.ERROR)  # it logs every skipped op; we assert on them instead
    fa = fvcore_nn.FlopCountAnalysis(m, (x,))
    fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = fa.by_operator()
    counted = sum(v for op, v in by_op.items() if op in MATMUL_CLASS)
    assert counted == fa.total(), f"fvcore counted non-matmul ops: {dict(by_op)}"
    assert set(fa.unsupported_ops()) == FVCORE_CASES[case][1]
    expected = macs(2, N, DIM, HEADS, **hp)
    if case == "softmax":  # the whole attention sits in the one op fvcore cannot see
        assert expected - counted == 2 * 2 * N * N * DIM
    else:
        assert counted == expected


@pytest.mark.parametrize("name,macs,hp,attention_macs", [
    ("softmax", B.softmax_macs, {}, {197: 59.6e6, 785: 946.5e6, 3137: 15115e6}),
    ("performer", B.performer_macs, {"nb_features": 256}, {197: 155.5e6, 785: 619.8e6, 3137: 2477e6}),
    ("linformer", B.linformer_macs, {"k": 256}, {197: 154.9e6, 785: 617.3e6, 3137: 2467e6}),
    ("linear", B.linear_macs, {}, {197: 19.5e6, 785: 77.8e6, 3137: 311e6}),
], ids=["softmax", "performer", "linformer", "linear"])
def test_spec_table_at_vit_scale(name, macs, hp, attention_macs):
    """docs/methods.md, Cost at ViT scale (h=12, d=64, D=768): attention part = formula minus the projections."""
    for n, table in attention_macs.items():
        attention = macs(1, n, 768, 12, **hp) - projection_macs(1, n, 768)
        assert abs(attention - table) <= 1e-3 * table, (name, n, attention, table)  # the table shows 3-4 digits
    assert abs(projection_macs(1, 785, 768) - 1852e6) < 0.5e6


def test_unknown_hyper_parameter_in_formula_raises():
    with pytest.raises(ValueError, match=r"performer_macs: unknown hyper-parameter\(s\) \['landmarks'\]"):
        B.performer_macs(1, 64, DIM, HEADS, landmarks=8)
    # the shell's own arguments and seq_len are accepted by every formula and ignored
    for macs in (B.softmax_macs, B.performer_macs, B.linformer_macs, B.nystrom_macs, B.linear_macs, B.cosformer_macs):
        assert macs(1, 64, DIM, HEADS, seq_len=64, qkv_bias=False, attn_drop=0., proj_drop=0.) == \
            macs(1, 64, DIM, HEADS)


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["softmax-math", "performer", "linformer", "nystromformer", "linear", "cosformer"])
def test_formula_at_benchmark_scale(name):
    """The same equality at the benchmark's layer scale (N=1024, dim 192, 3 heads, default hyper-parameters)."""
    N, dim, heads = 1024, 192, 3
    entry = get_attention(name)
    m = entry.build(dim, heads, seq_len=N).eval()
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, N, dim))
    assert counter.get_total_flops() == 2 * entry.count_macs(1, N, dim, heads)
