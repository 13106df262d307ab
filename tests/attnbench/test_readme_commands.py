"""Every ``attnbench ...`` command the README shows is accepted by the CLI's own validation, without running a sweep.

``run`` lines go through the real command up to the sweep (options, registry, hyper-parameters built once, run
directory), where a stand-in stops them; ``list`` and ``--help`` run for real; ``report`` and ``train`` lines are
parsed by their click commands (their inputs are runs and datasets the README only names).
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import attnbench.config
import attnbench.sweep
from attnbench.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands() -> list[str]:
    """The argument strings after ``attnbench`` (or ``-m attnbench``) in the README's code blocks and in inline
    spans that carry options."""
    text = README.read_text()
    code: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            code.append(line)
    joined = re.sub(r"\\\n\s*", " ", "\n".join(code))  # shell line continuations
    pieces = [seg for line in joined.splitlines() for seg in line.split("#")[0].split("&&")]
    pieces += re.findall(r"`(attnbench [^`]* -[^`]+)`", text)  # inline spans with options, not prose mentions
    commands = []
    for piece in pieces:
        m = re.search(r"(?:^|\s)(?:-m )?attnbench(?:\s+(.*))?$", piece.strip())
        if m and not piece.strip().startswith("import"):
            commands.append((m[1] or "").strip())
    return sorted(set(commands))


COMMANDS = readme_commands()


class _Validated(BaseException):
    """Raised by the stand-in sweep: everything before the first cell passed."""


def test_the_readme_has_commands_of_every_kind():
    kinds = {c.split()[0] if c else "" for c in COMMANDS}
    assert {"run", "list", "report", "train"} <= kinds, COMMANDS
    assert "run -m soft,softmax -p soft.landmarks=64 -p soft.sampler=conv" in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_is_valid(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run directories and named inputs land in a scratch folder
    args = shlex.split(command.replace("$SLURM_ARRAY_TASK_ID", "0"))
    if args[:1] == ["list"] or "--help" in args:
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        return
    if not args or args[0] == "run":
        def stop(*_a, **_k):
            raise _Validated

        monkeypatch.setattr(attnbench.sweep, "run_sweep", stop)
        real_resolve = attnbench.config.resolve_device
        # a CUDA line is checked on a machine without one: only the device check itself is waived
        monkeypatch.setattr(attnbench.config, "resolve_device",
                            lambda d: d if str(d).startswith("cuda") else real_resolve(d))
        try:
            r = CliRunner().invoke(main, args)
        except _Validated:
            return
        if "--dry-run" in args and r.exit_code == 0:  # validated like run, then planned instead of swept
            assert "cells to run" in r.stdout, r.output
            return
        if "--resume" in args:  # a finished run to resume is the one input the README cannot provide
            assert r.exit_code == 2 and "--resume: no run" in r.stderr, r.output
            return
        pytest.fail(f"'attnbench {command}' was refused: exit {r.exit_code}: {r.output.strip()}")
    cmd = main.get_command(click.Context(main), args[0])
    assert cmd is not None, f"no command {args[0]!r}"
    for a in args[1:]:  # inputs the README names (run folders) exist here, empty
        if a.startswith("results/") and "<" not in a:
            (tmp_path / a).mkdir(parents=True, exist_ok=True)
    with cmd.make_context(args[0], [a.replace("<run>", "run") for a in args[1:]]):
        pass  # parses every option and argument with the command's own types; raises on a bad one


@pytest.mark.parametrize("command", ["run -m soft -p soft.sr_ratio=5", "run --seq 1000..10", "report --no-such-flag"])
def test_a_bad_command_is_caught(command, tmp_path, monkeypatch):
    # the check above must be able to fail: commands the CLI refuses
    with pytest.raises((pytest.fail.Exception, click.UsageError)):
        test_readme_command_is_valid(command, tmp_path, monkeypatch)
