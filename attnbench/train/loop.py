"""The training loop: one registered attention in one skeleton, the timm/DeiT recipe, DDP under torchrun.

As in timm's train.py, :func:`train` is three steps: :func:`setup` resolves the config, sets up the process group
from torchrun's environment, builds data and model and restores a checkpoint; then, per epoch,
:func:`train_one_epoch` (the optimizer steps) and :func:`end_epoch` (evaluate, checkpoint, log); :func:`finish`
writes the final results row. Only rank 0 writes. A checkpoint is written atomically after every epoch with
everything a resumed run needs to reproduce the uninterrupted one (weights, optimizer, scheduler, EMA, scaler, every
rank's RNG state, the log).
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from attnbench.config import MAX_SEQ_LEN, ConfigError, ref, resolve_device
from attnbench.learning import learned
from attnbench.registry import get_attention
from attnbench.skeletons import trainable_family
from attnbench.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from attnbench.train.config import RESUMABLE_CHANGES, TrainConfig, resolve_recipe
from attnbench.train.data import DataInfo, DataSpec, build_datasets, corrupt_images, parse_data_spec
from attnbench.train.diagnostics import DIAG_IMAGES, attention_diagnostics, grad_norm
from attnbench.train.progress import make_progress
from attnbench.train.sweep import slug

__all__ = ["train", "setup", "train_one_epoch", "end_epoch", "finish", "TrainRun", "geometry", "run_paths"]

LOG_FIELDS = ["epoch", "train_loss", "val_loss", "top1", "top5", "ema_top1", "ema_top5", "lr", "images_per_s",
              "epoch_s"]
# the ViT patch side per dataset when --patch-size is not given: LRA's 1 pixel = 1 token for Pathfinder
DEFAULT_PATCH = {"pathfinder": 1, "shapes": 4, "longrange": 4, "cifar10": 4, "cifar100": 4}


def geometry(cfg: TrainConfig, spec: DataSpec) -> tuple[int, int | None, int]:
    """``(img_size, patch_size, seq_len)``: the image side, the ViT patch (None for the pyramid) and N."""
    if spec.generated:
        if cfg.img_size not in (None, spec.size):
            raise ConfigError("img_size", f"{ref('img_size')} {cfg.img_size} differs from the generated {spec.size} "
                                          f"px; set the size in {ref('data')} (e.g. {spec.kind}:{cfg.img_size})")
        img = spec.size
    else:
        img = cfg.img_size or (32 if spec.kind.startswith("cifar") else 224)
    family = trainable_family(cfg.skeleton)
    patch, seq_len = family.image_tokens(cfg.skeleton, img, cfg.patch_size, DEFAULT_PATCH.get(spec.kind, 16))
    if seq_len > MAX_SEQ_LEN:
        raise ConfigError("img_size", f"{ref('img_size')} {img} gives N = {seq_len} tokens, over the maximum "
                                      f"{MAX_SEQ_LEN} (attnbench.config.MAX_SEQ_LEN); use a smaller image or a larger "
                                      f"{ref('patch_size')}")
    return img, patch, seq_len


def run_paths(cfg: TrainConfig, spec: DataSpec, model_dir: str | Path | None = None) -> tuple[Path, Path]:
    """``(run_dir, model_dir)``: results.csv and meta.json in the first, checkpoint and logs in the second
    (``<run_dir>/<model>`` unless ``model_dir``, relative to the run directory, is given)."""
    run_dir = Path(cfg.out or f"results/train-{slug(spec.name.split(':n=')[0])}")
    return run_dir, run_dir / (model_dir or slug(cfg.model))


def _distributed(device: str) -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)`` from torchrun's RANK/WORLD_SIZE/LOCAL_RANK; one process without them."""
    rank, world, local = (int(os.environ.get(k, d)) for k, d in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))
    cuda = resolve_device(device) == "cuda"  # auto, cpu or cuda (resolve_recipe checked); cuda without CUDA fails
    dev = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    return rank, world, dev


