"""The record of the default run and the check of a rerun against it (record.py)."""

import json
import platform
from pathlib import Path

import pytest
import yaml

from continual_diffusion.orchestration import record
from continual_diffusion.utils.config import isa_environment
from continual_diffusion.utils.errors import PipelineError

SUMMARY = {"faces": {"clora": {"seeds": [0], "accuracy_closed": {
    "plasticity": {"mean": 0.8}, "final": {"mean": 0.7}, "forgetting": {"mean": 0.05},
    "R_mean": [[0.9, None], [0.8, 0.7]], "meta": {"higher_is_better": True}}},
    "lora_sequential": {"seeds": [0], "accuracy_closed": {
    "plasticity": {"mean": 0.9}, "final": {"mean": 0.5}, "forgetting": {"mean": 0.4},
    "R_mean": [[0.9, None], [0.5, 0.9]], "meta": {"higher_is_better": True}}}}}
# one file per stage output and chain, as a run leaves them
FILES = {"data/tiny/tasks/faces/task_01/0.png": b"image", "models/tiny/evaluator/evaluator.safetensors": b"weights",
         "runs/tiny/faces/clora/seed_0/task_01/task.safetensors": b"clora",
         "runs/tiny/faces/lora_sequential/seed_0/task_01/task.safetensors": b"lora",
         "results/tiny/faces/clora/seed_0/task_01/scores.json": b"{}",
         "results/tiny/faces/lora_sequential/seed_0/task_01/scores.json": b"{ }",
         "runs/tiny/faces/clora/seed_0/task_01/.snakemake_timestamp": b""}


def _lock(outs: dict) -> dict:
    return {"schema": "2.0", "stages": {stage: {"cmd": "x", "outs": [{"path": p, "md5": m} for p, m in o.items()]}
                                        for stage, o in outs.items()}}


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports/tiny/summary").mkdir(parents=True)
    (tmp_path / "reports/tiny/summary/summary.json").write_text(json.dumps(SUMMARY))
    for path, content in FILES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(content)
    outs = {"prepare_data": {"data/tiny": "a.dir"}, "train": {"runs/tiny": "b.dir"},
            "evaluate": {"results/tiny": "c.dir"}, "report": {"reports/tiny": "d.dir"}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(_lock(outs)))
    record.write_record("tiny", "avx2")
    return tmp_path, outs


def test_summary_numbers_flattens_every_statistic_and_cell():
    numbers = record.summary_numbers(SUMMARY)
    assert numbers["faces/clora/accuracy_closed/plasticity"] == 0.8
    assert numbers["faces/clora/accuracy_closed/R[2,1]"] == 0.8
    assert "faces/clora/accuracy_closed/R[1,2]" not in numbers   # empty cell


def test_a_bit_identical_rerun_passes(workspace):
    report = record.check("tiny", "avx2")
    assert report["ok"] and report["mode"] == "bit-identity" and report["first_difference"] is None


def test_the_first_stage_whose_output_differs_is_named(workspace):
    tmp, outs = workspace
    outs["train"]["runs/tiny"] = "changed.dir"
    outs["report"]["reports/tiny"] = "changed-too.dir"
    (tmp / "dvc.lock").write_text(yaml.safe_dump(_lock(outs)))
    report = record.check("tiny", "avx2")
    assert not report["ok"]
    assert report["first_difference"] == {"stage": "train", "output": "runs/tiny"}
    assert report["problems"][0].startswith("stage train: output runs/tiny differs")


def test_another_platform_is_held_to_the_tolerances(workspace):
    tmp, outs = workspace
    rec = json.loads(record.record_path("tiny").read_text())
    rec["platform"]["bit_identity_key"] = "another machine"
    record.record_path("tiny").write_text(json.dumps(rec))
    outs["train"]["runs/tiny"] = "changed.dir"
    (tmp / "dvc.lock").write_text(yaml.safe_dump(_lock(outs)))
    summary = json.loads(json.dumps(SUMMARY))
    summary["faces"]["clora"]["accuracy_closed"]["final"]["mean"] = 0.7 + 0.5 * record.tolerance("x/y/accuracy_closed")
    (tmp / "reports/tiny/summary/summary.json").write_text(json.dumps(summary))
    report = record.check("tiny", "avx2")
    assert report["ok"] and report["mode"] == "tolerance"
    assert report["first_difference"]["stage"] == "train"          # still located
    summary["faces"]["clora"]["accuracy_closed"]["final"]["mean"] = 0.7 + 2 * record.tolerance("x/y/accuracy_closed")
    (tmp / "reports/tiny/summary/summary.json").write_text(json.dumps(summary))
    report = record.check("tiny", "avx2")
    assert not report["ok"]
    assert any(p.startswith("faces/clora/accuracy_closed/final") for p in report["problems"])


