"""Figures drawn from files only (plotting never reruns compute):

* concept curves: for every concept i, its metric R[t, i] over the tasks t >= i (seed mean), one panel
  per benchmark and method, one figure per metric key;
* R heatmaps: the seed-mean matrix R[t, i] of every method, one figure per benchmark and metric key;
* C-LoRA's plasticity question (Jha et al., ICLR 2025): per task t the norm of the new update
  ||s B_t A_t||_F (mean over the adapted K/V matrices, from runs/.../task_XX/metrics.json) for C-LoRA
  and LoRA (sequential), C-LoRA's raw penalty
  L_forget = sum_layers || |acc_t| * (s B_t A_t) ||_F^2 at every training step (runs/.../log.json), and
  the just-learned accuracy R[t, t] of both.
A metric with cells undefined for their concept (summary.py: ``missing``, ``undefined``) shows "n/a"
in those heatmap cells and the reason in the panel; skipped cells stay blank.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np

from continual_diffusion.metrics.continual import concept_curve
from continual_diffusion.stages.report import method_name
from continual_diffusion.stages.report.summary import NA, missing_text
from continual_diffusion.stages.report.summary import summary_keys as metric_keys
from continual_diffusion.utils import layout
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.io import atomic_directory

SAVE = {"dpi": 100, "metadata": {"Software": None}}  # no version string: reruns are byte-identical


def adapter_methods() -> dict[str, bool]:
    """Methods whose tasks log adapter norms (the LoRA-type plots), sorted, -> whether they log a penalty too:
    the class facts ``adapter_history`` / ``penalised`` of ``methods.METHODS`` (imported only here: torch)."""
    from continual_diffusion.methods import METHODS

    return {m: METHODS[m].penalised for m in sorted(METHODS) if METHODS[m].adapter_history}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def concept_curves(summary: dict, key: str, path: Path) -> None:
    plt = _pyplot()
    benchmarks = list(summary)
    methods = list(next(iter(summary.values())))
    fig, axes = plt.subplots(len(benchmarks), len(methods), figsize=(2.6 * len(methods), 2.4 * len(benchmarks)),
                             squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab10")
    for row, b in enumerate(benchmarks):
        for col, m in enumerate(methods):
            ax = axes[row][col]
            ax.set_title(f"{b}\n{method_name(m)}", fontsize=7)
            ax.tick_params(labelsize=6)
            if row == len(benchmarks) - 1:
                ax.set_xlabel("after task", fontsize=7)
            if col == 0:
                ax.set_ylabel(key, fontsize=7)
            if key not in summary[b].get(m, {}):
                continue
            r = np.asarray(summary[b][m][key]["R_mean"], dtype=float)
            for i in range(r.shape[0]):
                tasks, values, gaps = concept_curve(r, i + 1)  # dotted: cells skipped by the evaluation schedule
                ax.plot(tasks, values, marker="o", ms=2, lw=1, ls=":" if gaps else "-", color=cmap(i % 10),
                        label=f"concept {i + 1}")
            if "missing" in summary[b][m][key]:
                missing_text(ax, summary[b][m][key]["missing"], fontsize=5)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(10, len(labels)) or 1, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, **SAVE)
    plt.close(fig)


def heatmaps(summary: dict, benchmark: str, key: str, path: Path) -> None:
    plt = _pyplot()
    methods = [m for m in summary[benchmark] if key in summary[benchmark][m]]
    cols = min(3, len(methods))
    rows = -(-len(methods) // cols)
    meta = summary[benchmark][methods[0]][key]["meta"]
    mats = [np.asarray(summary[benchmark][m][key]["R_mean"], dtype=float) for m in methods]
    finite = np.concatenate([x[np.isfinite(x)] for x in mats])
    if not finite.size:  # every cell undefined: an empty scale
        vmin, vmax = 0.0, 1.0
    else:
        vmin, vmax = (0.0, 1.0) if finite.min() >= 0 and finite.max() <= 1 and meta["higher_is_better"] else (
            float(finite.min()), float(finite.max()))
    biggest = float(np.abs(finite).max()) if finite.size else 0.0
    # small values (e.g. MMD ~ 1e-3): annotate them x 10^k so two digits fit in a cell
    scale = 1.0 if biggest == 0.0 or biggest >= 0.1 else 10.0 ** (1 - int(np.floor(np.log10(biggest))))
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.0 * rows), squeeze=False)
    cmap = "viridis" if meta["higher_is_better"] else "viridis_r"
    for ax in axes.flat[len(methods):]:
        ax.axis("off")
    for ax, m, r in zip(axes.flat, methods, mats):
        entry = summary[benchmark][m][key]
        undefined = {tuple(cell) for cell in entry.get("undefined", [])}
        im = ax.imshow(np.ma.masked_invalid(r), vmin=vmin, vmax=vmax, cmap=cmap)
        n = r.shape[0]
        ax.set_xticks(range(n), [str(i + 1) for i in range(n)], fontsize=6)
        ax.set_yticks(range(n), [str(t + 1) for t in range(n)], fontsize=6)
        ax.set_xlabel("concept i", fontsize=7)
        ax.set_ylabel("after task t", fontsize=7)
        ax.set_title(method_name(m), fontsize=8)
        if n <= 10:
            for t in range(n):
                for i in range(t + 1):
                    if np.isfinite(r[t, i]):
                        level = (r[t, i] - vmin) / ((vmax - vmin) or 1.0)
                        dark = level < 0.6 if meta["higher_is_better"] else level > 0.4
                        ax.text(i, t, f"{r[t, i] * scale:.2f}" if scale == 1 else f"{r[t, i] * scale:.0f}",
                                ha="center", va="center", fontsize=5, color="white" if dark else "black")
                    elif (t + 1, i + 1) in undefined:
                        ax.text(i, t, NA, ha="center", va="center", fontsize=5, color="tab:red")
        if "missing" in entry:  # in the empty upper triangle
            ax.text(0.98, 0.98, textwrap.fill(f"{NA}: {entry['missing']}", 32), transform=ax.transAxes,
                    ha="right", va="top", fontsize=4.5, color="tab:red")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label=key)
    note = "" if scale == 1 else f"; cell values x {scale:.0e}"
    fig.suptitle(f"{benchmark}: R[t, i] of {key} ({'higher' if meta['higher_is_better'] else 'lower'} is better{note})",
                 fontsize=9)
    fig.savefig(path, **SAVE)
    plt.close(fig)


def _read_json(path: Path):
    if not path.exists():
        raise PipelineError(f"{path}: missing (run the train stage)")
    return json.loads(path.read_text())


def adapter_history(runs: Path, benchmark: str, method: str, seed: int, tasks: int) -> dict:
    """Per task: mean / max of ||s B_t A_t||_F over the K/V matrices, and the per-step raw penalty."""
    chain = layout.chain_dir(runs, benchmark, method, seed)
    norm_mean, norm_max, penalty, penalty_mean = [], [], [], []
    for t in range(1, tasks + 1):
        folder = layout.task_dir(chain, t)
        metrics = _read_json(folder / "metrics.json")
        if "delta_norm_mean" not in metrics:
            raise PipelineError(f"{folder / 'metrics.json'}: no delta_norm_mean (not a LoRA-type method)")
        norm_mean.append(float(metrics["delta_norm_mean"]))
        norm_max.append(float(metrics["delta_norm_max"]))
        steps = [float(e.get("forget_raw", 0.0)) for e in _read_json(folder / "log.json")]
        penalty.append(steps)
        penalty_mean.append(float(np.mean(steps)) if steps else 0.0)
    return {"norm_mean": norm_mean, "norm_max": norm_max, "penalty": penalty, "penalty_mean": penalty_mean}


def clora_plasticity(histories: dict, summary: dict, key: str, path: Path) -> None:
    plt = _pyplot()
    benchmarks = sorted({b for b, _, _ in histories})
    fig, axes = plt.subplots(len(benchmarks), 3, figsize=(11, 2.8 * len(benchmarks)), squeeze=False)
    penalised = adapter_methods()
    styles = {True: ("tab:blue", "-"), False: ("tab:orange", "--")}  # C-LoRA, LoRA (sequential)
    for row, b in enumerate(benchmarks):
        ax_norm, ax_pen, ax_diag = axes[row]
        for (hb, m, s), h in sorted(histories.items()):
            if hb != b:
                continue
            color, ls = styles.get(penalised.get(m), ("tab:gray", ":"))
            tasks = np.arange(1, len(h["norm_mean"]) + 1)
            label = f"{method_name(m)} seed {s}"
            ax_norm.plot(tasks, h["norm_mean"], marker="o", ms=3, color=color, ls=ls, label=label)
            ax_norm.fill_between(tasks, h["norm_mean"], h["norm_max"], color=color, alpha=0.12)
            r = np.asarray(summary[b][m][key]["R_per_seed"][summary[b][m]["seeds"].index(s)], dtype=float)
            ax_diag.plot(tasks, np.diag(r), marker="o", ms=3, color=color, ls=ls, label=label)
            if penalised.get(m):
                steps = np.concatenate(h["penalty"])
                x = np.arange(1, steps.size + 1) / max(1, len(h["penalty"][0]))
                ax_pen.plot(x + 1, np.where(steps > 0, steps, np.nan), lw=0.6, color=color, label=label)
        ax_norm.set_title(f"{b}: ||s B_t A_t||_F per task (mean, band to max)", fontsize=8)
        ax_norm.set_xlabel("task t", fontsize=7)
        ax_pen.set_title(f"{b}: C-LoRA raw penalty per step", fontsize=8)
        ax_pen.set_xlabel("task (steps within a task spread over [t, t+1))", fontsize=7)
        ax_pen.set_yscale("log")
        ax_diag.set_title(f"{b}: just learned R[t, t] ({key})", fontsize=8)
        ax_diag.set_xlabel("task t", fontsize=7)
        if summary[b][next(iter(summary[b]))][key]["meta"]["higher_is_better"]:
            ax_diag.set_ylim(-0.05, 1.05)
        for ax in axes[row]:
            ax.tick_params(labelsize=6)
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, **SAVE)
    plt.close(fig)


def write_figures(summary: dict, out: Path, runs: Path | None = None, seeds: list[int] | None = None,
                  n_tasks: dict | None = None, key: str = "accuracy_closed") -> list[str]:
    """Every figure into ``out`` (atomically); returns the file names written."""
    with atomic_directory(out) as tmp:
        for metric in metric_keys(summary):
            concept_curves(summary, metric, tmp / f"concept_curves_{metric}.png")
            for b in summary:
                heatmaps(summary, b, metric, tmp / f"heatmap_{b}_{metric}.png")
        penalised = adapter_methods()
        lora_methods = [m for m in penalised if all(m in summary[b] for b in summary)]
        if runs is not None and any(penalised[m] for m in lora_methods):
            if key not in metric_keys(summary):
                key = metric_keys(summary)[0]
            histories = {(b, m, s): adapter_history(runs, b, m, s, n_tasks[b])
                         for b in summary for m in lora_methods for s in seeds}
            clora_plasticity(histories, summary, key, tmp / "clora_plasticity.png")
        return sorted(p.name for p in tmp.iterdir())
