"""Post-sequence sample grids (the paper's Figure 4 layout), from stored samples only.

One figure per benchmark and seed: one row per concept of ``report.grid_tasks`` (default 1, 6, 10),
one column block of real images (the concept's task images) first, then one block per method with
that method's samples of the concept after the LAST task (kept by the evaluation as
``samples.safetensors``), ``report.grid_images`` images per block. Written as PNG and PDF; no
model is loaded here, so re-plotting never reruns compute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from continual_diffusion.data.task_images import concept_images
from continual_diffusion.utils import layout
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.io import atomic_directory

SAMPLES = "samples.safetensors"  # written by evaluate.py after the last task
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}


def strip(images: np.ndarray, count: int, pad: int = 2) -> np.ndarray:
    """The first ``count`` images side by side, white padding around each."""
    chosen = images[:count]
    n, h, w = chosen.shape[:3]
    out = np.full((h + 2 * pad, n * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for j, image in enumerate(chosen):
        out[pad:pad + h, pad + j * (w + pad):pad + j * (w + pad) + w] = image
    return out


def check_tasks(tasks: list[int], n_tasks: int, benchmark: str) -> None:
    bad = [t for t in tasks if not 1 <= t <= n_tasks]
    if bad:
        raise PipelineError(f"report.grid_tasks: task {bad[0]} outside 1..{n_tasks} (data.{benchmark}.n_tasks)")


def final_samples(results_root: Path, benchmark: str, method: str, seed: int, n_tasks: int) -> dict[int, np.ndarray]:
    path = layout.task_dir(layout.chain_dir(results_root, benchmark, method, seed), n_tasks) / SAMPLES
    if not path.exists():
        raise PipelineError(f"{path}: samples of the last task missing (run the evaluate stage)")
    return {int(k.removeprefix("concept_")): v for k, v in load_file(str(path)).items()}


def plot_grid(blocks: dict[str, dict[int, np.ndarray]], tasks: list[int], count: int, title: str, out_stem: Path) -> None:
    """``blocks``: {column title: {concept: N x H x W x 3 uint8}}; rows = ``tasks``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(blocks)
    fig, axes = plt.subplots(len(tasks), len(names), figsize=(1.1 * count * len(names) + 0.6, 1.25 * len(tasks) + 0.6),
                             squeeze=False)
    for row, task in enumerate(tasks):
        for col, name in enumerate(names):
            ax = axes[row][col]
            ax.imshow(strip(blocks[name][task], count), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0:
                ax.set_ylabel(f"concept {task}\n(task {task})", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_stem.with_suffix(".png"), dpi=100, metadata={"Software": None})
    fig.savefig(out_stem.with_suffix(".pdf"), metadata=PDF_METADATA)
    plt.close(fig)


def write_grids(results_root: Path, data_root: Path, benchmarks: list[str], methods: list[str], seeds: list[int],
                n_tasks: dict, tasks: list[int], count: int, out: Path) -> None:
    """grid_<benchmark>_seed_<s>.png/.pdf under ``out`` for every benchmark and seed (atomically)."""
    with atomic_directory(out) as tmp:
        for b in benchmarks:
            check_tasks(tasks, n_tasks[b], b)
            real = {t: concept_images(data_root, b, t) for t in tasks}
            for s in seeds:
                blocks = {"real images": real}
                for m in methods:
                    blocks[m] = final_samples(results_root, b, m, s, n_tasks[b])
                plot_grid(blocks, tasks, count, f"{b}: samples after task {n_tasks[b]} (seed {s})",
                          tmp / f"grid_{b}_seed_{s}")
