"""Job resources (params.yaml `resources`, workflow/rules/resources.smk) and the SLURM profile: what each job
asks for, per profile and method; none of it is a DVC param or a rerun trigger; the miniature asks for no GPU;
--set-resources wins; the SLURM plugin sends GPU jobs to the GPU partition with --gpus."""

import logging
import re
from types import SimpleNamespace

import pytest
import yaml

from continual_diffusion.orchestration import pipeline
from continual_diffusion.utils import config
from continual_diffusion.utils.errors import PipelineError
from tests.helpers import REPO, dry_run_job_fields, run, workflow_copy

MODEL_RULES = set(config.RESOURCE_RULES)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return workflow_copy(tmp_path_factory.mktemp("res"), profile="tiny")


def job_resources(text: str) -> list[tuple[str, dict, dict]]:
    """(rule, wildcards, resources) of every job of a dry run's output."""

    def pairs(fields, key):
        return dict(p.split("=", 1) for p in fields.get(key, "").split(", ") if "=" in p)

    return [(rule, pairs(fields, "wildcards"), pairs(fields, "resources")) for rule, fields in dry_run_job_fields(text)]


def dry_run(workdir, *args: str) -> list[tuple[str, dict, dict]]:
    result = run(["snakemake", "-n", "--forceall", *args], workdir)
    jobs = job_resources(result.stdout + result.stderr)
    assert jobs, result.stdout[-2000:]
    return jobs


def test_resources_are_no_dvc_param_and_no_rule_param():
    # DVC: no stage lists `resources`, and the per-profile values are not under profiles.<name> (a DVC param
    # of every stage, and `profiles` of the report stage)
    assert not any(p == "resources" or p.startswith("resources.") for s in pipeline.STAGES for p in s.params)
    assert "resources" not in (REPO / "dvc.yaml").read_text()
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert "resources" in raw and not any("resources" in overlay for overlay in raw["profiles"].values())
    # Snakemake: no rule's params read it; the stage files (code deps: an edit reruns the stage) declare no
    # resources, resources.smk (no stage's dependency) sets them
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        assert 'CFG["resources"]' not in text, smk
        if any(str(smk.relative_to(REPO)) in s.code for s in pipeline.STAGES):
            assert not re.search(r"^\s+resources:", text, flags=re.M), smk
    assert not any("resources.smk" in c for s in pipeline.STAGES for c in s.code)


def test_job_resources_by_profile_rule_and_method():
    tiny = config.load([REPO / "params.yaml"], ["profile=tiny"])
    for rule in config.RESOURCE_RULES:
        values = config.job_resources(tiny, rule, "dreambooth" if rule.endswith("_task") else None)
        assert values["gpu"] == 0 and values["mem_mb"] <= 12000 and values["runtime"] >= 1, (rule, values)
    for profile in ("paper_faces", "paper_landmarks"):
        cfg = config.load([REPO / "params.yaml"], [f"profile={profile}"])
        clora = config.job_resources(cfg, "train_task", "clora")
        dreambooth = config.job_resources(cfg, "train_task", "dreambooth")
        replay = config.job_resources(cfg, "train_task", "generative_replay")
        assert clora["gpu"] == dreambooth["gpu"] == config.job_resources(cfg, "evaluate_task", "clora")["gpu"] == 1
        assert clora["mem_mb"] >= 32000
        assert dreambooth["mem_mb"] > clora["mem_mb"] and replay["mem_mb"] > clora["mem_mb"]
        assert dreambooth["runtime"] > clora["runtime"] and replay["runtime"] > clora["runtime"]
        assert config.job_resources(cfg, "base_model")["gpu"] == 0
    # --config / --set overrides win over the profile's values
    cfg = config.load([REPO / "params.yaml"], ["profile=paper_faces", "resources.train_task.mem_mb=12345"])
    assert config.job_resources(cfg, "train_task", "clora")["mem_mb"] == 12345
    with pytest.raises(PipelineError, match="resources.profiles: not an override"):
        config.load([REPO / "params.yaml"], ["profile=paper_faces", "resources.profiles.paper_faces.default.gpu=2"])
    with pytest.raises(PipelineError, match="not a model rule"):
        config.job_resources(cfg, "sample_tasks")
    assert config.job_resources({k: v for k, v in cfg.items() if k != "resources"}, "train_task") == {}


