"""FLOPs by fvcore, with a handle for every op the attentions use and an audit of what is left uncounted.

fvcore traces the model with ``torch.jit`` and counts one fused multiply-add as one flop: its number is MACs. Out of
the box it silently drops what efficient attention is made of (``scaled_dot_product_attention``, ``exp``,
``cdist``, the inside of custom autograd Functions), counts ``layer_norm`` into the same total as the matmuls, and
mis-counts broadcast ``matmul`` (``[m, m] @ [B, h, m, d]`` loses the ``B·h``). This module fixes all of that:

* **MACs** (``macs``) count matmul-class ops only: ``linear``, ``matmul``/``mm``/``bmm``/``addmm``/``baddbmm``,
  ``einsum``, convolutions, SDPA (``B·h·L·S·(E + Ev)``: QKᵀ and AV, whatever kernel runs), and the inner product of
  ``cdist``. ``flops = 2 · macs``.
* **Elementwise flops** (``elementwise_flops``) are a separate bucket, never added to MACs: 1 per output element
  for pointwise ops (exp, add, mul, relu, elu, gelu, ...), 1 per input element for reductions and scans (sum,
  mean, amax, cumsum, pooling), and fixed per-element counts for composites: softmax 5 (max, sub, exp, sum, div),
  layer/group norm 5 (4 without affine; fvcore's convention), batch norm 1 per element in eval, and SDPA's own
  softmax (5 per score) plus the scaling of q, so that fused and explicit softmax attention land on the same
  numbers.
* **Uncounted ops** (``uncounted_ops``): any op that is neither counted nor known to be free (views, copies,
  comparisons, factories) is listed, never silently dropped.
* **Custom autograd Functions** (SOFT's Newton inverse) trace as an opaque ``prim::PythonOp``; its traced forward
  is recorded as a subgraph, which is counted with the same handles.

Only the forward pass is counted, at the batch given, under ``no_grad``. A training step costs about 3× the forward
MACs (backward = 2× forward when both operands of every matmul need gradients: docs/methods.md); rows
report the forward count for both modes and do not multiply.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

__all__ = ["FlopCount", "count_flops", "MAC_OPS", "ELEMENTWISE_OPS", "FREE_OPS"]

EW = "elementwise."  # prefix that keeps the elementwise bucket apart inside fvcore's per-op counters

with warnings.catch_warnings():  # fvcore's import touches torch.jit.script, deprecated in torch >= 2.9
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*")
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape


@dataclass(frozen=True)
class FlopCount:
    """The cost of one forward pass.

    Attributes:
        macs: multiply-accumulates of matmul-class ops.
        flops: ``2 * macs``.
        elementwise_flops: the separate elementwise bucket (see the module docstring for the per-op counts).
        uncounted_ops: ops that ran but have no handle, sorted (``prim::PythonOp.Name`` for opaque Functions).
        by_operator: MACs per operator name (``linear``, ``matmul``, ``sdpa``, ...).
        elementwise_by_operator: elementwise flops per operator name.
        attn_macs: MACs inside the given attention modules (None if none were given).
    """

    macs: int
    flops: int
    elementwise_flops: int
    uncounted_ops: tuple[str, ...] = ()
    by_operator: dict[str, int] = field(default_factory=dict)
    elementwise_by_operator: dict[str, int] = field(default_factory=dict)
    attn_macs: int | None = None


def _prod(shape: Iterable[int]) -> int:
    return math.prod(int(s) for s in shape)


def _shape(v: Any) -> list[int]:
    s = get_shape(v)
    if s is None:
        raise ValueError(f"fvcore trace has no static shape for {v.debugName()}")
    return list(s)


# ---------------------------------------------------------------------------------------------------------- MACs


def _matmul_macs(inputs: list, outputs: list) -> int:
    """``out.numel() * K`` for matmul/mm/bmm with broadcasting; K = the contracted size."""
    a = _shape(inputs[0])
    return _prod(_shape(outputs[0])) * a[-1]


def _addmm_macs(inputs: list, outputs: list) -> int:  # addmm / baddbmm(input, a, b, ...)
    return _prod(_shape(outputs[0])) * _shape(inputs[1])[-1]


def _linear_macs(inputs: list, outputs: list) -> int:
    return _prod(_shape(outputs[0])) * _shape(inputs[1])[-1]


def _conv_macs(inputs: list, outputs: list) -> int:
    """``aten::_convolution`` and ``aten::conv{1,2,3}d``: every output element pays ``C_in/groups · prod(kernel)``
    (padded taps included, as ``FlopCounterMode``); transposed convs pay it per input element."""
    x, w, out = _shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0])
    transposed = False
    if len(inputs) > 6:
        ival = inputs[6].toIValue()
        transposed = isinstance(ival, bool) and ival
    return _prod(x if transposed else out) * _prod(w[1:])


def _einsum_macs(inputs: list, outputs: list) -> Counter:
    """Two operands: the product of every index size (the direct contraction). More: contracted left to right, as
    torch does without opt_einsum. One operand: a reduction, counted as elementwise."""
    equation = inputs[0].toIValue()
    operands = inputs[1].node().inputs() if inputs[1].node().kind() == "prim::ListConstruct" else []
    shapes = [_shape(v) for v in operands]
    lhs, _, rhs = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if "..." in equation or len(terms) != len(shapes):
        raise ValueError(f"einsum {equation!r}: ellipsis or unknown operands")
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes):
        sizes.update(zip(term, shape))
    if len(terms) == 1:
        return Counter({EW + "einsum": _prod(shapes[0])})
    macs, cur = 0, terms[0]
    for i, nxt in enumerate(terms[1:], start=1):
        rest = "".join(terms[i + 1:]) + rhs
        union = dict.fromkeys(cur + nxt)
        macs += _prod(sizes[c] for c in union)
        cur = "".join(c for c in union if c in rest)
    return Counter({"einsum": macs})


def _sdpa(inputs: list, outputs: list) -> Counter:
    """SDPA and its ``_scaled_dot_product_*`` kernels (q, k, v first): QKᵀ + AV MACs; elementwise, the softmax
    (5 per score) and the scaling of q (1 per element), which is what the explicit path traces as."""
    q, k, v = (_shape(t) for t in inputs[:3])
    bh, L, E = _prod(q[:-2]), q[-2], q[-1]
    S, Ev = k[-2], v[-1]
    return Counter({"sdpa": bh * L * S * (E + Ev), EW + "sdpa": 5 * bh * L * S + bh * L * E})


def _cdist(inputs: list, outputs: list) -> Counter:
    """``cdist(x1[.., P, M], x2[.., R, M])``: the P·R·M inner products as MACs, the per-pair finish as elementwise."""
    x1 = _shape(inputs[0])
    out = _prod(_shape(outputs[0]))
    return Counter({"cdist": out * x1[-1], EW + "cdist": 3 * out})


MAC_OPS: dict[str, Callable] = {
    "aten::linear": _linear_macs,
    "aten::matmul": _matmul_macs,
    "aten::mm": _matmul_macs,
    "aten::bmm": _matmul_macs,
    "aten::addmm": _addmm_macs,
    "aten::baddbmm": _addmm_macs,
    "aten::_convolution": _conv_macs,
    "aten::conv1d": _conv_macs,
    "aten::conv2d": _conv_macs,
    "aten::conv3d": _conv_macs,
    "aten::einsum": _einsum_macs,
    "aten::cdist": _cdist,
    **{f"aten::{k}": _sdpa for k in (
        "scaled_dot_product_attention", "_scaled_dot_product_attention_math",
        "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable")},
}

# ----------------------------------------------------------------------------------------------- elementwise


def _per_output(per: float = 1) -> Callable:
    def handle(inputs: list, outputs: list) -> int:
        return int(per * _prod(_shape(outputs[0])))
    return handle


def _per_input(per: float = 1) -> Callable:
    def handle(inputs: list, outputs: list) -> int:
        return int(per * _prod(_shape(inputs[0])))
    return handle


def _norm(inputs: list, outputs: list) -> int:  # layer_norm(x, shape, weight, bias, ...): fvcore's 5 / 4
    has_affine = get_shape(inputs[2]) is not None
    return (5 if has_affine else 4) * _prod(_shape(inputs[0]))


_POINTWISE = (
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "abs", "exp", "exp_", "log", "log_",
    "log1p", "expm1", "sqrt", "rsqrt", "pow", "square", "reciprocal", "sin", "cos", "tanh", "sigmoid", "relu",
    "relu_", "elu", "elu_", "gelu", "silu", "softplus", "clamp", "clamp_", "clamp_min", "clamp_max", "maximum",
    "minimum", "where", "masked_fill", "masked_fill_", "erf", "sign", "hardtanh", "leaky_relu", "lerp", "addcmul",
    "addcdiv", "fill_", "floor_divide", "remainder", "floor", "round",
)
_REDUCTIONS = (
    "sum", "mean", "amax", "amin", "max", "min", "prod", "norm", "linalg_vector_norm", "frobenius_norm", "var",
    "std", "logsumexp", "cumsum", "cumprod", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "max_pool1d", "max_pool2d", "adaptive_max_pool2d", "upsample_bilinear2d",
    "upsample_nearest2d",
)
ELEMENTWISE_OPS: dict[str, Callable] = {
    **{f"aten::{k}": _per_output(1) for k in _POINTWISE},
    **{f"aten::{k}": _per_input(1) for k in _REDUCTIONS},
    "aten::softmax": _per_output(5),
    "aten::log_softmax": _per_output(5),
    "aten::_softmax": _per_output(5),
    "aten::layer_norm": _norm,
    "aten::group_norm": _norm,
    "aten::batch_norm": _per_output(1),
    "aten::instance_norm": _per_output(5),
}

# Ops that do no arithmetic: views, copies, factories, comparisons, indexing, dropout (identity in eval).
FREE_OPS = frozenset(f"aten::{k}" for k in (
    "Int", "ScalarImplicit", "size", "numel", "dim", "view", "view_as", "reshape", "reshape_as", "flatten",
    "unflatten", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "transpose", "transpose_", "t", "permute",
    "movedim", "expand", "expand_as", "contiguous", "clone", "copy_", "detach", "to", "type_as", "cat", "concat",
    "stack", "split", "split_with_sizes", "chunk", "unbind", "slice", "select", "narrow", "index", "index_select",
    "gather", "index_put_", "repeat", "repeat_interleave", "roll", "flip", "diagonal", "diag_embed", "diag", "tril",
    "triu", "constant_pad_nd", "pad", "zeros", "zeros_like", "ones", "ones_like", "empty", "empty_like", "full",
    "full_like", "new_zeros", "new_ones", "new_empty", "new_full", "eye", "arange", "linspace", "rand", "randn",
    "randn_like", "normal_", "dropout", "dropout_", "feature_dropout", "alpha_dropout", "eq", "ne", "lt", "le", "gt",
    "ge", "__and__", "__or__", "bitwise_not", "logical_not", "nonzero", "isfinite", "isnan", "all", "any", "lift_fresh",
    "alias", "as_strided", "resolve_conj", "resolve_neg", "unfold", "pixel_shuffle", "pixel_unshuffle",
    "channel_shuffle",
    "zero_", "mT", "mH", "item", "_assert_async",
))


def _is_free(kind: str) -> bool:
    return kind in FREE_OPS or (kind.startswith("prim::") and not kind.startswith(("prim::PythonOp",
                                                                                     "prim::CallFunction")))


class _HandleTable(dict):
    """fvcore's handle dict, extended so that every ``prim::PythonOp.<Name>`` (a custom autograd Function) is
    counted from its traced subgraph with the same handles instead of being reported as one unknown op."""

    def __init__(self, handles: dict[str, Callable], uncounted: Counter) -> None:
        super().__init__(handles)
        self.uncounted = uncounted

    def __contains__(self, kind: object) -> bool:
        return dict.__contains__(self, kind) or (isinstance(kind, str) and kind.startswith("prim::PythonOp."))

    def __getitem__(self, kind: str) -> Callable:
        if dict.__contains__(self, kind):
            return dict.__getitem__(self, kind)
        return self._python_op

    def _python_op(self, inputs: list, outputs: list) -> Counter:
        node = outputs[0].node()
        if not node.hasAttribute("Subgraph"):
            self.uncounted[f"prim::PythonOp.{node.pyname()}"] += 1
            return Counter()
        return self.count_graph(node.g("Subgraph"))

    def count_graph(self, graph: Any) -> Counter:
        total: Counter = Counter()
        for n in graph.nodes():
            kind = n.kind()
            if kind == "prim::PythonOp":
                kind = f"{kind}.{n.pyname()}"
            if kind in self:
                c = self[kind](list(n.inputs()), list(n.outputs()))
                total += c if isinstance(c, Counter) else Counter({kind.split("::")[-1]: c})
            elif not _is_free(kind):
                self.uncounted[kind] += 1
        return total


def _wrap_elementwise(name: str, handle: Callable) -> Callable:
    op = EW + name.split("::")[-1].rstrip("_")

    def wrapped(inputs: list, outputs: list) -> Counter:
        return Counter({op: handle(inputs, outputs)})
    return wrapped


def _module_names(model: nn.Module, modules: Sequence[nn.Module]) -> list[str]:
    ids = {id(m) for m in modules}
    names = [name for name, m in model.named_modules() if id(m) in ids]
    if len(names) != len(ids):
        raise ValueError("attention modules to audit are not all submodules of the model")
    return names


def count_flops(model: nn.Module, inputs: torch.Tensor | tuple[Any, ...], *,
                attn_modules: Sequence[nn.Module] | None = None) -> FlopCount:
    """Count one forward pass of ``model(*inputs)`` under ``no_grad``.

    Args:
        model: the module; it is traced as it is (call ``.eval()`` first for inference behaviour).
        inputs: a tensor or a tuple of positional inputs, at the batch to report.
        attn_modules: submodules whose MACs are reported separately as ``attn_macs`` (the swapped attentions).

    Returns:
        FlopCount. Raises ValueError when a counted op has no static shape in the trace.
    """
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    uncounted: Counter = Counter()
    handles = {**MAC_OPS, **{k: _wrap_elementwise(k, h) for k, h in ELEMENTWISE_OPS.items()}}
    fa = FlopCountAnalysis(model, inputs)
    fa.set_op_handle(**handles)
    for kind in FREE_OPS:
        fa.set_op_handle(kind, None)
    fa._op_handles = _HandleTable(fa._op_handles, uncounted)  # fvcore has no hook for PythonOp (fvcore 0.1.5)
    fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with torch.no_grad():
        stats = fa.by_module_and_operator()
    uncounted.update(fa.unsupported_ops())
    root = stats[""]
    macs_by_op = {k: int(v) for k, v in sorted(root.items()) if not k.startswith(EW)}
    ew_by_op = {k[len(EW):]: int(v) for k, v in sorted(root.items()) if k.startswith(EW)}
    attn_macs = None
    if attn_modules is not None:
        names = set(_module_names(model, attn_modules))
        attn_macs = sum(int(v) for name in names for k, v in stats.get(name, {}).items() if not k.startswith(EW))
    macs = sum(macs_by_op.values())
    return FlopCount(macs=macs, flops=2 * macs, elementwise_flops=sum(ew_by_op.values()),
                     uncounted_ops=tuple(sorted(uncounted)), by_operator=macs_by_op,
                     elementwise_by_operator=ew_by_op, attn_macs=attn_macs)
