# Shared by every rule: the resolved configuration, the CLI invocation, offline environment,
# and the hand-over to DVC after a successful run.
import json
import os
import shlex
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from continual_diffusion.utils import config as cd_config
from continual_diffusion.utils import layout as cd_layout
from continual_diffusion.orchestration import pipeline as cd_pipeline
from continual_diffusion.stages import shared_tasks as cd_shared_tasks
from continual_diffusion.utils.errors import PipelineError

# Params files as Snakemake saw them (params.yaml, plus any --configfile), and --config overrides.
PARAMS_FILES = [str(p) for p in (workflow.overwrite_configfiles or workflow.configfiles)]
def _typed(value):
    """Snakemake leaves list items (`--config key=[0,1]`) and nested values (`--config 'methods={clora:
    {penalty_weight: 0.3}}'`) as strings: read list items as YAML, and a string that is a YAML number,
    boolean or null as that value."""
    if isinstance(value, list):
        return [yaml.safe_load(v) if isinstance(v, str) else v for v in value]
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if parsed is None or isinstance(parsed, (bool, int, float)) else value
    return value


OVERRIDES = {k: _typed(v) for k, v in cd_config.flatten(workflow.config_settings.overwrite_config or {}).items()}
from continual_diffusion import methods as cd_methods  # the method registry (report.smk's export list too)

try:
    CFG = cd_config.load(PARAMS_FILES, OVERRIDES)
    cd_methods.check_config(CFG)  # method names and parameter keys against the registry
except PipelineError as exc:
    raise WorkflowError(str(exc)) from None
PROFILE = CFG["profile"]
BENCHMARKS = CFG["benchmarks"]

# Output folders (utils/layout.py), as Snakemake patterns: {benchmark}, {method}, {seed}, {task} are wildcards.
DATA = str(cd_layout.profile_root("data", PROFILE))
TASK_DATA = str(cd_layout.tasks_dir(DATA, "{benchmark}"))
POOL = str(cd_layout.pool_dir(DATA, "{benchmark}"))
BASE = str(cd_layout.base_dir(PROFILE))
EVALUATOR = str(cd_layout.evaluator_dir(PROFILE, "{benchmark}"))
REPORTS = str(cd_layout.reports_dir(PROFILE))
LOGS = str(cd_layout.logs_dir(PROFILE))  # job logs: LOGS/<stage>/...; timings: LOGS/timings/<stage>/...

# --config overrides for the jobs, shell-quoted (braces doubled: Snakemake formats the prefix).
_OVERRIDES_ENV = shlex.quote(json.dumps(OVERRIDES, sort_keys=True)).replace("{", "{{").replace("}", "}}")

# CPU kernels capped to params' cpu_isa (config.isa_environment): bit-identical results across x86-64 CPUs.
ISA_ENV = cd_config.isa_environment(CFG["cpu_isa"])

# A job that must run with each CPU's own kernels whatever cpu_isa says (rebuild_embedded_base): the caps unset.
UNCAPPED = "env " + "".join(f"-u {k} " for k in cd_config.ISA_ENVIRONMENT["avx2"])

# Every job: offline hubs, no DVC analytics, the thread count and ISA caps from params, no bytecode in src/.
shell.prefix(
    "set -euo pipefail; export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 "
    "DVC_NO_ANALYTICS=1 PYTHONDONTWRITEBYTECODE=1 "
    f"PYTHONPATH={shlex.quote(str(Path(workflow.basedir) / 'src'))} "
    f"PATH={shlex.quote(os.path.dirname(sys.executable))}:$PATH "
    f"OMP_NUM_THREADS={CFG['torch_threads']} MKL_NUM_THREADS={CFG['torch_threads']} "
    + "".join(f"{k}={v} " for k, v in ISA_ENV.items())
    + f"CDIFF_OVERRIDES={_OVERRIDES_ENV}; "
)

