"""The task loop shared by every method: one concept, one token, N steps, checkpoints, logs.

Per step (``batch_size`` images of the task, all drawn from one seeded CPU generator):
    z0 = cached VAE latents (posterior mean x scaling factor), eps ~ N(0, I), t ~ U{0..T-1}
    z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps                  (the scheduler's add_noise)
    L_diffusion = || eps - unet(z_t, t, text_encoder("a photo of V*_t")) ||^2   (mean)
    L = L_diffusion + sum of the method's extra (weighted) terms (``diffusion_loss``, which methods
        reuse through ``TaskContext.loss`` for their own batches: replay, prior preservation, Fisher)
AdamW over the method's parameter groups plus the concept token's embedding row (other rows are
restored after every step). Every ``checkpoint_every`` steps the trainable tensors, the optimizer's
state, the generator's state and the log so far are written (safetensors + JSON, atomically); a
killed job restarted with the same arguments resumes there and ends bit-identical to an
uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from continual_diffusion.models.tokens import TokenRowTrainer
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.io import atomic_directory, json_text
from continual_diffusion.utils.progress import progress_bar
from continual_diffusion.utils.runtime import CPU_FP32, Runtime
from continual_diffusion.utils.seeds import task_generator

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"


@dataclass
class Model:
    tokenizer: object
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    unet: torch.nn.Module
    scheduler: object
    runtime: Runtime = CPU_FP32  # device and precision (runtime.py); the components are on its device


@dataclass
class TrainConfig:
    steps: int
    batch_size: int
    token_lr: float
    seed: int
    checkpoint_every: int


@dataclass
class TaskContext:
    """One task as the loop trains it: the method may draw extra batches with ``loss``."""

    task: int
    generator: torch.Generator  # the task's CPU generator (its state is checkpointed)
    latents: torch.Tensor  # the task's cached VAE latents
    prompt_ids: torch.Tensor  # 1 x L token ids of "a photo of V*_t"
    batch_size: int
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = field(repr=False)  # (z0, ids) -> L_diffusion


def encode_latents(vae, images: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """images in [-1, 1], N x 3 x H x W -> latents (posterior mean x scaling factor) on the VAE's device,
    no grad, in fp32 (never under autocast). ``chunk``: images per VAE call (None: all in one call, the
    CPU path; the GPU path encodes 512-px images 8 at a time to bound activation memory)."""
    device = next(vae.parameters()).device
    with torch.no_grad():
        if chunk is None:
            return vae.encode(images.to(device)).latent_dist.mean * vae.config.scaling_factor
        parts = [vae.encode(images[i:i + chunk].to(device)).latent_dist.mean for i in range(0, images.shape[0], chunk)]
        return torch.cat(parts) * vae.config.scaling_factor


def prompt_ids(tokenizer, prompts: list[str]) -> torch.Tensor:
    """Padded token ids (N x max_length) of ``prompts``."""
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def diffusion_loss(model: Model, z0: torch.Tensor, ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """L_diffusion = mean || eps - unet(sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, t, text_encoder(ids)) ||^2,
    eps ~ N(0, I) and t ~ U{0..T-1} drawn from ``generator`` (in that order); ``ids`` one row per latent.

    The draws are made on the CPU generator and then moved to the model's device (runtime.py), so every
    device sees the same numbers; the text encoder and U-Net run under the runtime's autocast (bf16 or
    none), the loss in fp32."""
    runtime = model.runtime
    noise = torch.randn(z0.shape, generator=generator)
    timesteps = torch.randint(0, model.scheduler.config.num_train_timesteps, (z0.shape[0],), generator=generator)
    z0, noise, timesteps, ids = (runtime.to_device(t) for t in (z0, noise, timesteps, ids))
    noisy = model.scheduler.add_noise(z0, noise, timesteps)
    with runtime.autocast():
        context = model.text_encoder(ids)[0]
        prediction = model.unet(noisy, timesteps, context).sample
    return torch.nn.functional.mse_loss(prediction.float(), noise.float())


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimizer's state as CPU tensors (copied straight to the host: no second copy on the device)."""
    state = optimizer.state_dict()
    tensors = {f"opt.{index}.{key}": value.detach().to("cpu", copy=True).contiguous()
               for index, entries in state["state"].items() for key, value in entries.items()}
    return tensors, {"param_groups": state["param_groups"]}


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(folder: Path, step: int, method, token: TokenRowTrainer, optimizer, generator, log,
                    fingerprint: dict | None = None) -> None:
    tensors = {f"method.{k}": v.to("cpu") for k, v in method.trainable_state().items()}
    tensors["token.row"] = token.row().to("cpu")
    tensors["generator.state"] = generator.get_state()
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    tensors.update(opt_tensors)
    with atomic_directory(folder) as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "progress.json").write_text(
            json_text({"step": step, "fingerprint": fingerprint, "optimizer": opt_meta, "log": log}))


