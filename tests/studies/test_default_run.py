"""studies/default_run.py: the per-method split and the repeated-job analysis (no pipeline run here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "default_run.py"


@pytest.fixture(scope="module")
def default_run():
    spec = importlib.util.spec_from_file_location("default_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_tsv(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:{seconds:02.0f}\t100\n")


def test_method_split_sums_jobs_per_benchmark_and_method(default_run, tmp_path):
    for task, seconds in (("task_01", 20.0), ("task_02", 25.0), ("task_03", 31.0)):
        _write_tsv(tmp_path / "train" / "faces" / "clora" / "seed_0" / f"{task}.tsv", seconds)
    _write_tsv(tmp_path / "train" / "landmarks" / "clora" / "seed_0" / "task_01.tsv", 9.0)
    _write_tsv(tmp_path / "evaluate" / "faces" / "clora" / "seed_0" / "task_01.tsv", 3.0)
    _write_tsv(tmp_path / "report" / "faces" / "summary.tsv", 1.0)
    times = default_run.job_times(tmp_path)
    split = default_run.method_split(times)
    faces = split["train"]["faces/clora"]
    assert (faces["jobs"], faces["job_seconds"]) == (3, 76.0)
    assert (faces["first_task_s"], faces["last_task_s"]) == (20.0, 31.0)
    assert split["train"]["landmarks/clora"]["job_seconds"] == 9.0
    assert split["evaluate"]["faces/clora"]["jobs"] == 1
    assert "report" not in split


def test_repeated_train_jobs_match_weights_and_metrics_but_not_config_or_log(default_run, tmp_path):
    def job(method, task, weights, metrics, log="l"):
        root = f"runs/tiny/faces/{method}/seed_0/{task}"
        return {f"{root}/config.json": method, f"{root}/log.json": log + method,
                f"{root}/task.safetensors": weights, f"{root}/metrics.json": metrics}

    files = {**job("clora", "task_01", "w1", "m1"), **job("lora_sequential", "task_01", "w1", "m1"),
             **job("clora", "task_02", "w2", "m2"), **job("lora_sequential", "task_02", "w3", "m3"),
             **job("dreambooth", "task_01", "w1", "m4")}  # same weights, other metrics: not a repeat
    record = tmp_path / "tiny.json"
    record.write_text(json.dumps({"files": {"train": files}}))
    times = {"train": [("train/faces/clora/seed_0/task_01", 20.0), ("train/faces/lora_sequential/seed_0/task_01", 22.0)]}
    repeated = default_run.repeated_train_jobs(record, times)
    assert repeated["jobs"] == [["train/faces/lora_sequential/seed_0/task_01", "train/faces/clora/seed_0/task_01"]]
    assert repeated["job_seconds"] == 22.0
    assert default_run.repeated_train_jobs(tmp_path / "missing.json", times)["record"] is None


def test_markdown_shows_the_method_table_and_the_repeated_jobs(default_run):
    result = {"command": "python studies/default_run.py", "date": "2026-12-01 00:00", "profile": "tiny",
              "wall_s": 100.0, "pipeline_wall_s": 96.0, "html_report_wall_s": 4.0, "returncode": 0, "load_before": 0.1,
              "platform": {"cpu": {"model": "cpu"}, "torch": "2"},
              "stages": {"train": {"jobs": 2, "job_seconds": 42.0, "median_job_s": 22.0, "max_job_s": 22.0}},
              "method_split": {"train": {"faces/clora": {"jobs": 2, "job_seconds": 42.0, "first_task_s": 20.0,
                                                         "last_task_s": 22.0}}},
              "repeated_train_jobs": {"jobs": [["train/faces/lora_sequential/seed_0/task_01",
                                                "train/faces/clora/seed_0/task_01"]],
                                      "job_seconds": 22.0, "record": "reports/record/tiny.json"}}
    text = default_run.markdown(result)
    assert "| faces/clora | 42 | 20.0 | 22.0 | 0 | 0.0 | 0.0 |" in text
    assert "bit for bit in the record (`reports/record/tiny.json`): 1, 22 job-s " in text
    assert "faces/lora_sequential/seed_0/task_01 = clora" in text


def test_benchmark_split_gives_each_job_to_the_benchmark_it_names(default_run):
    jobs = {"prepare_data": {"prepare_data/pool_faces": 2.0, "prepare_data/tasks_landmarks": 1.0},
            "base_model": {"base_model": 3.0},
            "evaluator": {"evaluator/faces": 10.0},
            "train": {"train/faces/clora/seed_0/task_01": 20.0, "train/landmarks/clora/seed_0/task_01": 9.0},
            "evaluate": {"evaluate/faces/clora/seed_0/task_01": 4.0},
            "report": {"report/export_faces_clora_seed_0": 0.5, "report/continual_summary": 1.5}}
    assert default_run.benchmark_split(jobs) == {
        "faces": {"prepare_data": 2.0, "evaluator": 10.0, "train": 20.0, "evaluate": 4.0, "report": 0.5},
        "landmarks": {"prepare_data": 1.0, "train": 9.0},
        "shared": {"base_model": 3.0, "report": 1.5}}


def test_markdown_shows_each_benchmarks_job_seconds_and_their_floor_on_the_cores(default_run):
    result = {"command": "python studies/default_run.py", "date": "2026-12-01 00:00", "profile": "tiny",
              "wall_s": 100.0, "pipeline_wall_s": 96.0, "html_report_wall_s": 4.0, "returncode": 0, "load_before": 0.1,
              "platform": {"cpu": {"model": "cpu"}, "torch": "2"}, "cores": 2,
              "stages": {"train": {"jobs": 2, "job_seconds": 360.0, "median_job_s": 240.0, "max_job_s": 240.0},
                         "evaluate": {"jobs": 1, "job_seconds": 60.0, "median_job_s": 60.0, "max_job_s": 60.0}},
              "jobs": {"train": {"train/faces/clora/seed_0/task_01": 240.0, "train/landmarks/clora/seed_0/task_01": 120.0},
                       "evaluate": {"evaluate/faces/clora/seed_0/task_01": 60.0}}}
    text = default_run.markdown(result)
    assert "| benchmark | train | evaluate | all | all / 2 cores (min) |" in text
    assert "| faces | 240 | 60 | 300 | 2.5 |" in text and "| landmarks | 120 | 0 | 120 | 1.0 |" in text


def test_render_rewrites_the_table_from_a_saved_result_and_refuses_a_missing_one(tmp_path):
    import subprocess
    import sys

    missing = subprocess.run([sys.executable, str(SCRIPT), "--render", "--out", str(tmp_path / "none.json")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and missing.stderr.strip() == f"default_run.py: {tmp_path / 'none.json'}: not found " \
                                                                 "(--render re-renders a saved result)"
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps({"command": "python studies/default_run.py --out run.json", "date": "2026-12-01 00:00",
                                 "profile": "tiny", "wall_s": 60.0, "pipeline_wall_s": 58.0, "html_report_wall_s": 2.0,
                                 "returncode": 0, "load_before": 0.1, "platform": {"cpu": {"model": "cpu"}, "torch": "2"},
                                 "stages": {"train": {"jobs": 1, "job_seconds": 120.0, "median_job_s": 120.0,
                                                      "max_job_s": 120.0}},
                                 "jobs": {"train": {"train/faces/clora/seed_0/task_01": 120.0}}}))
    subprocess.run([sys.executable, str(SCRIPT), "--render", "--out", str(saved)], check=True, timeout=120)
    text = (tmp_path / "run.md").read_text()
    assert text.startswith("<!-- python studies/default_run.py --out run.json (2026-12-01 00:00) -->")
    assert "| faces | 120 | 120 | 1.0 |" in text


def test_the_platform_line_comes_from_the_saved_run_not_from_the_rendering_machine(default_run):
    zen4 = {"cpu": {"model": "AMD EPYC", "isa_flags": ["avx2", "avx512f"], "vendor": "AuthenticAMD", "family": "25",
                    "model_number": "17", "stepping": "1"}, "torch": "2.14", "cpu_isa": "avx2", "cpu_count": 2}
    assert default_run.platform_sentence(zen4) == (
        "Platform: AMD EPYC (AuthenticAMD family 25 model 17 stepping 1; ISA flags avx2 avx512f), 2 CPUs, "
        "torch 2.14, cpu_isa avx2.")
    # a record from before the generation fields and the CPU count: says so, and does not print this machine's count
    old = {"cpu": {"model": "AMD EPYC", "isa_flags": ["avx2"]}, "torch": "2.14", "cpu_isa": "avx2"}
    assert default_run.platform_sentence(old) == (
        "Platform: AMD EPYC (generation not recorded; ISA flags avx2), torch 2.14, cpu_isa avx2.")


def test_the_orchestration_sampler_books_snakemake_and_the_warm_server_but_not_jobs(default_run):
    stat = "4242 (python3 x) S 17 4242 4242 0 -1 4194560 1 0 0 0 250 50 7 9 20 0 1 0 1 1 1"
    assert default_run.process_cpu_seconds(stat, 100) == 3.0  # utime 250 + stime 50 ticks, children's 7 + 9 not
    assert default_run.parent_pid(stat) == "17"
    argv = lambda *words: "\0".join(words).encode() + b"\0"  # noqa: E731
    assert default_run.orchestrator_of(argv("/v/bin/python3", "/v/bin/snakemake", "--cores", "2")) == "snakemake"
    assert default_run.orchestrator_of(argv("python", "-m", "continual_diffusion", "warm-serve", "--socket", "s")) \
        == "warm_server"
    assert default_run.orchestrator_of(argv("python", "-m", "continual_diffusion", "train-task")) is None
    assert default_run.orchestrator_of(argv("/bin/bash", "-c", "set -e; python -m continual_diffusion x")) is None
    # this test's own process is neither; a sampler started and stopped at once reports zeros for both roles
    sampler = default_run.OrchestrationSampler(interval_s=0.01)
    sampler.start()
    assert set(sampler.stop()) == {"snakemake", "warm_server"}


def test_the_cpu_line_shows_the_share_of_the_cores_and_is_left_out_for_older_runs(default_run):
    result = {"wall_s": 100.0, "cores": 2, "cpu_s": 150.0, "orchestration_cpu_s": {"snakemake": 4.0, "warm_server": 1.0}}
    assert default_run.cpu_sentence(result) == ("CPU: 150 s in all processes, 75% of 2 cores over the wall time; "
                                                "Snakemake itself 4 s, the warm server itself 1 s.")
    assert default_run.cpu_sentence({"wall_s": 100.0}) is None
