"""Snakemake and DVC agree: same stages, same code deps, same outputs; lint and dry runs are clean."""

import re

import pytest
import yaml

from continual_diffusion.orchestration import pipeline
from tests.helpers import REPO, dry_run_job_fields, run, workflow_copy


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return workflow_copy(tmp_path_factory.mktemp("wf"), profile="tiny")


def test_dvc_yaml_is_generated_from_the_stage_list():
    assert (REPO / "dvc.yaml").read_text() == pipeline.dvc_yaml()


def test_dvc_stages_mirror_the_stage_list():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == [s.name for s in pipeline.STAGES]
    for s in pipeline.STAGES:
        dvc = stages[s.name]
        assert dvc["cmd"] == f"{pipeline.SNAKEMAKE_CMD} {s.name}"
        assert dvc["deps"] == list(s.code) + [d.format(profile="${profile}") for d in s.deps]
        assert [next(iter(o)) for o in dvc["outs"]] == s.outs_for("${profile}")
        assert all(next(iter(o.values()))["persist"] is True for o in dvc["outs"])
        for dep in s.code:
            assert (REPO / dep).exists(), dep


def test_every_snakemake_rule_belongs_to_a_stage(workdir):
    lines = run(["snakemake", "--list-rules"], workdir).stdout.splitlines()
    listed = {line.split()[0] for line in lines if re.match(r"^[A-Za-z_]\w*( |$)", line)}
    expected = {"all"} | {s.name for s in pipeline.STAGES} | {r for s in pipeline.STAGES for r in s.rules}
    assert listed == expected


def dry_run_jobs(workdir, profile):
    """(rule, inputs, outputs) of every job of a forced dry run."""
    text = run(["snakemake", "-n", "--forceall", "--config", f"profile={profile}"], workdir).stdout

    def split(fields, key):
        return [x for x in fields.get(key, "").split(", ") if x]

    return [(rule, split(fields, "input"), split(fields, "output")) for rule, fields in dry_run_job_fields(text)]


@pytest.mark.parametrize("profile", ["tiny", "smoke", "paper_faces", "paper_landmarks"])
def test_jobs_match_dvc_deps_and_outs(workdir, profile):
    jobs = dry_run_jobs(workdir, profile)
    owner = {r: s for s in pipeline.STAGES for r in s.rules}
    produced = {o for _, _, outs in jobs for o in outs}
    job_rules = [rule for rule, _, _ in jobs if rule != "all"]
    assert job_rules, "the dry run scheduled no job"
    for rule, inputs, outputs in jobs:
        if rule == "all":
            continue
        stage = owner[rule]
        outs = stage.outs_for(profile)
        assert all(any(o == d or o.startswith(d + "/") for d in outs) for o in outputs), (rule, outputs, outs)
        external = [i for i in inputs if i not in produced]
        # train / evaluate jobs depend on their own method's modules only (adding a method reruns no other chain)
        method = outputs[0].split("/")[3] if rule in ("train_task", "evaluate_task") else None
        code = pipeline.code_files(stage.name, workdir, method=method)
        assert external[:len(code)] == code, rule
        assert all(any(c == d or c.startswith(d + "/") for d in stage.code) for c in code), (rule, code)
        if method is not None:
            assert "src/continual_diffusion/methods/base.py" in code
            others = "dreambooth.py" if method in ("clora", "lora_sequential") else "lora.py"
            assert not any(c.endswith("methods/" + others) for c in code), (method, code)
        # Anything else a job reads lies inside a DVC dep of its stage (e.g. the committed base model).
        deps = [d.format(profile=profile) for d in stage.deps]
        assert all(any(i == d or i.startswith(d + "/") for d in deps) for i in external[len(code):]), (rule, external)
        # What other jobs produce comes from an upstream stage (a DVC dep) or from the same stage.
        produced_inputs = [i for i in inputs if i in produced]
        allowed = deps + outs
        assert all(any(i == d or i.startswith(d + "/") for d in allowed) for i in produced_inputs), (rule, produced_inputs)
    if profile.startswith("paper"):
        assert "generic_pool" not in job_rules  # real datasets have no synthetic pool


def test_lint_is_clean(workdir):
    result = run(["snakemake", "--lint"], workdir)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_slurm_profile_dry_run(workdir):
    result = run(["snakemake", "--workflow-profile", "profiles/slurm", "-n", "--config", "profile=smoke"], workdir)
    text = result.stdout + result.stderr
    assert "Using workflow specific profile profiles/slurm" in text
    assert "sample_tasks" in text and "This was a dry-run" in text


def test_nested_config_override_keeps_its_number_type(workdir):
    # Snakemake hands nested --config values over as strings; '0.3' must reach the schema as a number
    result = run(["snakemake", "-n", "--config", "profile=smoke", "methods={clora: {penalty_weight: 0.3}}"],
                 workdir, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "This was a dry-run" in result.stdout + result.stderr


def test_bad_config_fails_the_snakefile_with_the_key(workdir):
    result = run(["snakemake", "-n", "--config", "data={faces: {n_tasks: many}}"], workdir, check=False)
    assert result.returncode != 0
    assert "data.faces.n_tasks: 'many' is not of type 'integer'" in result.stdout + result.stderr


def test_the_embedded_base_is_rebuilt_without_the_isa_caps(workdir):
    # the committed miniature was pre-trained with native kernels: its bit-identity check must run so too
    text = run(["snakemake", "-n", "-p", "--forceall", "--cores", "1", "rebuild_embedded_base"], workdir).stdout
    command = next(line for line in text.splitlines() if "pretrain-base" in line)
    unset = " ".join(f"-u {k}" for k in pipeline_isa_caps())
    assert f"env {unset} python -m continual_diffusion pretrain-base" in command


def pipeline_isa_caps() -> list[str]:
    from continual_diffusion.utils.config import ISA_ENVIRONMENT

    return list(ISA_ENVIRONMENT["avx2"])
