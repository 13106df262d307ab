"""attnbench: which attention should I use at my sequence length, on my hardware, under my memory budget?

The public API is imported lazily so that ``import attnbench`` (and ``attnbench --help``) stays light::

    import attnbench
    cfg = attnbench.SweepConfig(models=["soft", "softmax"], seq_lens=[1024, 2048], skeleton="layer", ...)
    df = attnbench.run_sweep(cfg, "results/my-run")
    rep = attnbench.report("results/my-run")      # tables as DataFrames, report.md, plots
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_LAZY = {
    "run_sweep": "attnbench.sweep",
    "SweepConfig": "attnbench.config",
    "load_results": "attnbench.results",
    "list_attentions": "attnbench.registry",
    "register_attention": "attnbench.registry",
    "get_attention": "attnbench.registry",
    "AttentionEntry": "attnbench.registry",
    "parse_seq": "attnbench.seqspec",
    "report": "attnbench.reporting",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'attnbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
