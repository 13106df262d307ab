"""The SOFT pyramid (arXiv 2110.11945 Table 1; reference fudan-zvg/SOFT @ d3febc3,
``models/softmax_free_vision_transformer.py`` and ``models/softmax_free_transformer.py``; docs/methods.md,
"The SOFT pyramid").

Four stages at strides 4/8/16/32. Stages 1–3 are post-norm SOFT blocks whose attention is a class passed in
(SOFT by default: conv landmarks with s = 8/4/2, local value conv k = 9/5/3, so m = 49 at 224²), so that any
peer attention can be put in the same pyramid. Stage 4 is full softmax MHSA in a pre-norm PVT block with a cls
token, as in the paper. Sizes live in :data:`SOFT_SIZES`; ``timm.create_model("soft_tiny")`` works after
``import soft``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from timm.models import register_model
from torch import Tensor, nn

from .attention import SoftAttention

__all__ = ["SoftPyramid", "SoftBlock", "MHSABlock", "SOFT_SIZES", "SOFT_STAGE_DEFAULTS"]

# (embed_dims, num_heads, depths) of the official code, except Small: the released ``soft_small`` has depths
# 1/3/20/4, which gives 38.9 M params, not the README's 24 M; 1/3/7/4 gives 24.2 M and the README's FLOPs, so we
# take the README's model ("small") and register the code's as "small_d20". README params / FLOPs at 224²:
# 13/24/45/64/87 M and 1.9/3.3/7.2/11.0/16.3 G.
SOFT_SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "tiny": dict(embed_dims=(64, 128, 320, 512), num_heads=(2, 4, 10, 16), depths=(1, 2, 3, 2)),
    "small": dict(embed_dims=(64, 128, 320, 512), num_heads=(2, 4, 10, 16), depths=(1, 3, 7, 4)),
    "medium": dict(embed_dims=(64, 128, 288, 512), num_heads=(2, 4, 9, 16), depths=(1, 3, 29, 5)),
    "large": dict(embed_dims=(64, 128, 320, 512), num_heads=(2, 4, 10, 16), depths=(1, 3, 40, 5)),
    "huge": dict(embed_dims=(64, 128, 352, 512), num_heads=(2, 4, 11, 16), depths=(1, 5, 49, 5)),
    "small_d20": dict(embed_dims=(64, 128, 320, 512), num_heads=(2, 4, 10, 16), depths=(1, 3, 20, 4)),
}
# per-stage SOFT hyperparameters of the official code (stages 1–3)
SOFT_STAGE_DEFAULTS: tuple[dict, ...] = (
    dict(sampler="conv", sr_ratio=8, conv_kernel=9),
    dict(sampler="conv", sr_ratio=4, conv_kernel=5),
    dict(sampler="conv", sr_ratio=2, conv_kernel=3),
)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU()]


class Mlp(nn.Sequential):
    """Linear -> activation -> Linear, with dropout after each (as PVT)."""

    def __init__(self, dim: int, hidden: int, act: nn.Module, drop: float = 0.) -> None:
        super().__init__(nn.Linear(dim, hidden), act, nn.Dropout(drop), nn.Linear(hidden, dim), nn.Dropout(drop))


class SoftBlock(nn.Module):
    """Post-norm block of stages 1–3: y = LN(x + Drop(Attn(x))), out = LN(y + Drop(MLP(y))).

    As the official code, "Drop" is ``nn.Dropout`` with p from the drop-path schedule (not DropPath), the MLP is
    4·dim with tanh-GELU, and the LayerNorms use the default eps.
    """

    def __init__(self, dim: int, attn: nn.Module, drop: float = 0.) -> None:
        super().__init__()
        self.attn = attn
        self.drop1 = nn.Dropout(drop)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim, nn.GELU(approximate="tanh"))
        self.drop2 = nn.Dropout(drop)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        x = self.norm1(x + self.drop1(self.attn(x, hw=hw)))
        return self.norm2(x + self.drop2(self.mlp(x)))


class MHSA(nn.Module):
    """Softmax attention of stage 4 (PVT with sr_ratio 1: separate q and kv projections), explicit matmuls so
    that FLOP counters see them (fvcore drops ``scaled_dot_product_attention``)."""

    def __init__(self, dim: int, num_heads: int, drop: float = 0.) -> None:
        super().__init__()
        self.num_heads, self.scale = num_heads, (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        h = self.num_heads
        q = self.q(x).reshape(B, N, h, C // h).transpose(1, 2)  # [B, h, N, d]
        k, v = self.kv(x).reshape(B, N, 2, h, C // h).permute(2, 0, 3, 1, 4)  # 2 × [B, h, N, d]
        attn = (torch.matmul(q, k.transpose(-1, -2)) * self.scale).softmax(-1)  # [B, h, N, N]
        out = torch.matmul(attn, v).transpose(1, 2).reshape(B, N, C)  # [B, N, C]
        return self.proj_drop(self.proj(out))


class MHSABlock(nn.Module):
    """Pre-norm PVT block of stage 4: x + DropPath(MHSA(LN x)), x + DropPath(MLP(LN x)); MLP 4·dim, exact GELU."""

    def __init__(self, dim: int, num_heads: int, drop: float = 0., drop_path: float = 0.) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MHSA(dim, num_heads, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim, nn.GELU(), drop)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def _stage_attn_kwargs(attn_layer: type[nn.Module], attn_kwargs: Sequence[dict] | None) -> list[dict]:
    """Stage defaults (SOFT only) with the caller's dict merged over them; the caller wins."""
    if attn_kwargs is None:
        attn_kwargs = [{}, {}, {}]
    if len(attn_kwargs) != 3:
        raise ValueError(f"attn_kwargs must hold one dict per stage 1-3 (3 dicts), got {len(attn_kwargs)}")
    if not (isinstance(attn_layer, type) and issubclass(attn_layer, SoftAttention)):
        return [dict(kw) for kw in attn_kwargs]
    merged = []
    for default, kw in zip(SOFT_STAGE_DEFAULTS, attn_kwargs):
        default = dict(default)
        if kw.get("sampler", "conv") != "conv" and "sr_ratio" not in kw:
            del default["sr_ratio"]  # sr_ratio belongs to the conv sampler only
        merged.append({**default, **kw})
    return merged


