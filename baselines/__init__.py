"""The peers SOFT is judged against, on one interface (torch only; xformers optional).

Every class is ``Cls(dim, num_heads=8, *, qkv_bias=True, attn_drop=0., proj_drop=0., **hparams)`` with
``forward(x[B, N, C], hw=None) -> [B, N, C]``, and every ``*_macs(B, N, dim, num_heads, hw=None, **hparams)`` is
the closed-form multiply-accumulate count of one forward of the whole module (docs/methods.md).
The explicit (materialised) and xformers softmax are ``SoftmaxAttention(impl="explicit" | "xformers")``.
Float64 reference forms live in :mod:`baselines.naive`.

Each class also describes itself in plain class attributes (``variants``: registry names with their defaults,
complexity and test settings; ``needs_seq_len``; the classmethods ``macs`` and ``not_supported_reason``), which
attnbench's registry reads without this package importing it: a new mechanism is one module here.
"""
from baselines.cosformer import CosformerAttention, cosformer_macs
from baselines.linear import LinearAttention, linear_macs
from baselines.linformer import LinformerAttention, linformer_macs
from baselines.nystrom import NystromAttention, nystrom_macs
from baselines.performer import PerformerAttention, performer_macs
from baselines.softmax import BackendUnavailableError, SoftmaxAttention, softmax_macs

__all__ = [
    "SoftmaxAttention", "PerformerAttention", "LinformerAttention", "NystromAttention", "LinearAttention",
    "CosformerAttention", "BackendUnavailableError",
    "softmax_macs", "performer_macs", "linformer_macs", "nystrom_macs", "linear_macs", "cosformer_macs",
]
