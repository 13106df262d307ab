"""Exact softmax: every implementation and SDPA backend against the float64 reference (docs/methods.md, Softmax)."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import baselines as B
from baseline_cases import DIM, HEADS, assert_close, cpu_backends, reference
from baselines import naive
from baselines.softmax import BackendUnavailableError, SDPA_BACKENDS, explicit_softmax_attention, sdpa_attention

N = 64
# Relative-error tolerances against float64 (docs/methods.md: observed fp32 ~4e-7, bf16 ~4e-3, fp16 ~4e-4 on CPU).
TOL = {torch.float32: 2e-6, torch.bfloat16: 1.5e-2, torch.float16: 2e-3}


def _qkv(dtype=torch.float64, device="cpu", requires_grad=False):
    torch.manual_seed(0)
    return [torch.randn(2, HEADS, N, DIM // HEADS, dtype=dtype, device=device, requires_grad=requires_grad)
            for _ in range(3)]


class _OpRecorder(TorchDispatchMode):
    """Records the aten ops that reach the kernels (fused SDPA kernels appear by name; MATH decomposes)."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=lambda t: str(t)[6:])
@pytest.mark.parametrize("impl", ["auto", "math", "flash", "explicit"])
def test_core_matches_float64_reference(impl, dtype):
    q, k, v = _qkv()
    ref = naive.naive_softmax_attention(q, k, v)
    q, k, v = (t.to(dtype) for t in (q, k, v))
    if impl == "explicit":
        o = explicit_softmax_attention(q, k, v, scale=q.shape[-1] ** -0.5)
    else:
        o, ran = sdpa_attention(q, k, v, backend=impl)
        assert ran in SDPA_BACKENDS
    assert o.dtype == dtype
    assert_close(f"softmax {impl} {dtype}", o, ref, TOL[dtype])


@pytest.mark.parametrize("kw", [{}, {"backend": "math"}, {"backend": "flash"}, {"impl": "explicit"}],
                         ids=["sdpa-auto", "sdpa-math", "sdpa-flash", "explicit"])
def test_module_and_gradient_match_float64_reference(kw):
    torch.manual_seed(0)
    m = B.SoftmaxAttention(DIM, HEADS, **kw).eval()
    x = torch.randn(2, N, DIM, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    y, ref = m(x), reference(m, x64)
    assert_close("output", y, ref, TOL[torch.float32])
    g = torch.randn_like(y)
    y.backward(g)
    ref.backward(g.double())
    assert_close("dx", x.grad, x64.grad, 1e-5)


@pytest.mark.parametrize("backend", ["auto", "math", "flash"])
@pytest.mark.parametrize("mode", ["eval", "train-dropout"])
def test_last_backend_is_the_kernel_that_ran(backend, mode):
    m = B.SoftmaxAttention(DIM, HEADS, backend=backend, attn_drop=0.1 if mode == "train-dropout" else 0.)
    m.train(mode != "eval")
    x = torch.randn(1, N, DIM)
    try:
        with _OpRecorder() as rec:
            m(x)
    except ValueError as e:  # flash cannot take dropout on CPU: the one-line error names what can run
        assert (backend, mode) == ("flash", "train-dropout")
        assert "cannot run" in str(e) and "this device can run: math" in str(e)
        return
    fused = [op for op in rec.ops if op.startswith("_scaled_dot_product")]
    if m.last_backend == "math":
        assert fused == [] and "bmm" in rec.ops
    else:
        assert m.last_backend == "flash" and fused == ["_scaled_dot_product_flash_attention_for_cpu"]
    if backend != "auto":
        assert m.last_backend == backend
    if mode == "train-dropout":
        assert m.last_backend == "math"  # CPU SDPA falls back to MATH with dropout (docs/methods.md)


def test_explicit_reports_explicit_and_materialises_scores():
    m = B.SoftmaxAttention(DIM, HEADS, impl="explicit").eval()
    with _OpRecorder() as rec:
        m(torch.randn(1, N, DIM))
    assert m.last_backend == "explicit"
    assert "_softmax" in rec.ops and not any(op.startswith("_scaled_dot_product") for op in rec.ops)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU machine's backend list is checked")
def test_unrunnable_backend_names_what_this_device_can_run():
    assert cpu_backends() == ["math", "flash"]
    for backend in ("efficient", "cudnn"):
        m = B.SoftmaxAttention(DIM, HEADS, backend=backend)
        with pytest.raises(ValueError, match=rf"SDPA backend '{backend}' cannot run cpu float32 .*"
                                             r"this device can run: math, flash$"):
            m(torch.randn(1, N, DIM))


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="impl='fast' is not supported; accepted: 'sdpa', 'explicit', 'xformers'"):
        B.SoftmaxAttention(DIM, HEADS, impl="fast")
    with pytest.raises(ValueError, match="backend='flash2' is not supported"):
        B.SoftmaxAttention(DIM, HEADS, backend="flash2")
    with pytest.raises(ValueError, match="only applies to impl='sdpa'"):
        B.SoftmaxAttention(DIM, HEADS, impl="explicit", backend="math")


def test_xformers_unavailable_is_a_clear_error():
    try:
        import xformers.ops  # noqa: F401
        have = torch.cuda.is_available()
    except ImportError:
        have = False
    if have:
        pytest.skip("xformers and CUDA are present: covered by test_cuda_xformers")
    with pytest.raises(BackendUnavailableError, match="^not available: "):
        B.SoftmaxAttention(DIM, HEADS, impl="xformers")


# --- CUDA: each fused kernel and xformers in half precision against float64 (run where a GPU is present) ---

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=lambda t: str(t)[6:])
@pytest.mark.parametrize("backend", ["math", "flash", "efficient", "cudnn"])
def test_cuda_sdpa_backend(backend, dtype):
    q, k, v = _qkv()
    ref = naive.naive_softmax_attention(q, k, v)
    q, k, v = (t.to("cuda", dtype) for t in (q, k, v))
    try:
        o, ran = sdpa_attention(q, k, v, backend=backend)
    except ValueError as e:
        pytest.skip(f"this GPU cannot run it: {e}")
    assert ran == backend
    tol = 5e-3 if dtype == torch.float32 else TOL[dtype]  # fp32 on CUDA may use TF32 matmuls
    assert_close(f"cuda {backend} {dtype}", o.cpu(), ref, tol)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=lambda t: str(t)[6:])
def test_cuda_xformers(dtype):
    pytest.importorskip("xformers.ops", reason="xformers is not installed (optional 'gpu' extra)")
    torch.manual_seed(0)
    m = B.SoftmaxAttention(DIM, HEADS, impl="xformers").eval().cuda()
    x = torch.randn(2, N, DIM, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        y = m(x)
    assert m.last_backend == "xformers"
    assert_close("xformers module", y.float().cpu(), reference(m.cpu(), x.cpu()), 3e-2)