def _down(side: int, times: int) -> int:
    for _ in range(times):
        side = -(-side // 2)  # 3×3 stride-2 conv with padding 1
    return side


class SoftPyramid(nn.Module):
    """The SOFT paper's 4-stage pyramid with a swappable attention in stages 1–3.

    Args:
        img_size: input side or (H, W); sizes the position-embedding tables (input of another size gets them
            bilinearly resized). Sides that are multiples of 32 tile the conv landmarks exactly.
        in_chans: input channels.
        num_classes: classifier outputs (0: no head, ``forward`` returns the cls features).
        embed_dims, num_heads, depths: per stage (see :data:`SOFT_SIZES`).
        drop_rate: dropout after position embeddings and in stage 4.
        drop_path_rate: stochastic-depth rate, linearly increasing over all blocks (Dropout in stages 1–3, as
            the official code; DropPath in stage 4).
        attn_layer: attention class for stages 1–3, built as ``attn_layer(dim, num_heads, qkv_bias=True, **kw)``
            and called as ``attn(x, hw=(H, W))``.
        attn_kwargs: one dict per stage 1–3. For :class:`SoftAttention` each is merged over the paper's stage
            defaults (:data:`SOFT_STAGE_DEFAULTS`; setting another sampler drops the default sr_ratio); for any
            other class only the dict is passed.
    """

    def __init__(self, img_size: int | tuple[int, int] = 224, in_chans: int = 3, num_classes: int = 1000,
                 embed_dims: Sequence[int] = (64, 128, 320, 512), num_heads: Sequence[int] = (2, 4, 10, 16),
                 depths: Sequence[int] = (1, 2, 3, 2), drop_rate: float = 0., drop_path_rate: float = 0.,
                 attn_layer: type[nn.Module] = SoftAttention, attn_kwargs: Sequence[dict] | None = None) -> None:
        super().__init__()
        if not (len(embed_dims) == len(num_heads) == len(depths) == 4):
            raise ValueError("embed_dims, num_heads and depths must each have 4 entries (one per stage)")
        if not isinstance(attn_layer, type):
            raise ValueError(f"attn_layer must be a class (not an instance or partial), got {attn_layer!r}")
        img_hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.num_classes, self.num_features = num_classes, embed_dims[-1]
        stage_kwargs = _stage_attn_kwargs(attn_layer, attn_kwargs)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        dpr = [dpr[sum(depths[:i]):sum(depths[:i + 1])] for i in range(4)]

        # stem (stride 4) for stage 1, a 3×3 stride-2 conv before each later stage; all Conv-BN-ReLU
        self.patch_embeds = nn.ModuleList([
            nn.Sequential(*_conv_bn_relu(in_chans, 32, 2), *_conv_bn_relu(32, 32, 1),
                          *_conv_bn_relu(32, embed_dims[0], 2)),
            *[nn.Sequential(*_conv_bn_relu(embed_dims[i - 1], embed_dims[i], 2)) for i in range(1, 4)],
        ])
        self.pos_grids = [(_down(img_hw[0], i + 2), _down(img_hw[1], i + 2)) for i in range(4)]
        self.pos_embeds = nn.ParameterList([
            nn.Parameter(torch.zeros(1, gh * gw + (i == 3), embed_dims[i])) for i, (gh, gw) in enumerate(self.pos_grids)
        ])  # stage 4's table has the cls token's entry first
        self.pos_drop = nn.Dropout(drop_rate)
        self.stages = nn.ModuleList([
            nn.ModuleList([
                SoftBlock(embed_dims[i], attn_layer(embed_dims[i], num_heads[i], qkv_bias=True, **stage_kwargs[i]),
                          drop=dpr[i][j])
                for j in range(depths[i])])
            for i in range(3)
        ])
        self.stages.append(nn.ModuleList([
            MHSABlock(embed_dims[3], num_heads[3], drop=drop_rate, drop_path=dpr[3][j]) for j in range(depths[3])]))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims[3]))
        self.norm = nn.LayerNorm(embed_dims[3], eps=1e-6)
        self.head = nn.Linear(embed_dims[3], num_classes) if num_classes > 0 else nn.Identity()

        for p in (*self.pos_embeds, self.cls_token):
            trunc_normal_(p, std=.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"cls_token"}

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _pos(self, i: int, hw: tuple[int, int]) -> Tensor:
        """Stage i's position table at grid hw: [1, H·W (+1 cls at stage 4), C], bilinear resize if needed."""
        table = self.pos_embeds[i]
        if hw == self.pos_grids[i]:
            return table
        cls, grid = (table[:, :1], table[:, 1:]) if i == 3 else (table[:, :0], table)
        gh, gw = self.pos_grids[i]
        grid = grid.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)  # [1, C, gh, gw]
        grid = F.interpolate(grid, size=hw, mode="bilinear", align_corners=False)
        return torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1)

    def forward_features(self, x: Tensor) -> Tensor:
        """[B, in_chans, H, W] -> cls features [B, C4]."""
        B = x.shape[0]
        for i in range(4):
            x = self.patch_embeds[i](x)  # [B, C_i, H_i, W_i]
            hw = (x.shape[2], x.shape[3])
            x = x.flatten(2).transpose(1, 2)  # [B, N_i, C_i]
            if i == 3:
                x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)  # [B, 1 + N_4, C_4]
            x = self.pos_drop(x + self._pos(i, hw))
            for blk in self.stages[i]:
                x = blk(x, hw) if i < 3 else blk(x)
            if i < 3:
                x = x.transpose(1, 2).reshape(B, -1, *hw)  # [B, C_i, H_i, W_i]
        return self.norm(x)[:, 0]

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _create_soft(size: str, pretrained: bool = False, **kwargs) -> SoftPyramid:
    if pretrained:
        raise ValueError("no pretrained SOFT weights are bundled with this package; use pretrained=False")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # passed by timm.create_model
        kwargs.pop(key, None)
    model = SoftPyramid(**{**SOFT_SIZES[size], **kwargs})
    model.default_cfg = model.pretrained_cfg = dict(
        architecture=f"soft_{size}", num_classes=model.num_classes, input_size=(3, 224, 224),
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.9, interpolation="bicubic")
    return model


