"""SoftAttention: fast path vs float64 reference, exactness, invariances, dtype, diagnostics, interface."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from soft import SoftAttention, naive_kernel_attention, naive_soft_attention_layer, soft_kernel_attention
from soft_helpers import rel_err

CONFIGS = {
    "pool49": dict(),
    "pool48-nonsquare": dict(landmarks=48),
    "conv-s4-k5": dict(sampler="conv", sr_ratio=4, conv_kernel=5),
    "soft++": dict(symmetric_norm=True),
    "no-local-conv": dict(conv_kernel=0),
    "conv-pad": dict(sampler="conv", sr_ratio=3, grid_policy="pad"),
    "conv-auto-stride": dict(sampler="conv", seq_len=256, conv_kernel=9),
    "soft++-project-variant": dict(symmetric_norm=True, newton_variant="soft"),
    "newton-tol": dict(newton_tol=1e-9, newton_iters=40),
}


def _layer(dim=64, heads=2, seed=0, **kw) -> SoftAttention:
    torch.manual_seed(seed)
    return SoftAttention(dim, heads, **kw).double().eval()


@pytest.mark.parametrize("kw", CONFIGS.values(), ids=CONFIGS.keys())
def test_matches_float64_reference(kw):
    layer = _layer(**kw)
    x = torch.randn(2, 16 * 16, 64, dtype=torch.float64)
    out = layer(x, hw=(16, 16))
    assert out.shape == x.shape
    assert rel_err("layer vs naive", out, naive_soft_attention_layer(layer, x, (16, 16))) <= 1e-10


def test_input_gradient_matches_reference():
    layer = _layer(newton_iters=30)
    x1 = torch.randn(1, 144, 64, dtype=torch.float64).requires_grad_(True)
    x2 = x1.detach().clone().requires_grad_(True)
    g = torch.randn(1, 144, 64, dtype=torch.float64)
    (layer(x1) * g).sum().backward()
    (naive_soft_attention_layer(layer, x2) * g).sum().backward()
    assert rel_err("dx layer vs naive", x1.grad, x2.grad) <= 1e-8


def test_identity_landmarks_give_exact_kernel_attention():
    # m = N, no ridge, enough iterations: K1 A⁻¹ K1ᵀ = S, so the output is exactly S V
    layer = _layer(sampler="identity", ridge=0.0, newton_iters=40, conv_kernel=0)
    x = 3 * torch.randn(2, 36, 64, dtype=torch.float64)  # spread tokens: S well conditioned
    h, d = layer.num_heads, layer.head_dim
    q_bar = layer.W_q(x).reshape(2, 36, h, d).transpose(1, 2) / d ** 0.25
    v = layer.W_v(x).reshape(2, 36, h, d).transpose(1, 2)
    exact = layer.proj(naive_kernel_attention(q_bar, v).transpose(1, 2).reshape(2, 36, 64))
    assert rel_err("identity landmarks vs S V", layer(x), exact) <= 1e-8


def test_batch_invariance():
    layer = _layer(sampler="conv", sr_ratio=2, conv_kernel=3)
    x = torch.randn(4, 64, 64, dtype=torch.float64)
    batched = layer(x)
    for i in range(4):
        assert rel_err(f"sample {i} alone vs in batch", layer(x[i:i + 1]), batched[i:i + 1]) <= 1e-12


class _MatmulDtypes(TorchDispatchMode):
    """Records (input shapes, dtype) of every matmul-class op."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.bmm, torch.ops.aten.addmm):
            mats = [a for a in args if isinstance(a, torch.Tensor)]
            self.calls.append(([tuple(t.shape) for t in mats], mats[-1].dtype))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("symmetric_norm,backward_in_autocast", [(False, True), (True, False)],
                         ids=["soft", "soft++"])
