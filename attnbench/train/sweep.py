"""``attnbench train --models a,b --seq N1,N2 [--seeds K]``: trained accuracy across models, sequence lengths and
seeds, in one run directory.

Every (model, N, seed) pair is trained with the same skeleton, recipe and data seed, **one after another in this
process** (the pairs share the interpreter, not state: each builds its own data, model and optimizer from its
seeds, exactly as a single ``attnbench train`` would). N sets the image side: ``side = sqrt(N) x patch`` for a ViT
(the stem's stride for the pyramid), so the generated data is drawn at that size; real images are resized to it.
Seeds are ``seed, seed + 1, ..., seed + K - 1`` (training seed: init and data order; the data seed stays).

Everything is checked before the first pair trains: the models, every N (a square the skeleton can tile, at a size
the data can be drawn at), ``--seeds``, the recipe. A model that cannot run at some N (Linformer with k >= N) gets a
``skipped`` row saying why; a pair that fails while training (out of memory, a non-finite loss) gets an ``oom``,
``nan`` or ``error`` row and the sweep goes on.

The run directory holds ``results.csv`` (one row per pair, ``seed`` column), ``meta.json`` and one folder per pair
``<model>/N<N>-seed<seed>/`` (checkpoint, log.csv, log.jsonl). ``--resume`` skips every pair with a row and
continues an interrupted one from its last epoch's checkpoint.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from attnbench.config import ConfigError, ref
from attnbench.train.config import TrainConfig, resolve_recipe
from attnbench.train.data import DataSpec, parse_data_spec

__all__ = ["slug", "Pair", "plan_train_sweep", "local_control_data", "LOCAL_CONTROL", "pending_pairs", "run_train_sweep", "image_side", "sized_data",
           "default_sweep_dir", "native_seq_len", "SWEEP_DATA", "SWEEP_SKELETON"]

# the defaults of a sweep (`--models`/`--seq`): the long-range task, where N matters, in the small ViT that learns it
SWEEP_DATA = "longrange"
SWEEP_SKELETON = "vit-micro"


@dataclass(frozen=True)
class Pair:
    """One training of the sweep.

    Attributes:
        model: the attention.
        seq_len: N.
        seed: the training seed.
        config: the complete TrainConfig of this pair (data drawn at its size, out = the run directory).
        skeleton: the skeleton as its rows name it (with ``-d<depth>``).
        dataset: the ``dataset`` column of its row.
        model_dir: its checkpoint and log folder, relative to the run directory.
        skip: why it cannot run (a ``skipped`` row), or None.
    """

    model: str
    seq_len: int
    seed: int
    config: TrainConfig
    skeleton: str
    dataset: str
    model_dir: str
    skip: str | None = None

    @property
    def key(self) -> tuple[str, str, int, str, int]:
        return self.model, self.skeleton, self.seq_len, self.dataset, self.seed


def slug(text: str) -> str:
    """A model name as a folder name (``module:Class`` -> ``module_Class``)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")


def image_side(skeleton: str, seq_len: int, patch_size: int | None, default_patch: int) -> tuple[int, int | None]:
    """``(image side, patch)`` that gives ``seq_len`` tokens in ``skeleton``; a ConfigError naming ``seq_lens``
    when none does (N not a square, or not one the family can tile)."""
    from attnbench.skeletons import trainable_family

    family = trainable_family(skeleton)
    side = math.isqrt(seq_len)
    if side * side != seq_len:
        raise ConfigError("seq_lens", f"N={seq_len} in {ref('seq_lens')} is not a square: a square image gives "
                                      f"N = (side / patch)^2, e.g. {side * side} or {(side + 1) ** 2}")
    for stride in range(1, 65):  # the image side per token: the patch (ViT) or the stem's stride (pyramid)
        try:
            patch, n = family.image_tokens(skeleton, side * stride, patch_size, default_patch)
        except ConfigError:
            continue
        if n == seq_len:
            return side * stride, patch
    raise ConfigError("seq_lens", f"{skeleton} cannot take N={seq_len} from a square image (see attnbench list)")


