"""What a sweep may be asked for, and every check of it, in one place (no torch or pandas at import).

:class:`SweepConfig` is the sweep's input; :func:`validate` checks all of it before a cell runs. The choices
(``MODES``, ``DTYPES``, ``DEVICE_KINDS``, ``ISOLATIONS``) are Literal types, so a type checker sees them too.
``attnbench.train.config`` validates a training run with the same primitives.

Errors are :class:`ConfigError` (a ``ValueError``): one line that names the offending config *field*. A message
refers to fields through :func:`ref`, so each front end renders them in its own words: ``str(e)`` says ``seq_lens``,
the command line says ``--seq`` (``attnbench.cli._common.FLAGS``, the one field-to-flag table).
"""
from __future__ import annotations

import inspect
import json
import math
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Literal, get_args

__all__ = ["Mode", "Dtype", "DeviceKind", "Isolation", "MODES", "DTYPES", "DEVICE_KINDS", "ISOLATIONS",
           "COMPILE_MODES", "ConfigError", "ref", "check_choice", "check_positive", "check_at_most", "check_seq_len",
           "check_nonnegative", "check_modes", "check_compile",
           "check_device", "resolve_device", "check_hparam_keys", "check_hparam_values", "SweepConfig", "validate",
           "config_from_dict", "resumed_config", "check_resume", "RESUME_FIXED", "EXTENDABLE",
           "MAX_SEQ_LEN", "MAX_BATCH", "MAX_TIMEOUT", "MAX_MIN_TIME", "MAX_THREADS", "MAX_MEM_LIMIT", "MAX_REPEATS",
           "MAX_RETRIES", "MAX_SHARDS", "MAX_FAIL_ABOVE", "AUTO", "AUTO_FIRST_ROUNDS", "AUTO_MAX_ROUNDS",
           "AUTO_GROUP_BUDGET_S", "MAX_TARGET_CI", "check_repeats", "check_rounds", "first_rounds", "round_cap",
           "rounds_text"]

Mode = Literal["infer", "train"]
Dtype = Literal["fp32", "bf16", "fp16"]  # fp32, or autocast to bf16/fp16 (the weights stay fp32)
DeviceKind = Literal["cpu", "cuda"]
Isolation = Literal["fork", "spawn"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]  # torch.compile's
MODES: tuple[Mode, ...] = get_args(Mode)
DTYPES: tuple[Dtype, ...] = get_args(Dtype)
DEVICE_KINDS: tuple[DeviceKind, ...] = get_args(DeviceKind)
ISOLATIONS: tuple[Isolation, ...] = get_args(Isolation)
COMPILE_MODES: tuple[CompileMode, ...] = get_args(CompileMode)

# Upper bounds of the numeric options: beyond them a value is a typo, and would overflow something (the int64
# columns of results.parquet, a C time_t, setrlimit) only after a cell had spent its time.
MAX_SEQ_LEN = 2**24  # a 4096 x 4096 token grid: one [N, 192] fp32 activation is 12 GiB, N^2 MACs near int64's end
MAX_BATCH = 2**20
MAX_TIMEOUT = 7 * 24 * 3600.0  # a week per cell
MAX_MIN_TIME = 3600.0  # an hour of timing per cell
MAX_THREADS = 4096
MAX_MEM_LIMIT = 2**60  # 1 EiB: setrlimit's range
MAX_REPEATS = 1000  # timing rounds per cell: --min-time is split over them, so more only adds start-ups
MAX_RETRIES = 100  # extra rounds for an untrusted cell
MAX_SHARDS = 2**16  # array jobs; beyond the sweep's (N, mode) groups a shard is empty anyway
MAX_FAIL_ABOVE = 10_000.0  # percent: B 101 times slower than A; a larger threshold would switch the gate off
MAX_TARGET_CI = 100.0  # percent: an interval ±100 % wide says nothing; a larger target would stop every group at once

# --repeats auto: the first rounds every cell gets, then more for a group until every speed-up's interval is narrow
# (--target-ci) or the cap: --max-rounds (this default), or the group's time budget, whichever comes first
AUTO = "auto"
AUTO_FIRST_ROUNDS = 3
AUTO_MAX_ROUNDS = 9
AUTO_GROUP_BUDGET_S = 300.0  # a group starts no extra round that would end after this many seconds of its rounds

