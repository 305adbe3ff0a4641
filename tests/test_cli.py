"""The ``cdiff`` command line: help for every stage, one-line errors, exit codes."""

import subprocess
import sys

import pytest

from continual_diffusion.cli import build_parser, main
from tests.helpers import REPO

SUBCOMMANDS = ["config", "prepare-data", "generic-pool", "dvc-yaml", "dvc-record", "tables", "figures", "audit", "dvc-outputs",
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
    assert last == f"cdiff: error: {tmp_path / 'absent'}: CelebA-HQ root folder not found (set sources.celeba_hq.root in params.yaml)"
    assert list(tmp_path.iterdir()) == []


def test_benchmark_outside_profile(tmp_path):
    result = cdiff("prepare-data", "--benchmark", "landmarks", "--out", str(tmp_path / "o"), "--set", "profile=paper_faces")
    assert result.returncode == 1 and "benchmark 'landmarks' is not in benchmarks" in result.stderr
