"""Registry of attention mechanisms: a name maps to its class, default hyper-parameters and MAC formula.

Every registered class follows the one interface::

    Attn(dim, num_heads, *, qkv_bias=True, **hparams);  forward(x[B, N, C], hw=None) -> [B, N, C]

An attention describes itself with class attributes, plain data its package defines without importing attnbench
(the built-ins in ``soft/`` and ``baselines/`` are found by :mod:`attnbench.builtin_attentions`)::

    class MyAttention(nn.Module):
        variants = {"mine": dict(defaults=dict(m=64), complexity="O(N m d)", description="...",
                                 test_hparams=dict(m=8))}    # one registry entry per key (keys: VARIANT_KEYS)
        devices = ("cpu", "cuda")                             # optional; a variant may override it
        needs_seq_len = False                                 # optional: True if built for one N (``seq_len``)

        @classmethod
        def macs(cls, B, N, dim, num_heads, hw=None, **hparams) -> int: ...

        @classmethod
        def not_supported_reason(cls, *, device, dtype, seq_len, hparams, hw=None) -> str | None: ...

An attention may also define ``diagnostics(self, x, hw=None) -> dict[str, float]``: figures that explain its
behaviour on the tokens ``x`` one block saw (``attnbench train`` logs their mean over blocks each epoch as
``diag_<name>``; see :mod:`attnbench.train.diagnostics`). The shell of the baselines gives every softmax-like map
an ``entropy``.

``macs`` is the closed-form count of multiply-accumulates of one forward pass of the whole module (projections,
convs and attention matmuls; elementwise ops excluded), the number fvcore must reproduce. ``not_supported_reason``
says why the module cannot run on ``device`` ("cpu" or "cuda") in ``dtype`` ("fp32", "bf16", "fp16") for
``seq_len`` tokens on grid ``hw`` with ``hparams`` (every keyword argument the constructor will get, its own
defaults included), or None if it can: the harness asks before building and makes a ``skipped`` row of the
answer, so any exception the constructor raises afterwards is a bug (an ``error`` row).

``@register_attention`` on such a class registers its variants (timm's ``register_model`` manner);
``register_attention(cls, name=..., defaults=...)`` registers a class without metadata.
"""
from __future__ import annotations

import fnmatch
import importlib
import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

__all__ = [
    "AttentionEntry", "register_attention", "get_attention", "list_attentions", "resolve_hparams",
    "CORE_MODELS", "DEFAULT_DEVICES", "VARIANT_KEYS", "entries_of", "parse_models",
]

CORE_MODELS = ("soft", "softmax", "performer", "linformer", "nystromformer")
DEFAULT_DEVICES = ("cpu", "cuda")
# what a class's ``variants[name]`` may set; the rest of an entry comes from the class itself
VARIANT_KEYS = ("defaults", "complexity", "description", "devices", "needs_seq_len", "test_hparams")
ORDERS = ("name", "registration")