_REF = "\x1f"  # ASCII unit separator around a field name in a message: never part of a user's value


def ref(name: str) -> str:
    """Refer to config field ``name`` inside a :class:`ConfigError` message (rendered by each front end)."""
    return f"{_REF}{name}{_REF}"


class ConfigError(ValueError):
    """A bad config value. ``field`` is the offending field; ``str(e)`` names fields as themselves, and
    :meth:`render` with another naming (the CLI's flags)."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.template = field, message
        super().__init__(self.render())

    def render(self, name: Callable[[str], str] = str) -> str:
        """The message with every :func:`ref` field written as ``name(field)``."""
        return re.sub(f"{_REF}(\\w+){_REF}", lambda m: name(m[1]), self.template)

    def __reduce__(self) -> tuple:  # picklable across processes despite the two-argument constructor
        return type(self), (self.field, self.template)


def check_choice(name: str, value: Any, accepted: tuple[str, ...]) -> None:
    """``value`` must be one of ``accepted``."""
    if value not in accepted:
        raise ConfigError(name, f"bad {ref(name)} {value!r}; accepted: {', '.join(accepted)}")


def check_positive(name: str, value: Any, expected: str, *, integer: bool = False, optional: bool = False) -> None:
    """``value`` must be a finite number > 0 (an int if ``integer``; None allowed if ``optional``): ``inf`` and
    ``nan`` are refused."""
    if value is None and optional:
        return
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or not value > 0:
        raise ConfigError(name, f"bad {ref(name)} {value!r}; expected {expected}")


def check_nonnegative(name: str, value: Any, expected: str, *, integer: bool = False) -> None:
    """``value`` must be a finite number >= 0 (an int if ``integer``): ``inf``, ``nan`` and negatives are refused."""
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or not value >= 0:
        raise ConfigError(name, f"bad {ref(name)} {value!r}; expected {expected}")


def check_at_most(name: str, value: Any, most: float, why: str) -> None:
    """``value`` (already checked positive, or None) must be at most ``most``; ``why`` says what the limit is for."""
    if value is not None and value > most:
        def text(v: float) -> str:
            return f"{v:g}" if isinstance(v, float) else str(v)
        raise ConfigError(name, f"{ref(name)} {text(value)} exceeds the maximum {text(most)} ({why})")


def check_seq_len(name: str, n: Any) -> None:
    """A sequence length must be an int in 1 .. ``MAX_SEQ_LEN`` (checked before any grid is searched for it)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(name, f"bad sequence length {n!r} in {ref(name)}; expected a positive int")
    if n > MAX_SEQ_LEN:
        raise ConfigError(name, f"sequence length {n} in {ref(name)} exceeds the maximum N = {MAX_SEQ_LEN} (2^24, a "
                                "4096 x 4096 token grid): beyond it one [N, 192] fp32 activation exceeds 12 GiB and "
                                "the N^2 MAC counts approach the int64 limit of the results files")


def check_modes(modes: list[str]) -> None:
    if not modes or any(m not in MODES for m in modes):
        raise ConfigError("modes", f"bad {ref('modes')} {modes!r}; accepted: {', '.join(MODES)}")


