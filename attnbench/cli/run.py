"""``attnbench run``: the efficiency sweep across sequence lengths."""
from __future__ import annotations

import contextlib
import functools
import math
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from attnbench.cli._common import abort, interruption, user_errors
from attnbench.config import AUTO, AUTO_GROUP_BUDGET_S, COMPILE_MODES, DTYPES, MAX_MEM_LIMIT, MODES, ConfigError, ref
from attnbench.skeletons import describe as describe_skeletons

__all__ = ["run", "DEFAULTS", "parse_shard", "parse_modes", "parse_mem", "default_run_name", "prepare_run_dir",
           "run_outputs", "resume_advice"]

# The embedded default (`attnbench run` with no options): every core method, on one attention layer at
# ViT-Tiny width, 1024..4096 tokens (Linformer's k=256 needs N > 256), inference and training, batch 1.
# Measured to finish well inside 5 minutes on a 2-core CPU (see README).
DEFAULTS: dict[str, Any] = dict(models="core", seq="1024..4096", skeleton="layer", batch=1, dtype="fp32",
                                mode="infer,train", device="auto", out="results", timeout=120.0, min_time=0.2,
                                repeats="auto", max_retries=2, target_ci=5.0)


class RepeatsType(click.ParamType):
    """``--repeats``: ``auto`` or a whole number of rounds (its range is checked with the config's other values)."""

    name = "auto|N"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) or value == AUTO:
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is not a valid integer, nor {AUTO}", param, ctx)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` -> (i, N) with 0 <= i < N."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m[2]) < 1 or int(m[1]) >= int(m[2]):
        raise ConfigError("shard", f"bad {ref('shard')} {text!r}; expected i/N with 0 <= i < N, e.g. 0/4 (the first "
                                   "of 4 shards)")
    return int(m[1]), int(m[2])


def parse_modes(text: str) -> list[str]:
    """``"infer,train"`` -> ``["infer", "train"]`` (order kept, duplicates dropped)."""
    modes = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not modes or any(m not in MODES for m in modes):
        raise ConfigError("modes", f"bad {ref('modes')} {text!r}; accepted: {', '.join(MODES)} or {','.join(MODES)}")
    return modes


def parse_mem(text: str | None) -> int | None:
    """``"8G"``, ``"512M"``, ``"1.5GiB"``, ``"4096"`` (bytes) -> bytes, from 1 byte to ``MAX_MEM_LIMIT``; errors
    quote the text as given (a size that rounds to 0 bytes must not read as ``0``)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    size = float(m[1]) * 1024 ** " KMGT".index((m[2] or " ").upper()) if m else math.nan
    why = ("expected a size such as 8G, 512M or 1.5GiB" if not m else
           "less than one byte; expected a size such as 8G, 512M or 1.5GiB" if not size >= 1 else
           "exceeds the maximum 1 EiB (the range of setrlimit)" if size > MAX_MEM_LIMIT else None)
    if why:
        raise ConfigError("mem_limit", f"bad {ref('mem_limit')} {text.strip() or repr(text)}: {why}")
    return int(size)


def default_run_name(skeleton: str, models: str, shard: tuple[int, int] | None = None) -> str:
    """``20250101-120000-layer-core`` (+ ``-s0of4`` for a shard)."""
    desc = models if models in ("core", "all") else "+".join(m.strip() for m in models.split(",") if m.strip())
    desc = re.sub(r"[^A-Za-z0-9+._-]", "_", desc)[:40]
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{skeleton}-{desc}"
    return name + (f"-s{shard[0]}of{shard[1]}" if shard else "")


def run_outputs() -> tuple[str, ...]:
    """Every file ``attnbench run`` writes in its run directory: the sweep's, then the report's and its plots."""
    from attnbench.reporting.api import HTML_NAME, REPORT_NAME
    from attnbench.results import RUN_FILES

    return (*RUN_FILES, REPORT_NAME, HTML_NAME, "*.png")


def prepare_run_dir(out: str | Path, name: str, resume: bool, *, create: bool = True) -> Path:
    """Create (or, with resume, find) ``out/name``; one-line ValueError when it cannot be used: a bad name, an
    output that cannot be written (``run_outputs``), a run there already (without resume), none or a corrupt one
    (with resume). ``create=False`` makes the same checks and creates nothing."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"bad --name {name!r}; expected a plain folder name such as my-sweep")
    from attnbench.results import check_writable

    out = Path(out)
    run_dir = out / name
    check_writable(run_dir, run_outputs())
    if resume:
        if not (run_dir / "results.csv").exists():
            have = sorted(p.name for p in out.iterdir() if (p / "results.csv").exists()) if out.is_dir() else []
            raise ValueError(f"--resume: no run {name!r} in {out}" +
                             (f"; runs there: {', '.join(have[-5:])}" if have else ""))
        from attnbench.results import load_results

        load_results(run_dir)  # a corrupt file fails here, before anything runs
    elif (run_dir / "results.csv").exists():
        raise ValueError(f"run {run_dir} already exists; pass --resume to finish it or choose another --name")
    if create:
        from attnbench.sweep import prepare_dir

        prepare_dir(run_dir, run_outputs())
    return run_dir


