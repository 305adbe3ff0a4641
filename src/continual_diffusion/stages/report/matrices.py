"""The metric matrices R of each chain, read from the evaluation results and written as CSV + JSON.

R[t, i] (1-based) = the metric of concept i's samples after task t, for i <= t (empty above the
diagonal). One file pair per benchmark, method, seed and metric key:
  <out>/<benchmark>/<method>/seed_<s>/<key>.csv    rows "after task t", columns "concept i"
  <out>/<benchmark>/<method>/seed_<s>/<key>.json   {key, formula, higher_is_better, features, R}
The keys, formulas and directions come from the ``metrics`` entry of the scores (metrics/suite.py).

A cell is one of three kinds in scores.json:
  evaluated       the concept's entry holds ``key``: a number
  undefined       the concept's entry holds ``key`` as null (or NaN), the reason under ``<key>_missing``
                  (e.g. face_similarity with no face in the concept's real images): NaN in R, listed
                  with its reason by ``read_metric``, written "n/a" in the CSV and under ``undefined``
                  in the JSON (only where there is one)
  not evaluated   no entry for the concept (above the diagonal, skipped by the sparse schedule) or an
                  entry without ``key`` (evaluated with another metric list): NaN in R, empty in the CSV
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from continual_diffusion.metrics.missing import missing_key
from continual_diffusion.utils import layout
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.io import atomic_directory, json_text

NON_MATRIX_KEYS = ("predicted",)
NO_REASON = "recorded without a value and without a reason"


def scores_path(chain_results: Path, task: int) -> Path:
    return layout.task_dir(chain_results, task) / "scores.json"


def read_scores(chain_results: Path, task: int) -> dict:
    path = scores_path(chain_results, task)
    if not path.exists():
        raise PipelineError(f"{path}: evaluation result missing (run the evaluate stage)")
    return json.loads(path.read_text())


def metric_keys(chain_results: Path, tasks: int) -> dict:
    """{key: {formula, higher_is_better, features}} as recorded by the last task's evaluation."""
    data = read_scores(chain_results, tasks)
    if "metrics" in data:
        return data["metrics"]
    # results written before the metric suite: identity accuracy only
    return {"accuracy": {"formula": "open-set identity accuracy", "higher_is_better": True, "features": "identity classifier"},
            "accuracy_closed": {"formula": "closed-set identity accuracy", "higher_is_better": True,
                                "features": "identity classifier"}}


def metric_matrix(chain_results: Path, tasks: int, key: str = "accuracy") -> np.ndarray:
    """R[t-1, i-1] = ``key`` of concept i after task t (NaN above the diagonal and where undefined)."""
    return read_metric(chain_results, tasks, key)[0]


def read_metric(chain_results: Path, tasks: int, key: str = "accuracy") -> tuple[np.ndarray, dict]:
    """(R of ``key`` as ``metric_matrix`` gives it, {(t, i): reason} of its undefined cells, 1-based)."""
    r = np.full((tasks, tasks), np.nan)
    undefined: dict = {}
    for t in range(1, tasks + 1):
        for i, s in read_scores(chain_results, t)["concepts"].items():
            if key not in s:
                continue
            value = s[key]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                undefined[(t, int(i))] = s.get(missing_key(key)) or NO_REASON
                continue
            r[t - 1, int(i) - 1] = value
    return r, undefined


def matrix_csv(r: np.ndarray, undefined: dict | None = None) -> str:
    """R as CSV: empty where not evaluated, "n/a" where undefined ({(t, i): reason}, 1-based)."""
    undefined = undefined or {}
    lines = ["after_task," + ",".join(f"concept_{i + 1}" for i in range(r.shape[1]))]
    for t, row in enumerate(r):
        lines.append(f"{t + 1}," + ",".join(
            "n/a" if (t + 1, i + 1) in undefined else "" if np.isnan(v) else f"{v:.6g}" for i, v in enumerate(row)))
    return "\n".join(lines) + "\n"


def undefined_list(undefined: dict) -> list[dict]:
    """{(t, i): reason} -> [{after_task, concept, reason}] in task, then concept order (for JSON)."""
    return [{"after_task": t, "concept": i, "reason": why} for (t, i), why in sorted(undefined.items())]


def write_matrices(results_root: Path, benchmarks: list[str], methods: list[str], seeds: list[int],
                   n_tasks: dict, out: Path) -> list[Path]:
    """Every chain's R of every metric key under ``out`` (written atomically); returns the files."""
    written = []
    with atomic_directory(out) as tmp:
        for b in benchmarks:
            for m in methods:
                for s in seeds:
                    chain = layout.chain_dir(results_root, b, m, s)
                    folder = layout.chain_dir(tmp, b, m, s)
                    folder.mkdir(parents=True)
                    for key, meta in metric_keys(chain, n_tasks[b]).items():
                        r, undefined = read_metric(chain, n_tasks[b], key)
                        (folder / f"{key}.csv").write_text(matrix_csv(r, undefined))
                        data = {"key": key, **meta, "benchmark": b, "method": m, "seed": s,
                                "R": [[None if np.isnan(v) else float(v) for v in row] for row in r]}
                        if undefined:
                            data["undefined"] = undefined_list(undefined)
                        (folder / f"{key}.json").write_text(json_text(data))
                        written.append(layout.chain_dir(out, b, m, s) / f"{key}.csv")
    return written
