"""studies/cross_vendor_emulated.py and op_fingerprint.py: the verdicts drawn from native and emulated runs,
and the fingerprints themselves (no emulator here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "studies"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def emulated():
    return _load("cross_vendor_emulated")


def _runs(emulated, setting, native, intel, amd):
    return [{"setting": setting, "cpu": "native", "task_sha256": native},
            {"setting": setting, "cpu": emulated.INTEL_MODEL, "task_sha256": intel},
            {"setting": setting, "cpu": emulated.AMD_MODEL, "task_sha256": amd}]


def test_a_setting_is_vendor_independent_only_when_emulation_reproduces_the_host(emulated):
    runs = (_runs(emulated, "avx2", "n", "i", "n") + _runs(emulated, "avx2_mkl_compatible", "c", "c", "c")
            + _runs(emulated, "other", "n", "e", "e"))
    verdicts = emulated.verdicts(runs, "AuthenticAMD")
    assert verdicts["avx2"] == {"emulation_reproduces_host": True, "same_bits_on_every_cpu": False}
    assert verdicts["avx2_mkl_compatible"] == {"emulation_reproduces_host": True, "same_bits_on_every_cpu": True}
    # the emulated vendors agree, but not with the host: nothing is concluded
    assert verdicts["other"] == {"emulation_reproduces_host": False, "same_bits_on_every_cpu": False}
    # on an Intel host the Intel model is the fidelity check
    assert emulated.verdicts(runs, "GenuineIntel")["avx2"]["emulation_reproduces_host"] is False


def test_the_op_table_flags_each_op_on_its_own(emulated):
    def run(cpu, sqrt, gemm):
        return {"setting": "avx2", "cpu": cpu, "ops": {"sqrt": sqrt, "gemm": gemm}}

    runs = [run("native", "s0", "g"), run(emulated.INTEL_MODEL, "s1", "gi"), run(emulated.AMD_MODEL, "s1", "g")]
    text, per_op = emulated.ops_table(runs, "AuthenticAMD")
    assert per_op["avx2"]["sqrt"] == {"emulation_reproduces_host": False, "intel_equals_amd_emulated": True}
    assert per_op["avx2"]["gemm"] == {"emulation_reproduces_host": True, "intel_equals_amd_emulated": False}
    assert "| avx2 | sqrt | **NO** | yes |" in text


def test_the_table_names_the_job_compared(emulated):
    runs = [{**run, "mkl_branch": "COMPATIBLE"} for run in _runs(emulated, "portable", "p", "p", "p")]
    result = {"host": {"vendor": "AuthenticAMD", "cpu": "AMD EPYC"}, "steps": 2, "job": "evaluate",
              "verdicts": emulated.verdicts(runs, "AuthenticAMD")}
    text = emulated.table(runs, result)
    assert ("an evaluate job of faces/clora task 1" in text and "| portable | `p` COMPATIBLE |" in text
            and text.endswith("| yes | yes |"))


def test_op_fingerprints_are_deterministic_and_cover_the_optimizers():
    fingerprint = _load("op_fingerprint")
    first, second = fingerprint.fingerprints(), fingerprint.fingerprints()
    assert first == second
    assert {"AdamW fused (3 steps)", "AdamW foreach, torch's default (3 steps)", "sqrt (float32)",
            "AdamW foreach under exact_sqrt (3 steps)"} <= set(first)
    assert all(len(v) == 16 for v in first.values())