def sized_data(spec: DataSpec, text: str, size: int) -> str:
    """The ``--data`` text of ``spec`` drawn at ``size`` px (generated data); real data is unchanged."""
    if not spec.generated:
        return text
    opts = {"n": spec.n_train, "val": spec.n_val, "seed": spec.seed, "dashes": spec.dashes,
            "distractors": spec.distractors, "colors": spec.colors}
    parts = [spec.kind, str(size), *([spec.level] if spec.level else []),
             *(f"{k}={v}" for k, v in opts.items() if v is not None)]
    return ":".join(parts)


def _sized_spec(spec: DataSpec, text: str, size: int, seq_len: int) -> DataSpec:
    """The spec of ``text`` (``spec`` at ``size`` px). Generated data draws two images, so that a size the
    generator cannot draw is a ConfigError naming ``seq_lens`` before any training."""
    from attnbench.train.data import _generated

    try:
        sized = parse_data_spec(text)
        if spec.generated:
            _generated(dataclasses.replace(sized, n_train=2, n_val=2), 0.0)
    except (ValueError, RuntimeError) as e:
        why = e.render() if isinstance(e, ConfigError) else str(e)
        raise ConfigError("seq_lens", f"N={seq_len} in {ref('seq_lens')} needs {spec.kind} images of {size} px: "
                                      f"{why.splitlines()[0]}") from None
    return sized


def _skip_reason(model: str, hparams: dict[str, Any], skeleton: str, seq_len: int, device: str,
                 amp: str) -> str | None:
    """Why ``model`` cannot run at ``seq_len`` in ``skeleton`` (its registry hook), or None."""
    from attnbench.registry import get_attention
    from attnbench.skeletons import family_of

    entry = get_attention(model)
    dtype = {"bf16": "bf16", "fp16": "fp16"}.get(amp, "fp32")
    for gh, gw in family_of(skeleton).attention_grids(seq_len):
        reason = entry.not_supported_reason(device=device, dtype=dtype, seq_len=gh * gw, hparams=hparams,
                                            hw=(gh, gw))
        if reason:
            return reason
    return None


LOCAL_CONTROL = "shapes"  # a task every label of which can be read from a neighbourhood


def local_control_data(spec: DataSpec) -> str:
    """The ``--local-control`` task beside generated data ``spec``: shapes with as many training and validation
    images (drawn at each N's size like the main task)."""
    return f"{LOCAL_CONTROL}:{spec.size}:n={spec.n_train}:val={spec.n_val}:seed={spec.seed}"


def plan_train_sweep(base: TrainConfig, models: list[str], seq_lens: list[int], seeds: int = 1, *,
                     hparams: dict[str, dict[str, Any]] | None = None, local_control: bool = False) -> list[Pair]:
    """Every pair of the sweep, ordered by N, then seed, then model (a cut-off sweep leaves whole tables at the
    smaller N). Checks everything first; raises a one-line ConfigError (a ValueError) naming the field.

    With ``local_control`` every pair is also trained on the shapes task at the same N, skeleton and recipe (after
    all the main pairs: the control is the lower priority), in ``<model>/shapes-N<N>-seed<seed>/``, so that a
    report can tell "does not train" from "does not mix globally"."""
    from attnbench.config import resolve_device
    from attnbench.skeletons import trainable_family

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError("seeds", f"{ref('seeds')} must be at least 1, got {seeds!r}")
    if not models:
        raise ConfigError("models", f"{ref('models')} is empty; pass a comma list of registered names")
    if not seq_lens:
        raise ConfigError("seq_lens", f"{ref('seq_lens')} is empty")
    if base.img_size is not None:
        raise ConfigError("img_size", f"a sweep sets the image side from each N (side = sqrt(N) x patch); leave "
                                      f"{ref('img_size')} out")
    spec = parse_data_spec(base.data)
    first = resolve_recipe(dataclasses.replace(base, model=models[0]), spec.generated)  # bad recipe values fail here
    skeleton = trainable_family(first.skeleton).with_depth(first.skeleton, first.depth)
    device = resolve_device(first.device).partition(":")[0]
    amp = {"auto": "bf16" if device == "cuda" else "off"}.get(first.amp, first.amp)
    plan = dict(models=models, seq_lens=seq_lens, seeds=seeds, hparams=hparams or {}, skeleton=skeleton,
                device=device, amp=amp)
    pairs = _pairs(base, **plan)
    if local_control:
        if not spec.generated or spec.kind == LOCAL_CONTROL:
            raise ConfigError("local_control", f"{ref('local_control')} trains the {LOCAL_CONTROL} task beside a "
                                               f"generated long-range one (longrange, pathfinder); not beside "
                                               f"{base.data!r}")
        control = dataclasses.replace(base, data=local_control_data(spec), recipe=first.recipe)
        pairs += _pairs(control, **plan, prefix=f"{LOCAL_CONTROL}-")
    return pairs


