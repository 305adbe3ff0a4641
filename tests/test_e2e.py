"""End to end under the smoke profile: both orchestrators build the same bytes, and after either
has run, a second invocation of either has nothing to do."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import edit_params, run, tree_bytes, workflow_copy

pytestmark = pytest.mark.slow
BENCHMARKS = ["faces", "landmarks"]
METHODS = ["clora", "lora_sequential"]  # the baselines: test_e2e_baselines.py


def check_task_folders(workdir):
    for benchmark in BENCHMARKS:
        root = workdir / "data" / "smoke" / "tasks" / benchmark
        summary = json.loads((root / "tasks.json").read_text())
        assert summary["n_tasks"] == 2
        for entry in summary["tasks"]:
            manifest = json.loads((root / entry["dir"] / "manifest.json").read_text())
            assert manifest["n_images"] == 6 and len(list((root / entry["dir"] / "images").glob("*.png"))) == 6
        assert (workdir / "data" / "smoke" / "pool" / benchmark / "images.safetensors").exists()
        assert (workdir / "logs" / "smoke" / "prepare_data" / f"tasks_{benchmark}.log").exists()
        for method in METHODS:
            for task in (1, 2):
                run_dir = workdir / "runs" / "smoke" / benchmark / method / "seed_0" / f"task_{task:02d}"
                files = {p.name for p in run_dir.iterdir() if not p.name.startswith(".snakemake")}
                assert files == {"task.safetensors", "config.json", "log.json", "metrics.json"}
                result = workdir / "results" / "smoke" / benchmark / method / "seed_0" / f"task_{task:02d}"
                scores = json.loads((result / "scores.json").read_text())
                assert sorted(scores["concepts"]) == [str(i) for i in range(1, task + 1)]
                assert {"accuracy", "image_similarity", "mmd"} <= set(scores["concepts"]["1"])
                assert (result / "samples.safetensors").exists() == (task == 2)  # kept after the last task
            matrices = workdir / "reports" / "smoke" / "matrices" / benchmark / method / "seed_0"
            assert {"accuracy.csv", "image_similarity.csv", "mmd.json"} <= {p.name for p in matrices.iterdir()}
        for ext in ("png", "pdf"):
            assert (workdir / "reports" / "smoke" / "grids" / f"grid_{benchmark}_seed_0.{ext}").exists()
    assert (workdir / "models" / "smoke" / "base" / "model_index.json").exists()
    summary = json.loads((workdir / "reports" / "smoke" / "summary" / "summary.json").read_text())
    assert set(summary) == set(BENCHMARKS) and set(summary["faces"]) == set(METHODS)
    assert {"accuracy", "image_similarity", "mmd"} <= set(summary["faces"]["clora"])


@pytest.fixture(scope="module")
def via_snakemake(tmp_path_factory):
    workdir = workflow_copy(tmp_path_factory.mktemp("snakemake_first"))
    run(["snakemake", "--cores", "2"], workdir)
    return workdir


@pytest.fixture(scope="module")
def via_dvc(tmp_path_factory):
    workdir = workflow_copy(tmp_path_factory.mktemp("dvc_first"))
    result = run(["dvc", "repro"], workdir)
    assert "Running stage 'prepare_data'" in result.stdout
    return workdir


def test_snakemake_builds_the_task_folders_and_records_them_in_dvc(via_snakemake):
    check_task_folders(via_snakemake)
    lock = (via_snakemake / "dvc.lock").read_text()
    for stage in ("prepare_data", "base_model", "evaluator", "train", "evaluate", "report"):
        assert f"  {stage}:" in lock, stage
    assert "data/smoke" in lock and "runs/smoke" in lock


def test_the_report_stage_writes_tables_figures_audit_and_dvc_files(via_snakemake):
    reports = via_snakemake / "reports" / "smoke"
    for benchmark in BENCHMARKS:
        assert {f"{benchmark}.{ext}" for ext in ("md", "csv", "tex")} <= {p.name for p in (reports / "tables").iterdir()}
        assert (reports / "figures" / f"heatmap_{benchmark}_mmd.png").stat().st_size > 1000
    assert (reports / "figures" / "clora_plasticity.png").exists()
    audit = (reports / "audit" / "audit.md").read_text()
    assert "## Summary" in audit and "C-LoRA's parameter cost is 0.092% of SD v1.x's U-Net" in audit
    metrics = json.loads((reports / "metrics.json").read_text())
    assert set(metrics) == set(BENCHMARKS) and {"A", "F", "P"} == set(metrics["faces"]["clora"]["mmd"])
    # DVC reads them through dvc.yaml's top-level metrics and plots
    shown = run(["dvc", "metrics", "show", "--md"], via_snakemake).stdout
    assert "faces.clora.mmd.A" in shown and "reports/smoke/metrics.json" in shown
    plots = run(["dvc", "plots", "show", "--json"], via_snakemake).stdout
    data = json.loads(plots)
    assert "errors" not in data, data.get("errors")
    assert "Concept 1 over the task sequence, R[t, 1]" in data["data"]
    assert any(k.endswith("clora_plasticity.png") for k in data["data"])
    subprocess.run(["git", "add", "-A"], cwd=via_snakemake, check=True, capture_output=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"], cwd=via_snakemake,
                   check=True)
    table = run(["dvc", "exp", "show", "--md"], via_snakemake).stdout  # needs a commit to show the workspace
    assert "faces.clora.mmd.A" in table and "train.methods" in table


def test_snakemake_report_builds_the_html_report(via_snakemake, tmp_path):
    html = tmp_path / "report.html"
    result = run(["snakemake", "--report", str(html)], via_snakemake)
    assert "(ERROR/" not in result.stdout + result.stderr  # a caption that is not valid reStructuredText
    text = html.read_text(errors="replace")
    for name in ("clora_plasticity.png", "audit.md", "faces.csv", "grid_faces_seed_0.png"):
        assert name in text, name


def test_after_snakemake_dvc_repro_is_a_noop(via_snakemake):
    result = run(["dvc", "repro"], via_snakemake)
    assert "Running stage" not in result.stdout
    assert "Data and pipelines are up to date." in run(["dvc", "status"], via_snakemake).stdout


def test_after_snakemake_snakemake_is_a_noop(via_snakemake):
    result = run(["snakemake", "--cores", "2"], via_snakemake)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_method_parameter_of_one_benchmark_reruns_only_its_chains(via_snakemake):
    # clora's lr given per benchmark, faces changed, landmarks as before: only the faces clora jobs rerun
    override = "methods={clora: {lr: {faces: 0.002, landmarks: 0.001}}}"
    text = run(["snakemake", "-n", "--cores", "2", "train", "evaluate", "--config", override], via_snakemake).stdout
    jobs = set(re.findall(r"wildcards: benchmark=(\w+), method=(\w+)", text))
    assert jobs == {("faces", "clora")}


def dry_run_jobs(text):
    """(rule, wildcards) of every job a ``snakemake -n`` output schedules."""
    jobs = []
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", text, flags=re.M):
        wildcards = re.search(r"^    wildcards: (.*)$", body, flags=re.M)
        jobs.append((rule, dict(re.findall(r"(\w+)=([^,\s]+)", wildcards.group(1) if wildcards else ""))))
    return jobs


def test_a_deleted_chain_is_rebuilt_by_snakemake_and_changed_for_dvc(via_snakemake, tmp_path):
    # Issue 17: the reports' outputs exist, but a deleted chain is a missing target of `rule all`
    workdir = tmp_path / "workspace"
    shutil.copytree(via_snakemake, workdir, symlinks=True)  # the other tests keep the whole chain
    for root in ("runs", "results"):
        shutil.rmtree(workdir / root / "smoke" / "faces" / "lora_sequential")
    jobs = dry_run_jobs(run(["snakemake", "-n", "--cores", "2"], workdir).stdout)
    chain = ("train_task", "evaluate_task")
    chain_jobs = {(r, w["benchmark"], w["method"], w["task"]) for r, w in jobs if r in chain}
    assert chain_jobs == {(r, "faces", "lora_sequential", t) for r in chain for t in ("01", "02")}
    reports = {"metric_matrices", "continual_summary", "sample_grids", "tables", "figures", "audit", "dvc_outputs",
               "export_diffusers"}  # not parameter_costs: it reads no chain
    assert {r for r, _ in jobs} == {*chain, *reports, "all"}
    assert [(w["benchmark"], w["method"]) for r, w in jobs if r == "export_diffusers"] == [("faces", "lora_sequential")]
    # DVC sees the same: train and evaluate have changed (deleted) outputs; dvc-record does not record them
    run([sys.executable, "-m", "continual_diffusion", "dvc-record"], workdir)
    status = run(["dvc", "status"], workdir).stdout
    parts = re.split(r"^(\w+):$", status, flags=re.M)
    changed = {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}
    assert set(changed) == {"train", "evaluate", "report"}, status
    for stage, out in (("train", "runs/smoke"), ("evaluate", "results/smoke")):
        assert re.search(rf"changed outs:\s+modified:\s+{out}\n", changed[stage]), status


def test_dvc_repro_builds_the_task_folders(via_dvc):
    check_task_folders(via_dvc)


def test_after_dvc_snakemake_and_dvc_are_noops(via_dvc):
    result = run(["snakemake", "--cores", "2"], via_dvc)
    assert "Nothing to be done" in result.stdout + result.stderr
    result = run(["dvc", "repro"], via_dvc)
    assert "Running stage" not in result.stdout


@pytest.mark.parametrize("folder", ["data", "models", "runs", "results", "reports"])
def test_both_orchestrators_produce_identical_bytes(via_snakemake, via_dvc, folder):
    a, b = tree_bytes(via_snakemake / folder), tree_bytes(via_dvc / folder)
    assert a and a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_a_parameter_change_is_seen_by_both(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    run(["snakemake", "--cores", "2", "prepare_data"], workdir)
    edit_params(workdir / "params.yaml", lambda p: p["profiles"]["smoke"]["data"]["faces"].update(n_tasks=1))
    assert "changed" in run(["dvc", "status"], workdir).stdout
    run([sys.executable, "-m", "continual_diffusion", "dvc-record"], workdir)  # stale: must not be recorded
    assert "changed" in run(["dvc", "status"], workdir).stdout
    dry = run(["snakemake", "-n", "prepare_data"], workdir).stdout
    assert "sample_tasks" in dry
    result = run(["dvc", "repro", "prepare_data"], workdir)
    assert "Running stage 'prepare_data'" in result.stdout
    summary = json.loads((workdir / "data" / "smoke" / "tasks" / "faces" / "tasks.json").read_text())
    assert summary["n_tasks"] == 1
    done = run(["snakemake", "--cores", "2", "prepare_data"], workdir)
    assert "Nothing to be done" in done.stdout + done.stderr
