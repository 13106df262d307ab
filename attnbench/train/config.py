"""What a training run is: one dataclass, three recipes (the DeiT/SOFT one, a small one for built-in data and one
for the long-range task).

Every recipe field of :class:`TrainConfig` defaults to ``None``, meaning "the recipe's value": ``--recipe auto``
picks ``deit`` for real images (ImageNet, CIFAR, folders), ``longrange`` for the long-range task and ``small`` for
the other built-in generated data. Fields
set by the caller always win. This module imports neither torch nor timm, so ``--help`` stays fast.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from attnbench.config import DEVICE_KINDS, ConfigError, check_choice, ref

__all__ = ["TrainConfig", "RECIPES", "RECIPE_FIELDS", "resolve_recipe", "auto_recipe", "RESUMABLE_CHANGES", "AMPS",
           "DEVICES", "PROGRESS"]

Amp = Literal["auto", "bf16", "fp16", "off"]  # auto: bf16 autocast on CUDA, off (fp32) on the CPU
Progress = Literal["auto", "rich", "plain"]
AMPS: tuple[Amp, ...] = get_args(Amp)
PROGRESS: tuple[Progress, ...] = get_args(Progress)
DEVICES = ("auto", *DEVICE_KINDS)  # no index: under torchrun each process takes cuda:LOCAL_RANK

# The DeiT recipe as the SOFT paper ran it (docs/methods.md, The SOFT pyramid; timm 0.3.2): 300 epochs + 10 cool-down,
# 128 images per GPU, lr 1e-3 x global batch / 1024, AdamW wd 0.05, clip 1.0, warm-up 10 epochs from 1e-6,
# min lr 5e-5, RandAugment m9-mstd0.5, Mixup 0.8, CutMix 1.0, smoothing 0.1, random erasing 0.25, colour jitter
# 0.4, drop-path 0.1, EMA 0.99996.
DEIT: dict[str, Any] = dict(
    epochs=300, cooldown_epochs=10, batch_size=128, lr=1e-3, lr_base_batch=1024, min_lr=5e-5, warmup_lr=1e-6,
    warmup_epochs=10, weight_decay=0.05, opt="adamw", sched="cosine", clip_grad=1.0, drop_path=0.1,
    smoothing=0.1, mixup=0.8, cutmix=1.0, aa="rand-m9-mstd0.5-inc1", reprob=0.25, color_jitter=0.4,
    ema=True, ema_decay=0.99996, workers=8, depth=None, fresh=False,
)
# A short run on generated data on a CPU: no image augmentation (the images are tensors), no Mixup, no EMA (its
# horizon would exceed the run), one warm-up epoch, lr 1e-3 at this batch (linear scaling still applies), and the
# first 4 of vit-tiny's 12 blocks (3x cheaper): skeleton "vit-tiny-d4", which `attnbench run --skeleton` also takes.
SMALL: dict[str, Any] = dict(
    epochs=5, cooldown_epochs=0, batch_size=64, lr=1e-3, lr_base_batch=64, min_lr=1e-5, warmup_lr=1e-6,
    warmup_epochs=1, weight_decay=0.05, opt="adamw", sched="cosine", clip_grad=1.0, drop_path=0.0,
    smoothing=0.1, mixup=0.0, cutmix=0.0, aa=None, reprob=0.0, color_jitter=0.0,
    ema=False, ema_decay=0.998, workers=0, depth=4, fresh=True,
)
# Generated data is drawn anew every epoch (fresh=True): an endless stream, so that no method can memorise its way to
# a low loss (a fixed set of 4,000 long-range images was memorised by Linformer while validation stayed at chance).
# The long-range task (data longrange) on a CPU: the small recipe at a batch of 32 and lr 2e-3, the first 2 blocks
# (skeleton vit-micro-d2 by default: a wider or deeper ViT sits at chance for many more epochs before it finds the
# pair). The budget, 12 epochs, is the same for every method of a sweep and measured (docs/training.md): under it
# softmax learns N = 256 by epoch 2 and then holds 100 %; at N = 1024 it stayed at chance for all 12 epochs (seed 42;
# it had jumped at epoch 4 of a 5-epoch schedule on a fixed set), so a sweep at N = 1024 needs --epochs 30.
LONGRANGE: dict[str, Any] = {**SMALL, "epochs": 12, "batch_size": 32, "lr": 2e-3, "lr_base_batch": 32, "depth": 2}
RECIPES: dict[str, dict[str, Any]] = {"deit": DEIT, "small": SMALL, "longrange": LONGRANGE}
RECIPE_FIELDS = tuple(DEIT)
# fields that may differ between a checkpoint and the run that resumes it
RESUMABLE_CHANGES = ("epochs", "out", "resume", "stop_after", "workers", "progress", "log_interval", "skip_corrupt",
                     "threads", "patience")
# the lower bound of each numeric recipe field (checked after the recipe fills them)
AT_LEAST_ONE = ("epochs", "batch_size", "lr_base_batch")
NON_NEGATIVE = ("lr", "min_lr", "warmup_lr", "weight_decay", "drop_path", "smoothing", "mixup", "cutmix", "reprob",
                "color_jitter", "warmup_epochs", "cooldown_epochs", "workers", "clip_grad")
# every float field: finite (inf and nan are refused before the recipe runs), and the rates below 1
FLOATS = ("lr", "min_lr", "warmup_lr", "weight_decay", "clip_grad", "drop_path", "smoothing", "mixup", "cutmix",
          "reprob", "color_jitter", "ema_decay")
BELOW_ONE = ("drop_path", "smoothing", "ema_decay")


@dataclass
class TrainConfig:
    """One training run. ``None`` in a recipe field means the recipe's value (see ``RECIPES``).

    Attributes:
        model: registered attention name (``attnbench list``) or ``module:Class``.
        skeleton: ``vit-tiny|small|base`` or ``soft-tiny..huge`` (the ``layer`` skeletons are not classifiers).
        data: dataset spec, see ``attnbench.train.data.DATA_HELP``.
        hparams: attention hyper-parameter overrides for ``model``.
        img_size: input side in pixels; None: the generated size, 32 for CIFAR, 224 otherwise.
        patch_size: ViT patch side; None: 1 for Pathfinder (LRA's 1 pixel = 1 token), 4 for shapes and CIFAR,
            16 otherwise. The sequence length is (img_size / patch_size) ** 2 (ViT) or (img_size / 4) ** 2
            (the pyramid's first stage).
        recipe: ``auto``, ``deit``, ``small`` or ``longrange``.
        epochs .. workers: the recipe fields; ``lr`` is the base rate for a global batch of ``lr_base_batch``
            (the run uses ``lr * batch_size * world_size / lr_base_batch``). ``batch_size`` is per process.
        depth: train the skeleton ``<skeleton>-d<depth>`` (the first ``depth`` blocks of a vit-* skeleton; its
            efficiency rows come from ``attnbench run --skeleton <skeleton>-d<depth>``). None or 0: the full one.
        fresh: generated data only: draw new training images every epoch (epoch e's set a function of the data
            seed and e; validation fixed and disjoint); False keeps one fixed set. Asked of real images: an error.
        amp: ``auto`` (bf16 autocast on CUDA, off on CPU), ``bf16``, ``fp16`` (with a GradScaler) or ``off``.
        device: ``auto``, ``cpu`` or ``cuda`` (under torchrun, ``cuda:LOCAL_RANK``).
        seed: the training seed (init, data order, augmentation); generated data has its own ``seed=`` in the spec.
        out: the run directory (results.csv, meta.json; one sub-folder per model with checkpoint and logs).
        resume: ``"auto"`` (this run's checkpoint) or a checkpoint path; None starts fresh.
        stop_after: stop cleanly after this many epochs of this invocation (time-sliced jobs); resume later.
        log_interval: steps between plain log lines.
        progress: ``auto`` (rich bars on a terminal), ``rich`` or ``plain``.
        skip_corrupt: an image file that cannot be read is skipped (counted, and reported in the results row);
            without it, it stops the run with a one-line error naming the file.
        threads: CPU threads for torch (``torch.set_num_threads``); None: torch's default (one per core). On a
            machine shared with other jobs, 1 avoids threads spinning on each other.
        patience: early stop, the same rule for every method: once a run has learned (its best validation top-1
            beats chance, ``attnbench.learning.learned``), every epoch since its best beats chance too, and it has
            not improved on its best for ``patience`` epochs, it stops and its row says so. A run that has not learned always runs the whole budget. None: off.
    """

    model: str = "softmax"
    skeleton: str = "vit-tiny"
    data: str = "shapes:32"
    hparams: dict[str, Any] = field(default_factory=dict)
    img_size: int | None = None
    patch_size: int | None = None
    recipe: str = "auto"
    epochs: int | None = None
    cooldown_epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    lr_base_batch: int | None = None
    min_lr: float | None = None
    warmup_lr: float | None = None
    warmup_epochs: int | None = None
    weight_decay: float | None = None
    opt: str | None = None
    sched: str | None = None
    clip_grad: float | None = None
    drop_path: float | None = None
    smoothing: float | None = None
    mixup: float | None = None
    cutmix: float | None = None
    aa: str | None = None
    reprob: float | None = None
    color_jitter: float | None = None
    ema: bool | None = None
    ema_decay: float | None = None
    workers: int | None = None
    depth: int | None = None
    fresh: bool | None = None
    amp: Amp = "auto"
    device: str = "auto"
    seed: int = 42
    out: str | None = None
    resume: str | None = None
    stop_after: int | None = None
    log_interval: int = 50
    progress: Progress = "auto"
    skip_corrupt: bool = False
    threads: int | None = None
    patience: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def auto_recipe(data: str, generated: bool) -> str:
    """``--recipe auto``: ``longrange`` for the long-range task, ``small`` for other generated data, else ``deit``."""
    if data.strip().lower().partition(":")[0] == "longrange":
        return "longrange"
    return "small" if generated else "deit"


def resolve_recipe(cfg: TrainConfig, generated: bool) -> TrainConfig:
    """Fill every ``None`` recipe field from the recipe (``auto``: ``small`` for generated data, else ``deit``) and
    check the result; a bad value is a one-line ConfigError naming its field."""
    from attnbench.skeletons import trainable_family

    name = cfg.recipe if cfg.recipe != "auto" else auto_recipe(cfg.data, generated)
    check_choice("recipe", name, ("auto", *RECIPES))
    family = trainable_family(cfg.skeleton)
    if cfg.fresh and not generated:
        raise ConfigError("fresh", f"{ref('fresh')} draws new images each epoch from a generator; {cfg.data!r} is a "
                                   f"fixed set of real images; leave {ref('fresh')} out for them (fresh data is for "
                                   f"shapes, pathfinder and longrange)")
    filled = {k: v for k, v in RECIPES[name].items() if getattr(cfg, k) is None}
    if not generated:
        filled["fresh"] = False
    out = dataclasses.replace(cfg, recipe=name, **filled)
    if not family.takes_depth and cfg.depth is None:
        out.depth = None  # the recipe's depth is for skeletons with blocks to drop; the pyramid keeps its stages
    if out.aa in ("", "none", "None"):
        out.aa = None
    _check_ranges(out)
    check_choice("amp", out.amp, AMPS)
    check_choice("device", out.device, DEVICES)
    check_choice("progress", out.progress, PROGRESS)
    return out


def _check_ranges(cfg: TrainConfig) -> None:
    if cfg.out is not None and not str(cfg.out).strip():
        raise ConfigError("out", f"{ref('out')} is empty; give a folder (or leave it out: results/train-<data>)")
    for k in ("img_size", "patch_size"):  # 0 is not "the default"
        if getattr(cfg, k) is not None and getattr(cfg, k) < 1:
            raise ConfigError(k, f"{ref(k)} must be at least 1 (or left out for the data's default), got "
                                 f"{getattr(cfg, k)}")
    for k in FLOATS:
        v = getattr(cfg, k)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ConfigError(k, f"{ref(k)} must be a finite number, got {v!r}")
    bounds = ([(k, 1, "at least 1") for k in AT_LEAST_ONE] + [("depth", 0, "non-negative")] * (cfg.depth is not None)
              + [(k, 0, "non-negative") for k in NON_NEGATIVE])
    for k, low, what in bounds:
        if getattr(cfg, k) < low:
            raise ConfigError(k, f"{ref(k)} must be {what}, got {getattr(cfg, k)}")
    if cfg.patience is not None and (isinstance(cfg.patience, bool) or cfg.patience < 1):
        raise ConfigError("patience", f"{ref('patience')} must be at least 1 epoch (or left out: no early stop), got "
                                      f"{cfg.patience}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError("threads", f"{ref('threads')} must be at least 1, got {cfg.threads}")
    for k in BELOW_ONE:
        if not 0 <= getattr(cfg, k) < 1:
            raise ConfigError(k, f"{ref(k)} must be in [0, 1), got {getattr(cfg, k)}")
    if cfg.reprob > 1:
        raise ConfigError("reprob", f"{ref('reprob')} is a probability, in [0, 1]; got {cfg.reprob}")
