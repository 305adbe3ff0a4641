# Shared by every rule: the resolved configuration, the CLI invocation, offline environment,
# and the hand-over to DVC after a successful run.
import json
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from continual_diffusion import config as cd_config
from continual_diffusion import pipeline as cd_pipeline
from continual_diffusion.errors import PipelineError

# Params files as Snakemake saw them (params.yaml, plus any --configfile), and --config overrides.
PARAMS_FILES = [str(p) for p in (workflow.overwrite_configfiles or workflow.configfiles)]
OVERRIDES = cd_config.flatten(workflow.config_settings.overwrite_config or {})
try:
    CFG = cd_config.load(PARAMS_FILES, OVERRIDES)
except PipelineError as exc:
    raise WorkflowError(str(exc)) from None
PROFILE = CFG["profile"]
BENCHMARKS = CFG["benchmarks"]

# Every job: offline hubs, no DVC analytics, the thread count from params, no bytecode in src/.
shell.prefix(
    "set -euo pipefail; export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 "
    "DVC_NO_ANALYTICS=1 PYTHONDONTWRITEBYTECODE=1 "
    f"PYTHONPATH={shlex.quote(str(Path(workflow.basedir) / 'src'))} "
    f"PATH={shlex.quote(os.path.dirname(sys.executable))}:$PATH "
    f"OMP_NUM_THREADS={CFG['torch_threads']} MKL_NUM_THREADS={CFG['torch_threads']}; "
)

# Jobs run `python -m continual_diffusion` with the interpreter that runs Snakemake (its folder goes
# first on PATH) and this workflow's own src/ (PYTHONPATH above), with the same configuration.
CONFIG_ARGS = " ".join(
    [f"--params {shlex.quote(p)}" for p in PARAMS_FILES]
    + [f"--set {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in sorted(OVERRIDES.items())]
)
ENV = "../envs/cdiff.yaml"


def code(stage):
    """The code a stage depends on (the same list dvc.yaml declares), as files."""
    return cd_pipeline.code_files(stage, Path(workflow.basedir))


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
