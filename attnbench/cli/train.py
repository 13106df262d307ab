"""``attnbench train``: trained accuracy of one attention in one skeleton (a thin shell over attnbench.train)."""
from __future__ import annotations

from typing import Any, NoReturn

import click

from attnbench.cli._common import abort, interruption, user_errors
from attnbench.skeletons import FAMILIES
from attnbench.train.config import AMPS, DEVICES, PROGRESS, RECIPES
from attnbench.train.data import DATA_HELP

__all__ = ["train"]


def _d(key: str) -> str:
    """The recipes' defaults for --help."""
    def fmt(v: Any) -> str:
        if v is None:
            return "all" if key == "depth" else "none"
        if isinstance(v, bool):
            return "on" if v else "off"
        return f"{v:g}" if isinstance(v, float) else str(v)

    return "[" + "; ".join(f"{name}: {fmt(recipe[key])}" for name, recipe in RECIPES.items()) + "]"


EPILOG = f"""\b
{DATA_HELP}

Recipes: 'deit' is the DeiT recipe the SOFT paper trained with (timm: RandAugment, Mixup/CutMix, label smoothing,
random erasing, AdamW, cosine with warm-up, drop-path, EMA, clipping); 'small' is for the built-in generated data
on a CPU; 'longrange' is 'small' for the long-range task (batch 32, lr 2e-3, 12 epochs, 2 blocks). Generated data is
drawn anew every epoch (--fixed: one set). --recipe auto picks deit for real images, longrange for longrange data
and small for other generated data; every option overrides it. lr = --lr x (--batch-size x processes) /
--lr-base-batch (linear scaling by the global batch).

Sweeps: --models a,b,... and/or --seq N1,N2,... (the grammar of 'attnbench run') train every (model, N) pair,
--seeds K times [3] (seeds --seed .. --seed+K-1), one after another in this process, into one run directory
[results/train-sweep-<data>] with one row per pair; N sets the image side (sqrt(N) x patch). A sweep's defaults are
--data longrange and --skeleton vit-micro (the long-range task, where N matters). --resume skips the pairs that have
a row and continues an interrupted one from its checkpoint. A model that cannot run at some N gets a skipped row.

\b
Examples:
  attnbench train        # softmax, vit-tiny-d4, shapes:32 (N=64): minutes
  attnbench train --models softmax,soft,performer --seq 256,1024 \\
      --seeds 2 --threads 1
  attnbench train --model soft --data pathfinder:32:easy --patch-size 4
  torchrun --nproc_per_node=8 -m attnbench train --model soft \\
      --skeleton soft-tiny --data imagenet:/data/imagenet \\
      --out results/imagenet-soft-tiny

Under torchrun, --batch-size is per process; rank 0 alone writes. --resume continues from the last epoch."""


@click.command("train", epilog=EPILOG)  # the group's help width (80 columns)
@click.option("--model", default="softmax", show_default=True,
              help="Registered attention (attnbench list) or module:Class.")
@click.option("--models", help="Sweep: comma list of attentions, 'core' or 'all' (instead of --model).")
@click.option("--seq", "seq_lens", metavar="SPEC",
              help="Sweep: sequence lengths N, squares (e.g. 256,1024 or 256..4096:*4); [the data's own N].")
@click.option("--seeds", type=int, help="Sweep: training seeds per (model, N) [3 in a sweep].")
@click.option("--local-control", is_flag=True,
              help="Sweep: also train every pair on the shapes task at the same N, skeleton and recipe (does a "
                   "method that fails the long-range task train at all?).")
@click.option("--skeleton", default="vit-tiny", show_default=True,
              help=" or ".join(", ".join(f.names()) for f in FAMILIES if f.trainable) + " (see attnbench list).")
@click.option("--data", default="shapes:32", show_default=True, help="Dataset spec (below).")
@click.option("--hparam", "-p", "hparams", multiple=True, metavar="MODEL.KEY=VALUE", help="Attention hyper-parameter.")
@click.option("--img-size", type=int, help="Image side; [generated: its size; cifar: 32; else 224].")
@click.option("--patch-size", type=int,
              help="ViT patch side; N = (img/patch)^2 [pathfinder: 1; shapes, cifar: 4; else 16].")