def check_device(device: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:<index>`` (syntax only: no torch)."""
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError("device", f"bad {ref('device')} {device!r}; accepted: auto, cpu, cuda, cuda:<index>")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; ``cuda[:i]`` without CUDA (or past the device count) and
    anything else -> ConfigError."""
    check_device(device)
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ConfigError("device", f"{ref('device')} {device!r}: CUDA is not available (no CUDA device is visible "
                                    f"to torch); use {ref('device')} cpu or auto")
    idx = int(device.partition(":")[2] or 0)
    if idx >= torch.cuda.device_count():
        raise ConfigError("device", f"{ref('device')} {device!r}: only {torch.cuda.device_count()} CUDA device(s) "
                                    "visible")
    return device


def check_hparam_keys(model: str, cls: type, keys: Any) -> None:
    """Every key must be a constructor argument of the attention class ``cls`` (anything goes with ``**kwargs``)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    bad = sorted(set(keys) - set(params))
    if bad:
        accepted = ", ".join(p for p in params if p not in ("self", "dim", "num_heads"))
        raise ConfigError("hparams", f"{model} has no hyper-parameter {bad[0]!r}; accepted: {accepted}")


def check_hparam_values(entry: Any, hp: dict[str, Any], seq_len: int) -> None:
    """Build the attention once on the CPU (ViT-Tiny width, ``seq_len``) so that a bad value fails before a sweep,
    not as a row per cell. The caller's RNG is left as it was (Performer draws its features from it)."""
    import torch

    try:
        with torch.random.fork_rng(devices=[]):
            entry.build(192, 3, seq_len=seq_len, **hp)
    except (TypeError, ValueError) as e:
        values = ", ".join(f"{k}={v!r}" for k, v in hp.items())
        raise ConfigError("hparams", f"bad hyper-parameters for {entry.name} ({values}): "
                                     f"{str(e).splitlines()[0]}") from None


@dataclass
class SweepConfig:
    """What to sweep.

    Attributes:
        models: registered attention names (or ``module:Class``), in report order.
        seq_lens: token counts N, in order.
        skeleton: ``layer``, ``vit-tiny``, ... (``attnbench.skeletons.describe()`` lists the families).
        batch: samples per step, the same for every cell (never changed on failure).
        dtype: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        modes: ``infer`` and/or ``train``.
        device: ``auto`` (cuda if available, else cpu), ``cpu``, ``cuda`` or ``cuda:i``.
        hparams: per-model overrides of the registry defaults, ``{"soft": {"landmarks": 64}}``.
        timeout: seconds per cell before it is killed (status ``timeout``); None for no limit.
        min_time: seconds of timing per cell (at least 7 ``Timer.timeit`` blocks, see ``measure.latency``).
        threads: intra-op CPU threads per cell; None: follow the idle cores (``attnbench.machine.idle_cores``,
            sampled before each (N, mode) group's first round; at least 1).
        mem_limit: bytes of address space a cell may add after start-up (status ``oom`` beyond); None: no cap.
        shard: ``(i, n)``, 0 <= i < n: run every n-th cell starting at i; None: all cells.
        isolation: ``fork`` (cells forked from a pre-imported server: ~0.1 s start) or ``spawn`` (a new
            interpreter per cell: ~6-10 s start). Both give every cell a fresh process.
        repeats: timing rounds per cell; the cells of one (N, mode) run back to back in each round, in a rotating
            order, and ratios are paired per round (``attnbench.stats``). ``"auto"``: :data:`AUTO_FIRST_ROUNDS`,
            then more for the group's cells whose speed-up interval against the baseline is wider than
            ``target_ci`` or that fail the trust rules, up to ``max_rounds`` and :data:`AUTO_GROUP_BUDGET_S`.
        max_retries: extra rounds for a cell that fails the trust rules, before it is marked untrusted (a fixed
            ``repeats``; with ``"auto"`` the extra rounds go up to ``max_rounds``).
        target_ci: with ``repeats="auto"``, the widest speed-up interval that needs no more rounds: its half-width
            in percent of the speed-up.
        max_rounds: the most rounds a cell may take, extra rounds included; None: :data:`AUTO_MAX_ROUNDS` with
            ``"auto"``, ``repeats + max_retries`` with a fixed count.
        force: run cells whose estimated memory exceeds the machine's (or ``mem_limit``) too; by default they are
            planned as ``skipped`` rows giving the estimate (``attnbench.memory_plan``).
        compile: ``torch.compile`` (inductor) mode applied to the skeleton of every cell, or None for eager. The
            compile time is its own column, never in the latency; a method that fails to compile is an error row.
    """

    models: list[str]
    seq_lens: list[int]
    skeleton: str = "layer"
    batch: int = 1
    dtype: Dtype = "fp32"
    modes: list[Mode] = field(default_factory=lambda: ["infer"])
    device: str = "auto"
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeout: float | None = 120.0
    min_time: float = 0.5
    threads: int | None = None
    mem_limit: int | None = None
    shard: tuple[int, int] | None = None
    isolation: Isolation = "fork"
    repeats: int | Literal["auto"] = AUTO
    max_retries: int = 2
    force: bool = False
    compile: CompileMode | None = None
    target_ci: float = 5.0
    max_rounds: int | None = None


def first_rounds(config: SweepConfig) -> int:
    """The rounds every cell of a group gets before its cells are judged: ``repeats``, or 3 with ``"auto"``."""
    return AUTO_FIRST_ROUNDS if config.repeats == AUTO else int(config.repeats)


def round_cap(config: SweepConfig) -> int:
    """The most rounds a cell may take, extra rounds included (``max_rounds``, else its default)."""
    if config.max_rounds is not None:
        return config.max_rounds if config.repeats == AUTO else min(config.max_rounds,
                                                                    config.repeats + config.max_retries)
    return AUTO_MAX_ROUNDS if config.repeats == AUTO else config.repeats + config.max_retries


def rounds_text(repeats: Any, max_rounds: Any = None, target_ci: Any = None) -> str:
    """How many rounds a cell gets, in words: ``3 rounds``, or ``3 to 9 rounds (auto: until each speed-up's interval
    is within ±5 %)`` (a meta.json's config values, as stored)."""
    if repeats != AUTO:
        return f"{repeats} round(s)"
    cap = max_rounds if isinstance(max_rounds, int) else AUTO_MAX_ROUNDS
    target = f"±{target_ci:g} %" if isinstance(target_ci, (int, float)) else "the target"
    return f"{AUTO_FIRST_ROUNDS} to {cap} rounds (auto: until each speed-up's interval is within {target})"


def check_compile(mode: str | None, device: str) -> None:
    """A torch.compile mode, and on a CPU the C++ compiler inductor needs (``CXX``, else g++/c++/clang++ on PATH)."""
    if mode is None:
        return
    check_choice("compile", mode, COMPILE_MODES)
    if not device.startswith("cuda"):
        import os
        import shutil

        if not any(shutil.which(c) for c in (os.environ.get("CXX") or "", "g++", "c++", "clang++") if c):
            raise ConfigError("compile", f"{ref('compile')} on a CPU needs a C++ compiler for inductor and none was "
                                         "found (set CXX, or install g++ or clang++)")


def validate(config: SweepConfig) -> str:
    """Check everything that can be checked before a cell runs; returns the resolved device."""
    entries = _check_models(config.models)
    family = _check_skeleton_and_seq_lens(config.skeleton, config.seq_lens)
    check_positive("batch", config.batch, "an int >= 1", integer=True)
    check_at_most("batch", config.batch, MAX_BATCH, "the results' int64 counts")
    check_choice("dtype", config.dtype, DTYPES)
    check_modes(config.modes)
    check_positive("timeout", config.timeout, "a finite number of seconds > 0", optional=True)
    check_at_most("timeout", config.timeout, MAX_TIMEOUT, "a week per cell")
    check_positive("min_time", config.min_time, "a finite number of seconds > 0")
    check_at_most("min_time", config.min_time, MAX_MIN_TIME, "an hour of timing per cell")
    check_positive("threads", config.threads, "a count >= 1 (or None for one per core)", integer=True, optional=True)
    check_at_most("threads", config.threads, MAX_THREADS, "threads per cell")
    check_positive("mem_limit", config.mem_limit, "bytes > 0 or None", optional=True)
    check_at_most("mem_limit", config.mem_limit, MAX_MEM_LIMIT, "1 EiB, the range of setrlimit")
    check_choice("isolation", config.isolation, ISOLATIONS)
    check_compile(config.compile, config.device)
    check_repeats(config.repeats)
    check_nonnegative("max_retries", config.max_retries, "a count >= 0", integer=True)
    check_at_most("max_retries", config.max_retries, MAX_RETRIES, "extra rounds per untrusted cell")
    check_rounds(config)
    _check_shard(config.shard)
    for model, hp in config.hparams.items():
        if model not in entries:
            raise ConfigError("hparams", f"{ref('hparams')} given for {model!r}, which is not in {ref('models')} "
                                         f"({', '.join(config.models)})")
        check_hparam_keys(model, entries[model].cls, hp)
        if not family.per_stage_hparams:  # such a skeleton sets per-stage values; it checks them when built
            check_hparam_values(entries[model], hp, max(config.seq_lens))
    return resolve_device(config.device)


def check_repeats(repeats: Any) -> None:
    """``"auto"`` or a count of rounds in 1 .. ``MAX_REPEATS``."""
    if repeats == AUTO:
        return
    check_positive("repeats", repeats, f"{AUTO} or a count of rounds >= 1", integer=True)
    check_at_most("repeats", repeats, MAX_REPEATS, "rounds per cell; --min-time is split over them")


def check_rounds(config: SweepConfig) -> None:
    """``target_ci`` a finite percentage in (0, 100]; ``max_rounds`` None or at least the first rounds."""
    check_positive("target_ci", config.target_ci, "a finite percentage > 0, e.g. 5")
    check_at_most("target_ci", config.target_ci, MAX_TARGET_CI, "an interval ±100 % wide says nothing")
    if config.max_rounds is None:
        return
    check_positive("max_rounds", config.max_rounds, "a count of rounds >= 1", integer=True)
    check_at_most("max_rounds", config.max_rounds, MAX_REPEATS + MAX_RETRIES, "rounds per cell")
    first = first_rounds(config)
    if config.max_rounds < first:
        given = f"{ref('repeats')} {config.repeats}" + (f"'s first {first} rounds" if config.repeats == AUTO else "")
        raise ConfigError("max_rounds", f"{ref('max_rounds')} {config.max_rounds} is below {given}; a cell takes "
                                        f"at least those")


def _check_models(models: list[str]) -> dict[str, Any]:
    from attnbench.registry import get_attention

    if not models:
        raise ConfigError("models", f"no {ref('models')} given; pass registered attention names "
                                    "(see `attnbench list`)")
    entries = {m: get_attention(m) for m in models}  # unknown -> ValueError listing the registered ones
    if len(entries) != len(models):
        raise ConfigError("models", f"duplicate {ref('models')} in {models}")
    return entries


def _check_skeleton_and_seq_lens(skeleton: str, seq_lens: list[int]) -> Any:
    """The skeleton's family; every N must be a positive int its token grid can tile."""
    from attnbench.skeletons import family_of

    family = family_of(skeleton)
    if not seq_lens:
        raise ConfigError("seq_lens", f"no sequence lengths given ({ref('seq_lens')})")
    for n in seq_lens:
        check_seq_len("seq_lens", n)  # before the grid search, which takes sqrt(N) steps
        try:
            family.grid(n)
        except ValueError as e:
            raise ConfigError("seq_lens", f"{ref('seq_lens')} {n} does not fit skeleton {skeleton}: {e}; or use "
                                          f"{ref('skeleton')} layer") from None
    if len(set(seq_lens)) != len(seq_lens):
        raise ConfigError("seq_lens", f"duplicate sequence lengths in {ref('seq_lens')}: {seq_lens}")
    return family


def _check_shard(shard: tuple[int, int] | None) -> None:
    if shard is None:
        return
    ok = isinstance(shard, (tuple, list)) and len(shard) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in shard)
    if not (ok and shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise ConfigError("shard", f"bad {ref('shard')} {shard!r}; expected (i, n) with 0 <= i < n")
    if shard[1] > MAX_SHARDS:
        raise ConfigError("shard", f"{ref('shard')} {shard[0]}/{shard[1]}: {shard[1]} shards exceed the maximum "
                                   f"{MAX_SHARDS} (more than a sweep has groups of (N, mode))")


# ---------------------------------------------------------------------------------------------------- resume

# What a resumed run may not change: the fields that make its cells (their keys) and how each is measured. Rows
# measured otherwise would be paired, compared and reported as if they were alike. The other fields (timeout,
# max_retries, mem_limit, force, isolation) say how hard to try, and may change from one session to the next.
RESUME_FIXED = ("models", "seq_lens", "modes", "skeleton", "batch", "dtype", "device", "hparams", "compile", "shard",
                "min_time", "repeats", "threads")
EXTENDABLE = ("models", "seq_lens", "modes")  # lists that ``extend`` may grow (with the added models' hparams)


def config_from_dict(d: dict[str, Any]) -> SweepConfig | None:
    """The :class:`SweepConfig` of its JSON form (``meta.json``'s ``config``: the resolved device, a shard as a list),
    or None when ``d`` is not one. Fields it lacks (written by an older version) take their defaults."""
    names = {f.name for f in fields(SweepConfig)}
    if not isinstance(d, dict) or not {"models", "seq_lens"} <= set(d):
        return None
    kw = {k: v for k, v in d.items() if k in names}
    if d.get("device_resolved"):
        kw["device"] = d["device_resolved"]
    if isinstance(kw.get("shard"), list):
        kw["shard"] = tuple(kw["shard"])
    return SweepConfig(**kw)


def resumed_config(stored: SweepConfig, given: dict[str, Any], *, extend: bool = False) -> SweepConfig:
    """What a resume of the run made with ``stored`` runs: ``stored``, with the ``given`` fields (those the user
    set). Given models, N and modes keep the stored order, which sets the groups' order and so their shard; with
    ``extend``, those not stored are appended, and given hparams join the stored ones. :func:`check_resume` judges
    the result."""
    out = dict(given)
    for name in set(EXTENDABLE) & set(given):
        old = list(getattr(stored, name))
        if extend or _same(name, given[name], old):
            out[name] = old + [v for v in given[name] if v not in old]
    if extend and "hparams" in given:
        out["hparams"] = {**stored.hparams, **given["hparams"]}
    return replace(stored, **out)


def check_resume(config: SweepConfig, stored: SweepConfig, *, extend: bool = False) -> None:
    """A resume must keep the run's cells and their settings (:data:`RESUME_FIXED`); ``extend`` lets it add models,
    N and modes (never drop any, nor change a stored model's hparams). A ConfigError names the first field that
    differs and the run's value. Both configs hold a resolved device."""
    if extend and stored.shard is not None:
        raise ConfigError("extend", f"{ref('extend')} cannot add cells to shard {_show('shard', stored.shard)}: "
                                    "the new groups would change which groups each shard holds; sweep them as a "
                                    f"new run under another {ref('name')}")
    for name in RESUME_FIXED:
        new, old = getattr(config, name), getattr(stored, name)
        if _same(name, new, old) or extend and _grows(name, config, stored):
            continue
        if name in EXTENDABLE and extend:
            hint = f"{ref('extend')} adds to the run's cells and never drops any"
        elif name in EXTENDABLE:
            hint = f"leave it out to finish the run as it was, or add {ref('extend')} to add cells"
        else:
            hint = f"a run's cells keep their settings: measure others as a new run under another {ref('name')}"
        raise ConfigError(name, f"{ref(name)} {_show(name, new)} differs from the run's {_show(name, old)} (its "
                                f"meta.json); {hint}")


def _same(name: str, new: Any, old: Any) -> bool:
    if name in EXTENDABLE:  # the same cells in another order are the same run
        return set(map(str, new)) == set(map(str, old)) and len(new) == len(old)
    if name == "hparams":
        return _canon(new) == _canon(old)
    if name == "shard":
        return (tuple(new) if new else None) == (tuple(old) if old else None)
    return new == old


def _grows(name: str, config: SweepConfig, stored: SweepConfig) -> bool:
    """``config`` adds to ``stored``'s ``name`` and changes nothing stored there."""
    if name in EXTENDABLE:
        return set(map(str, getattr(stored, name))) <= set(map(str, getattr(config, name)))
    if name == "hparams":
        return all(_canon(config.hparams.get(m)) == _canon(stored.hparams.get(m)) for m in stored.models)
    return False


def _canon(value: Any) -> str:
    """A JSON spelling in which the values of a config and of its meta.json round trip compare equal."""
    return json.dumps(value or {}, sort_keys=True, default=str)


def _show(name: str, value: Any) -> str:
    """``value`` as the command line spells it."""
    if value is None:
        return "unset"
    if name in EXTENDABLE:
        return ",".join(map(str, value))
    if name == "hparams":
        return " ".join(f"{m}.{k}={v!r}" for m, hp in value.items() for k, v in hp.items()) or "none"
    if name == "shard":
        return f"{value[0]}/{value[1]}"
    return f"{value:g}" if isinstance(value, float) else str(value)