# Jobs run `python -m continual_diffusion` with the interpreter that runs Snakemake (its folder goes
# first on PATH) and this workflow's own src/ (PYTHONPATH above), with the same configuration: the
# params files as arguments, the --config overrides through CDIFF_OVERRIDES (shell prefix above), so
# that an override reruns only the jobs whose own params (bench, model, chain, ...) it changes.
CONFIG_ARGS = " ".join(f"--params {shlex.quote(p)}" for p in PARAMS_FILES)
ENV = "../envs/cdiff.yaml"


def code(stage):
    """The code a stage depends on (the same list dvc.yaml declares), as files."""
    return cd_pipeline.code_files(stage, Path(workflow.basedir))


def method_code(stage):
    """Input function: the stage's code with only the job's own method modules (pipeline.code_files)."""
    return lambda w: cd_pipeline.code_files(stage, Path(workflow.basedir), method=w.method)


def bench_params(benchmark):
    """What a benchmark's data depends on (a Snakemake params rerun trigger)."""
    return json.dumps(cd_config.benchmark_config(CFG, benchmark), sort_keys=True)


def is_synthetic(benchmark):
    return CFG["data"][benchmark]["source"].startswith("synthetic_")


def record_in_dvc():
    """After a successful plain run, record completed stages in dvc.lock (see pipeline.py).

    Skipped inside `dvc repro` (DVC records itself), with --config/--configfile overrides (the run
    does not match params.yaml), outside a DVC repository, or with CDIFF_DVC_RECORD=0.
    """
    if os.environ.get("DVC_STAGE") or os.environ.get("CDIFF_DVC_RECORD", "1") == "0":
        return
    if OVERRIDES or PARAMS_FILES != ["params.yaml"]:
        print("cdiff: not recording in DVC: this run used --config/--configfile overrides", file=sys.stderr)
        return
    if not (Path(workflow.basedir) / ".dvc").is_dir():
        return
    shell(f"python -m continual_diffusion dvc-record {CONFIG_ARGS}")


# ----- base model (stage base_model)
def base_inputs(wildcards):
    """What the base model is built from: the generic pools, the committed copy, or nothing (SD)."""
    kind = CFG["model"]["base"]
    if kind == "pretrain":
        return expand(POOL, benchmark=[b for b in BENCHMARKS if is_synthetic(b)])
    if kind == "embedded":
        root = Path(CFG["model"]["embedded"])
        return sorted(str(p) for p in root.rglob("*") if p.is_file())
    return []


# ----- task chains (stages train, evaluate, report)
def _chains(top):
    return str(cd_layout.chain_dir(cd_layout.profile_root(top, PROFILE), "{benchmark}", "{method}", "{seed}"))


RUNS, RESULTS, CHECKPOINTS = _chains("runs"), _chains("results"), _chains("checkpoints")
TASK_OF = f"{cd_layout.CHAIN_PATTERN}/{cd_layout.TASK_PATTERN}"  # a task under a profile root (logs, timings)


def task_folder(root, task):
    return str(cd_layout.task_dir(root, int(task)))


def earlier_tasks(wildcards):
    """Task t of a chain starts from tasks 1..t-1 of the same chain."""
    root = RUNS.format(**wildcards)
    return [task_folder(root, t) for t in range(1, int(wildcards.task))]


def shared_source_runs(wildcards):
    """The other method's chain whose job trains what this task would (shared_tasks.py), or None."""
    source = cd_shared_tasks.source_method(CFG, wildcards.benchmark, wildcards.method, int(wildcards.task))
    return None if source is None else RUNS.format(benchmark=wildcards.benchmark, method=source, seed=wildcards.seed)


def shared_task(wildcards):
    """Input function: the shared job's task folder, when this task is a copy of it."""
    source = shared_source_runs(wildcards)
    return [] if source is None else [task_folder(source, wildcards.task)]


def shared_task_arg(wildcards):
    source = shared_source_runs(wildcards)
    return "" if source is None else f"--same-as {shlex.quote(source)}"


def chain_params(wildcards):
    """What a task's result depends on besides its inputs (a Snakemake params rerun trigger)."""
    return json.dumps(cd_config.chain_settings(CFG, wildcards.benchmark, wildcards.method), sort_keys=True)


