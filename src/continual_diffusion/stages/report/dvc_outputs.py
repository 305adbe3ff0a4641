"""The files behind dvc.yaml's top-level ``metrics`` and ``plots`` (``dvc metrics show``, ``dvc plots
show``, ``dvc exp show``), written from the continual summary and the training logs only.

  metrics.json            {benchmark: {method: {<key>: {A, F, P}, n_param}}} seed means, with
                          A = (1/T) sum_i R[T, i], F = (1/(T-1)) sum_{i<T} s (R[i, i] - R[T, i]),
                          P = (1/T) sum_t R[t, t]  (see metrics/continual.py)
  plots/concept1.csv      benchmark, method, metric, after_task, value = R[t, 1]  (forgetting curve)
  plots/just_learned.csv  benchmark, method, metric, task, value = R[t, t]        (plasticity)
  plots/final.csv         benchmark, method, metric, concept, value = R[T, i]     (after the sequence)
  plots/clora_plasticity.csv  benchmark, method, seed, task, ||s B_t A_t||_F (mean, max over the K/V
                          matrices), the task's mean raw C-LoRA penalty (LoRA-type methods only)
Long format: one template (workflow/dvc_plots/by_method.json) draws one line per method, one panel
per benchmark and metric, whatever methods and metrics the profile ran.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from continual_diffusion.stages.report.figures import adapter_history, adapter_methods
from continual_diffusion.stages.report.summary import summary_keys as metric_keys
from continual_diffusion.utils.io import atomic_directory, json_text


def _round(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def metrics_json(summary: dict, costs: dict) -> dict:
    out: dict = {}
    for b, methods in summary.items():
        out[b] = {}
        for m, entry in methods.items():
            row: dict = {}
            for key in metric_keys({b: {m: entry}}):
                row[key] = {"A": _round(entry[key]["final"]["mean"]), "F": _round(entry[key]["forgetting"]["mean"]),
                            "P": _round(entry[key]["plasticity"]["mean"])}
            cost = costs.get("base", {}).get(b, {}).get(m)
            if cost is not None:
                row["n_param_percent"] = _round(cost["n_param_percent"])
            out[b][m] = row
    return out


def _long_csv(summary: dict, x_name: str, cells) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["benchmark", "method", "metric", x_name, "value"])
    for b, methods in summary.items():
        for m, entry in methods.items():
            for key in metric_keys({b: {m: entry}}):
                r = np.asarray(entry[key]["R_mean"], dtype=float)
                for x, value in cells(r):
                    if np.isfinite(value):
                        writer.writerow([b, m, key, x, repr(round(float(value), 6))])
    return buf.getvalue()


def plasticity_csv(runs: Path, summary: dict, seeds: list[int], n_tasks: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["benchmark", "method", "metric", "seed", "task", "value"])
    penalised = adapter_methods()
    for b, methods in summary.items():
        for m in (m for m in penalised if m in methods):
            for s in seeds:
                h = adapter_history(runs, b, m, s, n_tasks[b])
                for t in range(n_tasks[b]):
                    for name, values in (("delta_norm_mean", h["norm_mean"]), ("delta_norm_max", h["norm_max"]),
                                         ("penalty_raw_mean", h["penalty_mean"])):
                        if name == "penalty_raw_mean" and not penalised[m]:
                            continue
                        writer.writerow([b, m, name, s, t + 1, repr(round(values[t], 8))])
    return buf.getvalue()


def write_dvc_outputs(summary: dict, costs: dict, out_metrics: Path, out_plots: Path, runs: Path | None,
                      seeds: list[int], n_tasks: dict) -> None:
    """``out_metrics`` (metrics.json) and the ``out_plots`` folder, each written atomically."""
    with atomic_directory(out_plots) as tmp:
        (tmp / "concept1.csv").write_text(_long_csv(summary, "after_task",
                                                    lambda r: ((t + 1, r[t, 0]) for t in range(r.shape[0]))))
        (tmp / "just_learned.csv").write_text(_long_csv(summary, "task",
                                                        lambda r: ((t + 1, r[t, t]) for t in range(r.shape[0]))))
        (tmp / "final.csv").write_text(_long_csv(summary, "concept",
                                                 lambda r: ((i + 1, r[-1, i]) for i in range(r.shape[0]))))
        text = plasticity_csv(runs, summary, seeds, n_tasks) if runs is not None else ""
        (tmp / "clora_plasticity.csv").write_text(text or "benchmark,method,metric,seed,task,value\n")
    tmp_metrics = Path(out_metrics).with_name(f".{Path(out_metrics).name}.tmp")
    tmp_metrics.write_text(json_text(metrics_json(summary, costs)))
    tmp_metrics.replace(out_metrics)
