"""The results schema as data: every column of a results row is one :class:`Column`, declared once.

The identity of a cell (what was measured), its outcome, the measured quantities (declared by the probes of
:mod:`attnbench.measure.probes`, each beside the code that fills them) and the training columns together make
the schema. ``results.py`` (files), the report (numeric columns, units, plots) and the CLI read it from here, so
adding a quantity is one probe in one file. Torch-free: importing this module is cheap.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["Column", "PlotSpec", "Row", "IDENTITY", "OUTCOME", "RUN", "ROUNDS", "TRAIN", "KEY_COLUMNS", "STATUSES"]

Kind = Literal["text", "int", "float", "json"]

# a cell ends with one of these (see attnbench.cell for what each means)
STATUSES = ("ok", "oom", "timeout", "nan", "error", "skipped")


@dataclass(frozen=True)
class PlotSpec:
    """How a column is drawn: ``<stem>_<mode>.png`` (or ``<stem>.png``), values times ``scale``, log-log in N."""

    stem: str
    ylabel: str
    scale: float = 1.0
    per_mode: bool = True


@dataclass(frozen=True)
class Column:
    """One results column.

    Attributes:
        name: the column's name in ``results.csv``; units go in the name (``_bytes``, ``_ms``, ``_per_s``).
        kind: ``text``, ``int``, ``float`` or ``json`` (lists and dicts are stored as JSON text).
        unit: the unit of the values (``bytes``, ``ms``, ``samples/s``, ``MAC``, ...), empty when unitless.
        label: a short header for tables.
        doc: one line for ``attnbench list --columns`` and the docs.
        core: one of the design's core columns (listed first, in declaration order).
        key: part of the cell's identity (``--resume`` skips a key that has a row).
        plot: how the report draws it, or None.
        derive: ``derive(row) -> value`` for a column computed from the others' final values (filled when the row
            is written, after every round has been merged), or None for a measured one.
    """

    name: str
    kind: Kind = "float"
    unit: str = ""
    label: str = ""
    doc: str = ""
    core: bool = False
    key: bool = False
    plot: PlotSpec | None = None
    derive: Callable[[dict[str, Any]], Any] | None = None

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "float")


# what was measured: filled from the CellSpec (run) or the TrainConfig (train)
IDENTITY = (
    Column("model", "text", label="model", doc="registered attention name (or module:Class)", core=True, key=True),
    Column("scope", "text", label="scope", doc="layer, vit or pyramid: what surrounds the attention", core=True),
    Column("skeleton", "text", label="skeleton", doc="the model around the attention", core=True, key=True),
    Column("seq_len", "int", "tokens", "N", "tokens the attention sees (stage 1 for the pyramid)", core=True,
           key=True),
    Column("batch", "int", "samples", "batch", "samples per step; never changed on failure", core=True, key=True),
    Column("dtype", "text", label="dtype", doc="fp32, or bf16/fp16 under autocast", core=True, key=True),
    Column("device", "text", label="device", doc="cpu, cuda or cuda:i", core=True, key=True),
    Column("mode", "text", label="mode", doc="infer (forward, no grad) or train (forward+backward+step)",
           core=True, key=True),
    Column("hparams", "json", label="hparams", doc="the attention's hyper-parameters as sorted JSON", key=True),
    Column("compile", "text", label="compile", doc="torch.compile mode the skeleton ran under (empty: eager)",
           key=True),
)
OUTCOME = (
    Column("status", "text", label="status", doc=f"one of {', '.join(STATUSES)}", core=True),
    Column("reason", "text", label="reason", doc="why a cell did not finish, or what was not measured", core=True),
)
# where and how long: bookkeeping of the run, not measurements
RUN = (
    Column("wall_s", "float", "s", "wall s", "seconds the cell's process took, start-up included"),
    Column("shard", "text", label="shard", doc="i/n of the sweep that ran the cell"),
)
# a cell's rounds, reduced by the sweep (attnbench.stats): what its latency is the median of, and whether to trust it
ROUNDS = (
    Column("latency_ms_rounds", "json", "ms", "rounds ms", "median of each round, in round order (null: not run "
                                                          "there, or failed)"),
    Column("rounds_excluded", "json", label="excluded rounds", doc="rounds (0-based) set aside: other processes took "
                                                                   "the cores the cell needed"),
    Column("latency_rounds_min", "float", "ms", "min ms", "the fastest round's median"),
    Column("latency_rounds_max", "float", "ms", "max ms", "the slowest round's median"),
    Column("rounds", "int", "rounds", "rounds", "rounds that count (not excluded): the latency is their median"),
    Column("load_other_rounds", "json", "", "others' CPU by round", "load_other_share of each round it ran"),
    Column("trusted", "int", label="trusted", doc="1: passed the trust rules (attnbench.stats.TRUST_RULES); 0: not, "
                                                  "and left out of ratios, break-even and verdicts"),
    Column("untrusted_reason", "text", label="untrusted", doc="the trust rule it failed, with figures"),
    Column("pair_group", "text", label="pair group", doc="cells timed in the same rounds share it; only their "
                                                         "per-round ratios are paired"),
)
TRAIN = (
    Column("top1", "float", "%", "top-1", "validation top-1 accuracy of the final (or EMA) weights"),
    Column("top5", "float", "%", "top-5", "validation top-5 accuracy"),
    Column("epochs", "int", "epochs", "epochs", "epochs trained"),
    Column("dataset", "text", label="dataset", doc="the training data spec, e.g. shapes:32"),
    Column("seed", "int", label="seed", doc="the training seed (init, data order); --seeds K repeats a pair"),
    Column("train_hours", "float", "h", "train h", "wall hours of training"),
    Column("epochs_budget", "int", "epochs", "budget", "epochs the schedule spans (the same for every method of a "
                                                       "sweep); fewer were run only after an early stop"),
    Column("best_top1", "float", "%", "best top-1", "the best validation top-1 of any epoch"),
    Column("best_epoch", "int", "epoch", "best epoch", "the first epoch (1-based) at the best top-1"),
    Column("val_images", "int", "images", "val", "validation images: the sample size of the 'learned' test"),
    Column("classes", "int", "classes", "classes", "classes of the task (chance = 1 / classes: balanced labels)"),
    Column("learned", "int", label="learned", doc="1: the best top-1 beats chance by a one-sided binomial test at the "
                                                   "validation size (p < 0.01); 0: did not learn within the budget"),
    Column("log_dir", "text", label="log dir", doc="the pair's folder (checkpoint, log.csv), relative to the run "
                                                 "directory"),
    Column("fresh", "int", label="fresh data", doc="1: new generated training images every epoch; 0: one fixed set"),
)

KEY_COLUMNS = [c.name for c in IDENTITY if c.key]


class Row(dict):
    """One results row: a dict whose keys must be schema columns (``run`` and ``train`` both write these).

    ``Row.of(columns, **values)`` checks names against ``columns``; values are left as given and converted to
    text only when written (:func:`attnbench.results.append_row`).
    """

    @classmethod
    def of(cls, columns: dict[str, Column], **values: Any) -> "Row":
        unknown = sorted(set(values) - set(columns))
        if unknown:
            raise ValueError(f"unknown result columns {unknown}; accepted: {', '.join(columns)}")
        return cls(values)