@dataclass(frozen=True)
class AttentionEntry:
    """One registered attention (frozen; every field after ``cls`` is keyword-only).

    Attributes:
        name: registry key used on the command line.
        cls: the nn.Module class (timm needs a class, never a partial).
        defaults: hyper-parameters passed to ``cls`` unless overridden (``--hparam name.key=value``).
        macs: closed-form MAC count ``macs(B, N, dim, num_heads, hw=None, **hparams) -> int``, or None if unknown.
        complexity: human-readable cost, e.g. ``"O(N m d)"``.
        description: one line for ``attnbench list``.
        devices: device types it can run on; others become ``skipped`` cells.
        needs_seq_len: the module is built for one sequence length and takes it as ``seq_len``.
        test_hparams: overrides that make the module small enough for the registry's unit tests (N = 64).
    """

    name: str
    cls: type
    defaults: Mapping[str, Any] = field(default_factory=dict, kw_only=True)
    macs: Callable[..., int] | None = field(default=None, kw_only=True)
    complexity: str = field(default="", kw_only=True)
    description: str = field(default="", kw_only=True)
    devices: tuple[str, ...] = field(default=DEFAULT_DEVICES, kw_only=True)
    needs_seq_len: bool = field(default=False, kw_only=True)
    test_hparams: Mapping[str, Any] = field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        # read-only views: an entry is shared by every caller, none may change another's defaults
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "test_hparams", MappingProxyType(dict(self.test_hparams)))
        object.__setattr__(self, "devices", tuple(self.devices))

    def __hash__(self) -> int:  # defaults is a mapping; the name is the identity
        return hash(self.name)

    def build(self, dim: int, num_heads: int, *, seq_len: int | None = None, qkv_bias: bool = True,
              **overrides: Any):
        """Instantiate the module with defaults merged under ``overrides`` (the caller wins)."""
        hp = self.hparams(overrides, seq_len=seq_len)
        return self.cls(dim, num_heads, qkv_bias=qkv_bias, **hp)

    def hparams(self, overrides: Mapping[str, Any] | None = None, *, seq_len: int | None = None) -> dict[str, Any]:
        """The defaults merged under ``overrides`` (a None override keeps the default), plus ``seq_len`` if needed."""
        hp = {**self.defaults, **{k: v for k, v in (overrides or {}).items() if v is not None}}
        if self.needs_seq_len:
            if seq_len is None:
                raise ValueError(f"attention {self.name!r} is built for one sequence length: pass seq_len")
            hp["seq_len"] = seq_len
        return hp

    def count_macs(self, B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None,
                   **overrides: Any) -> int | None:
        """The formula at these shapes and hyper-parameters (defaults under ``overrides``), or None without one."""
        if self.macs is None:
            return None
        hp = self.hparams(overrides, seq_len=N)
        return int(self.macs(B, N, dim, num_heads, hw=hw, **hp))

    def not_supported_reason(self, *, device: str, dtype: str = "fp32", seq_len: int,
                             hparams: Mapping[str, Any] | None = None,
                             hw: tuple[int, int] | None = None) -> str | None:
        """Why this attention cannot run here (a one-line reason naming it), or None if it can.

        Checks ``devices``, then the class's ``not_supported_reason`` hook (if any) with every keyword argument the
        constructor would get: its own defaults, under this entry's, under ``hparams``.
        """
        kind = device.partition(":")[0]
        if kind not in self.devices:
            return f"{self.name} runs on {', '.join(self.devices)} only, not {kind}"
        hook = getattr(self.cls, "not_supported_reason", None)
        if hook is None:
            return None
        hp = {**_constructor_defaults(self.cls), **self.hparams(hparams, seq_len=seq_len)}
        hp.pop("seq_len", None)  # the hook's own argument
        reason = hook(device=kind, dtype=dtype, seq_len=seq_len, hparams=hp, hw=hw)
        return f"{self.name}: {reason}" if reason else None


def _constructor_defaults(cls: type) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    return {k: p.default for k, p in params.items()
            if p.default is not inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD}


_REGISTRY: dict[str, AttentionEntry] = {}  # insertion order is registration order
_BUILTINS_LOADED = False


def entries_of(cls: type, *, name: str | None = None, **fields: Any) -> list[AttentionEntry]:
    """The entries a class describes: one per key of its own ``variants``, or the one named ``name``.

    ``macs``, ``devices`` and ``needs_seq_len`` come from the class when it has them; a variant's keys
    (``VARIANT_KEYS``) and then ``fields`` override them. ``variants`` is read from the class itself, never
    inherited, so a subclass does not re-register its parent's names.
    """
    if not inspect.isclass(cls):
        raise ValueError(f"cannot register {cls!r}: an attention is a class (an nn.Module subclass)")
    base: dict[str, Any] = dict(macs=getattr(cls, "macs", None),
                                devices=tuple(getattr(cls, "devices", DEFAULT_DEVICES)),
                                needs_seq_len=bool(getattr(cls, "needs_seq_len", False)))
    if name is not None:
        return [AttentionEntry(name, cls, **{**base, **fields})]
    variants = cls.__dict__.get("variants")
    if not variants:
        raise ValueError(f"{cls.__qualname__} has no `variants` metadata; register it with a name "
                         "(register_attention(cls, name=...))")
    out = []
    for vname, meta in variants.items():
        unknown = sorted(set(meta) - set(VARIANT_KEYS))
        if unknown:
            raise ValueError(f"{cls.__qualname__}.variants[{vname!r}] has unknown key(s) {unknown}; "
                             f"accepted: {', '.join(VARIANT_KEYS)}")
        out.append(AttentionEntry(vname, cls, **{**base, **meta, **fields}))
    return out