def test_bf16_autocast_forward_backward_finite_inverse_in_fp32(symmetric_norm, backward_in_autocast):
    # SOFT's closed-form backward keeps fp32 even when backward() runs inside autocast; SOFT++ differentiates
    # through the steps, whose backward matmuls autocast would take to bf16, so it is run as torch recommends
    # (and the harness does): backward after leaving the autocast region
    torch.manual_seed(0)
    layer = SoftAttention(64, 2, symmetric_norm=symmetric_norm)
    x = torch.randn(2, 256, 64, requires_grad=True)
    rec = _MatmulDtypes()
    with rec:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
            if backward_in_autocast:
                out.float().pow(2).mean().backward()
        if not backward_in_autocast:
            out.float().pow(2).mean().backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in layer.parameters())
    square = [dt for shapes, dt in rec.calls if all(s[-2:] == (49, 49) for s in shapes)]
    assert len(square) >= 2 * 20, "the Newton iterations were not seen"
    assert all(dt == torch.float32 for dt in square), "the m x m inverse must run in float32 under autocast"
    assert any(dt == torch.bfloat16 for _, dt in rec.calls), "autocast should still run the big matmuls in bf16"


@pytest.mark.parametrize("symmetric_norm", [False, True], ids=["soft", "soft++"])
def test_track_residual_is_the_largest_newton_residual(symmetric_norm):
    x = torch.randn(3, 256, 64, dtype=torch.float64)
    layer = _layer(track_residual=True, symmetric_norm=symmetric_norm)
    layer(x)
    assert isinstance(layer.last_residual, float) and layer.last_residual < 1e-6  # well conditioned: converged
    short = _layer(track_residual=True, symmetric_norm=symmetric_norm, newton_iters=2)  # stopped early on purpose
    short(x)
    h, d = short.num_heads, short.head_dim
    q_bar = short.W_q(x).reshape(3, 256, h, d).transpose(1, 2) / d ** 0.25
    _, res = soft_kernel_attention(q_bar, short.sampler(q_bar, (16, 16)), q_bar, iters=2, ridge=short.ridge,
                                   symmetric_norm=symmetric_norm, variant=short.newton_variant, return_residual=True)
    assert res.shape == (3, 2) and res.min() < res.max()
    assert short.last_residual == pytest.approx(res.max().item(), rel=1e-6) and short.last_residual > 1e-3
    short.track_residual = False
    short(x)
    assert short.last_residual is None  # only a tracked forward fills it


@pytest.mark.parametrize("symmetric_norm", [False, True], ids=["soft", "soft++"])
def test_track_residual_flags_an_ill_conditioned_landmark_kernel(symmetric_norm):
    # tokens that barely differ give nearly identical landmarks: A is close to the all-ones matrix
    layer = _layer(track_residual=True, symmetric_norm=symmetric_norm)
    x = 0.02 * torch.randn(2, 256, 64, dtype=torch.float64)
    layer(x)
    assert layer.last_residual > 1e-2, layer.last_residual
    tolerant = _layer(track_residual=True, symmetric_norm=symmetric_norm, newton_tol=1e-8, newton_iters=80)
    tolerant(x)
    assert tolerant.last_residual <= 1e-8


def test_pool_grid_for_non_square_m_uses_exactly_m_landmarks():
    layer = _layer(landmarks=48)
    assert layer.num_landmarks((16, 16)) == 48
    q = torch.randn(1, 2, 16 * 16, 32, dtype=torch.float64)
    assert layer.sampler(q, (16, 16)).shape == (1, 2, 48, 32)


def test_conv_sampler_landmark_count_and_pad_policy():
    assert _layer(sampler="conv", sr_ratio=8).num_landmarks((56, 56)) == 49
    assert _layer(sampler="conv", sr_ratio=4, grid_policy="pad").num_landmarks((10, 14)) == 3 * 4
    with pytest.raises(ValueError, match="not divisible by sr_ratio=4"):
        _layer(sampler="conv", sr_ratio=4)(torch.randn(1, 10 * 14, 64, dtype=torch.float64), hw=(10, 14))