def _pairs(base: TrainConfig, *, models: list[str], seq_lens: list[int], seeds: int,
           hparams: dict[str, dict[str, Any]], skeleton: str, device: str, amp: str, prefix: str = "") -> list[Pair]:
    """The pairs of one dataset, checked: every N drawn at its size, every model asked whether it can run there."""
    from attnbench.train.loop import DEFAULT_PATCH, geometry

    spec = parse_data_spec(base.data)
    pairs: list[Pair] = []
    for n in seq_lens:
        side, patch = image_side(base.skeleton, n, base.patch_size, DEFAULT_PATCH.get(spec.kind, 16))
        data = sized_data(spec, base.data, side)
        sized = _sized_spec(spec, data, side, n)
        for s in range(base.seed, base.seed + seeds):
            for m in models:
                cfg = dataclasses.replace(base, model=m, data=data, seed=s, hparams=dict(hparams.get(m, {})),
                                          img_size=None if spec.generated else side, patch_size=patch)
                img, _, got = geometry(resolve_recipe(cfg, spec.generated), sized)
                if got != n:  # cannot happen when image_side agrees with the family; a guard for new families
                    raise ConfigError("seq_lens", f"N={n}: {img} px images give N={got} in {base.skeleton}")
                pairs.append(Pair(m, n, s, cfg, skeleton, sized.name, f"{slug(m)}/{prefix}N{n}-seed{s}",
                                  _skip_reason(m, cfg.hparams, skeleton, n, device, amp)))
    return pairs


def native_seq_len(base: TrainConfig) -> int:
    """N of ``base`` as given (its data's own size): a sweep's N when ``--seq`` is not given."""
    from attnbench.train.loop import geometry

    spec = parse_data_spec(base.data)
    return geometry(resolve_recipe(base, spec.generated), spec)[2]


def pending_pairs(pairs: list[Pair], run_dir: str | Path) -> list[Pair]:
    """The pairs without a row in ``run_dir/results.csv`` (any status: a finished pair is never re-trained)."""
    import pandas as pd

    from attnbench.results import load_results

    df = load_results(run_dir)
    df = df[df["mode"] == "train"]
    seeds = pd.to_numeric(df["seed"], errors="coerce")
    done = {(m, sk, int(n), d, int(s)) for m, sk, n, d, s in zip(df["model"], df["skeleton"], df["seq_len"],
                                                                 df["dataset"], seeds) if s == s}
    return [p for p in pairs if p.key not in done]


def default_sweep_dir(data: str) -> Path:
    """``results/train-sweep-<data without size or options>``, e.g. ``results/train-sweep-longrange_medium``."""
    spec = parse_data_spec(data)
    if not spec.generated:
        return Path(f"results/train-sweep-{slug(spec.kind + ':' + Path(spec.root).name)}")
    return Path(f"results/train-sweep-{slug(':'.join(filter(None, (spec.kind, spec.level))))}")


