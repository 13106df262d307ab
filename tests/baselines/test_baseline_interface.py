"""Every baseline honours the one interface: shapes, dtypes, batch invariance, hw, errors, gradients."""
from __future__ import annotations

import pytest
import torch

import baselines as B
from baseline_cases import CASES, DIM, HEADS, assert_close, build, case_hparams

N = 70  # not a multiple of the Nyström landmark count: uneven segments are exercised everywhere


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("precision", ["fp32", "fp64", "bf16-autocast"])
def test_shape_and_dtype(name, precision):
    m = build(name, N)
    x = torch.randn(2, N, DIM)
    if precision == "fp64":
        m, x = m.double(), x.double()
    if precision == "bf16-autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
        expected = torch.bfloat16  # the output Linear runs in bf16 under autocast
    else:
        y = m(x)
        expected = x.dtype
    assert y.shape == x.shape
    assert y.dtype == expected
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", CASES)
def test_batch_invariance(name):
    """Sample i computed alone equals sample i in a batch; the samples differ in scale so that any statistic taken
    over the batch (e.g. a global pinv initialisation, mlpen#3) would show."""
    m = build(name, N).double()
    x = torch.randn(3, N, DIM, dtype=torch.float64) * torch.tensor([1., 4., 0.25], dtype=torch.float64)[:, None, None]
    y = m(x)
    for i in range(3):
        assert_close(f"{name} sample {i}", m(x[i:i + 1])[0], y[i], 1e-12)


@pytest.mark.parametrize("name", CASES)
def test_hw_is_accepted_and_ignored(name):
    m = build(name, N)
    x = torch.randn(1, N, DIM)
    assert torch.equal(m(x, hw=(7, 10)), m(x))


@pytest.mark.parametrize("name", CASES)
def test_gradients_reach_every_parameter(name):
    m = build(name, N).train()
    x = torch.randn(2, N, DIM, requires_grad=True)
    m(x).square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"


@pytest.mark.parametrize("name", CASES)
def test_unknown_hyper_parameter_raises(name):
    cls, hp = case_hparams(name, N)
    with pytest.raises(TypeError, match="no_such_option"):
        cls(DIM, HEADS, **hp, no_such_option=1)


@pytest.mark.parametrize("name", CASES)
def test_bad_width_and_input_raise(name):
    cls, hp = case_hparams(name, N)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        cls(50, 3, **hp)
    with pytest.raises(ValueError, match=r"expected x of shape \[B, N, 48\]"):
        build(name, N)(torch.randn(1, N, DIM + 1))


@pytest.mark.parametrize("cls", [B.PerformerAttention, B.NystromAttention, B.LinearAttention, B.CosformerAttention],
                         ids=lambda c: c.__name__)
def test_attn_drop_refused_without_attention_matrix(cls):
    with pytest.raises(ValueError, match="attn_drop=0.1 cannot be honoured"):
        cls(DIM, HEADS, attn_drop=0.1)


def test_shell_matches_timm_attention():
    """Same parameter names and shapes as timm's Attention, so weights and adapters carry over."""
    timm_attention = pytest.importorskip("timm.models.vision_transformer").Attention
    ours = {k: v.shape for k, v in B.SoftmaxAttention(DIM, HEADS).state_dict().items()}
    theirs = {k: v.shape for k, v in timm_attention(DIM, HEADS, qkv_bias=True).state_dict().items()}
    assert ours == theirs
