"""Stage ``train``: one task of one chain (``cdiff train-task``), one Snakemake job per benchmark, method, seed
and task.

The job loads the base model, restores tasks 1..t-1 of its chain (``core/chain.py``: they are inputs of its
Snakemake job, so a rerun of task t never retrains earlier tasks), trains task t with the shared loop
(``core/training.py``) and writes ``runs/<profile>/<benchmark>/<method>/seed_<s>/task_XX/`` (``utils/layout.py``).
A task that another method's chain trains identically is copied from it (``stages/shared_tasks.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from continual_diffusion.core.chain import build_model, restore_chain
from continual_diffusion.core.training import TrainConfig, encode_latents, train_task
from continual_diffusion.data.task_images import load_task_images
from continual_diffusion.methods import MethodEnv, make_method
from continual_diffusion.models.tokens import add_concept_token, concept_token, prompt_for
from continual_diffusion.utils.config import chain_settings
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.io import atomic_directory, json_text
from continual_diffusion.utils.layout import TASK_FILE, concept_task_dir, profile_root, task_dir
from continual_diffusion.utils.runtime import resolve
from continual_diffusion.utils.seeds import token_generator

log = logging.getLogger(__name__)


def job_config(cfg: dict, benchmark: str, method_name: str, seed: int, task: int, base: Path) -> dict:
    """The ``config.json`` of a task folder: the resolved configuration the job ran with."""
    settings = chain_settings(cfg, benchmark, method_name)
    base_manifest = json.loads((Path(base) / "base.json").read_text())
    config = {"benchmark": benchmark, "method": method_name, "method_params": settings["method"],
              "seed": seed, "task": task, "prompt": prompt_for(concept_token(task)), "train": settings["train"],
              "torch_threads": settings["torch_threads"], "profile": cfg["profile"], "base": base_manifest.get("source")}
    runtime = resolve(cfg.get("runtime")).record()
    if runtime is not None:  # the CPU in fp32 records nothing (runtime.py)
        config["runtime"] = runtime
    return config


SHARED_FILES = (TASK_FILE, "log.json", "metrics.json")


def copy_task(cfg: dict, benchmark: str, method_name: str, seed: int, task: int, base: Path, runs: Path,
              source_runs: Path) -> None:
    """Write task ``task`` of ``method_name``'s chain as a copy of the same task of another method's chain
    that trains the same thing (``shared_tasks.source_method``): its tensors, log and metrics, with this
    job's own ``config.json``. Refuses a source that is not the shared job this configuration names."""
    from continual_diffusion.stages.shared_tasks import source_method

    source = task_dir(source_runs, task)
    expected = source_method(cfg, benchmark, method_name, task)
    source_config_path = source / "config.json"
    if not source_config_path.exists():
        raise PipelineError(f"{source_config_path}: the shared task to copy is missing (train it first)")
    source_config = json.loads(source_config_path.read_text())
    config = job_config(cfg, benchmark, method_name, seed, task, base)
    if expected is None or source_config.get("method") != expected:
        raise PipelineError(f"{source}: not the job that task {task} of {benchmark}/{method_name} shares "
                            f"(expected {expected or 'none: the task trains itself'}, "
                            f"found {source_config.get('method')!r})")
    mismatch = [k for k in config if k not in ("method", "method_params") and source_config.get(k) != config[k]]
    if mismatch:
        raise PipelineError(f"{source_config_path}: written with other settings ({', '.join(mismatch)}); "
                            "rerun that task first")
    out = task_dir(runs, task)
    with atomic_directory(out) as tmp:
        for name in SHARED_FILES:
            shutil.copyfile(source / name, tmp / name)
        (tmp / "config.json").write_text(json_text(config))
    log.info("task %d of %s/%s/seed_%d: copied from %s (the same training)", task, benchmark, method_name, seed,
             source_config["method"])


