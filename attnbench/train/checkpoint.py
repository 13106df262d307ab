"""Atomic checkpoints that carry the run's spec, and the RNG states that make a resumed run exact."""
from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnbench.config import ConfigError, ref

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "FORMAT"]

FORMAT = "attnbench-train/1"


def rng_state() -> dict[str, Any]:
    """Every RNG a training step draws from: python (timm's augmentation), numpy (Mixup), torch, CUDA."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, *, model: str, skeleton: str, seq_len: int) -> dict[str, Any]:
    """Read a checkpoint and check it belongs to this run; raises ValueError with a one-line reason otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume at {path}")
    try:
        # the checkpoint holds numpy RNG state and the config dict: not loadable with weights_only=True
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, AttributeError,
            ImportError, IndexError, KeyError, TypeError) as e:
        raise ValueError(f"corrupt checkpoint {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
                         "delete it to start over") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not an attnbench train checkpoint")
    got = (ckpt["model_name"], ckpt["skeleton"], ckpt["seq_len"])
    if got != (model, skeleton, seq_len):
        raise ConfigError("resume", f"checkpoint {path} is from model {got[0]!r} ({got[1]}, N={got[2]}), not "
                                    f"{model!r} ({skeleton}, N={seq_len}); pass the matching {ref('model')}/"
                                    f"{ref('skeleton')} or another {ref('out')}")
    return ckpt