@pytest.mark.parametrize("n,hw,match", [
    (200, None, "perfect square"),
    (64, (4, 8), "does not match"),
    (16, None, "at least 7x7"),
], ids=["non-square-N", "bad-hw", "too-few-tokens"])
def test_grid_errors(n, hw, match):
    with pytest.raises(ValueError, match=match):
        _layer()(torch.randn(1, n, 64, dtype=torch.float64), hw=hw)


@pytest.mark.parametrize("seq_len,hw,s,m", [(3136, (56, 56), 8, 49), (1024, (32, 32), 5, 49),
                                           (2048, (32, 64), 7, 50), (16384, (128, 128), 19, 49)],
                         ids=["56x56", "32x32-pad", "32x64-pad", "128x128-pad"])
def test_conv_stride_follows_seq_len(seq_len, hw, s, m):
    layer = _layer(sampler="conv", seq_len=seq_len)
    assert layer.sampler.sr_ratio == s and layer.num_landmarks(hw) == m
    assert layer.sampler.grid_policy == "pad"  # a chosen stride pads; a given one raises unless told to pad


def test_conv_stride_from_seq_len_is_the_paper_layer_at_224():
    # stage 1 of SOFT-Tiny: 56×56 tokens, s = 8, k = 9: the same module as the explicit stride
    a, b = _layer(sampler="conv", seq_len=3136, conv_kernel=9), _layer(sampler="conv", sr_ratio=8, conv_kernel=9)
    assert [(n, p.shape) for n, p in a.named_parameters()] == [(n, p.shape) for n, p in b.named_parameters()]
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3136, 64, dtype=torch.float64)
    assert torch.equal(a(x), b(x))


def test_rectangular_grid_is_accepted():
    out = _layer(sampler="conv", sr_ratio=2)(torch.randn(1, 8 * 16, 64, dtype=torch.float64), hw=(8, 16))
    assert out.shape == (1, 128, 64)


@pytest.mark.parametrize("kw,match", [
    (dict(num_heads=3), "divisible"),
    (dict(sampler="lsh"), "unknown sampler"),
    (dict(sampler="conv"), "needs sr_ratio"),
    (dict(sr_ratio=4), "only used by sampler='conv'"),
    (dict(conv_kernel=4), "odd"),
    (dict(newton_iters=-1), "newton_iters"),
    (dict(ridge=-1.0), "ridge"),
    (dict(landmarks=0), "positive"),
    (dict(grid_policy="crop"), "grid_policy"),
    (dict(sampler="conv", seq_len=0), "needs sr_ratio"),
    (dict(sampler="conv", sr_ratio=0), "sr_ratio must be a positive int"),
    (dict(newton_variant="exact"), "accepted: soft, soft-norm"),
    (dict(newton_tol=-1e-3), "newton_tol must be a positive finite number"),
    (dict(newton_tol=float("nan")), "newton_tol must be a positive finite number"),
    (dict(sampler="conv", sr_ratio=5, seq_len=1024), "accepted: sr_ratio in {1, 2, 4, 8, 16, 32}"),
], ids=["heads", "sampler", "conv-no-s", "s-with-pool", "even-k", "iters", "ridge", "m0", "policy", "seq-len-0",
        "s0", "variant", "tol-neg", "tol-nan", "s-does-not-tile-seq-len"])
def test_invalid_options_raise_value_error(kw, match):
    with pytest.raises(ValueError, match=match):
        SoftAttention(64, **{"num_heads": 2, **kw})


def test_unknown_keyword_raises():
    with pytest.raises(TypeError, match="landmark"):
        SoftAttention(64, 2, landmark=49)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_cuda_autocast_matches_fp32(dtype):
    torch.manual_seed(0)
    layer = SoftAttention(192, 3).cuda()
    x = torch.randn(2, 32 * 32, 192, device="cuda", requires_grad=True)
    ref = layer(x)
    with torch.autocast("cuda", dtype=dtype):
        out = layer(x)
        out.float().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert rel_err("cuda autocast vs fp32", out, ref) <= 5e-2
