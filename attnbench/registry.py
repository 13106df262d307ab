"""Registry of attention mechanisms: a name maps to its class, default hyper-parameters and MAC formula.

Every registered class follows the one interface of DESIGN.md::

    Attn(dim, num_heads, *, qkv_bias=True, **hparams);  forward(x[B, N, C], hw=None) -> [B, N, C]

``macs(B, N, dim, num_heads, hw=None, **hparams)`` is the closed-form count of multiply-accumulates of one forward
pass of the whole module (projections, convs and attention matmuls; elementwise ops excluded), the number fvcore
must reproduce.
"""
from __future__ import annotations

import fnmatch
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = [
    "AttentionEntry", "register_attention", "get_attention", "list_attentions", "resolve_hparams",
    "CORE_MODELS", "parse_models",
]

CORE_MODELS = ("soft", "softmax", "performer", "linformer", "nystromformer")


@dataclass(frozen=True)
class AttentionEntry:
    """One registered attention.

    Attributes:
        name: registry key used on the command line.
        cls: the nn.Module class (timm needs a class, never a partial).
        defaults: hyper-parameters passed to ``cls`` unless overridden (``--hparam name.key=value``).
        macs: closed-form MAC count ``macs(B, N, dim, num_heads, hw=None, **hparams) -> int``, or None if unknown.
        complexity: human-readable cost, e.g. ``"O(N m d)"``.
        needs_seq_len: the module is built for one sequence length and takes it as ``seq_len``.
        devices: device types it can run on; others become ``skipped`` cells.
        description: one line for ``attnbench list``.
    """

    name: str
    cls: type
    defaults: dict[str, Any] = field(default_factory=dict)
    macs: Callable[..., int] | None = None
    complexity: str = ""
    needs_seq_len: bool = False
    devices: tuple[str, ...] = ("cpu", "cuda")
    description: str = ""

    def __hash__(self) -> int:  # defaults is a dict; the name is the identity
        return hash(self.name)

    def build(self, dim: int, num_heads: int, *, seq_len: int | None = None, qkv_bias: bool = True,
              **overrides: Any):
        """Instantiate the module with defaults merged under ``overrides`` (the caller wins)."""
        hp = self.hparams(overrides, seq_len=seq_len)
        return self.cls(dim, num_heads, qkv_bias=qkv_bias, **hp)

    def hparams(self, overrides: dict[str, Any] | None = None, *, seq_len: int | None = None) -> dict[str, Any]:
        hp = {**self.defaults, **{k: v for k, v in (overrides or {}).items() if v is not None}}
        if self.needs_seq_len:
            if seq_len is None:
                raise ValueError(f"attention {self.name!r} is built for one sequence length: pass seq_len")
            hp["seq_len"] = seq_len
        return hp

    def count_macs(self, B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None,
                   **overrides: Any) -> int | None:
        if self.macs is None:
            return None
        hp = self.hparams(overrides, seq_len=N)
        return int(self.macs(B, N, dim, num_heads, hw=hw, **hp))


_REGISTRY: dict[str, AttentionEntry] = {}
_BUILTINS_LOADED = False


def register_attention(entry: AttentionEntry, *, overwrite: bool = False) -> AttentionEntry:
    if entry.name in _REGISTRY and not overwrite:
        raise ValueError(f"attention {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def _load_builtins() -> None:
    # a flag, not "registry empty": a user attention registered first must not hide the built-ins
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    importlib.import_module("attnbench.builtin_attentions")
    _BUILTINS_LOADED = True


def list_attentions(pattern: str = "*") -> list[str]:
    _load_builtins()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def _from_path(spec: str) -> AttentionEntry:
    """A user attention given as ``package.module:Class`` (or an entry point ``attnbench.attentions``)."""
    mod_name, _, cls_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import user attention {spec!r}: {e}") from None
    if not (inspect.isclass(cls)):
        raise ValueError(f"user attention {spec!r} is not a class")
    macs = getattr(cls, "macs", None)
    return AttentionEntry(name=spec, cls=cls, macs=macs, description=f"user attention {spec}")


def _from_entry_point(name: str) -> AttentionEntry | None:
    from importlib.metadata import entry_points

    for ep in entry_points(group="attnbench.attentions"):
        if ep.name == name:
            obj = ep.load()
            return obj if isinstance(obj, AttentionEntry) else AttentionEntry(name=name, cls=obj,
                                                                               macs=getattr(obj, "macs", None))
    return None


def get_attention(name: str) -> AttentionEntry:
    """Look up a registered attention, a ``module:Class`` path, or an ``attnbench.attentions`` entry point."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return register_attention(_from_path(name))
    ep = _from_entry_point(name)
    if ep is not None:
        return register_attention(ep)
    raise ValueError(f"unknown attention {name!r}; registered: {', '.join(list_attentions())} "
                     "(or a user attention as module:Class)")


def parse_models(text: str) -> list[str]:
    """``"soft,performer"``, ``"core"`` or ``"all"`` -> validated names, order kept, duplicates dropped."""
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        expanded = list_attentions() if part == "all" else list(CORE_MODELS) if part == "core" else [part]
        for n in expanded:
            get_attention(n)
            if n not in names:
                names.append(n)
    if not names:
        raise ValueError("no models given; pass a comma list of registered names, 'core' or 'all'")
    return names


def resolve_hparams(pairs: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Parse ``["soft.landmarks=64", "performer.nb_features=128"]`` into ``{model: {key: value}}``.

    Values are read as Python literals (int, float, bool, None, tuples) and fall back to strings. Keys are checked
    against the class's constructor so that a typo fails before a sweep starts.
    """
    import ast

    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        lhs, eq, rhs = pair.partition("=")
        model, dot, key = lhs.strip().rpartition(".")
        if not eq or not dot or not model or not key:
            raise ValueError(f"bad --hparam {pair!r}; expected model.key=value, e.g. soft.landmarks=64")
        entry = get_attention(model)
        params = inspect.signature(entry.cls.__init__).parameters
        accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if key not in params and not accepts_any:
            valid = [p for p in params if p not in ("self", "dim", "num_heads")]
            raise ValueError(f"bad --hparam {pair!r}: {model} has no hyper-parameter {key!r}; "
                             f"accepted: {', '.join(valid)}")
        try:
            value = ast.literal_eval(rhs.strip())
        except (ValueError, SyntaxError):
            value = rhs.strip()
        out.setdefault(model, {})[key] = value
    return out
