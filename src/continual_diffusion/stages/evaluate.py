"""Evaluation after task t of a chain: sample the concepts i <= t of the schedule and score them.

Schedule (``evaluation.schedule``): ``full`` scores every concept i <= t (the lower triangle of R);
``sparse`` scores concept t (R[t, t]) and concept 1 (R[t, 1]) after every task and every concept after
the last task T (R[T, i]): the cells plasticity P, final average A, forgetting F, the concept-1 curve,
the figures and the grids read. Cells it skips are empty (NaN) in R.

Writes ``results/<profile>/<benchmark>/<method>/seed_<s>/task_XX/``:
  scores.json        R[t, i] for i <= t of every metric of ``evaluation.metrics`` (metrics/suite.py),
                     with each metric's formula, direction and feature space under ``metrics``, the
                     identity evaluator's held-out accuracy (the ceiling the numbers are read against)
                     and the evaluation's wall time
  samples.png        every scored sample, one row per scored concept (in concept order, as in scores.json)
  samples.safetensors  after the last task only: the scored samples themselves (uint8, key
                     ``concept_<i>``), kept for the post-sequence grids (report stage)
Generation is batched across concepts; image j of concept i has its own CPU seed (sampling.py), so a
method that samples some concepts with another model state (``inference_groups``, e.g. the offline
upper bound's one model per concept) gets the same noise for them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from continual_diffusion.core.chain import build_model, restore_chain
from continual_diffusion.core.sampling import generate, grid
from continual_diffusion.data.task_images import concept_images
from continual_diffusion.methods import MethodEnv, make_method
from continual_diffusion.metrics.suite import MetricSuite
from continual_diffusion.stages.report.grids import SAMPLES
from continual_diffusion.utils import layout
from continual_diffusion.utils.config import method_params
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.io import atomic_directory, json_text
from continual_diffusion.utils.runtime import resolve

log = logging.getLogger(__name__)

SCHEDULES = ("sparse", "full")


def scheduled_concepts(task: int, n_tasks: int, schedule: str) -> list[int]:
    """The concepts scored after ``task`` of an ``n_tasks`` sequence under ``schedule`` (module docstring)."""
    if schedule not in SCHEDULES:
        raise PipelineError(f"evaluation.schedule: unknown schedule {schedule!r} ({' | '.join(SCHEDULES)})")
    if not 1 <= task <= n_tasks:
        raise PipelineError(f"task {task} is outside the sequence 1..{n_tasks}")
    if schedule == "full" or task == n_tasks:
        return list(range(1, task + 1))
    return sorted({1, task})


def evaluate_task(cfg: dict, benchmark: str, method_name: str, seed: int, task: int, base: Path, runs: Path,
                  evaluator: Path, out: Path, data_root: Path) -> dict:
    torch.set_num_threads(cfg["torch_threads"])
    ev = cfg["evaluation"]
    started = time.perf_counter()
    runtime = resolve(cfg.get("runtime"))
    suite = MetricSuite(cfg, benchmark, evaluator, device=runtime.device)
    if suite.classes and task > len(suite.classes) - 1:
        raise PipelineError(f"{evaluator}: evaluator knows {len(suite.classes) - 1} concepts, task {task} asked")
    model = build_model(base, runtime)
    method = make_method(method_name, method_params(cfg, benchmark, method_name))
    method.prepare(model, MethodEnv(benchmark=benchmark, data_root=Path(data_root), seed=seed))
    restore_chain(model, method, runs, task)
    n_tasks = cfg["data"][benchmark]["n_tasks"]
    concepts = scheduled_concepts(task, n_tasks, ev["schedule"])
    samples: dict[int, np.ndarray] = {}
    for group in method.inference_groups(concepts):
        method.prepare_inference(group)
        samples.update(generate(model, group, ev["samples_per_concept"], seed=seed, steps=ev["inference_steps"],
                                guidance=ev["guidance_scale"], batch_size=ev["batch_size"],
                                scheduler=ev["scheduler"], desc=f"sample {method_name} after task {task}"))
    sampled = time.perf_counter()
    scores = {str(i): suite.score(i, samples[i], concept_images(data_root, benchmark, i)) for i in concepts}
    result = {
        "benchmark": benchmark, "method": method_name, "seed": seed, "after_task": task,
        "metrics": suite.describe(),
        "samples_per_concept": ev["samples_per_concept"],
        "schedule": ev["schedule"],
        "evaluator_heldout_accuracy": suite.manifest.get("heldout_accuracy"),
        "evaluator_heldout_accuracy_vae_roundtrip": suite.manifest.get("heldout_accuracy_vae_roundtrip"),
        "concepts": scores,
    }
    if runtime.record() is not None:  # the CPU in fp32 records nothing (runtime.py)
        result["runtime"] = runtime.record()
    last = task == n_tasks
    with atomic_directory(out) as tmp:
        Image.fromarray(grid([samples[i] for i in concepts])).save(tmp / "samples.png")
        if last:
            save_file({f"concept_{i}": torch.from_numpy(samples[i]).contiguous() for i in concepts}, str(tmp / SAMPLES))
        (tmp / "scores.json").write_text(json_text(result))
    log.info("evaluated %s/%s/seed_%d after task %d in %.1f s (sampling %.1f s, scoring %.1f s)", benchmark,
             method_name, seed, task, time.perf_counter() - started, sampled - started, time.perf_counter() - sampled)
    return result


def run_evaluate_task(cfg: dict, benchmark: str, method: str, seed: int, task: int, base: Path, runs: Path,
                      evaluator: Path, out: Path) -> dict:
    """``cdiff evaluate-task``: sample and score every concept the chain learned up to ``task``."""
    data_root = layout.profile_root("data", cfg["profile"])
    return evaluate_task(cfg, benchmark, method, seed, task, base, runs, evaluator, out, data_root)