def _row(pair: Pair, status: str, reason: str) -> dict[str, Any]:
    """The row of a pair that did not train (skipped before, or failed while training)."""
    import json

    from attnbench.config import resolve_device

    cfg = resolve_recipe(pair.config, parse_data_spec(pair.config.data).generated)
    device = resolve_device(cfg.device).partition(":")[0]
    amp = {"auto": "bf16" if device == "cuda" else "off"}.get(cfg.amp, cfg.amp)
    return dict(model=pair.model, scope="train", skeleton=pair.skeleton, seq_len=pair.seq_len, batch=cfg.batch_size,
                dtype={"off": "fp32"}.get(amp, amp), device=device, mode="train",
                status=status, reason=reason, hparams=json.dumps(cfg.hparams, sort_keys=True, default=str),
                epochs=0, dataset=pair.dataset, seed=pair.seed, log_dir=pair.model_dir)


def _failure(e: BaseException) -> tuple[str, str]:
    """``(status, reason)`` of a pair that raised while training."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, ConfigError) and e.field == "lr":
        return "nan", text
    if isinstance(e, ConfigError) and e.field == "batch_size" and "out of memory" in text:
        return "oom", text
    return "error", f"{type(e).__name__}: {text}"


def _join_group(pairs: list[Pair], stack: contextlib.ExitStack) -> None:
    """Under torchrun, join the process group once for the whole sweep (each pair's training then neither joins nor
    leaves it: a group cannot be joined again after it was left)."""
    import torch.distributed as dist

    from attnbench.train.loop import _distributed

    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and pairs and not dist.is_initialized():
        _distributed(pairs[0].config.device)
        stack.callback(dist.destroy_process_group)


def run_train_sweep(pairs: list[Pair], run_dir: str | Path, *,
                    on_pair: Callable[[int, int, Pair], None] | None = None) -> list[dict[str, Any]]:
    """Train every pending pair of ``pairs`` into ``run_dir`` (resuming an interrupted one); the rows written.

    ``on_pair(i, total, pair)`` is called before each pending pair. The run directory is locked for the whole
    sweep (a second writer is a ValueError). Ctrl-C or SIGTERM stops it (the pair's last finished epoch is kept in
    its checkpoint, rows already written stay).
    """
    from attnbench.results import RunLock, append_row
    from attnbench.runner import sigterm_as_interrupt
    from attnbench.train.loop import train

    run_dir = Path(run_dir)
    writer = int(os.environ.get("RANK", 0)) == 0  # under torchrun every rank trains each pair; rank 0 alone writes
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with contextlib.ExitStack() as stack:
        if writer:
            stack.enter_context(RunLock(run_dir))
        stack.enter_context(sigterm_as_interrupt())  # SIGTERM stops the sweep as Ctrl-C does
        _join_group(pairs, stack)
        todo = pending_pairs(pairs, run_dir)
        for i, pair in enumerate(todo):
            if on_pair is not None and writer:
                on_pair(i, len(todo), pair)
            if pair.skip:
                row = _row(pair, "skipped", pair.skip)
                if writer:
                    append_row(run_dir, row)
                rows.append(row)
                continue
            cfg = dataclasses.replace(pair.config, out=str(run_dir), resume="auto")
            try:
                result = train(cfg, model_dir=pair.model_dir)  # its RunLock nests in the sweep's (a no-op)
            except Exception as e:  # noqa: BLE001  (one pair's failure is its row; the sweep goes on)
                status, reason = _failure(e)
                row = _row(pair, status, reason)
                if writer:
                    append_row(run_dir, row)
                rows.append(row)
                continue
            if result.get("status") != "ok":  # --stop-after sliced it: the rest later, with --resume
                break
            rows.append(result)
    return rows