def checkpoint_matches(folder: Path, fingerprint: dict | None) -> bool:
    """Whether the checkpoint in ``folder`` was written by a job with these settings."""
    meta = json.loads((folder / "progress.json").read_text())
    return meta.get("fingerprint") == json.loads(json_text(fingerprint))


def load_checkpoint(folder: Path, method, token: TokenRowTrainer, optimizer, generator) -> tuple[int, list]:
    tensors = load_file(str(folder / "state.safetensors"))
    meta = json.loads((folder / "progress.json").read_text())
    method.load_trainable_state({k.removeprefix("method."): v for k, v in tensors.items() if k.startswith("method.")})
    with torch.no_grad():
        token.weight[token.token_id] = tensors["token.row"].to(token.weight.device)
    generator.set_state(tensors["generator.state"])
    _load_optimizer(optimizer, tensors, meta["optimizer"])
    return int(meta["step"]), meta["log"]


def train_task(
    model: Model, method, task: int, token_id: int, prompt: str, latents: torch.Tensor, cfg: TrainConfig,
    workdir: Path, on_step: Callable[[int], None] | None = None, fingerprint: dict | None = None,
) -> list[dict]:
    """Train ``task``; returns the per-step log.

    ``workdir`` holds the resumable checkpoint. It is resumed only when it was written with the same
    ``fingerprint`` (the job's settings); a checkpoint of other settings (params edited after a killed
    run) is discarded with a warning, never mixed into this run.
    """
    generator = task_generator(cfg.seed, task)
    ids = prompt_ids(model.tokenizer, [prompt])
    if token_id not in ids[0].tolist():
        raise PipelineError(
            f"prompt {prompt!r} does not fit the tokenizer's {model.tokenizer.model_max_length} tokens: "
            "the concept token was cut"
        )
    model.text_encoder.requires_grad_(False)
    model.vae.requires_grad_(False)
    method.begin_task(TaskContext(task=task, generator=generator, latents=latents, prompt_ids=ids,
                                  batch_size=cfg.batch_size,
                                  loss=lambda z0, batch_ids: diffusion_loss(model, z0, batch_ids, generator)))
    token = TokenRowTrainer(model.text_encoder, token_id)
    optimizer = torch.optim.AdamW(
        method.parameter_groups() + [{"params": [token.weight], "lr": cfg.token_lr, "weight_decay": 0.0}]
    )
    checkpoint = workdir / CHECKPOINT
    start, log = 0, []
    if (checkpoint / "progress.json").exists() and not checkpoint_matches(checkpoint, fingerprint):
        logger.warning("%s: checkpoint written with other settings; starting the task from step 0", checkpoint)
        shutil.rmtree(checkpoint)
    if (checkpoint / "progress.json").exists():
        start, log = load_checkpoint(checkpoint, method, token, optimizer, generator)
    with progress_bar(total=cfg.steps, initial=start, desc=f"train {method.name} task {task}", unit="step") as bar:
        for step in range(start, cfg.steps):
            index = torch.randint(latents.shape[0], (cfg.batch_size,), generator=generator)
            diffusion = diffusion_loss(model, latents[index.to(latents.device)], ids.expand(cfg.batch_size, -1), generator)
            extras = method.extra_losses()
            loss = diffusion + sum(extras.values()) if extras else diffusion
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            token.restore_frozen_rows()
            entry = {"step": step + 1, "loss": float(loss.detach()), "diffusion": float(diffusion.detach())}
            entry.update({k: float(v.detach()) for k, v in extras.items()})
            entry.update(method.step_metrics())
            log.append(entry)
            bar.update(1)
            bar.set_postfix(loss=f"{entry['loss']:.4f}", refresh=False)  # shown at the throttled refreshes
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                save_checkpoint(checkpoint, step + 1, method, token, optimizer, generator, log, fingerprint)
            if on_step is not None:
                on_step(step + 1)
    model.text_encoder.get_input_embeddings().weight.requires_grad_(False)
    return log
