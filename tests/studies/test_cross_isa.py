"""studies/cross_isa.py: the MKL branch probe, the oneDNN-off entry point and the two-machine comparison
(no training here)."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "studies" / "cross_isa.py"


@pytest.fixture(scope="module")
def cross_isa():
    spec = importlib.util.spec_from_file_location("cross_isa", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cpu_vendor() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip()
    return ""


def _has_mkl() -> bool:
    import torch

    return platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkl.is_available()


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.skipif(not _has_mkl(), reason="torch without MKL (not x86-64)")
def test_mkl_runs_the_compatible_branch_that_avx2_mkl_compatible_asks_for(cross_isa):
    from continual_diffusion.utils.config import isa_environment

    assert cross_isa.mkl_branch(_env(**isa_environment("avx2_mkl_compatible"))) == "COMPATIBLE"


@pytest.mark.skipif(not _has_mkl(), reason="torch without MKL (not x86-64)")
def test_mkl_honours_the_avx2_branch_on_intel_cpus_only(cross_isa):
    # oneMKL developer guide: branches other than AUTO and COMPATIBLE are available only on Intel processors;
    # elsewhere MKL_CBWR=AVX2 silently runs the AUTO branch (why cpu_isa: avx2 differs across CPU vendors)
    from continual_diffusion.orchestration.record import cpu_description

    intel_with_avx2 = _cpu_vendor() == "GenuineIntel" and "avx2" in cpu_description()["isa_flags"]
    assert cross_isa.mkl_branch(_env(MKL_CBWR="AVX2")) == ("AVX2" if intel_with_avx2 else "AUTO")


def test_the_onednn_off_entry_point_runs_the_cli(cross_isa):
    out = subprocess.run([sys.executable, "-c", cross_isa.NO_ONEDNN_MAIN, "--help"], cwd=REPO, capture_output=True,
                         text=True, env=_env(PYTHONPATH=str(REPO / "src")))
    assert out.returncode == 0, out.stderr
    assert "train-task" in out.stdout


def _record(path: Path, steps: int, task: str, samples: str, cpu: str) -> Path:
    run = {"task_sha256": task, "samples_sha256": samples}
    path.write_text(json.dumps({"steps": steps, "platform": {"cpu": cpu}, "settings": {
        "all_avx2 (cpu_isa: avx2)": {"mkl_branch": "AVX2" if "Intel" in cpu else "AUTO", "runs": [run]},
        "avx2_mkl_compatible (cpu_isa: avx2_mkl_compatible)": {"mkl_branch": "COMPATIBLE",
                                                               "runs": [{**run, "task_sha256": "p"}]}}}))
    return path


def test_compare_names_the_settings_that_agree_across_machines(cross_isa, tmp_path, capsys):
    xeon = _record(tmp_path / "xeon.json", 170, "x", "s", "Intel Xeon")
    epyc = _record(tmp_path / "epyc.json", 170, "e", "s", "AMD EPYC")
    assert cross_isa.compare([xeon, epyc]) == 0
    rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert "| AVX2 | AUTO | differs | same |" in rows["all_avx2 (cpu_isa: avx2)"]
    assert "| COMPATIBLE | COMPATIBLE | same | same |" in rows["avx2_mkl_compatible (cpu_isa: avx2_mkl_compatible)"]


def test_compare_refuses_records_of_different_step_counts(cross_isa, tmp_path, capsys):
    a = _record(tmp_path / "a.json", 170, "x", "s", "Intel Xeon")
    b = _record(tmp_path / "b.json", 100, "x", "s", "AMD EPYC")
    assert cross_isa.compare([a, b]) == 2
    assert "do not compare" in capsys.readouterr().out
