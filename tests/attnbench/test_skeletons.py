"""Identical skeletons: only the attention differs; N maps to the most square grid; bad N is refused."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnbench.registry import AttentionEntry, register_attention
from attnbench.skeletons import build_skeleton, grid_for


class _Sdpa(nn.Module):
    def __init__(self, dim, num_heads=8, *, qkv_bias=True, attn_drop=0.0, proj_drop=0.0, extra: int = 0):
        super().__init__()
        self.h = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.extra = nn.Parameter(torch.randn(extra)) if extra else None  # shifts the RNG stream
        self.seen_hw = None

    def forward(self, x, hw=None):
        self.seen_hw = hw
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.h, C // self.h).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))


@pytest.fixture(scope="module", autouse=True)
def _register():
    for name, extra in (("_sk_a", 0), ("_sk_b", 777)):
        register_attention(AttentionEntry(name, _Sdpa, defaults={"extra": extra}), overwrite=True)


@pytest.mark.parametrize("n,hw", [(1024, (32, 32)), (2048, (32, 64)), (196, (14, 14)), (4096, (64, 64)), (8, (2, 4))])
def test_grid_most_square(n, hw):
    assert grid_for(n) == hw


@pytest.mark.parametrize("n", [1021, 0, 2 * 1021])
def test_grid_refuses_untileable(n):
    with pytest.raises(ValueError, match="sequence length"):
        grid_for(n)


def test_pyramid_grid_needs_multiples_of_8():
    assert grid_for(3136, multiple=8) == (56, 56)
    with pytest.raises(ValueError, match="multiples of 8"):
        grid_for(3000, multiple=8)


def test_vit_non_attention_weights_identical_across_attentions():
    a = build_skeleton("vit-tiny", "_sk_a", 64, seed=3)
    b = build_skeleton("vit-tiny", "_sk_b", 64, seed=3)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    shared = [k for k in sa if ".attn." not in k]
    assert len(shared) > 50
    assert all(torch.equal(sa[k], sb[k]) for k in shared)
    # the attentions themselves were drawn from a different stream: the copy is what made the rest equal
    assert "blocks.0.attn.inner.extra" in sb and "blocks.0.attn.inner.extra" not in sa


def test_vit_sees_exactly_n_tokens_and_the_grid():
    sk = build_skeleton("vit-tiny", "_sk_a", 32, num_classes=10)
    assert sk.hw == (4, 8) and sk.input_shape == (3, 64, 128)
    out = sk.model(sk.example_input(2))
    assert out.shape == (2, 10)
    assert all(m.seen_hw == (4, 8) for m in sk.attn_modules)
    assert sk.model.pos_embed.shape[1] == 32  # no class token: the attention sees N tokens


def test_layer_scope_shapes():
    sk = build_skeleton("layer", "_sk_a", 48)
    x = sk.example_input(3)
    assert x.shape == (3, 48, 192) and sk.model(x).shape == x.shape


def test_unknown_skeleton_lists_accepted():
    with pytest.raises(ValueError, match="accepted: vit-tiny"):
        build_skeleton("vit-giant", "_sk_a", 64)


def test_vit_depth_suffix_builds_the_first_blocks():
    sk = build_skeleton("vit-tiny-d2", "_sk_a", 16)
    assert len(sk.model.blocks) == 2 and len(sk.attn_modules) == 2
    assert sk.model(sk.example_input(1)).shape == (1, 1000)


@pytest.mark.parametrize("name", ["vit-tiny-d13", "vit-tiny-d0", "vit-huge-d2", "layer-d2"])
def test_bad_depth_suffix_is_refused(name):
    with pytest.raises(ValueError, match="vit-<size>-d<depth>"):
        build_skeleton(name, "_sk_a", 16)


@pytest.mark.parametrize("model,norm", [("soft", False), ("soft++", True)])
def test_pyramid_keeps_the_papers_stage_settings(model, norm):
    """The registry's sweep defaults (pooled m = 49, k = 3) never replace the paper's per-stage SOFT settings."""
    sk = build_skeleton("soft-tiny", model, 3136)
    stages = {m.num_landmarks(hw): m for m, hw in zip(sk.attn_modules, [(56, 56)] + [(28, 28)] * 2 + [(14, 14)] * 3)}
    assert set(stages) == {49}  # s = 8, 4, 2 at 56, 28, 14
    assert [m.local_conv.conv.kernel_size[0] for m in sk.attn_modules] == [9, 5, 5, 3, 3, 3]
    assert all(type(m.sampler).__name__ == "ConvLandmarks" and m.symmetric_norm is norm for m in sk.attn_modules)
    import timm

    paper = timm.create_model("soft_tiny")
    assert sum(p.numel() for p in sk.model.parameters()) == sum(p.numel() for p in paper.parameters())
