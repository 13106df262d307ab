"""The attention registry: every registered attention is tested here the moment it is registered.

The per-attention tests are parametrised over ``list_attentions()`` (as timm's over ``list_models()``), each with the
``test_hparams`` of its class's metadata: it builds, its forward keeps [B, N, C], its backward reaches every
parameter, its ``macs`` formula equals what FlopCounterMode and the harness's fvcore count measure, and its
``not_supported_reason`` keeps its contract. ``ToyMeanAttention`` below is defined and registered in this file
only, so it is covered by all of that and also swept, which is what adding an attention takes: one file.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from attnbench.registry import (CORE_MODELS, AttentionEntry, entries_of, get_attention, list_attentions,
                                register_attention)

DIM, HEADS = 48, 3  # head width 16: small and fast, still multi-head
GRIDS = {64: (8, 8), 70: (7, 10)}  # 70: uneven Nystrom segments, a rectangular grid


@register_attention
class ToyMeanAttention(nn.Module):
    """A toy attention known to this file only: each token's value against half the mean value, projected."""

    variants = {"toy-mean": dict(complexity="O(N d^2)", description="test-only toy: value minus half its mean")}

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0.) -> None:
        super().__init__()
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        v = self.v(x)
        return self.proj(v - 0.5 * v.mean(dim=1, keepdim=True))

    @staticmethod
    def macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None, **hparams) -> int:
        return 2 * B * N * dim * dim  # the two Linears; the mean and the difference are elementwise


class _Refuses(nn.Module):
    """Run as ``test_registry:_Refuses`` (no metadata but the hook): the cell must skip it before building."""

    def __init__(self, dim: int, num_heads: int = 8, **_: object) -> None:
        raise AssertionError("built although not_supported_reason said no")

    @classmethod
    def not_supported_reason(cls, *, device: str, dtype: str, seq_len: int, hparams: dict, hw=None) -> str | None:
        return f"needs N >= 32, got N={seq_len}" if seq_len < 32 else None


class _Broken(nn.Module):
    """Run as ``test_registry:_Broken``: a constructor ValueError is a bug (an error row), never a skip."""

    def __init__(self, dim: int, num_heads: int = 8, **_: object) -> None:
        raise ValueError("a bug in the constructor")


NAMES = list_attentions()  # the toy included: it is registered above


def _entry_or_skip(name: str, N: int, hw: tuple[int, int], device: str = "cpu") -> AttentionEntry:
    entry = get_attention(name)
    reason = entry.not_supported_reason(device=device, dtype="fp32", seq_len=N, hw=hw, hparams=entry.test_hparams)
    if reason:
        pytest.skip(reason)
    return entry