def resume_advice(run_dir: Path, out: str | Path) -> str:
    """The command that finishes an interrupted run as printed: a resume takes the run's options from meta.json."""
    return shlex.join(["attnbench", "run", "--resume", "--name", run_dir.name, "--out", str(out)])


@click.command("run", short_help="Sweep attentions across sequence lengths: FLOPs, memory, latency.",
               context_settings={"show_default": True})
@click.option("--models", "-m", default=DEFAULTS["models"],
              help="Comma list of registered attentions (see `attnbench list`), 'core' "
                   "(soft, softmax, performer, linformer, nystromformer), 'all', or a user attention as "
                   "module:Class.")
@click.option("--seq", "-s", default=DEFAULTS["seq"],
              help="Sequence lengths: 1024..16384 doubles, 256..1024:+256 adds, 196..3136:*4 multiplies; "
                   "commas join forms (196,256..1024).")
@click.option("--skeleton", default=DEFAULTS["skeleton"], metavar="NAME",
              help=f"Model around the attention. {'. '.join(describe_skeletons())}.")
@click.option("--batch", "-b", default=DEFAULTS["batch"], type=click.IntRange(min=1),
              help="Batch size (never changed silently: an OOM is a row with status oom).")
@click.option("--dtype", default=DEFAULTS["dtype"], type=click.Choice(DTYPES),
              help="Autocast dtype (weights and inputs stay fp32; bf16/fp16 run matmuls under torch.autocast).")
@click.option("--mode", default=DEFAULTS["mode"], help="infer (forward, no grad), train (forward+backward+step), "
                                                       "or both: infer,train.")
@click.option("--device", default=DEFAULTS["device"], help="auto, cpu, cuda or cuda:<index>.")
@click.option("--out", "-o", default=DEFAULTS["out"], type=click.Path(file_okay=False),
              help="Parent folder of run directories.")
@click.option("--name", default=None, help="Run directory name under --out  [default: <timestamp>-<skeleton>-<models>]")
@click.option("--resume", is_flag=True, help="Finish run --name with its own options (its meta.json): cells that "
                                             "already have a row are not re-run; an option that would change its "
                                             "cells or their settings is refused (see --extend).")
@click.option("--extend", is_flag=True, help="With --resume, add the given --models, --seq and --mode (and the added "
                                             "models' --hparam) to the run's cells.")
@click.option("--retry-failed", is_flag=True, help="With --resume, also re-run cells whose row is error, timeout, "
                                                   "oom or nan (e.g. after raising --timeout).")
@click.option("--timeout", default=DEFAULTS["timeout"], type=click.FloatRange(min=0, min_open=True),
              help="Seconds per cell before it is killed and recorded as timeout.")
@click.option("--min-time", default=DEFAULTS["min_time"], type=click.FloatRange(min=0, min_open=True),
              help="Seconds of timing per cell (torch.utils.benchmark Timer; at least 7 blocks).")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="CPU threads per cell (torch.set_num_threads)  [default: the cores idle before each N's first "
                   "round, at least 1]. --threads 1 gives steadier latencies on a shared machine.")
@click.option("--repeats", default=DEFAULTS["repeats"], type=RepeatsType(), metavar="auto|N",
              help="Timing rounds per cell; in each round the methods of one N run back to back in a rotating order, "
                   "and speed-ups are paired per round, with a confidence interval. auto: 3 rounds, then more for the "
                   "cells whose speed-up interval is wider than --target-ci (or that are untrusted), up to "
                   f"--max-rounds and {AUTO_GROUP_BUDGET_S / 60:g} minutes per N and mode.")
@click.option("--target-ci", default=DEFAULTS["target_ci"], type=float, metavar="PCT",
              help="With --repeats auto: the speed-up interval's half-width, in percent of the speed-up, that needs "
                   "no more rounds.")
@click.option("--max-rounds", default=None, type=int, metavar="N",
              help="The most rounds a cell may take, extra rounds included  [default: 9 with --repeats auto, else "
                   "--repeats + --max-retries]")
@click.option("--max-retries", default=DEFAULTS["max_retries"], type=click.IntRange(min=0),
              help="Extra rounds for a cell that fails the trust rules (load, spread, too few blocks) before it is "
                   "marked untrusted and left out of ratios (a fixed --repeats; auto goes up to --max-rounds).")
@click.option("--shard", default=None, metavar="I/N", help="Run only shard I of N (0-based) of the cells, e.g. "
                                                           "for SLURM array jobs; join the shards with `report`.")
