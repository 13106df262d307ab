"""Trained accuracy of any registered attention inside identical skeletons (``attnbench train``).

``train(TrainConfig(...)) -> dict`` runs the DeiT/SOFT recipe through timm's factories, under torchrun for DDP, with
an atomic checkpoint every epoch, and appends a ``scope="train"`` row to the run's results.csv. torch and timm load
only when ``train`` is first used.
"""
from __future__ import annotations

from typing import Any

from attnbench.train.config import RECIPES, TrainConfig

__all__ = ["TrainConfig", "RECIPES", "train", "parse_data_spec", "render_shapes", "render_pathfinder"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from attnbench.train.loop import train

        return train
    if name == "parse_data_spec":
        from attnbench.train.data import parse_data_spec

        return parse_data_spec
    if name == "render_shapes":
        from attnbench.train.shapes import render_shapes

        return render_shapes
    if name == "render_pathfinder":
        from attnbench.train.pathfinder import render_pathfinder

        return render_pathfinder
    raise AttributeError(f"module 'attnbench.train' has no attribute {name!r}")
