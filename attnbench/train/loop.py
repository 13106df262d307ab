"""The training loop: one registered attention in one skeleton, the timm/DeiT recipe, DDP under torchrun.

Read top to bottom: resolve the config, set up the process group from torchrun's environment, build data and
model, restore a checkpoint, then one loop over epochs (train, evaluate, checkpoint, log) and a final results
row. Only rank 0 writes. A checkpoint is written atomically after every epoch with everything a resumed run needs
to reproduce the uninterrupted one (weights, optimizer, scheduler, EMA, scaler, every rank's RNG state, the log).
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from attnbench.registry import get_attention
from attnbench.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from attnbench.train.config import RESUMABLE_CHANGES, TrainConfig, resolve_recipe
from attnbench.train.data import DataSpec, build_datasets, parse_data_spec
from attnbench.train.progress import make_progress

__all__ = ["train", "geometry", "run_paths"]

LOG_FIELDS = ["epoch", "train_loss", "val_loss", "top1", "top5", "ema_top1", "ema_top5", "lr", "images_per_s",
              "epoch_s"]


def geometry(cfg: TrainConfig, spec: DataSpec) -> tuple[int, int | None, int]:
    """``(img_size, patch_size, seq_len)``: the image side, the ViT patch (None for the pyramid) and N."""
    if spec.generated:
        if cfg.img_size not in (None, spec.size):
            raise ValueError(f"--img-size {cfg.img_size} differs from the generated {spec.size} px; set the size in "
                             f"--data (e.g. {spec.kind}:{cfg.img_size})")
        img = spec.size
    else:
        img = cfg.img_size or (32 if spec.kind.startswith("cifar") else 224)
    if cfg.skeleton.startswith("soft-"):
        if cfg.patch_size is not None:
            raise ValueError("--patch-size applies to vit-* skeletons; the soft-* pyramid has a stride-4 stem")
        if img % 32:
            raise ValueError(f"the {cfg.skeleton} pyramid needs an image side divisible by 32, got {img}")
        return img, None, (img // 4) ** 2
    if not cfg.skeleton.startswith("vit-"):
        raise ValueError(f"cannot train skeleton {cfg.skeleton!r}; accepted: vit-tiny, vit-small, vit-base, "
                         "soft-tiny, soft-small, soft-medium, soft-large, soft-huge")
    patch = cfg.patch_size or {"pathfinder": 1, "shapes": 4, "cifar10": 4, "cifar100": 4}.get(spec.kind, 16)
    if patch < 1 or img % patch:
        raise ValueError(f"--patch-size {patch} must divide the image side {img}")
    return img, patch, (img // patch) ** 2


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")


def run_paths(cfg: TrainConfig, spec: DataSpec) -> tuple[Path, Path]:
    """``(run_dir, model_dir)``: results.csv and meta.json in the first, checkpoint and logs in the second."""
    run_dir = Path(cfg.out or f"results/train-{_slug(spec.name.split(':n=')[0])}")
    return run_dir, run_dir / _slug(cfg.model)


def _distributed(device: str) -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)`` from torchrun's RANK/WORLD_SIZE/LOCAL_RANK; one process without them."""
    rank, world, local = (int(os.environ.get(k, d)) for k, d in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
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


@torch.no_grad()
def evaluate(net: torch.nn.Module, loader: Any, dev: torch.device, autocast: Any, k5: int) -> tuple[float, ...]:
    """``(loss, top1 %, top5 %)`` over the whole validation set: each rank sums its shard, then all-reduce."""
    net.eval()
    loss = c1 = c5 = n = 0.0
    for x, y in loader:
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
    for name, write in (("log.jsonl", lambda f: f.writelines(json.dumps(r) + "\n" for r in history)),
                        ("log.csv", lambda f: (w := csv.DictWriter(f, LOG_FIELDS, extrasaction="ignore"),
                                               w.writeheader(), w.writerows(history)))):
        tmp = model_dir / (name + ".tmp")
        with open(tmp, "w", newline="") as f:
            write(f)
        os.replace(tmp, model_dir / name)


def train(config: TrainConfig) -> dict[str, Any]:
    """Train ``config.model`` in ``config.skeleton`` on ``config.data``; return the final results row.

    Raises ValueError (one line) for bad input: unknown model or data, a missing or empty dataset, a checkpoint
    from another run or a corrupt one, a batch that does not fit the data or the device.
    """
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler

    from attnbench.results import append_row, environment, load_results, write_meta
    from attnbench.skeletons import build_skeleton

    t_start = time.perf_counter()
    spec = parse_data_spec(config.data)
    cfg = resolve_recipe(config, spec.generated)
    entry = get_attention(cfg.model)
    img, patch, seq_len = geometry(cfg, spec)
    run_dir, model_dir = run_paths(cfg, spec)
    ckpt_path = model_dir / "checkpoint.pth"
    rank, world, dev = _distributed(cfg.device)
    cuda = dev.type == "cuda"
    amp = {"auto": "bf16" if cuda else "off"}.get(cfg.amp, cfg.amp)
    if amp == "fp16" and not cuda:
        raise ValueError("--amp fp16 needs CUDA; use bf16 or off on the CPU")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def autocast():
        return torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()

    # -- resume: find and check the checkpoint before any work
    ckpt = None
    resume_path = ckpt_path if cfg.resume == "auto" else Path(cfg.resume) if cfg.resume else None
    if resume_path is None and ckpt_path.exists():
        raise ValueError(f"a checkpoint already exists at {ckpt_path}; pass --resume to continue it or another --out")
    if resume_path is not None and (resume_path.exists() or cfg.resume != "auto"):
        ckpt = load_checkpoint(resume_path, model=cfg.model, skeleton=cfg.skeleton, seq_len=seq_len)
        saved = ckpt["config"]
        changed = [k for k, v in cfg.to_dict().items() if k not in RESUMABLE_CHANGES and saved.get(k) != v]
        if changed:
            k = changed[0]
            raise ValueError(f"checkpoint {resume_path} was trained with {k}={saved.get(k)!r}, not {getattr(cfg, k)!r}"
                             f"; resume with the same options (only {', '.join(RESUMABLE_CHANGES[:1])} may grow)")

    # -- data: every rank builds the same datasets; the sampler gives each rank a disjoint shard
    train_ds, val_ds, info = build_datasets(spec, img, cfg)
    global_batch = cfg.batch_size * world
    if len(train_ds) // world < cfg.batch_size:
        raise ValueError(f"--batch-size {cfg.batch_size} x {world} process(es) = {global_batch} exceeds the "
                         f"{len(train_ds)} training images of {spec.name}; lower --batch-size")
    if (cfg.mixup or cfg.cutmix) and cfg.batch_size % 2:
        raise ValueError(f"Mixup/CutMix need an even --batch-size, got {cfg.batch_size}")
    workers = cfg.workers
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    loader_gen = torch.Generator()  # worker seeds, reseeded per epoch so a resumed epoch draws the same
    train_loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
                              pin_memory=cuda, drop_last=True, generator=loader_gen)
    val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, sampler=list(range(rank, len(val_ds), world)),
                            num_workers=workers, pin_memory=cuda)
    steps = len(train_loader)

    # -- model, optimizer, schedule, EMA: the DeiT recipe through timm's factories
    skeleton = cfg.skeleton
    if cfg.depth:
        if not cfg.skeleton.startswith("vit-"):
            raise ValueError(f"--depth applies to vit-* skeletons, not {cfg.skeleton!r} (pass --depth 0)")
        skeleton = f"{cfg.skeleton}-d{cfg.depth}"  # a skeleton of its own: `attnbench run --skeleton` takes it too
    sk = build_skeleton(skeleton, cfg.model, seq_len, hparams=cfg.hparams, num_classes=info.num_classes,
                        seed=cfg.seed, drop_path_rate=cfg.drop_path, in_chans=info.in_chans, patch_size=patch)
    if tuple(sk.input_shape) != (info.in_chans, img, img):
        raise ValueError(f"{skeleton} at N={seq_len} expects input {sk.input_shape}, the data gives "
                         f"{(info.in_chans, img, img)}")
    raw = sk.model.to(dev)
    model = DistributedDataParallel(raw, device_ids=[dev.index] if cuda else None) if world > 1 else raw
    lr = cfg.lr * global_batch / cfg.lr_base_batch  # linear scaling by the global batch, as DeiT and SOFT
    try:
        optimizer = create_optimizer_v2(raw, opt=cfg.opt, lr=lr, weight_decay=cfg.weight_decay)
        scheduler, total_epochs = create_scheduler_v2(
            optimizer, sched=cfg.sched, num_epochs=cfg.epochs, cooldown_epochs=cfg.cooldown_epochs, min_lr=cfg.min_lr,
            warmup_lr=cfg.warmup_lr, warmup_epochs=cfg.warmup_epochs, step_on_epochs=False, updates_per_epoch=steps)
    except (AssertionError, KeyError) as e:
        raise ValueError(f"timm rejected --opt {cfg.opt!r} / --sched {cfg.sched!r}: {e}") from None
    ema = ModelEmaV3(raw, decay=cfg.ema_decay) if cfg.ema else None
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    mixup = (Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing,
                   num_classes=info.num_classes) if cfg.mixup or cfg.cutmix else None)
    criterion = (SoftTargetCrossEntropy() if mixup else LabelSmoothingCrossEntropy(cfg.smoothing) if cfg.smoothing
                 else torch.nn.CrossEntropyLoss())
    k5 = min(5, info.num_classes)

    # -- state: fresh (per-rank seeds for augmentation and drop-path) or restored from the checkpoint
    start_epoch, history, train_s = 0, [], 0.0
    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    torch.manual_seed(cfg.seed + rank)
    if ckpt is not None:
        raw.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt["config"]["epochs"] == cfg.epochs:  # a longer run gets the schedule for its new length
            scheduler.load_state_dict(ckpt["scheduler"])
        if ema is not None:
            ema.module.load_state_dict(ckpt["ema"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if len(ckpt["rng"]) == world:
            set_rng_state(ckpt["rng"][rank])
        start_epoch, history, train_s = ckpt["epoch"] + 1, ckpt["history"], ckpt["train_s"]

    if rank == 0:
        model_dir.mkdir(parents=True, exist_ok=True)
        meta = {**environment(str(dev)), "train": {cfg.model: {**cfg.to_dict(), "seq_len": seq_len, "lr": lr,
                                                              "global_batch": global_batch, "world_size": world}}}
        write_meta(model_dir, meta)
        if not (run_dir / "meta.json").exists():
            write_meta(run_dir, meta)
    progress = make_progress(cfg.progress, rank, total_epochs, start_epoch, cfg.log_interval)
    progress.info(f"train {cfg.model} in {skeleton} on {spec.name}: {img} px, N={seq_len}, "
                  f"{info.n_train}/{info.n_val} images, global batch {global_batch} ({world} x {cfg.batch_size}), "
                  f"lr {lr:.3g}, {total_epochs} epochs, {steps} steps/epoch, {dev}, amp {amp}"
                  + (f"; resumed at epoch {start_epoch + 1}" if ckpt else ""))

    # -- the loop
    last = start_epoch - 1
    end_epoch = total_epochs if cfg.stop_after is None else min(total_epochs, start_epoch + cfg.stop_after)
    with progress:
        for epoch in range(start_epoch, end_epoch):
            t0 = time.perf_counter()
            model.train()
            sampler.set_epoch(epoch)
            loader_gen.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + rank)
            progress.start_epoch(epoch, steps)
            loss_sum = 0.0
            for i, (x, y) in enumerate(train_loader):
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                if mixup is not None:
                    x, y = mixup(x, y)
                try:
                    with autocast():
                        loss = criterion(model(x), y)
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(optimizer)
                    else:
                        loss.backward()
                    if cfg.clip_grad:
                        torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.clip_grad)
                    scaler.step(optimizer) if scaler is not None else optimizer.step()
                    if scaler is not None:
                        scaler.update()
                except (torch.OutOfMemoryError, RuntimeError) as e:
                    if not _oom(e):
                        raise
                    raise ValueError(f"--batch-size {cfg.batch_size} does not fit on {dev} (out of memory at epoch "
                                     f"{epoch + 1} step {i + 1}); lower --batch-size (the lr follows it) or use a "
                                     "smaller --img-size or skeleton") from None
                value = loss.item()
                if not math.isfinite(value):
                    raise ValueError(f"the loss became {value} at epoch {epoch + 1} step {i + 1}; lower --lr or "
                                     "raise --warmup-epochs")
                num_updates = epoch * steps + i + 1
                scheduler.step_update(num_updates=num_updates)
                if ema is not None:
                    ema.update(raw, step=num_updates)
                loss_sum += value
                progress.step(i, value, (i + 1) * global_batch / (time.perf_counter() - t0),
                              optimizer.param_groups[0]["lr"])
            train_time = time.perf_counter() - t0
            train_loss, _ = _all_sum([loss_sum, steps], dev)
            val_loss, top1, top5 = evaluate(raw, val_loader, dev, autocast, k5)
            ema_top1 = ema_top5 = None
            if ema is not None:
                _, ema_top1, ema_top5 = evaluate(ema.module, val_loader, dev, autocast, k5)
            epoch_s = time.perf_counter() - t0
            train_s += epoch_s
            row = dict(epoch=epoch, train_loss=train_loss / (steps * world), val_loss=val_loss, top1=top1, top5=top5,
                       ema_top1=ema_top1, ema_top5=ema_top5, lr=optimizer.param_groups[0]["lr"],
                       images_per_s=steps * global_batch / train_time, epoch_s=epoch_s)
            history.append(row)
            rngs = [rng_state()]
            if world > 1:
                rngs = [None] * world
                dist.all_gather_object(rngs, rng_state())
            if rank == 0:
                save_checkpoint(ckpt_path, dict(
                    model_name=cfg.model, skeleton=cfg.skeleton, seq_len=seq_len, dataset=spec.name,
                    config=cfg.to_dict(), epoch=epoch, model=raw.state_dict(), optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(), ema=ema.module.state_dict() if ema is not None else None,
                    scaler=scaler.state_dict() if scaler is not None else None, rng=rngs, history=history,
                    train_s=train_s, world_size=world, global_batch=global_batch, lr=lr))
                _write_logs(model_dir, history)
            progress.end_epoch(row)
            last = epoch

    final = history[-1] if history else None
    done = last + 1 >= total_epochs
    result: dict[str, Any] = dict(model=cfg.model, scope="train", skeleton=skeleton, seq_len=seq_len,
                                  batch=global_batch, dtype={"off": "fp32"}.get(amp, amp), device=dev.type,
                                  mode="train", status="ok" if done else "skipped",
                                  reason=None if done else f"stopped after epoch {last + 1} of {total_epochs}",
                                  hparams=json.dumps(cfg.hparams, sort_keys=True, default=str),
                                  epochs=last + 1, dataset=spec.name, train_hours=train_s / 3600,
                                  wall_s=time.perf_counter() - t_start)
    if final is not None:
        use_ema = final.get("ema_top1") is not None  # the SOFT paper evaluates the EMA weights
        result.update(top1=final["ema_top1" if use_ema else "top1"], top5=final["ema_top5" if use_ema else "top5"])
    if rank == 0 and done:
        result.update(_cost(sk, raw, dev))
        prior = load_results(run_dir)
        dup = ((prior["model"] == cfg.model) & (prior["skeleton"] == skeleton) & (prior["seq_len"] == seq_len)
               & (prior["dataset"] == spec.name) & (prior["mode"] == "train"))
        if not dup.any():  # a finished run resumed again does not add a second row
            append_row(run_dir, {k: v for k, v in result.items() if k != "world_size"})
        progress.info(f"done: top1 {result.get('top1', float('nan')):.2f} top5 {result.get('top5', float('nan')):.2f} "
                      f"after {last + 1} epochs, {train_s / 60:.1f} min -> {run_dir / 'results.csv'}")
    result.update(world_size=world, lr=lr, history=history, run_dir=str(run_dir), checkpoint=str(ckpt_path))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


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
