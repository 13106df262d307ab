"""Datasets for ``attnbench train``: a spec string -> train/val datasets, timm transforms, loaders.

Real images go through timm's ``create_transform`` (RandAugment, colour jitter, random erasing; resize and
centre crop for evaluation). Generated data (``shapes``, ``pathfinder``, ``longrange``) is drawn in memory from
its seed and fed as tensors, without image augmentation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnbench.config import ConfigError, ref

__all__ = ["DATA_HELP", "DataSpec", "parse_data_spec", "DataInfo", "build_datasets", "GENERATED", "CorruptImageError",
           "CheckedImages", "corrupt_images", "FreshImages"]

GENERATED = ("shapes", "pathfinder", "longrange")
LEVELS = ("easy", "medium", "hard")  # pathfinder's and longrange's difficulty presets
REAL = ("imagenet", "cifar10", "cifar100", "folder")

DATA_HELP = """\
Dataset spec. Real images (no download ever):
  imagenet:ROOT  ROOT/train/<class>/* and ROOT/val/<class>/* (ImageNet)
  cifar10:ROOT   torchvision's python copy:
                 ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}
  cifar100:ROOT  ROOT/cifar-100-python/{train,test}
  folder:ROOT    ROOT/train/ and ROOT/val/ class folders, or one
                 class-folder tree split deterministically: every 10th image
                 of each class (sorted by path) is validation.
Built-in generated data (seeded, balanced labels; the image side sets the
sequence length):
  shapes[:SIZE]              6 shapes (disk, square, triangle, plus, ring,
                             diamond); SIZE 32 by default.
  pathfinder[:SIZE][:LEVEL]  LRA Pathfinder: are the two markers joined by
                             one dashed curve? SIZE 32|64|128 (1024, 4096,
                             16384 tokens at patch 1); LEVEL easy|medium|
                             hard (curve length 6/9/14 dashes, as LRA's
                             contour lengths).
  longrange[:SIZE][:LEVEL]   do the two white-framed squares, at least half
                             the image apart among plain ones, have the same
                             colour? SIZE 64 by default (N = 256 at patch 4;
                             128 px: 1024); LEVEL easy|medium|hard (6/12/24
                             distractors; medium by default).
  options, appended as :key=value: n=TRAIN_IMAGES (shapes 2000, pathfinder
  10000, longrange 4000), val=VAL_IMAGES (n/5; longrange n/8),
  seed=DATA_SEED (0); pathfinder also dashes=K, distractors=D; longrange
  also distractors=D, colors=C (2..8).
Examples: shapes:32, pathfinder:32:easy:n=20000, longrange:128:hard,
  imagenet:/data/imagenet, folder:./my_images"""


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value. ``root`` for real images; the rest for generated data."""

    kind: str
    root: str | None = None
    size: int | None = None
    level: str | None = None
    n_train: int | None = None
    n_val: int | None = None
    seed: int = 0
    dashes: int | None = None
    distractors: int | None = None
    colors: int | None = None

    @property
    def generated(self) -> bool:
        return self.kind in GENERATED

    @property
    def name(self) -> str:
        """The ``dataset`` column of the results row: readable and unique for a generated set."""
        if self.kind == "shapes":
            return f"shapes:{self.size}:n={self.n_train}:seed={self.seed}"
        if self.kind == "pathfinder":
            extra = "".join(f":{k}={v}" for k, v in (("dashes", self.dashes), ("distractors", self.distractors))
                            if v is not None)
            return f"pathfinder:{self.size}:{self.level}:n={self.n_train}:seed={self.seed}{extra}"
        if self.kind == "longrange":
            extra = "".join(f":{k}={v}" for k, v in (("distractors", self.distractors), ("colors", self.colors))
                            if v is not None)
            return f"longrange:{self.size}:{self.level}:n={self.n_train}:seed={self.seed}{extra}"
        return f"{self.kind}:{self.root}"


def _bad(text: str, why: str) -> ConfigError:
    return ConfigError("data", f"bad {ref('data')} {text!r}: {why}; e.g. shapes:32, pathfinder:32:easy, "
                               "imagenet:/data/imagenet (see attnbench train --help)")


def parse_data_spec(text: str) -> DataSpec:
    """Parse a ``--data`` value (grammar in ``DATA_HELP``); raises ValueError naming what is wrong."""
    kind, _, rest = text.strip().partition(":")
    kind = kind.lower()
    if kind in REAL:
        if not rest:
            raise _bad(text, f"{kind} needs a root folder, as {kind}:ROOT")
        return DataSpec(kind, root=os.path.expanduser(rest))
    if kind not in GENERATED:
        raise _bad(text, f"unknown dataset {kind!r}; accepted: {', '.join(REAL + GENERATED)}")
    size, level, keys = _generated_parts(text, kind, filter(None, rest.split(":")))
    if size < (16 if kind in ("pathfinder", "longrange") else 8):
        raise _bad(text, f"image size {size} is too small")
    n = keys.get("n", {"shapes": 2000, "longrange": 4000}.get(kind, 10000))
    n_val = keys.get("val", max(2, n // (8 if kind == "longrange" else 5)))
    if n < 2 or n_val < 2:
        raise _bad(text, "n and val must be at least 2")
    return DataSpec(kind, size=size, level=level, n_train=n, n_val=n_val, seed=keys.get("seed", 0),
                    dashes=keys.get("dashes"), distractors=keys.get("distractors"), colors=keys.get("colors"))


def _generated_parts(text: str, kind: str, parts: Any) -> tuple[int, str | None, dict[str, int]]:
    """``(size, level, options)`` from the ``:``-separated parts after a generated dataset's name."""
    size = 64 if kind == "longrange" else 32
    level, keys = {"pathfinder": "easy", "longrange": "medium"}.get(kind), {}
    allowed = ("n", "val", "seed") + {"pathfinder": ("dashes", "distractors"),
                                      "longrange": ("distractors", "colors")}.get(kind, ())
    for part in parts:
        if "=" in part:
            k, _, v = part.partition("=")
            if k not in allowed:
                raise _bad(text, f"unknown option {k!r}; accepted: {', '.join(allowed)}")
            try:
                keys[k] = int(v)
            except ValueError:
                raise _bad(text, f"{k} must be an integer, got {v!r}") from None
        elif part.isdigit():
            size = int(part)
        elif level is not None and part in LEVELS:
            level = part
        else:
            raise _bad(text, f"cannot read {part!r}" + (f" (levels: {', '.join(LEVELS)})" if level is not None
                                                         else ""))
    return size, level, keys


@dataclass
class DataInfo:
    """What the model and the loop need to know about a dataset."""

    num_classes: int
    in_chans: int
    img_size: int
    n_train: int
    n_val: int


class TensorImages:
    """Generated ``uint8 [n, C, S, S]`` images as a map-style dataset of normalised float tensors."""

    def __init__(self, images: Any, labels: Any, reprob: float = 0.0) -> None:
        import torch

        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)
        self.erase = None
        if reprob > 0:
            from timm.data.random_erasing import RandomErasing

            self.erase = RandomErasing(reprob, mode="pixel", device="cpu")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i].float().div_(127.5).sub_(1.0)  # [0, 255] -> [-1, 1]
        if self.erase is not None:
            x = self.erase(x)
        return x, int(self.labels[i])


class FreshImages(TensorImages):
    """Generated training images drawn anew every epoch: epoch ``e``'s set is a function of (data seed, e) alone
    (its own generator stream, never the validation one), so a resumed run draws the same images and no model can
    memorise its way to a low loss. The loop calls :meth:`set_epoch` before each epoch."""

    def __init__(self, draw: Any, reprob: float = 0.0) -> None:
        super().__init__(*draw(0), reprob=reprob)
        self.draw, self.epoch = draw, 0

    def set_epoch(self, epoch: int) -> None:
        import torch

        if epoch != self.epoch:
            images, labels = self.draw(epoch)
            self.images, self.labels, self.epoch = torch.from_numpy(images), torch.from_numpy(labels), epoch


def _renderer(spec: DataSpec) -> tuple[Any, int]:
    """``(draw(n, split, epoch) -> (images, labels), classes)`` of a generated dataset."""
    if spec.kind == "shapes":
        from attnbench.train.shapes import SHAPES, render_shapes

        return (lambda n, split, epoch: render_shapes(n, size=spec.size, seed=spec.seed, split=split, epoch=epoch),
                len(SHAPES))
    if spec.kind == "longrange":
        from attnbench.train.longrange import render_longrange

        kw = dict(size=spec.size, difficulty=spec.level, seed=spec.seed, distractors=spec.distractors,
                  colors=spec.colors)  # a size it cannot draw: a one-line ValueError
        return lambda n, split, epoch: render_longrange(n, split=split, epoch=epoch, **kw), 2
    from attnbench.train.pathfinder import PathfinderError, render_pathfinder

    kw = dict(size=spec.size, difficulty=spec.level, seed=spec.seed, dashes=spec.dashes, distractors=spec.distractors)

    def draw(n: int, split: str, epoch: int | None) -> Any:
        try:
            return render_pathfinder(n, split=split, epoch=epoch, **kw)
        except PathfinderError as e:
            raise ValueError(str(e)) from None

    return draw, 2


def _generated(spec: DataSpec, reprob: float, fresh: bool = False):
    """Train and val sets of generated data; with ``fresh`` the training set is drawn anew every epoch."""
    draw, classes = _renderer(spec)
    va = draw(spec.n_val, "val", None)
    if fresh:
        train: TensorImages = FreshImages(lambda epoch: draw(spec.n_train, "train", epoch), reprob)
    else:
        train = TensorImages(*draw(spec.n_train, "train", None), reprob=reprob)
    info = DataInfo(classes, va[0].shape[1], spec.size, spec.n_train, spec.n_val)
    return train, TensorImages(*va), info


def _need_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: {path} is not a folder" if path.exists() else f"{what}: {path} not found")


class CorruptImageError(ValueError):
    """An image file that cannot be read: one line naming the file, also after a DataLoader worker re-raised it (the
    worker's traceback, which the loader appends to the message, is dropped)."""

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__name__}: "
        ours = [ln.split(marker, 1)[1] for ln in message.splitlines() if marker in ln]
        super().__init__(ours[-1] if ours else message)


def _open_image(path: str) -> Any:
    """The image at ``path`` in RGB (torchvision's loader), or a CorruptImageError naming the file."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        why = ("not an image PIL can identify" if isinstance(e, Image.UnidentifiedImageError)
               else str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise CorruptImageError(f"cannot read image {path}: {why}; replace or delete it, or skip unreadable images "
                                "(--skip-corrupt)") from None


class CheckedImages:
    """Images ``indices`` of an ImageFolder (all of them by default), opened lazily when a batch needs them.

    An unreadable image raises :class:`CorruptImageError` naming the file; with ``skip`` it is recorded (in memory
    shared with the loader's worker processes) and the next readable image of the same set is returned in its place,
    so that batches keep their size.
    """

    def __init__(self, folder: Any, indices: list[int] | None = None, *, skip: bool = False) -> None:
        import multiprocessing

        self.dataset = folder  # torch's Subset names: dataset, indices
        self.indices = list(range(len(folder))) if indices is None else list(indices)
        self.classes = folder.classes
        self.bad = multiprocessing.RawArray("b", len(self.indices)) if skip else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        if self.bad is None:
            return self.dataset[self.indices[i]]
        for k in range(len(self.indices)):
            j = (i + k) % len(self.indices)
            try:
                return self.dataset[self.indices[j]]
            except CorruptImageError:
                self.bad[j] = 1
        raise CorruptImageError(f"none of the {len(self.indices)} images under {self.dataset.root} can be read")

    def corrupt(self) -> list[str]:
        """The files skipped as unreadable so far (by this process and its loader workers)."""
        if self.bad is None:
            return []
        return [self.dataset.samples[self.indices[j]][0] for j, flag in enumerate(bytes(self.bad)) if flag]


def corrupt_images(*datasets: Any) -> list[str]:
    """The unreadable files skipped so far in ``datasets`` (empty for datasets that never skip)."""
    return sorted({p for ds in datasets if isinstance(ds, CheckedImages) for p in ds.corrupt()})


def _image_folder(root: Path, transform: Any, what: str):
    from torchvision.datasets import ImageFolder

    _need_dir(root, what)
    try:
        return ImageFolder(str(root), transform=transform, loader=_open_image)  # images are opened when used
    except (FileNotFoundError, RuntimeError) as e:  # no class folders, or class folders with no images
        raise ValueError(f"{what}: no images under {root} ({str(e).splitlines()[0]}); expected "
                         f"{root}/<class>/<image>.jpg|png|...") from None


def _cifar(spec: DataSpec, train_tf: Any, val_tf: Any):
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, sub, files = ((CIFAR10, "cifar-10-batches-py", "data_batch_1..5, test_batch") if spec.kind == "cifar10"
                       else (CIFAR100, "cifar-100-python", "train, test"))
    root = Path(spec.root)
    _need_dir(root, spec.kind)
    try:
        return cls(str(root), train=True, transform=train_tf), cls(str(root), train=False, transform=val_tf)
    except RuntimeError:
        raise ValueError(f"{spec.kind}: expected torchvision's python copy at {root / sub}/ ({files}; the "
                         f"extracted {sub.replace('-batches-py', '-python')}.tar.gz); not found or corrupt") from None


def _split_folder(ds: Any, val_every: int = 10):
    """Every ``val_every``-th image of each class (ImageFolder sorts by path) goes to validation."""
    import torch.utils.data as tud

    seen: dict[int, int] = {}
    train_idx, val_idx = [], []
    for i, (_, y) in enumerate(ds.samples):
        k = seen[y] = seen.get(y, 0) + 1
        (val_idx if k % val_every == 0 else train_idx).append(i)
    return train_idx, val_idx, tud.Subset


def build_datasets(spec: DataSpec, img_size: int, cfg: Any) -> tuple[Any, Any, DataInfo]:
    """Train and val datasets for ``spec`` at ``img_size`` px with the augmentation of ``cfg`` (a TrainConfig)."""
    if spec.generated:
        if cfg.aa or cfg.color_jitter:
            raise ConfigError("aa", f"{ref('aa')} and {ref('color_jitter')} apply to image datasets, not generated "
                                    f"data (set them to none/0 or use {ref('recipe')} small)")
        return _generated(spec, cfg.reprob, bool(getattr(cfg, "fresh", False)))
    from timm.data import create_transform
    from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    small = img_size <= 64  # CIFAR-sized: no centre crop margin
    common = dict(input_size=img_size, interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
    train_tf = create_transform(is_training=True, auto_augment=cfg.aa, re_prob=cfg.reprob, re_mode="pixel",
                                color_jitter=cfg.color_jitter, **common)
    val_tf = create_transform(is_training=False, crop_pct=1.0 if small else 0.875, **common)
    root = Path(spec.root)
    skip = bool(getattr(cfg, "skip_corrupt", False))
    if spec.kind in ("cifar10", "cifar100"):
        train, val = _cifar(spec, train_tf, val_tf)
        classes = len(train.classes)
    elif spec.kind == "imagenet" or (root / "train").is_dir():
        _need_dir(root, spec.kind)
        train = _image_folder(root / "train", train_tf, spec.kind)
        val = _image_folder(root / "val", val_tf, spec.kind)
        classes = len(train.classes)
        if val.classes != train.classes:
            raise ValueError(f"{spec.kind}: {root}/train and {root}/val have different class folders")
        train, val = CheckedImages(train, skip=skip), CheckedImages(val, skip=skip)
    else:
        full_tr = _image_folder(root, train_tf, spec.kind)
        full_va = _image_folder(root, val_tf, spec.kind)
        train_idx, val_idx, _ = _split_folder(full_tr)
        if not val_idx:
            raise ValueError(f"folder: {root} has too few images to split (every 10th image of a class is "
                             "validation); add images or give train/ and val/ folders")
        train, val = CheckedImages(full_tr, train_idx, skip=skip), CheckedImages(full_va, val_idx, skip=skip)
        classes = len(full_tr.classes)
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"{spec.kind}: no images under {root}")
    return train, val, DataInfo(classes, 3, img_size, len(train), len(val))