def _build(entry: AttentionEntry, N: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return entry.build(DIM, HEADS, seq_len=N, **entry.test_hparams)


# ------------------------------------------------------------------------------------------------ every attention


@pytest.mark.parametrize("name", NAMES)
def test_builds_runs_and_backpropagates(name: str) -> None:
    N = 64
    entry = _entry_or_skip(name, N, GRIDS[N])
    m = _build(entry, N).train()
    x = torch.randn(2, N, DIM, requires_grad=True)
    y = m(x, hw=GRIDS[N])
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: no finite gradient for {pname}"


@pytest.mark.parametrize("N", list(GRIDS), ids=lambda n: f"N{n}")
@pytest.mark.parametrize("name", NAMES)
def test_macs_formula_equals_flop_counter_mode(name: str, N: int) -> None:
    """FlopCounterMode reports 2 x MACs; it has no formula for the CPU flash SDPA kernel, hence the MATH backend."""
    entry = _entry_or_skip(name, N, GRIDS[N])
    assert entry.macs is not None, f"{name} has no macs formula"
    m = _build(entry, N).eval()
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        m(torch.randn(2, N, DIM), hw=GRIDS[N])
    assert counter.get_total_flops() == 2 * entry.count_macs(2, N, DIM, HEADS, hw=GRIDS[N], **entry.test_hparams)


# every method in both scopes; outside the core set the 12-block ViT is heavy (the same code path)
HARNESS_CASES = ([pytest.param(n, "layer", id=f"{n}-layer") for n in NAMES]
                 + [pytest.param(n, "vit-tiny", id=f"{n}-vit-tiny",
                                 marks=() if n in CORE_MODELS else pytest.mark.heavy) for n in NAMES])


@pytest.mark.parametrize("name, skeleton", HARNESS_CASES)
def test_harness_counts_the_formula(name: str, skeleton: str) -> None:
    """The harness's fvcore count of the attention modules (``attn_macs``) equals the formula, in both scopes."""
    from attnbench.measure.flops import count_flops
    from attnbench.skeletons import build_skeleton, family_of

    n, batch = 64, 2
    (hw,) = family_of(skeleton).attention_grids(n)
    entry = _entry_or_skip(name, n, hw)
    skel = build_skeleton(skeleton, name, n, hparams=dict(entry.test_hparams))
    fc = count_flops(skel.model.eval(), skel.example_input(batch), attn_modules=skel.attn_modules)
    formula = len(skel.attn_modules) * entry.count_macs(batch, n, skel.dim, skel.num_heads, hw=skel.hw,
                                                        **entry.test_hparams)
    assert fc.attn_macs == formula, f"{name}/{skeleton}: measured {fc.attn_macs} != formula {formula}"
    assert fc.flops == 2 * fc.macs and fc.macs >= fc.attn_macs > 0
    if name != "no-mixing" or skeleton != "layer":  # the control alone is two Linears and nothing else
        assert fc.elementwise_flops > 0  # softmax/exp/norm land in their own bucket
    if name in CORE_MODELS:
        assert fc.uncounted_ops == (), f"{name}: uncounted ops {fc.uncounted_ops}"


@pytest.mark.parametrize("name", NAMES)
def test_not_supported_reason_contract(name: str) -> None:
    """None or one line naming the attention; a device outside ``devices`` is refused by name; an attention that
    runs on a CPU runs there with its test settings (so the tests above do not all skip)."""
    entry = get_attention(name)
    for device in ("cpu", "cuda"):
        for dtype in ("fp32", "bf16", "fp16"):
            reason = entry.not_supported_reason(device=device, dtype=dtype, seq_len=64, hw=(8, 8),
                                                hparams=entry.test_hparams)
            assert reason is None or (isinstance(reason, str) and reason.startswith(f"{name}")
                                      and "\n" not in reason), repr(reason)
            if device not in entry.devices:
                assert reason and device in reason, f"{name} runs on {entry.devices}, yet not refused on {device}"
    if "cpu" in entry.devices:
        assert entry.not_supported_reason(device="cpu", seq_len=64, hw=(8, 8), hparams=entry.test_hparams) is None


# name, overrides, N, grid, device, what the reason says (None: it can run)
HOOK_CASES = {
    "linformer-k-eq-N": ("linformer", {"k": 64}, 64, (8, 8), "cpu", "k=64 >= N=64"),
    "linformer-k-lt-N": ("linformer", {"k": 63}, 64, (8, 8), "cpu", None),
    "nystrom-m-gt-N": ("nystromformer", {"num_landmarks": 65, "conv_kernel": 5}, 64, (8, 8), "cpu",
                       "num_landmarks=65 exceeds N=64"),
    "nystrom-m-eq-N": ("nystromformer", {"num_landmarks": 64, "conv_kernel": 5}, 64, (8, 8), "cpu", None),
    "soft-conv-s3-on-8x8": ("soft", {"sampler": "conv", "sr_ratio": 3}, 64, (8, 8), "cpu", "sr_ratio=3"),
    "soft-conv-s4-on-7x10": ("soft++", {"sampler": "conv", "sr_ratio": 4}, 70, (7, 10), "cpu", "sr_ratio=4"),
    "soft-conv-s4-on-8x8": ("soft", {"sampler": "conv", "sr_ratio": 4}, 64, (8, 8), "cpu", None),
    "soft-conv-s3-pad": ("soft", {"sampler": "conv", "sr_ratio": 3, "grid_policy": "pad"}, 64, (8, 8), "cpu", None),
    "xformers-on-cpu": ("softmax-xformers", {}, 64, (8, 8), "cpu", "runs on cuda only, not cpu"),
}


@pytest.mark.parametrize("name, hp, N, hw, device, says", HOOK_CASES.values(), ids=HOOK_CASES.keys())
def test_hooks_refuse_exactly_what_the_module_refuses(name, hp, N, hw, device, says) -> None:
    """Each "cannot run here" names its cause, and the module indeed fails there (at build or forward) and runs
    just inside the limit."""
    entry = get_attention(name)
    reason = entry.not_supported_reason(device=device, seq_len=N, hw=hw, hparams=hp)
    x = torch.randn(1, N, DIM, device=device)
    if says is None:
        assert reason is None
        assert entry.build(DIM, HEADS, seq_len=N, **hp).to(device)(x, hw=hw).shape == x.shape
        return
    assert reason is not None and reason.startswith(name) and says in reason
    with pytest.raises((ValueError, RuntimeError)):  # BackendUnavailableError is a RuntimeError
        entry.build(DIM, HEADS, seq_len=N, **hp).to(device)(x, hw=hw)


def test_xformers_without_the_package_is_refused_on_cuda() -> None:
    try:
        import xformers.ops  # noqa: F401
    except ImportError:
        reason = get_attention("softmax-xformers").not_supported_reason(device="cuda", seq_len=64)
        assert reason is not None and "xformers cannot be imported" in reason
    else:
        pytest.skip("xformers is installed here")


def test_the_cell_asks_about_every_pyramid_stage() -> None:
    """The SOFT pyramid's stage 3 sees N/16 tokens: Linformer with k = 100 fits stage 1 (1024) but not stage 3."""
    from attnbench.cell import CellSpec, SkipCell, _check_device

    entry = get_attention("linformer")
    with pytest.raises(SkipCell, match=r"linformer: k=100 >= N=64"):
        _check_device(CellSpec("linformer", "soft-tiny", 1024, hparams={"k": 100}), entry)
    _check_device(CellSpec("linformer", "soft-tiny", 1024, hparams={"k": 50}), entry)  # fits every stage


# ------------------------------------------------------------------------------------------------ the registry


def test_toy_is_listed_with_its_metadata() -> None:
    assert "toy-mean" in list_attentions() and list_attentions("toy-*") == ["toy-mean"]
    e = get_attention("toy-mean")
    assert e.cls is ToyMeanAttention and e.complexity == "O(N d^2)" and e.devices == ("cpu", "cuda")
    assert dict(e.defaults) == {} and dict(e.test_hparams) == {} and not e.needs_seq_len
    assert e.count_macs(1, 16, 192, 3) == 2 * 16 * 192 * 192


def test_toy_is_swept_and_its_macs_counted(tmp_path, cell_runner) -> None:
    """Defined and registered in this file only: the sweep runs it in a cell and audits its formula."""
    from attnbench.sweep import SweepConfig, run_sweep

    cfg = SweepConfig(models=["toy-mean"], seq_lens=[16], skeleton="layer", modes=["infer"], device="cpu",
                      min_time=0.01, threads=1, timeout=120)
    df = run_sweep(cfg, tmp_path / "run", runner=cell_runner)
    (row,) = df.to_dict("records")
    assert row["status"] == "ok", row
    assert row["attn_macs"] == row["attn_macs_formula"] == ToyMeanAttention.macs(1, 16, 192, 3)


def test_cell_skips_on_the_hook_and_errors_on_a_constructor_bug(cell_runner) -> None:
    from attnbench.cell import CellSpec

    row = cell_runner.run(CellSpec("test_registry:_Refuses", "layer", 16, min_time=0.01), timeout=120)
    assert row["status"] == "skipped" and row["reason"] == "test_registry:_Refuses: needs N >= 32, got N=16", row
    row = cell_runner.run(CellSpec("test_registry:_Broken", "layer", 16, min_time=0.01), timeout=120)
    assert row["status"] == "error" and "ValueError: a bug in the constructor" in row["reason"], row


def test_listing_orders() -> None:
    names = list_attentions()
    assert names == sorted(names)
    reg = list_attentions(order="registration")
    assert reg[:len(CORE_MODELS)] == list(CORE_MODELS) and sorted(reg) == names
    assert reg == list_attentions(order="registration")  # stable
    assert reg.index("soft++") < reg.index("toy-mean")  # built-ins before attentions registered later
    # the core name first, then module by module (baselines.controls before baselines.softmax)
    assert list_attentions("softmax*", order="registration") == ["softmax", "softmax-tied", "softmax-math",
                                                                  "softmax-xformers"]
    with pytest.raises(ValueError, match="accepted: name, registration"):
        list_attentions(order="colour")


def test_every_builtin_comes_from_class_metadata() -> None:
    import baselines as B
    import soft as S

    assert [e.name for e in entries_of(B.SoftmaxAttention)] == ["softmax", "softmax-math", "softmax-xformers"]
    assert [e.name for e in entries_of(S.SoftAttention)] == ["soft", "soft++", "soft-matched", "soft-pool"]
    assert get_attention("softmax-xformers").devices == ("cuda",)
    assert get_attention("linformer").needs_seq_len and get_attention("linformer").macs is B.linformer_macs
    assert dict(get_attention("soft++").defaults) == {**get_attention("soft").defaults, "symmetric_norm": True}
    for name in CORE_MODELS:
        assert get_attention(name).description and get_attention(name).complexity


def test_duplicates_and_unknown_names_are_errors() -> None:
    class Again(nn.Module):
        variants = {"toy-mean": {}}

    with pytest.raises(ValueError, match="'toy-mean' is already registered .*ToyMeanAttention"):
        register_attention(Again)
    with pytest.raises(ValueError, match="'softmax' is already registered"):
        register_attention(Again, name="softmax")
    assert get_attention("toy-mean").cls is ToyMeanAttention  # nothing replaced
    with pytest.raises(ValueError, match=r"unknown attention 'nope'; registered: .*nystromformer.*toy-mean"):
        get_attention("nope")


def test_registration_forms_and_bad_metadata() -> None:
    class Plain(nn.Module):  # no metadata: a name is needed
        def __init__(self, dim, num_heads=8, **_):
            super().__init__()

    with pytest.raises(ValueError, match="has no `variants` metadata"):
        register_attention(Plain)
    try:
        assert register_attention(name="toy-plain", defaults={"a": 1})(Plain) is Plain  # decorator with fields
        e = get_attention("toy-plain")
        assert e.cls is Plain and dict(e.defaults) == {"a": 1} and e.macs is None and e.devices == ("cpu", "cuda")
        with pytest.raises(TypeError):  # keyword fields only after name and cls
            AttentionEntry("x", Plain, {"a": 1})
        with pytest.raises(dataclasses.FrozenInstanceError):
            e.name = "other"
        with pytest.raises(TypeError):
            e.defaults["a"] = 2  # a read-only view
    finally:
        from attnbench import registry

        registry._REGISTRY.pop("toy-plain", None)

    class BadKey(nn.Module):
        variants = {"toy-bad": {"default": {}}}

    with pytest.raises(ValueError, match=r"unknown key\(s\) \['default'\]; accepted: defaults, "):
        register_attention(BadKey)
    assert "toy-bad" not in list_attentions()


def test_user_class_by_path_has_its_class_metadata_and_no_defaults() -> None:
    from attnbench import registry

    try:
        e = get_attention("test_registry:ToyMeanAttention")
        assert e.cls is ToyMeanAttention and dict(e.defaults) == {} and e.macs is ToyMeanAttention.macs
        assert e.description == "user attention test_registry:ToyMeanAttention"
    finally:
        registry._REGISTRY.pop("test_registry:ToyMeanAttention", None)
    with pytest.raises(ValueError, match="cannot import user attention"):
        get_attention("test_registry:Nope")
