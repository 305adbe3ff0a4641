"""The paper code path end to end on the CPU: ``snakemake --config profile=paper_faces`` on tiny random
stand-ins of its pretrained inputs (tests/paper_fixtures.py: a Stable Diffusion v1-structured model
with safety checker, 77-token CLIP text encoder, /8 VAE and PNDM scheduler; random facenet weights; a
tiny CLIP; a CelebAMask-HQ tree of face photos), every stage from prepare_data to the report and the
diffusers export, every method, 2 tasks of 3 steps. The scores are meaningless (random weights); what
is tested is that the code the paper profiles run (the SD pointer base, 77-token prompts, DDIM from
PNDM, the pretrained evaluator's facenet and CLIP metrics, parameter costs on the pointed-to model)
runs and writes what the report reads.

The ``gpu`` twin runs the same with ``runtime: {device: cuda, dtype: bf16}`` where CUDA is available.
"""

import contextlib
import json
import math
import time

import pytest
import torch

from tests.helpers import run, workflow_copy
from tests.paper_fixtures import paper_config, paper_inputs

METHODS = ["clora", "lora_sequential", "textual_inversion", "dreambooth", "custom_diffusion_seq",
           "custom_diffusion_merge", "custom_diffusion_ewc", "generative_replay", "custom_diffusion_offline"]
LORA_METHODS = ["clora", "lora_sequential"]  # the exported ones
PROFILE = "paper_faces"
SCORES = {"face_similarity", "face_detection_rate", "clip_text_alignment", "image_similarity", "mmd"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return paper_inputs(tmp_path_factory.mktemp("paper_inputs"))


def run_paper(workdir, inputs, extra=()):
    """The whole pipeline (Snakemake's default target) under the paper profile on the stand-ins."""
    started = time.perf_counter()
    run(["snakemake", "--cores", "2", "--config", *paper_config(inputs, METHODS), *extra], workdir, timeout=1800)
    return time.perf_counter() - started


def check_outputs(workdir, inputs):
    pointer = json.loads((workdir / "models" / PROFILE / "base" / "stable_diffusion.json").read_text())
    assert pointer["model"] == str(inputs["sd"])  # a pointer, not a copy
    assert not (workdir / "models" / PROFILE / "base" / "unet").exists()
    for method in METHODS:
        chain = workdir / "results" / PROFILE / "faces" / method / "seed_0"
        scores = json.loads((chain / "task_02" / "scores.json").read_text())
        assert sorted(scores["concepts"]) == ["1", "2"], method
        for concept in ("1", "2"):
            values = scores["concepts"][concept]
            assert SCORES <= set(values), (method, values)
            # every metric a number: MTCNN finds the fixture's real faces, so face similarity is defined
            # (the noise the random model samples has no face: detection rate 0)
            assert all(isinstance(values[k], float) and math.isfinite(values[k]) for k in SCORES), (method, values)
            assert 0.0 <= values["face_detection_rate"] <= 1.0
    reports = workdir / "reports" / PROFILE
    costs = json.loads((reports / "parameter_cost" / "parameter_cost.json").read_text())
    assert set(costs["base"]["faces"]) == set(METHODS)
    # read from the model the SD pointer names: the stand-in's K/V at the paper's rank 16, its text width
    assert costs["base"]["faces"]["clora"]["unet_trained_per_task"] == 38_912  # tests/metrics/test_param_cost.py
    assert costs["base"]["faces"]["clora"]["token_params_per_task"] == 32
    assert round(costs["sd_v1"]["faces"]["clora"]["n_param_percent"], 3) == 0.092
    assert {"faces.md", "faces.csv", "faces.tex"} <= {p.name for p in (reports / "tables").iterdir()}
    rows = (reports / "tables" / "faces.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == sorted(METHODS)
    table = (reports / "tables" / "faces.md").read_text()
    assert "C-LoRA" in table and "face_similarity" in table and "clip_text_alignment" in table
    audit = (reports / "audit" / "audit.md").read_text()
    assert "## Summary" in audit and f"profile `{PROFILE}`" in audit
    assert all(m in audit for m in METHODS)
    assert "C-LoRA's parameter cost is 0.092% of SD v1.x's U-Net" in audit
    summary = json.loads((reports / "summary" / "summary.json").read_text())
    assert set(summary["faces"]) == set(METHODS)
    assert set(json.loads((reports / "metrics.json").read_text())["faces"]) == set(METHODS)
    assert (reports / "grids" / "grid_faces_seed_0.png").is_file()
    for method in LORA_METHODS:  # the export's own snippet, run as it stands, loads SD + LoRA + tokens
        export = reports / "export" / "faces" / method / "seed_0"
        manifest = json.loads((export / "export.json").read_text())
        assert manifest["base"]["pretrained"] == str(inputs["sd"]) and manifest["rank"] == 2 * 16
        namespace: dict = {}
        with contextlib.chdir(workdir):  # the snippet's paths are relative to the workflow
            exec("\n".join(manifest["load"]), namespace)  # noqa: S102
        pipe = namespace["pipe"]
        assert pipe.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
        adapted = [m for m in pipe.unet.modules() if getattr(m, "r", None)]
        assert len(adapted) == manifest["adapted_modules"] == 32, method  # SD v1's K/V matrices
        assert all(m.r == {"default_0": 32} for m in adapted), method
        assert len(set(pipe.tokenizer.convert_tokens_to_ids(["<v1>", "<v2>"]))) == 2
        assert namespace["image"].size == (64, 64)


@pytest.mark.slow
def test_paper_faces_runs_every_stage_on_a_stable_diffusion_v1_stand_in(tmp_path, inputs):
    workdir = workflow_copy(tmp_path / "wf", profile=PROFILE)
    seconds = run_paper(workdir, inputs)
    print(f"paper_faces e2e on the CPU: {seconds:.0f} s")
    check_outputs(workdir, inputs)


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_paper_faces_runs_every_stage_on_the_gpu_in_bf16(tmp_path, inputs):
    workdir = workflow_copy(tmp_path / "wf", profile=PROFILE)
    seconds = run_paper(workdir, inputs, extra=["runtime={device: cuda, dtype: bf16}"])
    print(f"paper_faces e2e on CUDA (bf16): {seconds:.0f} s")
    check_outputs(workdir, inputs)
    for method in METHODS:  # every train and evaluate job ran there (runtime.py: the job records it)
        for task in ("task_01", "task_02"):
            chain = f"{PROFILE}/faces/{method}/seed_0/{task}"
            job = json.loads((workdir / "runs" / chain / "config.json").read_text())
            scores = json.loads((workdir / "results" / chain / "scores.json").read_text())
            for record in (job, scores):
                runtime = record.get("runtime") or {}
                assert runtime.get("device", "").startswith("cuda") and runtime.get("dtype") == "bf16", (method, task)