def _add(entry: AttentionEntry, overwrite: bool) -> AttentionEntry:
    held = _REGISTRY.get(entry.name)
    if held is not None and not overwrite:
        raise ValueError(f"attention {entry.name!r} is already registered (by {held.cls.__module__}."
                         f"{held.cls.__qualname__}); pick another name")
    _REGISTRY[entry.name] = entry
    return entry


def register_attention(obj: Any = None, /, *, overwrite: bool = False, **fields: Any) -> Any:
    """Register an attention: a decorator on a class, a call on a class, or an :class:`AttentionEntry`.

    ``@register_attention`` registers the class's ``variants``; ``@register_attention(name="x", defaults=...)`` or
    ``register_attention(cls, name="x", ...)`` one entry of that name (metadata optional). A class is returned
    unchanged (so the decorator keeps it), an entry is returned as registered.

    Raises:
        ValueError: a name already registered (unless ``overwrite``; nothing is registered then), or bad metadata.
    """
    if obj is None:
        return lambda cls: register_attention(cls, overwrite=overwrite, **fields)
    _load_builtins()  # a duplicate of a built-in's name fails here, not at the first lookup
    if isinstance(obj, AttentionEntry):
        if fields:
            raise ValueError(f"register_attention(entry) takes no fields, got {sorted(fields)}")
        return _add(obj, overwrite)
    entries = entries_of(obj, **fields)
    for e in entries:  # all names checked before any is added: a class registers whole or not at all
        if e.name in _REGISTRY and not overwrite:
            _add(e, overwrite)  # raises, naming the holder
    for e in entries:
        _add(e, True)
    return obj


def _load_builtins() -> None:
    # a flag, not "registry empty": a user attention registered first must not hide the built-ins
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True  # set first: registering a built-in comes back here
    before = set(_REGISTRY)
    try:
        from attnbench.builtin_attentions import builtin_classes

        for cls in builtin_classes():
            register_attention(cls)
    except BaseException:
        # leave no partial registry behind: the next call reports the same failure, not a duplicate name
        for name in set(_REGISTRY) - before:
            del _REGISTRY[name]
        _BUILTINS_LOADED = False
        raise


def list_attentions(pattern: str = "*", *, order: str = "name") -> list[str]:
    """Registered names matching ``pattern`` (shell wildcards).

    Args:
        pattern: e.g. ``"soft*"``.
        order: ``"name"`` (sorted) or ``"registration"``: ``CORE_MODELS`` first, then the rest in the order they
            were registered (stable: built-ins by module and class order, then user attentions), e.g. to give
            every method a fixed colour in plots.
    """
    if order not in ORDERS:
        raise ValueError(f"order {order!r} is not supported; accepted: {', '.join(ORDERS)}")
    _load_builtins()
    names = [n for n in _REGISTRY if fnmatch.fnmatch(n, pattern)]
    if order == "name":
        return sorted(names)
    return [n for n in CORE_MODELS if n in names] + [n for n in names if n not in CORE_MODELS]


def _from_path(spec: str) -> AttentionEntry:
    """A user attention given as ``package.module:Class`` (class metadata optional; no registry defaults)."""
    mod_name, _, cls_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import user attention {spec!r}: {e}") from None
    if not inspect.isclass(cls):
        raise ValueError(f"user attention {spec!r} is not a class")
    return entries_of(cls, name=spec, description=f"user attention {spec}")[0]


def _from_entry_point(name: str) -> AttentionEntry | None:
    """An ``attnbench.attentions`` entry point: an :class:`AttentionEntry`, or a class registered under ``name``."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="attnbench.attentions"):
        if ep.name == name:
            obj = ep.load()
            return obj if isinstance(obj, AttentionEntry) else entries_of(obj, name=name)[0]
    return None


def get_attention(name: str) -> AttentionEntry:
    """Look up a registered attention, a ``module:Class`` path, or an ``attnbench.attentions`` entry point."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return _add(_from_path(name), False)
    ep = _from_entry_point(name)
    if ep is not None:
        return _add(ep, False)
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
        from attnbench.config import ConfigError, check_hparam_keys

        try:
            check_hparam_keys(model, get_attention(model).cls, [key])
        except ConfigError as e:
            raise ValueError(f"bad --hparam {pair!r}: {e}") from None
        try:
            value = ast.literal_eval(rhs.strip())
        except (ValueError, SyntaxError):
            value = rhs.strip()
        out.setdefault(model, {})[key] = value
    return out
