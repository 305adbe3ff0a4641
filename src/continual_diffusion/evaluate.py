"""Evaluation after task t of a chain: sample every concept i <= t and score it with the evaluator.

Writes ``results/<profile>/<benchmark>/<method>/seed_<s>/task_XX/``:
  scores.json   R[t, i] for i <= t: identity accuracy_i = (1/N) sum_j [argmax_k p(k | x_ij) = i]
                over all classes including "other" (open set: a sample that looks like no task
                concept counts as wrong), accuracy_closed_i = the same with the argmax over the task
                concepts only (closed set: which of the concepts is it most like), other_rate_i,
                the mean probability of the right class (N = evaluation.samples_per_concept), and
                the evaluator's own held-out accuracy (the ceiling the numbers are read against)
  samples.png   every scored sample, one row per concept (row i = concept i)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .chain import build_model, restore_chain
from .errors import PipelineError
from .evaluator import load_evaluator, predict
from .io_utils import atomic_directory, json_text
from .methods import make_method
from .sampling import generate, grid

log = logging.getLogger(__name__)


def evaluate_task(cfg: dict, benchmark: str, method_name: str, seed: int, task: int, base: Path, runs: Path,
                  evaluator: Path, out: Path) -> dict:
    torch.set_num_threads(cfg["torch_threads"])
    ev = cfg["evaluation"]
    started = time.perf_counter()
    net, report = load_evaluator(evaluator)
    if task > len(report["classes"]) - 1:
        raise PipelineError(f"{evaluator}: evaluator knows {len(report['classes']) - 1} concepts, task {task} asked")
    model = build_model(base)
    method = make_method(method_name, cfg["methods"][method_name])
    method.prepare(model)
    restore_chain(model, method, runs, task)
    method.prepare_inference()
    concepts = list(range(1, task + 1))
    samples = generate(model, concepts, ev["samples_per_concept"], seed=seed, steps=ev["inference_steps"],
                       guidance=ev["guidance_scale"], batch_size=ev["batch_size"], scheduler=ev["scheduler"],
                       desc=f"sample {method_name} after task {task}")
    scores = {}
    for i in concepts:
        probs = predict(net, samples[i])
        label = i - 1  # evaluator class k = concept of task k + 1
        closed = probs[:, :-1].argmax(dim=1)  # among the task concepts only ("other" excluded)
        scores[str(i)] = {
            "accuracy": float((probs.argmax(dim=1) == label).float().mean()),
            "accuracy_closed": float((closed == label).float().mean()),
            "other_rate": float((probs.argmax(dim=1) == probs.shape[1] - 1).float().mean()),
            "p_true": float(probs[:, label].mean()),
            "predicted": [report["classes"][k] for k in probs.argmax(dim=1).tolist()],
        }
    result = {
        "benchmark": benchmark, "method": method_name, "seed": seed, "after_task": task,
        "metric": "identity accuracy: fraction of samples of concept i classified as concept i",
        "samples_per_concept": ev["samples_per_concept"], "evaluator_heldout_accuracy": report["heldout_accuracy"],
        "concepts": scores,
    }
    with atomic_directory(out) as tmp:
        Image.fromarray(grid([samples[i] for i in concepts])).save(tmp / "samples.png")
        (tmp / "scores.json").write_text(json_text(result))
    log.info("evaluated %s/%s/seed_%d after task %d in %.1f s", benchmark, method_name, seed, task,
             time.perf_counter() - started)
    return result


def accuracy_matrix(results: Path, tasks: int, key: str = "accuracy") -> np.ndarray:
    """R[t-1, i-1] = ``key`` (accuracy | accuracy_closed) of concept i after task t (NaN above the diagonal)."""
    import json

    r = np.full((tasks, tasks), np.nan)
    for t in range(1, tasks + 1):
        data = json.loads((Path(results) / f"task_{t:02d}" / "scores.json").read_text())
        for i, s in data["concepts"].items():
            r[t - 1, int(i) - 1] = s[key]
    return r