@register_model
def soft_tiny(pretrained: bool = False, **kwargs) -> SoftPyramid:
    return _create_soft("tiny", pretrained, **kwargs)


@register_model
def soft_small(pretrained: bool = False, **kwargs) -> SoftPyramid:
    """SOFT-Small as the official README reports it: depths 1/3/7/4, 24.2 M params, 3.3 GMACs at 224².

    The official code's ``soft_small`` has depths 1/3/20/4 (38.9 M params), which matches neither the README's
    params nor its FLOPs; that model is :func:`soft_small_d20`.
    """
    return _create_soft("small", pretrained, **kwargs)


@register_model
def soft_small_d20(pretrained: bool = False, **kwargs) -> SoftPyramid:
    """The official code's ``soft_small``: depths 1/3/20/4, 38.9 M params (not the README's 24 M model)."""
    return _create_soft("small_d20", pretrained, **kwargs)


@register_model
def soft_medium(pretrained: bool = False, **kwargs) -> SoftPyramid:
    return _create_soft("medium", pretrained, **kwargs)


@register_model
def soft_large(pretrained: bool = False, **kwargs) -> SoftPyramid:
    return _create_soft("large", pretrained, **kwargs)


@register_model
def soft_huge(pretrained: bool = False, **kwargs) -> SoftPyramid:
    return _create_soft("huge", pretrained, **kwargs)