def test_bad_resources_fail_with_the_key(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["resources"]["profiles"]["paper_face"] = {"default": {"gpu": 1}}
    with pytest.raises(PipelineError, match="resources.profiles.paper_face: no such profile"):
        config.resolve(raw)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["resources"]["train_task"] = {"methods": {"dreambooth": {"mem_gb": 3}}}
    with pytest.raises(PipelineError, match="resources.train_task.methods.dreambooth"):
        config.resolve(raw)


def test_the_miniature_asks_for_no_gpu_and_little_memory(workdir):
    jobs = dry_run(workdir, "--cores", "2")
    model_jobs = [(rule, res) for rule, _, res in jobs if rule in MODEL_RULES]
    assert {rule for rule, _ in model_jobs} == MODEL_RULES
    for rule, res in model_jobs:
        # gpu 0: `--cores 2` schedules as without resources; two jobs at once fit a 24 GiB machine
        assert res["gpu"] == "0" and 2 * int(res["mem_mb"]) <= 24000 and int(res["runtime"]) >= 1, (rule, res)


def test_set_resources_wins_over_params_and_params_over_default_resources(workdir):
    jobs = dry_run(workdir, "--config", "profile=paper_faces", "--set-resources", "train_task:mem_mb=1234",
                   "--default-resources", "mem_mb=99", "runtime=7")
    train = [res for rule, _, res in jobs if rule == "train_task"]
    assert train and all(res["mem_mb"] == "1234" for res in train)
    assert all(res["runtime"] in ("60", "120") for res in train)  # params.yaml, not --default-resources
    assert {res["mem_mb"] for rule, _, res in jobs if rule == "tables"} == {"99"}


@pytest.mark.parametrize("profile", ["paper_faces", "paper_landmarks"])
def test_slurm_profile_dry_run_asks_for_a_gpu_memory_and_time_per_job(workdir, profile):
    result = run(["snakemake", "--workflow-profile", "profiles/slurm", "-n", "--config", f"profile={profile}"], workdir)
    text = result.stdout + result.stderr
    assert "Using workflow specific profile profiles/slurm" in text and "This was a dry-run" in text
    jobs = job_resources(text)
    by = {(rule, w.get("method")): res for rule, w, res in jobs}
    for rule in ("train_task", "evaluate_task"):
        res = by[(rule, "clora")]
        assert res["gpu"] == "1" and res["mem_mb"] == "32000" and res["runtime"] == "60", (rule, res)
        assert res["cpus_per_task"] == "2"
    assert int(by[("train_task", "dreambooth")]["mem_mb"]) > int(by[("train_task", "clora")]["mem_mb"])
    assert int(by[("train_task", "dreambooth")]["runtime"]) > int(by[("train_task", "clora")]["runtime"])
    assert int(by[("train_task", "generative_replay")]["runtime"]) > int(by[("train_task", "clora")]["runtime"])
    assert int(by[("evaluate_task", "dreambooth")]["mem_mb"]) > int(by[("evaluate_task", "clora")]["mem_mb"])
    cpu = by[("sample_tasks", None)]  # data preparation: CPU only, the profile's defaults
    assert "gpu" not in cpu and cpu["mem_mb"] == "16000" and cpu["runtime"] == "60"
    assert by[("base_model", None)]["gpu"] == "0"


def test_the_slurm_plugin_sends_gpu_jobs_to_the_gpu_partition(workdir):
    from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    partitions = read_partition_file(REPO / "profiles" / "slurm" / profile["slurm-partition-config"])
    logger = logging.getLogger("test_resources")

    def typed(res: dict) -> dict:
        return {k: int(v) if v.isdigit() else v for k, v in res.items()}

    def route(rule, res):
        job = SimpleNamespace(name=rule, threads=1, resources=typed(res))
        return get_best_partition(partitions, job, logger), set_gres_string(job).strip()

    paper = dry_run(workdir, "--workflow-profile", "profiles/slurm", "--config", "profile=paper_faces")
    for rule, _, res in paper:
        if rule == "all":
            continue
        partition, gres = route(rule, res)
        if rule in ("train_task", "evaluate_task"):
            assert (partition, gres) == ("gpu", "--gpus=1"), (rule, res)
        if rule in ("sample_tasks", "base_model", "tables"):
            assert (partition, gres) == ("cpu", ""), (rule, res)
    tiny = dry_run(workdir, "--workflow-profile", "profiles/slurm")
    assert {route(rule, res) for rule, _, res in tiny if rule != "all"} == {("cpu", "")}  # the miniature: no GPU