@click.option("--hparam", "-p", "hparams", multiple=True, metavar="MODEL.KEY=VALUE",
              help="Override a method's hyper-parameter; repeatable, e.g. -p soft.landmarks=64 -p linformer.k=128.")
@click.option("--mem-limit", default=None, metavar="SIZE", help="Cap each CPU cell's address space (e.g. 8G); "
                                                                "a cell over it is recorded as oom.")
@click.option("--force", is_flag=True, help="Also run cells whose estimated memory (a lower bound from the method's "
                                            "closed form) exceeds the machine's RAM, the GPU's memory or --mem-limit; "
                                            "by default they are skipped rows giving the estimate.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile (inductor) the skeleton of every cell; the "
                                                          "compile time is a column apart, never in the latency.")
@click.option("--compile-mode", type=click.Choice(COMPILE_MODES), default=None, metavar="MODE",
              help=f"torch.compile's mode: {', '.join(COMPILE_MODES)} (implies --compile)  [default: default]")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--dry-run", is_flag=True, help="Validate the options, list the planned cells (skipped and, with "
                                              "--resume, done ones too) and estimate the wall time; run nothing, "
                                              "write nothing.")
@user_errors
def run(models: str, seq: str, skeleton: str, batch: int, dtype: str, mode: str, device: str, out: str,
        name: str | None, resume: bool, extend: bool, retry_failed: bool, timeout: float, min_time: float,
        threads: int | None, repeats: int | str, target_ci: float, max_rounds: int | None, max_retries: int,
        shard: str | None,
        hparams: tuple[str, ...], mem_limit: str | None, force: bool, compile_: bool, compile_mode: str | None,
        no_plots: bool, dry_run: bool) -> None:
    """Measure params, FLOPs, peak memory and latency of attentions across sequence lengths.

    Each (model, N, mode) cell runs in its own subprocess with a timeout; rows are appended to
    OUT/NAME/results.csv as cells finish, then results.parquet, report.md and plots are written and the table is
    printed. Ctrl-C keeps every finished row (finish later with --resume).

    \b
    Examples:
      attnbench run                       # core methods, layer, 1024..4096
      attnbench run -m soft,performer -s 1024..16384 --skeleton vit-tiny
      attnbench run --models all --seq 1024..16384 --timeout 120
      attnbench run -m soft,softmax -s 256..1024:+256 -p soft.landmarks=64
      attnbench run --name big --resume   # finish it, with its own options
      attnbench run --name big --resume --extend -m cosformer  # add a model
      attnbench run --shard 1/4 --name big-s1 ...  # shard 1 of 4 (0-based)
      attnbench run -m all -s 1024..16384 --dry-run  # what would run, how long
    """
    from attnbench.config import SweepConfig, check_resume, resumed_config, validate

    if retry_failed and not resume:
        raise ValueError("--retry-failed goes with --resume --name <run> (the run whose failed cells to re-run)")
    if extend and not resume:
        raise ValueError("--extend goes with --resume --name <run> (the run to add cells to)")
    if resume and name is None:
        raise ValueError("--resume needs --name <run> (the folder under --out to finish)")
    # the text options first (cheap), then what needs the registry; validate() checks the values
    options = dict(seq=seq, mode=mode, shard=shard, mem_limit=mem_limit, models=models, hparams=hparams,
                   skeleton=skeleton, batch=batch, dtype=dtype, device=device, timeout=timeout, min_time=min_time,
                   threads=threads, repeats=repeats, target_ci=target_ci, max_rounds=max_rounds,
                   max_retries=max_retries, force=force,
                   compile=compile_mode or ("default" if compile_ else None))
    # a resume takes the run's own options; only those the user set are parsed, and compared with the run's
    fields = _config_fields(options, _given(options) if resume else None)
    if name is None:
        name = default_run_name(skeleton, models, fields["shard"])
    run_dir = prepare_run_dir(out, name, resume, create=False)  # created once every option is checked
    stored = _stored_config(run_dir) if resume else None
    config = resumed_config(stored, fields, extend=extend) if stored else SweepConfig(**fields)
    config.device = dev = validate(config)  # every check before the run directory exists; auto -> cpu or cuda
    if stored:
        check_resume(config, stored, extend=extend)
    if dry_run:
        from attnbench.cli.plan import print_plan
        from attnbench.plan import plan_sweep

        print_plan(plan_sweep(config, run_dir, resume=resume, retry_failed=retry_failed), run_dir)
        return
    from attnbench.sweep import prepare_dir, run_sweep

    prepare_dir(run_dir, run_outputs())
    shard_t = config.shard
    from attnbench.cli._render import echo

    echo(f"attnbench run: {len(config.models)} models x {len(config.seq_lens)} N x {len(config.modes)} modes on "
         f"{config.skeleton}, {dev}, {config.dtype}, batch {config.batch}" +
         (f", shard {shard_t[0]}/{shard_t[1]}" if shard_t else "") + f" -> {run_dir}", err=True)
    t0 = time.perf_counter()
    # extend= only when set: a sweep function without it (a stand-in) still serves every other run
    sweep = functools.partial(run_sweep, extend=True) if extend else run_sweep
    try:
        _sweep_with_progress(sweep, config, run_dir, resume, retry_failed)
    except KeyboardInterrupt as e:
        code, what = interruption(e)
        kept = _finalize(run_dir, plots=False, quiet=True)
        if not kept:  # leave no folder that only --resume would accept, and --resume has nothing to finish
            for leftover in ("meta.json", ".lock"):
                (run_dir / leftover).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()
            abort(f"{what} before the first cell finished: nothing was kept; run the same command again", code)
        abort(f"{what}: {kept} finished rows kept in {run_dir}; finish with: {resume_advice(run_dir, out)}", code)
    _finalize(run_dir, plots=not no_plots, quiet=False, elapsed=time.perf_counter() - t0)


