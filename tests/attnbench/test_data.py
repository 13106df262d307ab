"""Dataset specs and real-image datasets for ``attnbench train``: parsing, layouts, one-line errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attnbench.cli._common import flag
from attnbench.config import ConfigError
from attnbench.train.config import TrainConfig, resolve_recipe
from attnbench.train.data import build_datasets, parse_data_spec


def test_parse_generated_specs():
    s = parse_data_spec("shapes")
    assert (s.kind, s.size, s.n_train, s.n_val, s.seed, s.generated) == ("shapes", 32, 2000, 400, 0, True)
    p = parse_data_spec("pathfinder:64:hard:n=100:val=20:seed=7:distractors=2")
    assert (p.kind, p.size, p.level, p.n_train, p.n_val, p.seed, p.distractors) == \
        ("pathfinder", 64, "hard", 100, 20, 7, 2)
    assert p.name == "pathfinder:64:hard:n=100:seed=7:distractors=2"
    assert parse_data_spec("pathfinder").level == "easy"


def test_parse_real_specs():
    s = parse_data_spec("imagenet:/data/in1k")
    assert (s.kind, s.root, s.generated) == ("imagenet", "/data/in1k", False)
    assert parse_data_spec("folder:C:/x:y").root == "C:/x:y"  # everything after the first colon is the root


@pytest.mark.parametrize("text, match", [
    ("nope:1", "unknown dataset"),
    ("imagenet", "needs a root"),
    ("shapes:abc", "cannot read"),
    ("pathfinder:32:extreme", "levels"),
    ("shapes:32:n=ten", "integer"),
    ("shapes:32:dashes=3", "unknown option"),
    ("shapes:4", "too small"),
    ("shapes:32:n=1", "at least 2"),
])
def test_bad_specs(text, match):
    with pytest.raises(ValueError, match=match):
        parse_data_spec(text)


def _cfg(**kw):
    return resolve_recipe(TrainConfig(**kw), generated=False)


def _write_images(root: Path, classes: int = 2, per_class: int = 10, size: int = 16) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / f"{i:03d}.png")


def test_folder_single_tree_is_split_every_tenth(tmp_path):
    _write_images(tmp_path, classes=2, per_class=20)
    train, val, info = build_datasets(parse_data_spec(f"folder:{tmp_path}"), 16, _cfg())
    assert (len(train), len(val), info.num_classes, info.in_chans) == (36, 4, 2, 3)
    x, y = train[0]
    assert tuple(x.shape) == (3, 16, 16)
    # deterministic: the 10th and 20th file of each class (sorted) are validation
    assert sorted(Path(val.dataset.samples[i][0]).name for i in val.indices) == ["009.png", "009.png", "019.png",
                                                                                 "019.png"]


def test_folder_with_train_and_val(tmp_path):
    _write_images(tmp_path / "train", per_class=4)
    _write_images(tmp_path / "val", per_class=2)
    train, val, info = build_datasets(parse_data_spec(f"folder:{tmp_path}"), 16, _cfg())
    assert (len(train), len(val), info.num_classes) == (8, 4, 2)


@pytest.mark.parametrize("kind", ["imagenet", "folder", "cifar10", "cifar100"])
def test_missing_root(tmp_path, kind):
    with pytest.raises(FileNotFoundError, match="not found"):
        build_datasets(parse_data_spec(f"{kind}:{tmp_path / 'missing'}"), 32, _cfg())


def test_folder_without_images(tmp_path):
    (tmp_path / "class0").mkdir()
    (tmp_path / "class0" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images"):
        build_datasets(parse_data_spec(f"folder:{tmp_path}"), 32, _cfg())


def test_imagenet_needs_val(tmp_path):
    _write_images(tmp_path / "train", per_class=2)
    with pytest.raises(FileNotFoundError, match="val"):
        build_datasets(parse_data_spec(f"imagenet:{tmp_path}"), 16, _cfg())


def test_cifar_layout_is_named(tmp_path):
    with pytest.raises(ValueError, match="cifar-10-batches-py"):
        build_datasets(parse_data_spec(f"cifar10:{tmp_path}"), 32, _cfg())


def test_generated_rejects_image_augmentation():
    cfg = resolve_recipe(TrainConfig(aa="rand-m9-mstd0.5-inc1"), generated=True)
    with pytest.raises(ConfigError, match="aa and color_jitter apply to image datasets") as e:
        build_datasets(parse_data_spec("shapes:16:n=12"), 16, cfg)
    assert e.value.field == "aa" and e.value.render(flag).startswith("--aa and --color-jitter")


def test_generated_dataset_tensors():
    cfg = resolve_recipe(TrainConfig(), generated=True)
    train, val, info = build_datasets(parse_data_spec("pathfinder:32:n=8:val=4"), 32, cfg)
    x, y = train[0]
    assert tuple(x.shape) == (1, 32, 32) and -1 <= float(x.min()) and float(x.max()) <= 1
    assert (info.num_classes, info.in_chans, len(train), len(val)) == (2, 1, 8, 4)