@click.option("--recipe", type=click.Choice(["auto", *RECIPES]), default="auto", show_default=True)
@click.option("--epochs", type=int, help=f"Epochs before cool-down {_d('epochs')}.")
@click.option("--cooldown-epochs", type=int, help=f"Epochs at min lr after the cosine {_d('cooldown_epochs')}.")
@click.option("--batch-size", type=int, help=f"Images per process {_d('batch_size')}.")
@click.option("--lr", type=float, help=f"Base learning rate at --lr-base-batch {_d('lr')}.")
@click.option("--lr-base-batch", type=int, help=f"Global batch the base lr is for {_d('lr_base_batch')}.")
@click.option("--min-lr", type=float, help=f"Cosine floor {_d('min_lr')}.")
@click.option("--warmup-lr", type=float, help=f"Warm-up start {_d('warmup_lr')}.")
@click.option("--warmup-epochs", type=int, help=f"{_d('warmup_epochs')}")
@click.option("--weight-decay", type=float, help=f"{_d('weight_decay')}")
@click.option("--opt", help=f"timm optimizer name {_d('opt')}.")
@click.option("--sched", help=f"timm scheduler name {_d('sched')}.")
@click.option("--clip-grad", type=float, help=f"Gradient-norm clip, 0 = off {_d('clip_grad')}.")
@click.option("--drop-path", type=float, help=f"Stochastic depth rate {_d('drop_path')}.")
@click.option("--smoothing", type=float, help=f"Label smoothing {_d('smoothing')}.")
@click.option("--mixup", type=float, help=f"Mixup alpha, 0 = off {_d('mixup')}.")
@click.option("--cutmix", type=float, help=f"CutMix alpha, 0 = off {_d('cutmix')}.")
@click.option("--aa", help=f"timm auto-augment policy or none {_d('aa')}.")
@click.option("--reprob", type=float, help=f"Random-erasing probability {_d('reprob')}.")
@click.option("--color-jitter", type=float, help=f"{_d('color_jitter')}")
@click.option("--ema/--no-ema", default=None, help=f"Model EMA; the final top-1 is the EMA's when on {_d('ema')}.")
@click.option("--ema-decay", type=float, help=f"{_d('ema_decay')}")
@click.option("--workers", type=int, help=f"Data-loader workers per process {_d('workers')}.")
@click.option("--depth", type=int, help=f"Keep the first D ViT blocks; 0 = all {_d('depth')}.")
@click.option("--fresh/--fixed", default=None,
              help=f"Generated data: new training images every epoch, or one fixed set {_d('fresh')}.")
@click.option("--patience", type=int, help="Early stop, one rule for every method: stop once a run has learned "
                                           "(beats chance, p < 0.01), held it since its best epoch, and that best "
                                           "is P epochs old [off].")
@click.option("--amp", type=click.Choice(AMPS), default="auto", show_default=True,
              help="auto = bf16 autocast on CUDA, fp32 on CPU.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--seed", type=int, default=42, show_default=True, help="Training seed (the paper's 42).")
@click.option("--out", help="Run directory [results/train-<data>]; checkpoints and logs in <out>/<model>/.")
@click.option("--resume", is_flag=False, flag_value="auto", default=None, metavar="[CKPT]",
              help="Continue from <out>/<model>/checkpoint.pth (or CKPT); starts fresh if there is none yet.")
@click.option("--stop-after", type=int, help="Stop after this many epochs of this invocation (time-sliced jobs).")
@click.option("--log-interval", type=int, default=50, show_default=True, help="Steps between plain log lines.")
@click.option("--progress", type=click.Choice(PROGRESS), default="auto", show_default=True,
              help="auto = rich bars on a terminal, plain lines otherwise.")
@click.option("--threads", type=int, help="CPU threads (torch.set_num_threads) [one per core]; 1 on a shared machine.")
@click.option("--skip-corrupt", is_flag=True, help="Skip image files that cannot be read (counted, and reported in the "
                                                   "results row); by default the first one stops the run, naming it.")
