"""Continual summary of the identity accuracy matrices R (one per benchmark, method and seed).

With R[t, i] = accuracy on concept i after task t (1-based, i <= t, T tasks):
  plasticity  P = (1/T) sum_t R[t, t]                 (just-learned accuracy, averaged over tasks)
  final       A = (1/T) sum_i R[T, i]                 (after the whole sequence)
  forgetting  F = (1/(T-1)) sum_{i<T} (R[i, i] - R[T, i])
  early       R[T, 1..k] vs R[i, i] for the first k concepts (``early`` = 5): just-learned and final
Each is reported as mean and sample standard deviation over seeds (std 0 with one seed), for the
open-set accuracy (``accuracy``) and the closed-set one (``accuracy_closed``; see evaluate.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluate import accuracy_matrix
from .io_utils import atomic_directory, json_text


def chain_metrics(r: np.ndarray, early: int = 5) -> dict:
    t = r.shape[0]
    diag = np.diag(r)
    k = min(early, t)
    return {
        "plasticity": float(diag.mean()),
        "plasticity_min": float(diag.min()),
        "final": float(r[-1].mean()),
        "forgetting": float((diag[:-1] - r[-1, :-1]).mean()) if t > 1 else 0.0,
        "early_just_learned": float(diag[:k].mean()),
        "early_final": float(r[-1, :k].mean()),
        "concept1_curve": [float(v) for v in r[:, 0]],
    }


def _mean_std(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "values": [float(v) for v in a]}


METRICS = {
    "accuracy": "open set: argmax over the task concepts and 'other'",
    "accuracy_closed": "closed set: argmax over the task concepts only",
}


def summarize(results_root: Path, benchmarks: list[str], methods: list[str], seeds: list[int], n_tasks: dict,
              out: Path) -> dict:
    summary: dict = {}
    for b in benchmarks:
        summary[b] = {}
        for m in methods:
            summary[b][m] = {"seeds": list(seeds)}
            for key in METRICS:
                matrices = [accuracy_matrix(results_root / b / m / f"seed_{s}", n_tasks[b], key) for s in seeds]
                per_seed = [chain_metrics(r) for r in matrices]
                entry = {k: _mean_std([p[k] for p in per_seed]) for k in per_seed[0] if k != "concept1_curve"}
                with np.errstate(invalid="ignore"):
                    entry["R_mean"] = np.nanmean(np.stack(matrices), axis=0).round(4).tolist()
                entry["R_per_seed"] = [r.round(4).tolist() for r in matrices]
                summary[b][m][key] = entry
    with atomic_directory(out) as tmp:
        (tmp / "summary.json").write_text(json_text(_nan_to_none(summary)))
        (tmp / "summary.md").write_text(markdown(summary))
        plot_curves(summary, tmp / "concept_accuracy.png")
    return summary


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
    lines = ["# Identity accuracy of the miniature (mean +- std over seeds " + ", ".join(map(str, seeds)) + ")", ""]
    for key, meaning in METRICS.items():
        lines += [f"## {key} ({meaning})", "",
                  "| benchmark | method | plasticity P | min_t R[t,t] | final A | forgetting F | concepts 1-5 just learned | concepts 1-5 after last task |",
                  "|---|---|---|---|---|---|---|---|"]
        for b, methods in summary.items():
            for m, entry in methods.items():
                e = entry[key]
                cells = [f"{e[k]['mean']:.3f} +- {e[k]['std']:.3f}" for k in
                         ("plasticity", "plasticity_min", "final", "forgetting", "early_just_learned", "early_final")]
                lines.append(f"| {b} | {m} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["R[t, i] = fraction of generated samples of concept i, after task t, that the miniature's identity",
              "evaluator assigns to concept i. P = mean_t R[t,t]; A = mean_i R[T,i]; F = mean_{i<T} (R[i,i] - R[T,i]).", ""]
    return "\n".join(lines)


def plot_curves(summary: dict, path: Path) -> None:
    """Accuracy (closed set) of each of concepts 1-5 over the task sequence, per benchmark and method (seed mean)."""
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
            r = np.asarray(summary[b][m]["accuracy_closed"]["R_mean"], dtype=float)
            for i in range(min(5, r.shape[0])):
                ax.plot(range(i + 1, r.shape[0] + 1), r[i:, i], marker="o", ms=3, label=f"concept {i + 1}")
            ax.set_title(f"{b} / {m}", fontsize=9)
            ax.set_xlabel("after task")
            ax.set_ylim(-0.02, 1.02)
            if col == 0:
                ax.set_ylabel("identity accuracy (closed set)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
