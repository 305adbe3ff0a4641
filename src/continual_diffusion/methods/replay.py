"""Deep generative replay (Shin et al., 2017) on sequential Custom Diffusion.

Before task t > 1 the model as it is after task t-1 generates ``replay_per_concept`` images of every
past concept i < t ("a photo of V*_i"; ``replay_steps`` DDIM steps, guidance ``replay_guidance``);
no real image of a past task is kept. Every training step adds a replay batch of ``replay_batch_size``
of those latents, drawn uniformly, with their own prompts:
    L = L_diffusion(task t batch) + replay_weight * L_diffusion(replay batch)
(the diffusion loss of ``training.diffusion_loss`` on both).
"""

from __future__ import annotations

import torch

from continual_diffusion.methods import generated
from continual_diffusion.methods.base import TaskContext, register
from continual_diffusion.methods.custom_diffusion import CustomDiffusionSequential
from continual_diffusion.models.tokens import concept_token, prompt_for


@register
class GenerativeReplay(CustomDiffusionSequential):
    name = "generative_replay"
    label = "Deep generative replay"
    required = ("replay_per_concept", "replay_steps", "replay_guidance")
    defaults = {"replay_batch_size": None, "replay_weight": 1.0}  # batch size None: train.batch_size
    code_modules = CustomDiffusionSequential.code_modules + (generated,)

    def begin_task(self, ctx: TaskContext) -> None:
        super().begin_task(ctx)
        self.replay = None
        self.last_replay_groups = torch.empty(0, dtype=torch.long)
        if ctx.task > 1:
            prompts = {i: prompt_for(concept_token(i)) for i in range(1, ctx.task)}
            self.replay = generated.GeneratedSet.generate(
                self.model, prompts, int(self.params["replay_per_concept"]), self.env.seed, ctx.task,
                steps=int(self.params["replay_steps"]), guidance=float(self.params["replay_guidance"]))

    def training_recipe(self, task: int) -> tuple | None:
        """Task 1 has nothing to replay: sequential Custom Diffusion's task 1."""
        return super().training_recipe(task) if task == 1 else None

    def extra_losses(self) -> dict[str, torch.Tensor]:
        if self.replay is None:
            return {}
        batch = self.params["replay_batch_size"]
        latents, ids, groups = self.replay.draw(int(self.ctx.batch_size if batch is None else batch), self.ctx.generator)
        self.last_replay_groups = groups
        return {"replay": float(self.params["replay_weight"]) * self.ctx.loss(latents, ids)}
