"""Drive a method through the shared loop on the tiny random model (seconds on CPU)."""

from __future__ import annotations

import torch

from continual_diffusion.core.training import TrainConfig, train_task
from continual_diffusion.methods import MethodEnv, make_method
from continual_diffusion.models.tokens import add_concept_token, concept_token, prompt_for
from tests.model_fixtures import task_latents, tiny_model

CFG = TrainConfig(steps=4, batch_size=2, token_lr=1e-2, seed=0, checkpoint_every=2)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def changed(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    return {n for n, p in module.named_parameters() if not torch.equal(p, before[n])}


def train_tasks(tmp_path, name: str, params: dict, tasks=(1, 2), model=None, token_init_norm="mean", cfg=CFG):
    """Train ``tasks`` in order (as the chain does, within one process); returns (model, method, states)."""
    model = model or tiny_model(tmp_path)
    method = make_method(name, params)
    method.prepare(model, MethodEnv(benchmark="faces", data_root=tmp_path, seed=0))
    states = {}
    for task in tasks:
        token = concept_token(task)
        token_id = add_concept_token(model.tokenizer, model.text_encoder, token, torch.Generator().manual_seed(task),
                                     init_norm=token_init_norm)
        train_task(model, method, task, token_id, prompt_for(token), task_latents(model, task), cfg,
                   tmp_path / f"work_{name}_{task}")
        states[task] = method.end_task(task)
    return model, method, states