def evaluator_params(benchmark):
    """Synthetic data: the identity evaluator's training settings; real data: which pretrained
    extractors the evaluator stage checks (a Snakemake params rerun trigger)."""
    if is_synthetic(benchmark):
        return json.dumps({**CFG["evaluator"], "cpu_isa": CFG["cpu_isa"]}, sort_keys=True)
    ev = CFG["evaluation"]
    return json.dumps({k: ev[k] for k in ("metrics", "features", "facenet", "clip")}, sort_keys=True)


def evaluation_params(benchmark):
    """What an evaluation job depends on in params (a Snakemake params rerun trigger)."""
    return json.dumps(cd_config.evaluation_settings(CFG, benchmark), sort_keys=True)


def report_params():
    """What every report job depends on (a Snakemake params rerun trigger)."""
    return json.dumps({"seeds": CFG["seeds"], "methods": CFG["train"]["methods"], "benchmarks": BENCHMARKS,
                       "n_tasks": {b: CFG["data"][b]["n_tasks"] for b in BENCHMARKS}}, sort_keys=True)


def all_tasks(root_pattern):
    """One folder per benchmark, method, seed and task under ``root_pattern`` (RUNS or RESULTS)."""
    return [
        task_folder(root_pattern.format(benchmark=b, method=m, seed=s), t)
        for b in BENCHMARKS
        for m in CFG["train"]["methods"]
        for s in CFG["seeds"]
        for t in range(1, CFG["data"][b]["n_tasks"] + 1)
    ]


# Snakemake's rescheduling timers (snakemake_timers.py): cancelled by onsuccess / onerror (Snakefile), so a
# run with the profile's 10-second job-rate timespan ends with its last job, not up to 10 s later.
from continual_diffusion.orchestration.snakemake_timers import end_rescheduling_timers  # noqa: E402


# ----- warm worker (warm.py): one process imports torch / diffusers once and forks each heavy job
# (train-task, evaluate-task, evaluator, export) instead of a fresh interpreter importing them again;
# results are bit-identical either way. Local runs only (a cluster job runs elsewhere); off with
# CDIFF_WARM=0. Started by onstart, stopped by onsuccess / onerror (Snakefile).
from continual_diffusion.orchestration import warm as cd_warm

_WARM = {}


def _needs_warm_worker():
    """Whether a job of this run runs a heavy subcommand (no server for a reports-only run)."""
    try:
        return any(f"continual_diffusion {c} " in (job.rule.shellcmd or "")
                   for job in workflow.dag.needrun_jobs() for c in cd_warm.WARM_COMMANDS)
    except Exception:
        return True


def start_warm_worker():
    """Start the server in the jobs' environment (this prefix, the heavy rules' threads); the jobs inherit
    CDIFF_WARM=<its socket> from this process. No socket within 60 s: the jobs run as without it."""
    if os.environ.get("CDIFF_WARM") == "0" or not workflow.local_exec or workflow.remote_exec or workflow.touch:
        return
    if not _needs_warm_worker():
        return
    socket_path = cd_warm.socket_path_for(os.getpid())
    env_lines = shell("env -0", read=True, threads=CFG["torch_threads"]).split("\0")
    env = dict(line.split("=", 1) for line in env_lines if "=" in line)
    proc = cd_warm.start_server(socket_path, env, cd_layout.logs_dir(PROFILE, "warm.log"), os.getpid())
    if proc is None:
        print(f"cdiff: warm worker did not start ({LOGS}/warm.log): jobs import torch themselves",
              file=sys.stderr)
        return
    _WARM.update(proc=proc, socket=socket_path, previous=os.environ.get("CDIFF_WARM"))
    os.environ.update(CDIFF_WARM=socket_path)


def stop_warm_worker():
    if not _WARM:
        return
    cd_warm.stop_server(_WARM["proc"], _WARM["socket"])
    os.environ.pop("CDIFF_WARM", None)
    if _WARM["previous"] is not None:
        os.environ.update(CDIFF_WARM=_WARM["previous"])
    _WARM.clear()