def _all_sum(values: list[float], dev: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    if dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


@contextlib.contextmanager
def batches(loader: Any):
    """Iterate ``loader``; when the loop stops early (an error, Ctrl-C) its worker processes are shut down at once.
    Left to the garbage collector, torch's clean-up finds its queues gone and waits 5 s per worker."""
    it = iter(loader)
    try:
        yield it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # worker iterators only; a no-op once exhausted
        if shutdown is not None:
            shutdown()


@torch.no_grad()
def evaluate(net: torch.nn.Module, loader: Any, dev: torch.device, autocast: Any, k5: int) -> tuple[float, ...]:
    """``(loss, top1 %, top5 %)`` over the whole validation set: each rank sums its shard, then all-reduce."""
    net.eval()
    loss = c1 = c5 = n = 0.0
    with batches(loader) as it:
        for x, y in it:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with autocast():
                out = net(x).float()
            top = out.topk(k5, dim=1).indices
            loss += F.cross_entropy(out, y, reduction="sum").item()
            c1 += (top[:, 0] == y).sum().item()
            c5 += (top == y[:, None]).any(1).sum().item()
            n += len(y)
    loss, c1, c5, n = _all_sum([loss, c1, c5, n], dev)
    return loss / n, 100 * c1 / n, 100 * c5 / n


def _oom(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def _write_logs(model_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite log.jsonl and log.csv from the checkpoint's history (atomic, so they always match it)."""
    extra = sorted({k for r in history for k in r} - set(LOG_FIELDS))  # the attention's diag_* figures
    for name, write in (("log.jsonl", lambda f: f.writelines(json.dumps(r) + "\n" for r in history)),
                        ("log.csv", lambda f: (w := csv.DictWriter(f, LOG_FIELDS + extra, extrasaction="ignore"),
                                               w.writeheader(), w.writerows(history)))):
        tmp = model_dir / (name + ".tmp")
        with open(tmp, "w", newline="") as f:
            write(f)
        os.replace(tmp, model_dir / name)


@dataclass
class TrainRun:
    """Everything the epochs share, built once by :func:`setup`; ``start_epoch``, ``history`` and ``train_s``
    advance as epochs finish."""

    cfg: TrainConfig
    spec: DataSpec
    info: DataInfo
    skeleton: str  # the skeleton's name in the rows: ``cfg.skeleton`` with its depth suffix
    img: int
    seq_len: int
    run_dir: Path
    model_dir: Path
    rank: int
    world: int
    dev: torch.device
    amp: str  # bf16, fp16 or off
    sampler: Any
    loader_gen: torch.Generator  # worker seeds, reseeded per epoch so that a resumed epoch draws the same
    train_loader: Any
    val_loader: Any
    sk: Any  # the built Skeleton
    raw: torch.nn.Module
    model: torch.nn.Module  # ``raw``, wrapped in DistributedDataParallel under torchrun
    lr: float
    optimizer: Any
    scheduler: Any
    total_epochs: int
    ema: Any
    scaler: Any
    mixup: Any
    criterion: Any
    t_start: float
    resumed: bool = False
    start_epoch: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    train_s: float = 0.0
    progress: Any = None
    corrupt_seen: int = 0  # unreadable images skipped so far (``skip_corrupt``)
    owns_group: bool = True  # this run joined the process group (and leaves it); False inside a train sweep's
    diag_images: Any = None  # the fixed validation images the per-epoch diagnostics see
    attn_params: list[Any] = dataclasses.field(default_factory=list)  # the attention modules' parameters
    grad_norms: list[float] = dataclasses.field(default_factory=list)  # this epoch's attention gradient norms
    stopped_early: str | None = None  # why the run stopped before its budget (``patience``), if it did

    @property
    def steps(self) -> int:
        return len(self.train_loader)

    @property
    def global_batch(self) -> int:
        return self.cfg.batch_size * self.world

    @property
    def ckpt_path(self) -> Path:
        return self.model_dir / "checkpoint.pth"

    @property
    def stop_epoch(self) -> int:
        """The epoch this invocation stops before (``--stop-after`` slices a run)."""
        end = self.total_epochs
        return end if self.cfg.stop_after is None else min(end, self.start_epoch + self.cfg.stop_after)

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        return torch.autocast(self.dev.type, dtype=dtype) if dtype else contextlib.nullcontext()


def train(config: TrainConfig, *, model_dir: str | Path | None = None) -> dict[str, Any]:
    """Train ``config.model`` in ``config.skeleton`` on ``config.data``; return the final results row.

    ``model_dir`` (relative to ``config.out``) holds the checkpoint and logs; by default ``<out>/<model>``.

    Raises ValueError (one line; a ConfigError naming the field where one is to blame) for bad input: unknown model
    or data, a missing or empty dataset, a checkpoint from another run or a corrupt one, a batch that does not fit
    the data or the device, an unreadable image (without ``skip_corrupt``), an ``out`` that cannot be written, holds
    a malformed results.csv or is in use by another process (its lock, held for the whole run). SIGTERM raises
    ``runner.Terminated``, a KeyboardInterrupt, as Ctrl-C would: the last finished epoch's checkpoint is kept.
    """
    with contextlib.ExitStack() as owned:  # the run directory's lock and SIGTERM-as-Ctrl-C, for the whole run
        run = setup(config, model_dir=model_dir, owned=owned)
        last = run.start_epoch - 1
        with run.progress:
            for epoch in range(run.start_epoch, run.stop_epoch):
                if early_stop(run):
                    break
                t0 = time.perf_counter()
                train_loss, train_time = train_one_epoch(run, epoch)
                end_epoch(run, epoch, train_loss, train_time, t0)
                last = epoch
        early_stop(run)
        return finish(run, last)


def early_stop(run: TrainRun) -> bool:
    """``patience``: True (and ``run.stopped_early`` says why) once the run has learned, holds it (every epoch since
    its best beats chance) and its best validation top-1 is ``patience`` epochs old. The rule reads the history
    alone, so a resumed run stops where it stopped."""
    P = run.cfg.patience
    if not P or not run.history or run.stopped_early or len(run.history) >= run.total_epochs:
        return bool(run.stopped_early)  # a run that used its whole budget did not stop early
    top1 = [r["top1"] for r in run.history]
    best = max(top1)
    best_epoch = top1.index(best) + 1
    # every epoch from the best on must have learned: a transient bump (62-65 % in epoch 1, back at chance in
    # epoch 2, as Performer showed) is no reason to stop a run that may still jump
    held = all(learned(t, run.info.n_val, run.info.num_classes) for t in top1[best_epoch - 1:])
    if len(top1) - best_epoch >= P and held:
        run.stopped_early = (f"early stop after epoch {len(top1)} of {run.total_epochs}: learned (best top-1 "
                             f"{best:.1f} at epoch {best_epoch}), no gain in {P} epochs (--patience {P})")
    return bool(run.stopped_early)


def setup(config: TrainConfig, *, model_dir: str | Path | None = None,
          owned: contextlib.ExitStack | None = None) -> TrainRun:
    """Resolve and check the config, join the process group, build data, model and recipe, restore a checkpoint.
    With ``owned``, the run directory is locked (and SIGTERM raises ``runner.Terminated``) until it closes."""
    from attnbench.skeletons import build_skeleton

    t_start = time.perf_counter()
    spec = parse_data_spec(config.data)
    cfg = resolve_recipe(config, spec.generated)
    get_attention(cfg.model)  # an unknown model fails before any work
    img, patch, seq_len = geometry(cfg, spec)
    run_dir, model_dir = run_paths(cfg, spec, model_dir)
    _own(run_dir, model_dir, owned)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    owns_group = not dist.is_initialized()
    rank, world, dev = _distributed(cfg.device)
    amp = {"auto": "bf16" if dev.type == "cuda" else "off"}.get(cfg.amp, cfg.amp)
    if amp == "fp16" and dev.type != "cuda":
        raise ConfigError("amp", f"{ref('amp')} fp16 needs CUDA; use bf16 or off on the CPU")
    ckpt = _find_checkpoint(cfg, model_dir / "checkpoint.pth", seq_len)

    # data: every rank builds the same datasets; the sampler gives each rank a disjoint shard
    train_ds, val_ds, info = build_datasets(spec, img, cfg)
    _check_batch(cfg, world, len(train_ds), spec.name)
    sampler, loader_gen, train_loader, val_loader = _loaders(cfg, train_ds, val_ds, rank, world, dev.type == "cuda")

    # model, optimizer, schedule, EMA: the DeiT recipe through timm's factories
    skeleton = trainable_family(cfg.skeleton).with_depth(cfg.skeleton, cfg.depth)
    sk = build_skeleton(skeleton, cfg.model, seq_len, hparams=cfg.hparams, num_classes=info.num_classes,
                        seed=cfg.seed, drop_path_rate=cfg.drop_path, in_chans=info.in_chans, patch_size=patch)
    if tuple(sk.input_shape) != (info.in_chans, img, img):
        raise ValueError(f"{skeleton} at N={seq_len} expects input {sk.input_shape}, the data gives "
                         f"{(info.in_chans, img, img)}")
    raw = sk.model.to(dev)
    model = (torch.nn.parallel.DistributedDataParallel(raw, device_ids=[dev.index] if dev.type == "cuda" else None)
             if world > 1 else raw)
    lr = cfg.lr * (cfg.batch_size * world) / cfg.lr_base_batch  # linear scaling by the global batch (DeiT, SOFT)
    run = TrainRun(cfg=cfg, spec=spec, info=info, skeleton=skeleton, img=img, seq_len=seq_len, run_dir=run_dir,
                   model_dir=model_dir, rank=rank, world=world, dev=dev, amp=amp, sampler=sampler,
                   loader_gen=loader_gen, train_loader=train_loader, val_loader=val_loader, sk=sk, raw=raw,
                   model=model, lr=lr, t_start=t_start, owns_group=owns_group,
                   **_recipe(cfg, raw, lr, len(train_loader), amp, info.num_classes))
    run.diag_images = torch.stack([val_ds[i][0] for i in range(min(DIAG_IMAGES, len(val_ds)))]).to(dev)
    run.attn_params = [p for m in sk.attn_modules for p in m.parameters() if p.requires_grad]
    _restore(run, ckpt)
    _write_meta(run)
    run.progress = make_progress(cfg.progress, rank, run.total_epochs, run.start_epoch, cfg.log_interval)
    run.progress.info(f"train {cfg.model} in {skeleton} on {spec.name}: {img} px, N={seq_len}, "
                      f"{info.n_train}/{info.n_val} images, global batch {run.global_batch} ({world} x "
                      f"{cfg.batch_size}), lr {lr:.3g}, {run.total_epochs} epochs, {run.steps} steps/epoch, {dev}, "
                      f"amp {amp}" + (f"; resumed at epoch {run.start_epoch + 1}" if run.resumed else ""))
    return run


def _own(run_dir: Path, model_dir: Path, owned: contextlib.ExitStack | None) -> None:
    """Before any work, on rank 0 (the one that writes): both folders writable, the run directory's results.csv
    readable (a malformed one fails now, not after the training) and, with ``owned``, the run directory locked
    against a second writer (``results.RunLock``) and SIGTERM raising ``runner.Terminated`` until it closes.
    Folders created here and left empty by a failure are removed."""
    from attnbench.results import RunLock, load_results
    from attnbench.runner import sigterm_as_interrupt
    from attnbench.sweep import prepare_dir

    if owned is not None:
        owned.enter_context(sigterm_as_interrupt())
    if int(os.environ.get("RANK", 0)) != 0:
        return
    created = [d for d in (run_dir, model_dir) if not d.exists()]
    if owned is not None:
        owned.callback(_remove_if_empty, created[::-1])
    prepare_dir(run_dir)
    prepare_dir(model_dir)
    if owned is not None:
        owned.enter_context(RunLock(run_dir))
    if (run_dir / "results.csv").exists():
        load_results(run_dir)


def _remove_if_empty(dirs: list[Path]) -> None:
    """Remove the folders that hold nothing but the lock file (a run that failed before writing anything)."""
    from attnbench.results import RunLock

    for d in dirs:
        if d.is_dir() and all(p.name == RunLock.NAME for p in d.iterdir()):
            (d / RunLock.NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                d.rmdir()


def _note_corrupt(run: TrainRun) -> str | None:
    """Report newly skipped unreadable images (``skip_corrupt``); the results row's note about them, if any."""
    bad = corrupt_images(run.train_loader.dataset, run.val_loader.dataset)
    if not bad:
        return None
    text = f"skipped {len(bad)} unreadable image(s) (skip_corrupt), e.g. {bad[0]}"
    if len(bad) > run.corrupt_seen and run.progress is not None:
        run.progress.info(text)
    run.corrupt_seen = len(bad)
    return text


def _find_checkpoint(cfg: TrainConfig, ckpt_path: Path, seq_len: int) -> dict[str, Any] | None:
    """The checkpoint to resume (checked against this run) or None to start fresh; before any work."""
    resume_path = ckpt_path if cfg.resume == "auto" else Path(cfg.resume) if cfg.resume else None
    if resume_path is None and ckpt_path.exists():
        raise ConfigError("resume", f"a checkpoint already exists at {ckpt_path}; pass {ref('resume')} to continue "
                                    f"it or another {ref('out')}")
    if resume_path is None or not (resume_path.exists() or cfg.resume != "auto"):
        return None
    ckpt = load_checkpoint(resume_path, model=cfg.model, skeleton=cfg.skeleton, seq_len=seq_len)
    saved = ckpt["config"]
    changed = [k for k, v in cfg.to_dict().items() if k not in RESUMABLE_CHANGES and saved.get(k) != v]
    if changed:
        k = changed[0]
        raise ConfigError(k, f"checkpoint {resume_path} was trained with {k}={saved.get(k)!r}, not "
                             f"{getattr(cfg, k)!r}; resume with the same options (only {ref(RESUMABLE_CHANGES[0])} "
                             "may grow)")
    return ckpt


def _check_batch(cfg: TrainConfig, world: int, n_train: int, dataset: str) -> None:
    if n_train // world < cfg.batch_size:
        raise ConfigError("batch_size", f"{ref('batch_size')} {cfg.batch_size} x {world} process(es) = "
                                        f"{cfg.batch_size * world} exceeds the {n_train} training images of "
                                        f"{dataset}; lower {ref('batch_size')}")
    if (cfg.mixup or cfg.cutmix) and cfg.batch_size % 2:
        raise ConfigError("batch_size", f"Mixup/CutMix need an even {ref('batch_size')}, got {cfg.batch_size}")


def _loaders(cfg: TrainConfig, train_ds: Any, val_ds: Any, rank: int, world: int, cuda: bool) -> tuple[Any, ...]:
    """``(sampler, loader_gen, train_loader, val_loader)``: each rank gets a disjoint shard of both sets."""
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    loader_gen = torch.Generator()
    train_loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                              pin_memory=cuda, drop_last=True, generator=loader_gen)
    val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, sampler=list(range(rank, len(val_ds), world)),
                            num_workers=cfg.workers, pin_memory=cuda)
    return sampler, loader_gen, train_loader, val_loader


def _recipe(cfg: TrainConfig, raw: torch.nn.Module, lr: float, steps: int, amp: str,
            num_classes: int) -> dict[str, Any]:
    """The optimizer, scheduler (and the epochs it runs), EMA, grad scaler, Mixup and loss, by timm's factories."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    try:
        optimizer = create_optimizer_v2(raw, opt=cfg.opt, lr=lr, weight_decay=cfg.weight_decay)
        scheduler, total_epochs = create_scheduler_v2(
            optimizer, sched=cfg.sched, num_epochs=cfg.epochs, cooldown_epochs=cfg.cooldown_epochs, min_lr=cfg.min_lr,
            warmup_lr=cfg.warmup_lr, warmup_epochs=cfg.warmup_epochs, step_on_epochs=False, updates_per_epoch=steps)
    except (AssertionError, KeyError) as e:
        raise ConfigError("opt", f"timm rejected {ref('opt')} {cfg.opt!r} / {ref('sched')} {cfg.sched!r}: "
                                 f"{e}") from None
    ema = ModelEmaV3(raw, decay=cfg.ema_decay) if cfg.ema else None
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    mixup = (Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing,
                   num_classes=num_classes) if cfg.mixup or cfg.cutmix else None)
    criterion = (SoftTargetCrossEntropy() if mixup else LabelSmoothingCrossEntropy(cfg.smoothing) if cfg.smoothing
                 else torch.nn.CrossEntropyLoss())
    return dict(optimizer=optimizer, scheduler=scheduler, total_epochs=total_epochs, ema=ema, scaler=scaler,
                mixup=mixup, criterion=criterion)


def _restore(run: TrainRun, ckpt: dict[str, Any] | None) -> None:
    """Seed this rank (augmentation, drop-path), then restore the checkpoint's state over it, if any."""
    cfg = run.cfg
    random.seed(cfg.seed + run.rank)
    np.random.seed(cfg.seed + run.rank)
    torch.manual_seed(cfg.seed + run.rank)
    if ckpt is None:
        return
    run.raw.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt["config"]["epochs"] == cfg.epochs:  # a longer run gets the schedule for its new length
        run.scheduler.load_state_dict(ckpt["scheduler"])
    if run.ema is not None:
        run.ema.module.load_state_dict(ckpt["ema"])
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    if len(ckpt["rng"]) == run.world:
        set_rng_state(ckpt["rng"][run.rank])
    run.start_epoch, run.history, run.train_s, run.resumed = ckpt["epoch"] + 1, ckpt["history"], ckpt["train_s"], True


def _write_meta(run: TrainRun) -> None:
    from attnbench.results import environment, write_meta

    if run.rank != 0:
        return
    run.model_dir.mkdir(parents=True, exist_ok=True)
    meta = {**environment(str(run.dev)), "train": {run.cfg.model: {
        **run.cfg.to_dict(), "seq_len": run.seq_len, "lr": run.lr, "global_batch": run.global_batch,
        "world_size": run.world}}}
    write_meta(run.model_dir, meta)
    if not (run.run_dir / "meta.json").exists():
        write_meta(run.run_dir, meta)


def train_one_epoch(run: TrainRun, epoch: int) -> tuple[float, float]:
    """One epoch of optimizer steps on this rank's shard; ``(mean train loss over every rank, seconds)``."""
    t0 = time.perf_counter()
    run.model.train()
    set_epoch = getattr(run.train_loader.dataset, "set_epoch", None)
    if set_epoch is not None:  # fresh generated data: epoch e's images
        set_epoch(epoch)
    run.grad_norms = []
    run.sampler.set_epoch(epoch)
    run.loader_gen.manual_seed(run.cfg.seed * 1_000_003 + epoch * 1009 + run.rank)
    run.progress.start_epoch(epoch, run.steps)
    loss_sum = 0.0
    with batches(run.train_loader) as it:
        for i, (x, y) in enumerate(it):
            x, y = x.to(run.dev, non_blocking=True), y.to(run.dev, non_blocking=True)
            if run.mixup is not None:
                x, y = run.mixup(x, y)
            value = _step(run, x, y, epoch, i)
            num_updates = epoch * run.steps + i + 1
            run.scheduler.step_update(num_updates=num_updates)
            if run.ema is not None:
                run.ema.update(run.raw, step=num_updates)
            loss_sum += value
            run.progress.step(i, value, (i + 1) * run.global_batch / (time.perf_counter() - t0),
                              run.optimizer.param_groups[0]["lr"])
    train_time = time.perf_counter() - t0
    total, _ = _all_sum([loss_sum, run.steps], run.dev)
    return total / (run.steps * run.world), train_time


def _step(run: TrainRun, x: torch.Tensor, y: torch.Tensor, epoch: int, i: int) -> float:
    """One optimizer step; the loss. Out of memory and a non-finite loss are one-line errors."""
    try:
        with run.autocast():
            loss = run.criterion(run.model(x), y)
        run.optimizer.zero_grad(set_to_none=True)
        if run.scaler is not None:
            run.scaler.scale(loss).backward()
            run.scaler.unscale_(run.optimizer)
        else:
            loss.backward()
        run.grad_norms.append(grad_norm(run.attn_params))
        if run.cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(run.raw.parameters(), run.cfg.clip_grad)
        if run.scaler is not None:
            run.scaler.step(run.optimizer)
            run.scaler.update()
        else:
            run.optimizer.step()
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if not _oom(e):
            raise
        raise ConfigError("batch_size", f"{ref('batch_size')} {run.cfg.batch_size} does not fit on {run.dev} (out "
                                        f"of memory at epoch {epoch + 1} step {i + 1}); lower {ref('batch_size')} "
                                        f"(the lr follows it) or use a smaller {ref('img_size')} or skeleton") from None
    value = loss.item()
    if not math.isfinite(value):
        raise ConfigError("lr", f"the loss became {value} at epoch {epoch + 1} step {i + 1}; lower {ref('lr')} or "
                                f"raise {ref('warmup_epochs')}")
    return value


def end_epoch(run: TrainRun, epoch: int, train_loss: float, train_time: float, t0: float) -> dict[str, Any]:
    """Evaluate (and the EMA), append the epoch's log row, checkpoint and rewrite the logs; the row."""
    k5 = min(5, run.info.num_classes)
    val_loss, top1, top5 = evaluate(run.raw, run.val_loader, run.dev, run.autocast, k5)
    ema_top1 = ema_top5 = None
    if run.ema is not None:
        _, ema_top1, ema_top5 = evaluate(run.ema.module, run.val_loader, run.dev, run.autocast, k5)
    epoch_s = time.perf_counter() - t0
    run.train_s += epoch_s
    row = dict(epoch=epoch, train_loss=train_loss, val_loss=val_loss, top1=top1, top5=top5, ema_top1=ema_top1,
               ema_top5=ema_top5, lr=run.optimizer.param_groups[0]["lr"],
               images_per_s=run.steps * run.global_batch / train_time, epoch_s=epoch_s)
    row.update(_diagnostics(run))
    run.history.append(row)
    _save(run, epoch)
    _note_corrupt(run)
    run.progress.end_epoch(row)
    return row


def _diagnostics(run: TrainRun) -> dict[str, float]:
    """The epoch's ``diag_*`` figures (see :mod:`attnbench.train.diagnostics`); a hook that fails is reported once
    and leaves the figures out, never the run."""
    out = {"diag_attn_grad_norm": math.fsum(run.grad_norms) / len(run.grad_norms)} if run.grad_norms else {}
    try:
        out.update(attention_diagnostics(run.raw, run.sk.attn_modules, run.diag_images))
    except (RuntimeError, ValueError) as e:
        if run.progress is not None:
            run.progress.info(f"attention diagnostics failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    return out


def _save(run: TrainRun, epoch: int) -> None:
    """Gather every rank's RNG state; rank 0 writes the checkpoint and the logs."""
    rngs = [rng_state()]
    if run.world > 1:
        rngs = [None] * run.world
        dist.all_gather_object(rngs, rng_state())
    if run.rank != 0:
        return
    ema, scaler = run.ema, run.scaler
    save_checkpoint(run.ckpt_path, dict(
        model_name=run.cfg.model, skeleton=run.cfg.skeleton, seq_len=run.seq_len, dataset=run.spec.name,
        config=run.cfg.to_dict(), epoch=epoch, model=run.raw.state_dict(), optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(), ema=ema.module.state_dict() if ema is not None else None,
        scaler=scaler.state_dict() if scaler is not None else None, rng=rngs, history=run.history,
        train_s=run.train_s, world_size=run.world, global_batch=run.global_batch, lr=run.lr))
    _write_logs(run.model_dir, run.history)


def finish(run: TrainRun, last: int) -> dict[str, Any]:
    """The results row after epoch ``last``: appended (rank 0, once) when the run is complete; the process group
    is torn down."""
    cfg = run.cfg
    done = last + 1 >= run.total_epochs or bool(run.stopped_early)
    result: dict[str, Any] = dict(model=cfg.model, scope="train", skeleton=run.skeleton, seq_len=run.seq_len,
                                  batch=run.global_batch, dtype={"off": "fp32"}.get(run.amp, run.amp),
                                  device=run.dev.type, mode="train", status="ok" if done else "skipped",
                                  reason=run.stopped_early if done else f"stopped after epoch {last + 1} of "
                                                                        f"{run.total_epochs}",
                                  hparams=json.dumps(cfg.hparams, sort_keys=True, default=str),
                                  epochs=last + 1, dataset=run.spec.name, seed=cfg.seed,
                                  train_hours=run.train_s / 3600,
                                  wall_s=time.perf_counter() - run.t_start, epochs_budget=run.total_epochs,
                                  val_images=run.info.n_val, classes=run.info.num_classes,
                                  fresh=int(bool(cfg.fresh)),
                                  log_dir=os.path.relpath(run.model_dir, run.run_dir))
    skipped = _note_corrupt(run)
    if skipped:
        result["reason"] = "; ".join(filter(None, [result["reason"], skipped]))
    if run.history:
        final = run.history[-1]
        use_ema = final.get("ema_top1") is not None  # the SOFT paper evaluates the EMA weights
        key = "ema_top1" if use_ema else "top1"
        result.update(top1=final[key], top5=final["ema_top5" if use_ema else "top5"])
        curve = [r[key] for r in run.history]
        best = max(curve)
        result.update(best_top1=best, best_epoch=curve.index(best) + 1,
                      learned=int(learned(best, run.info.n_val, run.info.num_classes)))
    if run.rank == 0 and done:
        result.update(_cost(run.sk, run.raw, run.dev))
        _append_once(run, result)
        run.progress.info(f"done: top1 {result.get('top1', float('nan')):.2f} top5 "
                          f"{result.get('top5', float('nan')):.2f} after {last + 1} epochs, {run.train_s / 60:.1f} "
                          f"min -> {run.run_dir / 'results.csv'}")
    result.update(world_size=run.world, lr=run.lr, history=run.history, run_dir=str(run.run_dir),
                  checkpoint=str(run.ckpt_path))
    if run.world > 1:
        dist.barrier()
        if run.owns_group:
            dist.destroy_process_group()
    return result


def _append_once(run: TrainRun, result: dict[str, Any]) -> None:
    """Append the row unless the run directory has it already (a finished run resumed again adds no second row)."""
    import pandas as pd

    from attnbench.results import append_row, load_results

    prior = load_results(run.run_dir)
    seed = pd.to_numeric(prior["seed"], errors="coerce")  # NaN in rows written before the column existed
    dup = ((prior["model"] == run.cfg.model) & (prior["skeleton"] == run.skeleton) & (prior["seq_len"] == run.seq_len)
           & (prior["dataset"] == run.spec.name) & (prior["mode"] == "train") & (seed == run.cfg.seed))
    if not dup.any():
        append_row(run.run_dir, {k: v for k, v in result.items() if k != "world_size"})


def _cost(sk: Any, raw: torch.nn.Module, dev: torch.device) -> dict[str, Any]:
    """params and one forward's MACs at batch 1 (fvcore through attnbench.measure, audited)."""
    from attnbench.measure.flops import count_flops

    out: dict[str, Any] = {"params": sum(p.numel() for p in raw.parameters())}
    was_training = raw.training
    try:
        x = torch.zeros((1, *sk.input_shape), device=dev)
        fc = count_flops(raw.eval(), x, attn_modules=sk.attn_modules)
        out.update(macs=fc.macs, flops=fc.flops, elementwise_flops=fc.elementwise_flops,
                   flops_uncounted_ops=list(fc.uncounted_ops), attn_macs=fc.attn_macs)
    except (ValueError, RuntimeError) as e:  # a count that fails leaves the cells empty, never the run
        out["reason"] = f"flops not counted: {str(e).splitlines()[0]}"
    finally:
        raw.train(was_training)
    return out


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in names})
