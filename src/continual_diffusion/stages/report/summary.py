"""Continual summary of every metric matrix R (one per benchmark, method, seed and metric key).

Per chain (metrics/continual.py, with s = +1 for higher-is-better metrics and -1 for MMD):
  plasticity  P = (1/T) sum_t R[t, t]                      (just learned, averaged over tasks)
  final       A = (1/T) sum_i R[T, i]                      (after the whole sequence)
  forgetting  F = (1/(T-1)) sum_{i<T} s (R[i, i] - R[T, i])
  early       R[i, i] and R[T, i] averaged over the first k = 5 concepts: just learned and final
Each is reported as the mean and sample standard deviation over seeds (std 0 with one seed), for
every metric key the evaluation recorded, with the key's formula and feature space.

Missing values. A cell of R is *undefined* when the evaluation recorded the metric without a value
for that concept, with the reason (matrices.py; e.g. face_similarity when MTCNN finds no face in the
concept's real images). A number that reads an undefined cell of any seed is missing (NaN here, null
in summary.json, "n/a" in summary.md, the tables, figures and audit), never an average over the other
concepts: A over T - 1 concepts is not the A the formula and the paper define, and it would shift with
whichever concepts happen to be undefined. The cells the number does not read keep their values (R_mean
and the curves show them). The entry then carries, beside the numbers:
  missing    one line: which concepts (and seeds, when not all) are undefined and why
  undefined  the undefined cells [t, i] (1-based) of any seed; they are NaN in R_mean as well
A chain whose scores do not hold the key at all (evaluated with another metric list) is an error.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from continual_diffusion.metrics.continual import chain_metrics, concept_curve
from continual_diffusion.stages.report.matrices import metric_keys, read_metric, scores_path
from continual_diffusion.utils import layout
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.io import atomic_directory, json_text

SUMMARY_KEYS = ("plasticity", "plasticity_min", "final", "forgetting", "early_just_learned", "early_final")
SKIPPED_KEYS = ("other_rate",)  # a diagnostic of accuracy, not a quality metric of its own
NA = "n/a"  # how every report shows a missing number


def _mean_std(values: list[float]) -> dict:
    """Mean and sample std over seeds; both NaN (missing) when a seed's value is."""
    a = np.asarray(values, dtype=float)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {"mean": mean, "std": float("nan") if np.isnan(mean) else std, "values": [float(v) for v in a]}


def summarize(results_root: Path, benchmarks: list[str], methods: list[str], seeds: list[int], n_tasks: dict,
              out: Path) -> dict:
    summary: dict = {}
    for b in benchmarks:
        summary[b] = {}
        for m in methods:
            chains = [layout.chain_dir(results_root, b, m, s) for s in seeds]
            keys = metric_keys(chains[0], n_tasks[b])
            summary[b][m] = {"seeds": list(seeds)}
            for key, meta in keys.items():
                if key in SKIPPED_KEYS:
                    continue
                read = [read_metric(c, n_tasks[b], key) for c in chains]
                matrices = [r for r, _ in read]
                undefined = [u for _, u in read]
                listed = scores_path(chains[0], n_tasks[b])
                per_seed = [_chain_metrics(c, key, r, meta, u, listed) for c, (r, u) in zip(chains, read)]
                entry = {k: _mean_std([p[k] for p in per_seed]) for k in SUMMARY_KEYS}
                entry["meta"] = meta
                with warnings.catch_warnings():  # cells above the diagonal are NaN in every seed
                    warnings.simplefilter("ignore", RuntimeWarning)
                    r_mean = np.nanmean(np.stack(matrices), axis=0)
                if any(undefined):
                    entry.update(_missing(undefined, list(seeds)))
                    for t, i in entry["undefined"]:  # a mean over the seeds that have a value is not the mean
                        r_mean[t - 1, i - 1] = np.nan
                entry["R_mean"] = r_mean.round(4).tolist()
                entry["R_per_seed"] = [r.round(4).tolist() for r in matrices]
                summary[b][m][key] = entry
    with atomic_directory(out) as tmp:
        (tmp / "summary.json").write_text(json_text(_nan_to_none(summary)))
        (tmp / "summary.md").write_text(markdown(summary))
        for key in summary_keys(summary):
            plot_curves(summary, key, tmp / f"curves_{key}.png")
    return summary