def test_a_missing_record_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="no record"):
        record.check("tiny", "avx2")


def test_isa_caps_apply_to_x86_64_only():
    assert isa_environment("avx2", "x86_64") == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                                 "MKL_CBWR": "AVX2"}
    assert isa_environment("avx2", "aarch64") == {}
    assert isa_environment("native", "x86_64") == {}
    # avx2_mkl_compatible: the same caps, with the MKL branch that MKL honours on non-Intel CPUs too
    assert isa_environment("avx2_mkl_compatible", "x86_64") == {**isa_environment("avx2", "x86_64"), "MKL_CBWR": "COMPATIBLE"}
    assert isa_environment("avx2_mkl_compatible", "aarch64") == {}
    # portable: those caps; its exact square roots are numerics.py's, not an environment variable
    assert isa_environment("portable", "x86_64") == isa_environment("avx2_mkl_compatible", "x86_64")
    with pytest.raises(PipelineError, match="cpu_isa"):
        isa_environment("avx9", "x86_64")


def test_the_platform_key_changes_with_the_caps():
    assert record.platform_info("avx2")["bit_identity_key"] != record.platform_info("native")["bit_identity_key"]
    compatible = record.platform_info("avx2_mkl_compatible")
    assert compatible["bit_identity_key"] != record.platform_info("avx2")["bit_identity_key"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert compatible["isa_caps"]["MKL_CBWR"] == "COMPATIBLE" and "|mkl=COMPATIBLE|" in compatible["bit_identity_key"]


@pytest.fixture
def key(monkeypatch):
    """key(cpu_isa, model, flags, **generation): the bit-identity key of an x86-64 CPU of that model name, ISA
    flags and generation (family, model_number, stepping) under that cpu_isa, on any host."""
    def make(cpu_isa, model, flags=("avx2", "fma"), **generation):
        monkeypatch.setattr(record, "cpu_description",
                            lambda: {"model": model, "machine": "x86_64", "isa_flags": list(flags), **generation})
        monkeypatch.setattr(record, "isa_environment", lambda isa: dict(record.ISA_ENVIRONMENT.get(isa, {})))
        return record.platform_info(cpu_isa)["bit_identity_key"]
    return make


def test_the_portable_key_names_no_cpu_model_and_other_keys_do(key):
    """cpu_isa: portable claims the same bits on every x86-64 CPU with AVX2: an Intel and an AMD CPU share its
    key; under avx2 they do not; a CPU without AVX2 (below the cap) never shares it."""
    intel, amd = "Intel(R) Xeon(R) Processor", "AMD EPYC"
    assert key("portable", intel) == key("portable", amd) and intel not in key("portable", intel)
    assert key("portable", intel).startswith("portable|x86_64|aten=avx2|onednn=AVX2|mkl=COMPATIBLE|")
    assert key("avx2", intel) != key("avx2", amd)
    assert key("avx2_mkl_compatible", intel) != key("avx2_mkl_compatible", amd)
    assert key("portable", amd, flags=("sse4_2",)) != key("portable", amd)


def test_capped_keys_ignore_the_flags_above_the_cap_and_native_keys_do_not(key):
    """Under the AVX2 caps no library runs AVX-512 / AMX code: a CPU with AVX-512 shares the key of one without
    it (of the same model name: measured on two AMD EPYC generations); uncapped, each runs its own kernels."""
    zen3 = ("sse4_2", "avx", "avx2", "fma")
    zen4 = zen3 + ("avx512f", "avx512_bf16", "avx512_vnni")
    for cpu_isa in ("avx2", "avx2_mkl_compatible"):
        assert key(cpu_isa, "AMD EPYC", zen4) == key(cpu_isa, "AMD EPYC", zen3)
        assert "avx512" not in key(cpu_isa, "AMD EPYC", zen4)
        assert key(cpu_isa, "AMD EPYC", zen4) != key(cpu_isa, "Intel(R) Xeon(R) Processor", zen4)
        assert key(cpu_isa, "AMD EPYC", ("sse4_2", "avx")) != key(cpu_isa, "AMD EPYC", zen3)   # below the cap
    assert key("native", "AMD EPYC", zen4) != key("native", "AMD EPYC", zen3)
    assert "avx512f" in key("native", "AMD EPYC", zen4)


def test_the_cpu_generation_is_described_but_not_in_the_key(key):
    """family / model number / stepping name the generation behind a VM's generic model name (two EPYC
    generations gave the same bits under the caps), so they are recorded, never part of the key."""
    described = record.cpu_description()   # this host's, before `key` replaces the function
    zen4 = ("sse4_2", "avx", "avx2", "fma", "avx512f")
    assert key("avx2", "AMD EPYC", zen4, family="25", model_number="17", stepping="1") == \
        key("avx2", "AMD EPYC", zen4, family="25", model_number="1", stepping="1")
    assert set(described) >= {"model", "machine", "isa_flags"}
    if Path("/proc/cpuinfo").exists() and platform.machine().lower() in ("x86_64", "amd64"):
        text = Path("/proc/cpuinfo").read_text()
        assert described["vendor"] in text and f"cpu family\t: {described['family']}" in text
    assert record.cpu_generation({"vendor": "AuthenticAMD", "family": "25", "model_number": "17", "stepping": "1"}) \
        == "AuthenticAMD family 25 model 17 stepping 1"
    assert record.cpu_generation({"model": "AMD EPYC"}) is None   # a record written before it was described


def test_the_check_names_both_cpu_generations(workspace, monkeypatch):
    rec = json.loads(record.record_path("tiny").read_text())
    rec["platform"]["cpu"] = {"model": "AMD EPYC", "machine": "x86_64", "isa_flags": ["avx2"]}   # an older record
    record.record_path("tiny").write_text(json.dumps(rec))
    monkeypatch.setattr(record, "cpu_description", lambda: {"model": "AMD EPYC", "machine": "x86_64",
                        "isa_flags": ["avx2"], "vendor": "AuthenticAMD", "family": "25", "model_number": "17",
                        "stepping": "1"})
    text = record.check_text(record.check("tiny", "avx2"))
    assert "  CPU generation: recorded not recorded, this AuthenticAMD family 25 model 17 stepping 1\n" in text


def test_single_cells_are_counted_not_held_to_a_tolerance(workspace):
    tmp, _ = workspace
    rec = json.loads(record.record_path("tiny").read_text())
    rec["platform"]["bit_identity_key"] = "another machine"
    record.record_path("tiny").write_text(json.dumps(rec))
    summary = json.loads(json.dumps(SUMMARY))
    summary["faces"]["clora"]["accuracy_closed"]["R_mean"][1][1] = 0.0   # one cell moves far
    (tmp / "reports/tiny/summary/summary.json").write_text(json.dumps(summary))
    report = record.check("tiny", "avx2")
    assert report["ok"] and report["cells_differing"] == 1
    assert "cells R[t, i] that differ: 1" in record.check_text(report)


def test_the_record_holds_every_output_file_by_stage(workspace):
    files = json.loads(record.record_path("tiny").read_text())["files"]
    import hashlib

    assert files["train"]["runs/tiny/faces/clora/seed_0/task_01/task.safetensors"] == hashlib.md5(b"clora").hexdigest()
    assert set(files["train"]) == {"runs/tiny/faces/clora/seed_0/task_01/task.safetensors",
                                   "runs/tiny/faces/lora_sequential/seed_0/task_01/task.safetensors"}  # no timestamp
    assert files["report"] == {
        "reports/tiny/summary/summary.json": record._md5(workspace[0] / "reports/tiny/summary/summary.json")}


def test_the_first_differing_file_is_named_with_its_stage(workspace):
    tmp, _ = workspace
    (tmp / "results/tiny/faces/clora/seed_0/task_01/scores.json").write_text('{"changed": 1}')
    (tmp / "runs/tiny/faces/lora_sequential/seed_0/task_01/task.safetensors").write_bytes(b"changed")
    report = record.check("tiny", "avx2")
    assert not report["ok"] and report["files_differing"] == 2
    assert report["first_difference"] == {"stage": "train", "output": "runs/tiny", "file_difference": "content differs",
                                          "file": "runs/tiny/faces/lora_sequential/seed_0/task_01/task.safetensors"}
    assert "first file runs/tiny/faces/lora_sequential/seed_0/task_01/task.safetensors: content differs" \
        in record.check_text(report)


def _rerun_only_clora(tmp):
    """What a partial rerun (clora only) leaves: no lora_sequential files, a summary of clora."""
    for path in FILES:
        if "lora_sequential" in path:
            (tmp / path).unlink()
    summary = json.loads(json.dumps(SUMMARY))
    del summary["faces"]["lora_sequential"]
    (tmp / "reports/tiny/summary/summary.json").write_text(json.dumps(summary))


def test_a_partial_rerun_is_checked_on_the_files_it_made(workspace):
    tmp, _ = workspace
    _rerun_only_clora(tmp)
    full = record.check("tiny", "avx2")
    assert not full["ok"] and full["first_difference"]["file_difference"] == "missing from the rerun"
    report = record.check("tiny", "avx2", partial=True)
    assert report["ok"], report["problems"]
    assert report["files_compared"] == {"prepare_data": 1, "base_model": 0, "evaluator": 1, "train": 1, "evaluate": 1}
    assert report["files_not_rerun"]["train"] == 1 and "report" not in report["files_compared"]
    assert "partial rerun" in record.check_text(report) and "train 1 (+1 not rerun)" in record.check_text(report)
    (tmp / "runs/tiny/faces/clora/seed_0/task_01/task.safetensors").write_bytes(b"changed")
    report = record.check("tiny", "avx2", partial=True)
    assert not report["ok"]
    assert report["first_difference"]["file"] == "runs/tiny/faces/clora/seed_0/task_01/task.safetensors"


def test_a_partial_rerun_fails_on_an_unknown_file_or_on_nothing_rerun(workspace):
    tmp, _ = workspace
    _rerun_only_clora(tmp)
    extra = tmp / "results/tiny/faces/clora/seed_0/task_02/scores.json"
    extra.parent.mkdir(parents=True)
    extra.write_text("{}")
    report = record.check("tiny", "avx2", partial=True)
    assert not report["ok"] and report["first_difference"]["file_difference"] == "not in the record"
    extra.unlink()
    for path in FILES:
        if (tmp / path).exists():
            (tmp / path).unlink()
    report = record.check("tiny", "avx2", partial=True)
    assert not report["ok"] and "nothing was rerun" in report["problems"][0]


def test_a_partial_rerun_on_another_platform_holds_its_own_methods_to_the_tolerances(workspace):
    tmp, _ = workspace
    rec = json.loads(record.record_path("tiny").read_text())
    rec["platform"]["bit_identity_key"] = "another machine"
    record.record_path("tiny").write_text(json.dumps(rec))
    _rerun_only_clora(tmp)
    (tmp / "runs/tiny/faces/clora/seed_0/task_01/task.safetensors").write_bytes(b"other bits")
    report = record.check("tiny", "avx2", partial=True)
    assert report["ok"] and report["mode"] == "tolerance"        # lora_sequential's numbers are not asked for
    assert report["numbers_compared"] == 3                      # clora's P, A, F
    summary = json.loads((tmp / "reports/tiny/summary/summary.json").read_text())
    summary["faces"]["clora"]["accuracy_closed"]["plasticity"]["mean"] = 0.8 - 2 * record.tolerance("x/y/accuracy_closed")
    (tmp / "reports/tiny/summary/summary.json").write_text(json.dumps(summary))
    report = record.check("tiny", "avx2", partial=True)
    assert not report["ok"] and report["problems"][0].startswith("faces/clora/accuracy_closed/plasticity")


def test_a_record_without_file_digests_is_a_one_line_error(workspace):
    rec = json.loads(record.record_path("tiny").read_text())
    del rec["files"]
    record.record_path("tiny").write_text(json.dumps(rec))
    with pytest.raises(PipelineError, match="no per-file digests"):
        record.check("tiny", "avx2")


@pytest.mark.parametrize("existing", ["runs/tiny", "results/tiny", "reports/tiny"])
def test_make_check_slice_refuses_beside_another_runs_outputs(tmp_path, existing):
    # the slice would overwrite a full run's reports with those of two methods: it runs on a clean clone only
    import os
    import shutil
    import subprocess
    import time

    from tests.helpers import REPO, env_with_venv

    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    time.sleep(0.01)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / ".installed").touch()  # installed: the install target has nothing to do
    (tmp_path / existing).mkdir(parents=True)
    result = subprocess.run(["make", "check-slice"], cwd=tmp_path, env=env_with_venv(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert f"make check-slice: {existing} exists: the slice runs on a clean clone" in result.stderr
    assert not (tmp_path / "logs").exists() and sorted(os.listdir(tmp_path / existing.split("/")[0])) == ["tiny"]
