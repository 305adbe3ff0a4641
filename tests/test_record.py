"""The record of the default run and the check of a rerun against it (record.py)."""

import json

import pytest
import yaml

from continual_diffusion import record
from continual_diffusion.config import isa_environment
from continual_diffusion.errors import PipelineError

SUMMARY = {"faces": {"clora": {"seeds": [0], "accuracy_closed": {
    "plasticity": {"mean": 0.8}, "final": {"mean": 0.7}, "forgetting": {"mean": 0.05},
    "R_mean": [[0.9, None], [0.8, 0.7]], "meta": {"higher_is_better": True}}}}}


def _lock(outs: dict) -> dict:
    return {"schema": "2.0", "stages": {stage: {"cmd": "x", "outs": [{"path": p, "md5": m} for p, m in o.items()]}
                                        for stage, o in outs.items()}}


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports/tiny/summary").mkdir(parents=True)
    (tmp_path / "reports/tiny/summary/summary.json").write_text(json.dumps(SUMMARY))
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
    with pytest.raises(PipelineError, match="cpu_isa"):
        isa_environment("avx9", "x86_64")


def test_the_platform_key_changes_with_the_caps():
    assert record.platform_info("avx2")["bit_identity_key"] != record.platform_info("native")["bit_identity_key"]


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