def _chain_metrics(chain: Path, key: str, r: np.ndarray, meta: dict, undefined: dict, listed: Path) -> dict:
    """chain_metrics of one chain's R (NaN where a number reads an undefined cell), or a one-line error
    naming the chain and the metric its scores lack."""
    mask = np.zeros(r.shape, dtype=bool)
    for t, i in undefined:
        mask[t - 1, i - 1] = True
    try:
        return chain_metrics(r, higher_is_better=meta["higher_is_better"], undefined=mask)
    except ValueError as err:
        raise PipelineError(f"{chain}: metric {key!r}: {err}: no scores.json of this chain records it, yet the "
                            f"metric list read from {listed} has it (evaluated with another metric list): rerun "
                            f"this chain's evaluate jobs") from err


def _missing(undefined: list[dict], seeds: list[int]) -> dict:
    """{"missing": why, "undefined": cells [t, i]} of an entry whose chains ({(t, i): reason} per seed)
    have undefined cells: "undefined for concepts 1, 3: <reason>; concept 2 (seeds 1): <reason>"."""
    per_concept: dict = {}
    for seed, cells in zip(seeds, undefined):
        for (_, i), why in cells.items():
            per_concept.setdefault(i, {}).setdefault(why, set()).add(seed)
    groups: dict = {}  # (reason, the seeds when not all) -> concepts
    for i, reasons in sorted(per_concept.items()):
        for why, in_seeds in reasons.items():
            groups.setdefault((why, () if len(in_seeds) == len(seeds) else tuple(sorted(in_seeds))), []).append(i)
    parts = [f"concept{'s' if len(concepts) > 1 else ''} {', '.join(map(str, concepts))}"
             + (f" (seeds {', '.join(map(str, only))})" if only else "") + f": {why}"
             for (why, only), concepts in groups.items()]
    return {"missing": "undefined for " + "; ".join(parts),
            "undefined": [list(cell) for cell in sorted({cell for u in undefined for cell in u})]}


def is_missing(stat: dict) -> bool:
    """Whether a summary number ({mean, std, values}) is missing (NaN here, None once read from JSON)."""
    return stat["mean"] is None or bool(np.isnan(stat["mean"]))


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


def missing_notes(summary: dict, key: str) -> list[str]:
    """Markdown lines "<benchmark> / <method>: <why>" of ``key``'s entries with undefined cells, then a
    blank line; none when there is no such entry."""
    lines = [f"{b} / {m}: {entry[key]['missing']}; a number that reads those cells is {NA}."
             for b, methods in summary.items() for m, entry in methods.items() if "missing" in entry.get(key, {})]
    return [f"- {line}" for line in lines] + ([""] if lines else [])


def markdown(summary: dict) -> str:
    seeds = next(iter(next(iter(summary.values())).values()))["seeds"]
    lines = ["# Continual metrics (mean +- std over seeds " + ", ".join(map(str, seeds)) + ")", ""]
    for key in summary_keys(summary):
        meta = next(e[key]["meta"] for ms in summary.values() for e in ms.values() if key in e)
        arrow = "higher is better" if meta["higher_is_better"] else "lower is better"
        lines += [f"## {key} ({arrow})", "", f"R[t, i] = {meta['formula']}; features: {meta['features']}.", "",
                  "| benchmark | method | plasticity P | worst R[t,t] | final A | forgetting F "
                  "| concepts 1-5 just learned | concepts 1-5 after last task |",
                  "|---|---|---|---|---|---|---|---|"]
        for b, methods in summary.items():
            for m, entry in methods.items():
                if key not in entry:
                    continue
                e = entry[key]
                cells = [NA if is_missing(e[k]) else f"{e[k]['mean']:.3f} +- {e[k]['std']:.3f}" for k in SUMMARY_KEYS]
                lines.append(f"| {b} | {m} | " + " | ".join(cells) + " |")
        lines += [""] + missing_notes(summary, key)
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
            if "missing" in summary[b][m][key]:
                missing_text(ax, summary[b][m][key]["missing"], fontsize=6)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def missing_text(ax, why: str, fontsize: float) -> None:
    """"n/a: <why>" (wrapped) across the bottom of a panel whose metric has undefined cells."""
    import textwrap

    ax.text(0.5, 0.03, textwrap.fill(f"{NA}: {why}", 45), transform=ax.transAxes, ha="center", va="bottom",
            fontsize=fontsize, color="tab:red")
