"""The ``cdiff`` command line: help for every stage, one-line errors, exit codes."""

import subprocess
import sys

import pytest

from continual_diffusion.cli import build_parser, main
from tests.helpers import REPO

SUBCOMMANDS = ["config", "prepare-data", "generic-pool", "dvc-yaml", "dvc-record", "tables", "figures", "audit",
               "dvc-outputs",
               "readme-results", "export", "record"]


def cdiff(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "continual_diffusion", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: cdiff " + command in capsys.readouterr().out


def test_config_prints_a_resolved_key():
    result = cdiff("config", "data.faces.n_tasks", "--set", "profile=smoke")
    assert result.returncode == 0 and result.stdout.strip() == "2"


def test_bad_parameter_is_one_line_and_exit_1(capsys):
    code = main(["config", "--params", str(REPO / "params.yaml"), "--set", "data.faces.resolution=huge"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("cdiff: error: ") and "data.faces.resolution" in err[-1]


def test_missing_dataset_fails_fast_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = cdiff(
        "prepare-data", "--benchmark", "faces", "--out", str(out),
        "--set", "profile=paper_faces", "--set", f"sources.celeba_hq.root={tmp_path / 'absent'}",
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"cdiff: error: {tmp_path / 'absent'}: CelebA-HQ root folder not found "
                    "(set sources.celeba_hq.root in params.yaml)")
    assert list(tmp_path.iterdir()) == []


def test_benchmark_outside_profile(tmp_path):
    result = cdiff("prepare-data", "--benchmark", "landmarks", "--out", str(tmp_path / "o"), "--set",
                   "profile=paper_faces")
    assert result.returncode == 1 and "benchmark 'landmarks' is not in benchmarks" in result.stderr


def test_every_handler_exists_and_takes_its_commands_arguments():
    """The table's handlers (and checks) are looked up when a command runs: each must exist and accept the
    configuration (commands that read it) and one keyword argument per argument of its command."""
    import argparse
    import inspect

    from continual_diffusion import cli

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(subparsers.choices) == [c.name for c in cli.COMMANDS]
    for command in cli.COMMANDS:
        dests = subparsers.choices[command.name].get_default("_dests")
        given = [None] if command.config else []
        for name in filter(None, (command.handler, command.check)):
            inspect.signature(cli._resolve(name)).bind(*given, **dict.fromkeys(dests))


def test_the_warm_workers_commands_are_the_gpu_commands():
    from continual_diffusion import cli
    from continual_diffusion.orchestration.warm import WARM_COMMANDS

    assert {c.name for c in cli.COMMANDS if c.gpu} == WARM_COMMANDS


def test_help_imports_no_stage():
    """`cdiff --help` stays light: the stages (and torch) are imported only by the command that runs one."""
    code = ("import sys; from continual_diffusion.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in sys.modules if m.startswith(('torch', 'continual_diffusion.stages', "
            "'continual_diffusion.orchestration'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
