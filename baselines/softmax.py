"""Exact softmax attention, O = softmax(Q Kᵀ / √d) V (Vaswani et al., arXiv 1706.03762, eq. 1), three ways.

- ``impl="sdpa"``: ``F.scaled_dot_product_attention`` with the kernel chosen by ``backend`` (auto, math, flash,
  efficient, cudnn) through ``torch.nn.attention.sdpa_kernel``. On CPU only math and flash run (docs/methods.md); the
  CPU flash kernel keeps memory O(N).
- ``impl="explicit"``: the materialised ``q @ kᵀ -> softmax -> @ v``, the N² memory naive code pays
  (registry name ``softmax-math``).
- ``impl="xformers"``: ``xformers.ops.memory_efficient_attention`` (layout [B, M, H, K]); CUDA only, imported
  lazily.

Which SDPA kernel runs is read from ``torch._fused_sdp_choice``, the very function SDPA consults to dispatch
(it only checks flags, dtypes and shapes: microseconds, no compute), on every forward; the module keeps the answer
in ``last_backend``. ``tests/baselines/test_softmax.py`` checks this answer against the aten op that actually ran.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from baselines._common import QKVAttention, check_choice, check_hparams, projection_macs

__all__ = [
    "SoftmaxAttention", "BackendUnavailableError", "explicit_softmax_attention", "sdpa_attention",
    "xformers_attention", "sdpa_backend_choice", "runnable_sdpa_backends", "softmax_macs",
]

IMPLS = ("sdpa", "explicit", "xformers")
SDPA_BACKENDS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
_NAME_OF = {int(b): name for name, b in SDPA_BACKENDS.items()}


class BackendUnavailableError(RuntimeError):
    """An attention kernel cannot run in this environment; the message starts with ``"not available: "``."""


def explicit_softmax_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float,
                               dropout: torch.nn.Module | None = None) -> Tensor:
    """softmax(q kᵀ · scale) v with the N x N matrix materialised.

    Args:
        q, k, v: ``[B, h, N, d]``.
        scale: the temperature, d^-½ in a Transformer.
        dropout: applied to the probabilities (None: no dropout).

    Returns:
        ``[B, h, N, d]``.
    """
    attn = (q * scale) @ k.transpose(-2, -1)  # [B, h, N, N]
    attn = attn.softmax(dim=-1)
    if dropout is not None:
        attn = dropout(attn)
    return attn @ v


def sdpa_backend_choice(q: Tensor, k: Tensor, v: Tensor, dropout_p: float = 0.) -> str:
    """Name of the kernel ``F.scaled_dot_product_attention`` will run for these inputs under the active
    ``sdpa_kernel`` context ("math", "flash", "efficient", "cudnn").

    Raises:
        RuntimeError: no enabled backend can run these inputs (torch's "No viable backend" error).
    """
    choice = int(torch._fused_sdp_choice(q, k, v, dropout_p=dropout_p))
    if choice not in _NAME_OF:
        raise RuntimeError(f"No viable backend for scaled_dot_product_attention (choice {choice})")
    return _NAME_OF[choice]


def runnable_sdpa_backends(q: Tensor, k: Tensor, v: Tensor, dropout_p: float = 0.) -> list[str]:
    """The SDPA backends that can run these inputs on their device, each tried alone."""
    names = []
    for name, backend in SDPA_BACKENDS.items():
        with sdpa_kernel([backend]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch explains every rejection; the list is the answer here
            try:
                sdpa_backend_choice(q, k, v, dropout_p)
            except RuntimeError:
                continue
        names.append(name)
    return names


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, *, backend: str = "auto",
                   dropout_p: float = 0.) -> tuple[Tensor, str]:
    """Softmax attention through ``F.scaled_dot_product_attention`` (default scale d^-½).

    Args:
        q, k, v: ``[B, h, N, d]``.
        backend: "auto" (torch's own choice) or one of ``SDPA_BACKENDS``, forced with ``sdpa_kernel``.
        dropout_p: dropout on the probabilities (pass 0 in eval).

    Returns:
        ``(o [B, h, N, d], name of the backend that ran)``.

    Raises:
        ValueError: the forced backend cannot run here; the message lists those that can.
    """
    if backend == "auto":
        ran = "traced" if torch.jit.is_tracing() else sdpa_backend_choice(q, k, v, dropout_p)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p), ran
    check_choice("backend", backend, ("auto", *SDPA_BACKENDS))
    with sdpa_kernel([SDPA_BACKENDS[backend]]):
        if not torch.jit.is_tracing():  # jit.trace would record the probe as a graph op
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    sdpa_backend_choice(q, k, v, dropout_p)
                    failed = False
                except RuntimeError:
                    failed = True
            if failed:
                # torch explains the rejection in warnings; keep their first clause, on one line.
                why = [str(w.message).split(" (Triggered internally")[0].strip() for w in caught]
                why = "; ".join(w for w in why if w and not w.endswith(":"))
                runnable = runnable_sdpa_backends(q, k, v, dropout_p)
                raise ValueError(
                    f"SDPA backend {backend!r} cannot run {q.device.type} {str(q.dtype).removeprefix('torch.')} "
                    f"inputs of shape {tuple(q.shape)} (dropout_p={dropout_p})" + (f" ({why})" if why else "")
                    + f"; this device can run: {', '.join(runnable) or 'none'}") from None
            for w in caught:  # a successful probe's warnings are not ours to swallow
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p), backend


def _import_xformers_ops():
    """Import ``xformers.ops`` lazily (an optional, CUDA-only extra) or raise ``BackendUnavailableError``."""
    try:
        import xformers.ops as xops
    except ImportError as e:
        raise BackendUnavailableError(f"not available: xformers cannot be imported ({e}); install the 'gpu' extra "
                                      "(pip install 'attnbench[gpu]') on a CUDA machine") from None
    return xops


def xformers_attention(q: Tensor, k: Tensor, v: Tensor, *, dropout_p: float = 0.) -> Tensor:
    """Softmax attention through ``xformers.ops.memory_efficient_attention`` (default scale 1/√d).

    Args:
        q, k, v: ``[B, h, N, d]`` CUDA tensors (xformers has no CPU kernel).
        dropout_p: dropout on the probabilities.

    Returns:
        ``[B, h, N, d]``.
    """
    if q.device.type != "cuda":
        raise BackendUnavailableError(f"not available: xformers memory_efficient_attention has no kernel for "
                                      f"{q.device.type} tensors (CUDA only)")
    xops = _import_xformers_ops()
    # xformers' layout is [B, M, H, K] (sequence before heads): a transposed view, no copy.
    o = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), p=dropout_p)
    return o.transpose(1, 2)  # [B, h, N, d]


def softmax_macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None, **hparams) -> int:
    """MACs of one forward: projections 4BND² plus QKᵀ and AV, 2·B·h·N²·d (= 2BN²D) whatever the kernel.

    ``impl`` and ``backend`` are accepted and do not change the count (a fused kernel does the same matmuls).
    """
    check_hparams("softmax_macs", hparams, ("impl", "backend"))
    return projection_macs(B, N, dim) + 2 * B * N * N * dim


class SoftmaxAttention(QKVAttention):
    """Exact multi-head softmax attention with a selectable implementation.

    Args:
        dim, num_heads, qkv_bias, attn_drop, proj_drop, device, dtype: as timm's ``Attention``
            (see :class:`baselines._common.QKVAttention`).
        impl: "sdpa" (``F.scaled_dot_product_attention``), "explicit" (materialised N x N scores) or
            "xformers" (``memory_efficient_attention``; needs xformers and CUDA, checked here).
        backend: for ``impl="sdpa"``: "auto", "math", "flash", "efficient" or "cudnn". A forced backend that
            cannot run the inputs raises ``ValueError`` at forward, naming the backends that can.

    Attributes:
        last_backend: the kernel the latest forward ran: "math", "flash", "efficient", "cudnn", "explicit",
            "xformers", or "traced" under ``torch.jit.trace`` with backend "auto" (not probed); None before the
            first forward.

    Raises:
        BackendUnavailableError: ``impl="xformers"`` without xformers or without CUDA ("not available: ...").
    """

    # Read by attnbench's registry (this package never imports it): one entry per key.
    variants = {
        "softmax": dict(defaults=dict(impl="sdpa", backend="auto"), complexity="O(N^2 d)",
                        description="exact softmax through F.scaled_dot_product_attention (fused kernels)"),
        "softmax-math": dict(defaults=dict(impl="explicit"), complexity="O(N^2 d), N^2 memory",
                             description="exact softmax, explicit materialised N x N scores (what naive code pays)"),
        "softmax-xformers": dict(defaults=dict(impl="xformers"), complexity="O(N^2 d)", devices=("cuda",),
                                 description="exact softmax through xformers memory_efficient_attention (CUDA)"),
    }

    macs = staticmethod(softmax_macs)  # the closed-form MACs of one forward

    @classmethod
    def memory_bytes(cls, B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None,
                     **hparams) -> int:
        """A lower bound on the bytes one forward holds at once in fp32 (a planner skips cells that cannot fit):
        the input and the q, k, v projection (4·B·N·dim floats), plus the B·h·N² score matrix where it is
        materialised (``impl="explicit"``, or SDPA forced to its math kernel); its softmax is a second one, not
        counted."""
        floats = 4 * B * N * dim
        if hparams.get("impl") == "explicit" or (hparams.get("impl") == "sdpa" and hparams.get("backend") == "math"):
            floats += B * num_heads * N * N
        return 4 * floats

    @classmethod
    def not_supported_reason(cls, *, device: str, dtype: str, seq_len: int, hparams: dict,
                             hw: tuple[int, int] | None = None) -> str | None:
        """``impl="xformers"`` off CUDA or without xformers installed; None otherwise."""
        if hparams.get("impl") != "xformers":
            return None
        if device != "cuda":
            return f"xformers memory_efficient_attention runs on CUDA only, not {device}"
        try:
            _import_xformers_ops()
        except BackendUnavailableError as e:
            return str(e).removeprefix("not available: ")
        return None

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., impl: str = "sdpa", backend: str = "auto",
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
                         device=device, dtype=dtype)
        check_choice("impl", impl, IMPLS)
        check_choice("backend", backend, ("auto", *SDPA_BACKENDS))
        if impl != "sdpa" and backend != "auto":
            raise ValueError(f"backend={backend!r} only applies to impl='sdpa', got impl={impl!r}; "
                             "accepted: backend='auto'")
        if impl == "xformers":
            _import_xformers_ops()
            if not torch.cuda.is_available():
                raise BackendUnavailableError("not available: xformers memory_efficient_attention needs a CUDA "
                                              "device and none is visible")
        self.impl, self.backend = impl, backend
        self.last_backend: str | None = None

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        p = self.attn_drop_p if self.training else 0.
        if self.impl == "explicit":
            self.last_backend = "explicit"
            return explicit_softmax_attention(q, k, v, scale=self.scale, dropout=self.attn_drop)
        if self.impl == "xformers":
            self.last_backend = "xformers"
            return xformers_attention(q, k, v, dropout_p=p)
        o, self.last_backend = sdpa_attention(q, k, v, backend=self.backend, dropout_p=p)
        return o

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, impl={self.impl!r}, backend={self.backend!r}"