def _given(options: dict[str, Any]) -> set[str]:
    """The ``options`` the user set (on the command line or in the environment), as opposed to click's defaults."""
    ctx = click.get_current_context()
    params = {name: [name] for name in options} | {"compile": ["compile_", "compile_mode"]}
    return {name for name, ps in params.items()
            if any(ctx.get_parameter_source(p) not in (None, ParameterSource.DEFAULT) for p in ps)}


def _config_fields(options: dict[str, Any], given: set[str] | None) -> dict[str, Any]:
    """SweepConfig fields parsed from the command-line ``options``: all of them, or only those ``given``."""
    from attnbench.registry import parse_models, resolve_hparams
    from attnbench.seqspec import parse_seq

    parsers = {"seq": ("seq_lens", parse_seq), "mode": ("modes", parse_modes), "shard": ("shard", parse_shard),
               "mem_limit": ("mem_limit", parse_mem), "models": ("models", parse_models),
               "hparams": ("hparams", lambda pairs: resolve_hparams(list(pairs)))}
    out: dict[str, Any] = {}
    for option, value in options.items():
        if given is None or option in given:
            field, parse = parsers.get(option, (option, None))
            out[field] = parse(value) if parse else value
    return out


def _stored_config(run_dir: Path) -> Any:
    """The options the run was made with (its meta.json), which a resume runs again."""
    from attnbench.sweep import stored_config

    stored = stored_config(run_dir)
    if stored is None:
        raise ValueError(f"--resume: {run_dir} records no options of `attnbench run` (meta.json has no config: a "
                         "joined report, a training run or a lost file); start a new run under another --name")
    return stored


def _sweep_with_progress(run_sweep: Any, config: Any, run_dir: Path, resume: bool, retry_failed: bool = False) -> Any:
    from attnbench.cli._render import console as _console
    from attnbench.cli.progress import run_with_progress

    return run_with_progress(run_sweep, config, run_dir, resume=resume, retry_failed=retry_failed,
                             console=_console(stderr=True), echo=lambda text: click.echo(text, err=True))


def _finalize(run_dir: Path, *, plots: bool, quiet: bool, elapsed: float | None = None) -> int:
    """Rewrite results.parquet, render report.md (+ plots) and, unless quiet, print the tables."""
    from attnbench.results import load_results, write_parquet

    try:
        df = load_results(run_dir)
        if df.empty:
            return 0
        write_parquet(run_dir, df)
        from attnbench.reporting import report, rich_tables

        rep = report(run_dir, plots=plots)
    except (OSError, ValueError) as e:
        if not quiet:
            raise
        click.echo(f"warning: could not write the report: {e}", err=True)
        return len(df) if "df" in locals() else 0
    if not quiet:
        from attnbench.cli._render import console as _console
        from attnbench.cli._render import echo

        console = _console()
        for table in rich_tables(rep):
            console.print(table)
        _busy_warning(run_dir, df)
        took = f" in {elapsed:.0f} s" if elapsed is not None else ""
        files = ", ".join(p.name for p in [run_dir / "results.csv", run_dir / "results.parquet", *rep.files])
        echo(f"{len(df)} rows{took}; wrote {files} in {run_dir}", err=True)
    return len(df)


def _busy_warning(run_dir: Path, df: Any) -> None:
    """The terminal summary's busy-machine warning (``stats.machine_warning``), when the machine was busy."""
    from attnbench.results import read_meta
    from attnbench.stats import machine_warning

    cores = (read_meta(run_dir).get("machine") or {}).get("cores")
    text = machine_warning(df.to_dict("records"), cores)
    if text:
        from attnbench.cli._render import echo

        echo(f"warning: {text}", fg="yellow", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
