"""Every baseline runs its 2-task smoke chain through the Snakemake rules (train, evaluate, report) and
is recorded in DVC, so a following `dvc repro` has nothing to do (the same rules `dvc repro` runs)."""

import json

import pytest

from tests.helpers import edit_params, run, workflow_copy

pytestmark = pytest.mark.slow
BASELINES = ["textual_inversion", "dreambooth", "custom_diffusion_seq", "custom_diffusion_merge",
             "custom_diffusion_ewc", "generative_replay", "custom_diffusion_offline"]


def test_every_baseline_runs_its_chain_and_dvc_has_nothing_left(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    def only_landmarks_and_the_baselines(params):
        params["benchmarks"] = ["landmarks"]
        params["profiles"]["smoke"]["train"]["methods"] = list(BASELINES)  # the smoke profile runs clora, lora_sequential

    edit_params(workdir / "params.yaml", only_landmarks_and_the_baselines)
    run(["snakemake", "--cores", "2"], workdir, timeout=900)
    for method in BASELINES:
        chain = workdir / "runs" / "smoke" / "landmarks" / method / "seed_0"
        assert {p.name for p in chain.iterdir()} == {"task_01", "task_02"}
        log = json.loads((chain / "task_02" / "log.json").read_text())
        extra = {"generative_replay": "replay", "custom_diffusion_ewc": "ewc"}.get(method)
        if extra:  # the method's own loss term is in the per-step log of task 2
            assert all(extra in entry for entry in log), method
        scores = json.loads((workdir / "results" / "smoke" / "landmarks" / method / "seed_0" / "task_02" /
                             "scores.json").read_text())
        assert sorted(scores["concepts"]) == ["1", "2"]
    costs = json.loads((workdir / "reports" / "smoke" / "parameter_cost" / "parameter_cost.json").read_text())
    assert set(costs["sd_v1"]["landmarks"]) >= set(BASELINES)  # every method of `methods`
    assert round(costs["sd_v1"]["landmarks"]["custom_diffusion_seq"]["n_param_percent"], 2) == 2.23
    assert "Running stage" not in run(["dvc", "repro"], workdir).stdout  # recorded by the Snakemake run
    assert "Data and pipelines are up to date." in run(["dvc", "status"], workdir).stdout