@user_errors
@click.pass_context
def train(ctx: click.Context, hparams: tuple[str, ...], models: str | None, seq_lens: str | None,
          seeds: int | None, local_control: bool, **opts: Any) -> None:
    """Train one attention inside an identical skeleton and append its top-1/top-5 row to <out>/results.csv.

    Runs as one process, or under torchrun (DDP: nccl on CUDA, gloo on CPU) with the same options.
    """
    from attnbench.registry import resolve_hparams
    from attnbench.train import TrainConfig
    from attnbench.train.loop import train as run_training

    if models is not None or seq_lens is not None or seeds is not None or local_control:
        _sweep(ctx, list(hparams), models, seq_lens, 3 if seeds is None else seeds, opts, local_control)
        return
    per_model = resolve_hparams(list(hparams))
    unknown = [m for m in per_model if m != opts["model"]]
    if unknown:
        raise ValueError(f"--hparam for {unknown[0]!r} but --model is {opts['model']!r}")
    try:
        run_training(TrainConfig(hparams=per_model.get(opts["model"], {}), **opts))
    except KeyboardInterrupt as e:
        _interrupted(e)


def _interrupted(e: KeyboardInterrupt) -> NoReturn:
    """Ctrl-C (exit 130) or SIGTERM (``runner.Terminated``, exit 143): one line; the checkpoint of the last finished
    epoch is on disk (written atomically after every epoch)."""
    code, what = interruption(e)
    abort(f"{what}: every finished epoch is in the run's checkpoint; continue with the same command and --resume",
          code)


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)


def _sweep(ctx: click.Context, hparams: list[str], models: str | None, seq_lens: str | None, seeds: int,
           opts: dict[str, Any], local_control: bool = False) -> None:
    """``--models``/``--seq``/``--seeds``: plan every pair (all checks first), then train them one by one."""
    import os
    from pathlib import Path

    from attnbench.registry import parse_models, resolve_hparams
    from attnbench.seqspec import parse_seq
    from attnbench.train import TrainConfig
    from attnbench.train.sweep import (SWEEP_DATA, SWEEP_SKELETON, default_sweep_dir, native_seq_len,
                                       pending_pairs, plan_train_sweep, run_train_sweep)

    if models is not None and _given(ctx, "model"):
        raise ValueError("give --model (one run) or --models (a sweep), not both")
    names = parse_models(models) if models is not None else [opts["model"]]
    per_model = resolve_hparams(hparams)
    unknown = [m for m in per_model if m not in names]
    if unknown:
        raise ValueError(f"--hparam for {unknown[0]!r}, which is not in --models ({', '.join(names)})")
    if opts["resume"] not in (None, "auto"):
        raise ValueError("a sweep resumes every pair from its own checkpoint: pass --resume without a path")
    opts["data"] = opts["data"] if _given(ctx, "data") else SWEEP_DATA
    opts["skeleton"] = opts["skeleton"] if _given(ctx, "skeleton") else SWEEP_SKELETON
    base = TrainConfig(**{**opts, "resume": None})
    seqs = parse_seq(seq_lens) if seq_lens is not None else [native_seq_len(base)]
    pairs = plan_train_sweep(base, names, seqs, seeds, hparams=per_model, local_control=local_control)
    run_dir = Path(opts["out"]) if opts["out"] else default_sweep_dir(base.data)
    if (run_dir / "results.csv").exists() or any(run_dir.glob("*/N*-seed*")):
        if opts["resume"] is None:
            raise ValueError(f"run {run_dir} already exists; pass --resume to finish it or choose another --out")
    todo = pending_pairs(pairs, run_dir) if run_dir.exists() else pairs
    from attnbench.cli._render import echo

    say = echo if int(os.environ.get("RANK", 0)) == 0 else (lambda *_a, **_k: None)  # rank 0 alone talks
    data = base.data + (" (+ the shapes local control)" if local_control else "")
    say(f"train sweep: {len(names)} model(s) x N={','.join(map(str, seqs))} x {seeds} seed(s) = {len(pairs)} "
        f"pair(s), {len(todo)} to run, {pairs[0].skeleton} on {data} -> {run_dir}")

    def on_pair(i: int, total: int, pair: Any) -> None:
        what = f"skipped: {pair.skip}" if pair.skip else pair.dataset
        say(f"[{i + 1}/{total}] {pair.model} N={pair.seq_len} seed={pair.seed}: {what}")

    try:
        run_train_sweep(pairs, run_dir, on_pair=on_pair)
    except KeyboardInterrupt as e:
        _interrupted(e)  # finished pairs keep their rows, the interrupted one its checkpoint
    say(f"done -> {run_dir / 'results.csv'}")
