"""studies/paper_gpu.py: the chain-cost estimate and its table (no timing here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from continual_diffusion.utils import config

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "paper_gpu.py"


@pytest.fixture(scope="module")
def paper_gpu():
    spec = importlib.util.spec_from_file_location("paper_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


M = {"load_s": 20.0, "step_s": 0.1, "sample_s_per_image": 0.2, "sample_steps": 10, "train_peak_mb": 9000.0,
     "peak_mb": 9000.0, "task2_first_step_s": 1.0}


def test_a_chain_costs_its_steps_its_scheduled_images_and_its_job_starts(paper_gpu):
    paper = config.load(overrides=["profile=paper_faces"])
    est = paper_gpu.chain_seconds(M, "clora", paper, "faces")
    ev = paper["evaluation"]
    assert est["train"] == pytest.approx(10 * 2000 * 0.1)
    # sparse schedule: concepts t and 1 after tasks 2..9, concept 1 after task 1, all ten after task 10
    assert est["eval_images"] == (1 + 8 * 2 + 10) * ev["samples_per_concept"]
    assert est["evaluate"] == pytest.approx(est["eval_images"] * 0.2 * ev["inference_steps"] / 10)
    assert est["jobs"] == pytest.approx(2 * 10 * 20.0) and est["replay"] == est["fisher"] == 0.0
    assert est["total"] == pytest.approx(est["train"] + est["evaluate"] + est["jobs"])


def test_replay_adds_its_generated_images_and_ewc_its_fisher_passes(paper_gpu):
    paper = config.load(overrides=["profile=paper_landmarks"])
    replay = paper_gpu.chain_seconds(M, "generative_replay", paper, "landmarks")
    params = config.method_params(paper, "landmarks", "generative_replay")
    images = params["replay_per_concept"] * sum(range(10))  # concepts 1..t-1 before each task t
    assert replay["replay"] == pytest.approx(images * 0.2 * params["replay_steps"] / 10)
    assert replay["train"] == pytest.approx(10 * 500 * 0.1)
    ewc = paper_gpu.chain_seconds(M, "custom_diffusion_ewc", paper, "landmarks")
    assert ewc["fisher"] == pytest.approx(10 * config.method_params(paper, "landmarks", "custom_diffusion_ewc").get(
        "fisher_samples", 16) * 0.1)


def test_the_table_says_when_the_gpu_path_was_not_measured(paper_gpu):
    paper = {b: config.load(overrides=[f"profile=paper_{b}"]) for b in ("faces", "landmarks")}
    report = {"device": "cpu", "device_name": "AMD EPYC", "torch": "x", "resolution": 64, "batch_size": 2,
              "steps": 1, "warmup": 1, "sample_steps": 10, "paper_inference_steps": 50,
              "methods": {"fp32": {"clora": M}},
              "estimate": {"fp32": {b: {"clora": paper_gpu.chain_seconds(M, "clora", paper[b], b)} for b in paper}}}
    report["table_hours"] = {"fp32": sum(e["clora"]["total"] for e in report["estimate"]["fp32"].values()) / 3600}
    text = paper_gpu.markdown(report)
    assert "CPU-hours" in text and "the GPU path is unmeasured" in text and "process peak RSS" in text
    assert f"{report['table_hours']['fp32']:.1f}" in text
    gpu = paper_gpu.markdown({**report, "device": "cuda:0", "device_name": "NVIDIA H200"})
    assert "GPU-hours" in gpu and "unmeasured" not in gpu and "train peak, GPU" in gpu