def run_task(cfg: dict, benchmark: str, method_name: str, seed: int, task: int, data_root: Path, base: Path,
             runs: Path, checkpoints: Path) -> dict:
    """Train task ``task`` of one chain and write its folder under ``runs`` (atomically)."""
    torch.set_num_threads(cfg["torch_threads"])
    settings = chain_settings(cfg, benchmark, method_name)
    train = settings["train"]
    started = time.perf_counter()
    runtime = resolve(cfg.get("runtime"))
    model = build_model(base, runtime)
    method = make_method(method_name, settings["method"])
    method.prepare(model, MethodEnv(benchmark=benchmark, data_root=Path(data_root), seed=seed))
    restore_chain(model, method, runs, task - 1)
    token = concept_token(task)
    token_id = add_concept_token(model.tokenizer, model.text_encoder, token, token_generator(seed, task),
                                 init_norm=train["token_init_norm"])
    images = load_task_images(concept_task_dir(data_root, benchmark, task))
    latents = encode_latents(model.vae, images, chunk=None if runtime.device.type == "cpu" else 8)
    tc = TrainConfig(steps=int(train["steps"]), batch_size=int(train["batch_size"]),
                     token_lr=float(train["token_lr"]), seed=seed, checkpoint_every=int(cfg["train"]["checkpoint_every"]))
    base_manifest = (Path(base) / "base.json").read_text()
    config = job_config(cfg, benchmark, method_name, seed, task, base)
    fingerprint = {**config, "base_manifest_sha256": hashlib.sha256(base_manifest.encode()).hexdigest(),
                   "runtime": {"device": runtime.device.type, "dtype": runtime.dtype}}
    workdir = task_dir(checkpoints, task)
    step_log = train_task(model, method, task, token_id, prompt_for(token), latents, tc, workdir,
                          fingerprint=fingerprint)
    state = method.end_task(task)
    tensors = {f"method.{k}": v.to("cpu").contiguous() for k, v in state.items()}
    tensors["token.row"] = model.text_encoder.get_input_embeddings().weight.detach()[token_id].to("cpu", copy=True)
    metrics = {"task": task, "steps": tc.steps, "images": int(images.shape[0]),
               "final_loss_mean_last50": sum(e["diffusion"] for e in step_log[-50:]) / max(len(step_log[-50:]), 1)}
    metrics.update(method.task_metrics())
    out = task_dir(runs, task)
    with atomic_directory(out) as tmp:
        save_file(tensors, str(tmp / TASK_FILE))
        (tmp / "config.json").write_text(json_text(config))
        (tmp / "log.json").write_text(json_text(step_log))
        (tmp / "metrics.json").write_text(json_text(metrics))
    shutil.rmtree(workdir, ignore_errors=True)
    log.info("task %d of %s/%s/seed_%d done in %.1f s", task, benchmark, method_name, seed, time.perf_counter() - started)
    return metrics


def check_chain(cfg: dict, benchmark: str, method: str, task: int, **_) -> None:
    """A one-line error unless ``method`` is one of train.methods and ``task`` one of the benchmark's
    (the chain subcommands, train-task and evaluate-task, before they claim a GPU)."""
    if method not in cfg["train"]["methods"]:
        raise PipelineError(f"--method {method}: not in train.methods ({', '.join(cfg['train']['methods'])})")
    n = cfg["data"][benchmark]["n_tasks"]
    if not 1 <= task <= n:
        raise PipelineError(f"--task {task}: outside 1..{n} (data.{benchmark}.n_tasks)")


def run_train_task(cfg: dict, benchmark: str, method: str, seed: int, task: int, base: Path, runs: Path,
                   checkpoints: Path, same_as: Path | None) -> None:
    """``cdiff train-task``: train one task of one chain, or with ``same_as`` copy it from that other
    method's chain (train.share_identical_tasks; shared_tasks.py)."""
    if same_as is not None:
        copy_task(cfg, benchmark, method, seed, task, base, runs, same_as)
        return
    run_task(cfg, benchmark, method, seed, task, profile_root("data", cfg["profile"]), base, runs, checkpoints)
