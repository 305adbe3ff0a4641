"""Continual summary of every metric matrix R (one per benchmark, method, seed and metric key).

Per chain (metrics/continual.py, with s = +1 for higher-is-better metrics and -1 for MMD):
  plasticity  P = (1/T) sum_t R[t, t]                      (just learned, averaged over tasks)
  final       A = (1/T) sum_i R[T, i]                      (after the whole sequence)
  forgetting  F = (1/(T-1)) sum_{i<T} s (R[i, i] - R[T, i])
  early       R[i, i] and R[T, i] averaged over the first k = 5 concepts: just learned and final
Each is reported as the mean and sample standard deviation over seeds (std 0 with one seed), for
every metric key the evaluation recorded, with the key's formula and feature space.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .errors import PipelineError
from .io_utils import atomic_directory, json_text
from .matrices import metric_keys, metric_matrix
from .metrics.continual import chain_metrics, concept_curve

SUMMARY_KEYS = ("plasticity", "plasticity_min", "final", "forgetting", "early_just_learned", "early_final")
SKIPPED_KEYS = ("other_rate",)  # a diagnostic of accuracy, not a quality metric of its own


def _mean_std(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "values": [float(v) for v in a]}


def summarize(results_root: Path, benchmarks: list[str], methods: list[str], seeds: list[int], n_tasks: dict,
              out: Path) -> dict:
    summary: dict = {}
    for b in benchmarks:
        summary[b] = {}
        for m in methods:
            chains = [Path(results_root) / b / m / f"seed_{s}" for s in seeds]
            keys = metric_keys(chains[0], n_tasks[b])
            summary[b][m] = {"seeds": list(seeds)}
            for key, meta in keys.items():
                if key in SKIPPED_KEYS:
                    continue
                matrices = [metric_matrix(c, n_tasks[b], key) for c in chains]
                per_seed = [_chain_metrics(c, key, r, meta) for c, r in zip(chains, matrices)]
                entry = {k: _mean_std([p[k] for p in per_seed]) for k in SUMMARY_KEYS}
                entry["meta"] = meta
                with warnings.catch_warnings():  # cells above the diagonal are NaN in every seed
                    warnings.simplefilter("ignore", RuntimeWarning)
                    entry["R_mean"] = np.nanmean(np.stack(matrices), axis=0).round(4).tolist()
                entry["R_per_seed"] = [r.round(4).tolist() for r in matrices]
                summary[b][m][key] = entry
    with atomic_directory(out) as tmp:
        (tmp / "summary.json").write_text(json_text(_nan_to_none(summary)))
        (tmp / "summary.md").write_text(markdown(summary))
        for key in summary_keys(summary):
            plot_curves(summary, key, tmp / f"curves_{key}.png")
    return summary


def _chain_metrics(chain: Path, key: str, r: np.ndarray, meta: dict) -> dict:
    """chain_metrics of one chain's R, or a one-line error naming the chain and the metric it lacks."""
    try:
        return chain_metrics(r, higher_is_better=meta["higher_is_better"])
    except ValueError as err:
        raise PipelineError(f"{chain}: metric {key!r}: {err} (evaluated without it, unlike the first seed's "
                            f"chain: rerun its evaluate jobs)") from err


def summary_keys(summary: dict) -> list[str]:
    """Every metric key of a summary, in first-seen order."""
    keys: list[str] = []
    for methods in summary.values():
        for entry in methods.values():
            keys += [k for k in entry if k != "seeds" and k not in keys]
    return keys


def _nan_to_none(obj):
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float) and np.isnan(obj):
        return None
    return obj


def markdown(summary: dict) -> str:
    seeds = next(iter(next(iter(summary.values())).values()))["seeds"]
    lines = ["# Continual metrics (mean +- std over seeds " + ", ".join(map(str, seeds)) + ")", ""]
    for key in summary_keys(summary):
        meta = next(e[key]["meta"] for ms in summary.values() for e in ms.values() if key in e)
        arrow = "higher is better" if meta["higher_is_better"] else "lower is better"
        lines += [f"## {key} ({arrow})", "", f"R[t, i] = {meta['formula']}; features: {meta['features']}.", "",
                  "| benchmark | method | plasticity P | worst R[t,t] | final A | forgetting F | concepts 1-5 just learned | concepts 1-5 after last task |",
                  "|---|---|---|---|---|---|---|---|"]
        for b, methods in summary.items():
            for m, entry in methods.items():
                if key not in entry:
                    continue
                e = entry[key]
                cells = [f"{e[k]['mean']:.3f} +- {e[k]['std']:.3f}" for k in SUMMARY_KEYS]
                lines.append(f"| {b} | {m} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["P = mean_t R[t,t]; A = mean_i R[T,i]; F = mean_{i<T} s (R[i,i] - R[T,i]) with s = +1 when higher is",
              "better and -1 when lower is better (F > 0 is forgetting). R matrices: reports/<profile>/matrices.", ""]
    return "\n".join(lines)


def plot_curves(summary: dict, key: str, path: Path) -> None:
    """``key`` of each of concepts 1-5 over the task sequence, per benchmark and method (seed mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benchmarks = list(summary)
    methods = list(next(iter(summary.values())))
    fig, axes = plt.subplots(len(benchmarks), len(methods), figsize=(4 * len(methods), 3 * len(benchmarks)),
                             squeeze=False, sharey=True)
    for row, b in enumerate(benchmarks):
        for col, m in enumerate(methods):
            ax = axes[row][col]
            ax.set_title(f"{b} / {m}", fontsize=9)
            ax.set_xlabel("after task")
            if col == 0:
                ax.set_ylabel(key)
            if key not in summary[b][m]:
                continue
            r = np.asarray(summary[b][m][key]["R_mean"], dtype=float)
            for i in range(min(5, r.shape[0])):
                tasks, values, gaps = concept_curve(r, i + 1)  # dotted: cells skipped by the evaluation schedule
                ax.plot(tasks, values, marker="o", ms=3, ls=":" if gaps else "-", label=f"concept {i + 1}")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
