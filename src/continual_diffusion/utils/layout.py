"""The output layout: where every stage's files live (the one place for every path formula).

    data/<profile>/                                 prepare_data
        tasks/<benchmark>/                          tasks_dir(data_root, benchmark)
            task_XX/                                concept_task_dir(data_root, benchmark, concept)
        pool/<benchmark>/                           pool_dir(data_root, benchmark)
    models/<profile>/
        base/                                       base_dir(profile)
        evaluator/<benchmark>/                      evaluator_dir(profile, benchmark)
    runs/<profile>/          (train)                profile_root("runs", profile)
    results/<profile>/       (evaluate)             profile_root("results", profile)
    checkpoints/<profile>/   (train, resumable)     profile_root("checkpoints", profile)
        <benchmark>/<method>/seed_<s>/              chain_dir(root, benchmark, method, seed)
            task_XX/                                task_dir(chain, task); runs/: TASK_FILE
    models/<profile>/rebuilt_base/                  rebuilt_base_dir(profile): `snakemake rebuild_embedded_base`
    reports/<profile>/<part>/                       reports_dir(profile, part): matrices/, summary/, ...
    logs/<profile>/<stage>/...                      logs_dir(profile, stage): one log per Snakemake job
        timings/<stage>/...                         logs_dir(profile, "timings", stage): job timings (TSV)

``root`` is a stage's folder of one profile (``runs/<profile>``, ...); a chain is one benchmark, method
and seed; task folders count from 1 (``task_01``). The Snakemake rules build their wildcard patterns
from the same functions (``chain_dir(root, "{benchmark}", "{method}", "{seed}")``) and the constants
below.
"""

from __future__ import annotations

from pathlib import Path

TASK_FILE = "task.safetensors"  # a finished task's tensors: ``method.<name>`` from ``end_task`` and ``token.row``

# Snakemake wildcard patterns (``{task}`` is the two digits of ``task_XX``).
CHAIN_PATTERN = "{benchmark}/{method}/seed_{seed}"
TASK_PATTERN = "task_{task}"
CHAIN_GLOB = "*/*/seed_*"  # every chain folder under a stage's profile root
TASK_GLOB = "task_*"  # every task folder of a chain


def profile_root(top: str | Path, profile: str) -> Path:
    """``<top>/<profile>``: a stage's folder of one profile (top: data, models, runs, results, checkpoints,
    reports)."""
    return Path(top) / profile


def chain_dir(root: str | Path, benchmark: str, method: str, seed: int | str) -> Path:
    """``<root>/<benchmark>/<method>/seed_<s>``: one chain under ``runs|results|checkpoints/<profile>``
    (or any folder laid out the same way)."""
    return Path(root) / benchmark / method / seed_name(seed)


def seed_name(seed: int | str) -> str:
    """``seed_<s>``: a chain's folder name."""
    return f"seed_{seed}"


def task_name(task: int) -> str:
    """``task_XX``: a task's folder name (two digits, from 1)."""
    return f"task_{task:02d}"


def task_dir(chain: str | Path, task: int) -> Path:
    """``<chain>/task_XX``: task ``task`` of a chain folder (runs/, results/ or checkpoints/)."""
    return Path(chain) / task_name(task)


def tasks_dir(data_root: str | Path, benchmark: str) -> Path:
    """``<data_root>/tasks/<benchmark>``: a benchmark's sampled task sequence (``data_root`` = data/<profile>)."""
    return Path(data_root) / "tasks" / benchmark


def concept_task_dir(data_root: str | Path, benchmark: str, concept: int) -> Path:
    """``<data_root>/tasks/<benchmark>/task_XX``: the training images of concept (task) ``concept``."""
    return Path(tasks_dir(data_root, benchmark)) / task_name(concept)


def pool_dir(data_root: str | Path, benchmark: str) -> Path:
    """``<data_root>/pool/<benchmark>``: a synthetic benchmark's generic pre-training pool."""
    return Path(data_root) / "pool" / benchmark


def base_dir(profile: str) -> Path:
    """``models/<profile>/base``: the frozen base model."""
    return profile_root("models", profile) / "base"


def evaluator_dir(profile: str, benchmark: str) -> Path:
    """``models/<profile>/evaluator/<benchmark>``: a benchmark's identity evaluator."""
    return profile_root("models", profile) / "evaluator" / benchmark


def reports_dir(profile: str, *parts: str) -> Path:
    """``reports/<profile>/<parts...>``: the report stage's outputs (matrices, summary, grids, ...)."""
    return profile_root("reports", profile).joinpath(*parts)


def rebuilt_base_dir(profile: str) -> Path:
    """``models/<profile>/rebuilt_base``: the on-demand rebuild of the embedded base, compared to it."""
    return profile_root("models", profile) / "rebuilt_base"


def logs_dir(profile: str, *parts: str) -> Path:
    """``logs/<profile>/<parts...>``: the Snakemake jobs' logs (``<stage>/``) and timings (``timings/<stage>/``)."""
    return profile_root("logs", profile).joinpath(*parts)
