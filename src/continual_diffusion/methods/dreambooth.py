"""DreamBooth (Ruiz et al., 2023), sequential: every U-Net weight trains, task after task, with the
concept token strategy of the other methods ("a photo of V*_t", the token trains too).

Prior preservation (``prior_weight`` > 0; 0 by default, the replay-free setting): before each task the
model as it is then generates ``prior_images`` images of ``prior_prompt`` (e.g. "a photo of a person")
and every step adds
    prior_weight * L_diffusion(batch of those images, prior_prompt)
Saved per task: the whole U-Net state (``unet.<parameter>``), what DreamBooth stores per concept.
"""

from __future__ import annotations

import torch

from .base import ContinualMethod, TaskContext, register
from . import generated


@register
class DreamBoothSequential(ContinualMethod):
    name = "dreambooth"
    code_modules = (generated,)

    def prepare(self, model, env=None) -> None:
        super().prepare(model, env)
        model.unet.requires_grad_(False)

    def _params(self) -> dict[str, torch.nn.Parameter]:
        return dict(self.model.unet.named_parameters())

    def restore_task(self, task: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in self._params().items():
                p.copy_(state[f"unet.{name}"].to(p.dtype))

    def begin_task(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.prior = None
        weight = float(self.params.get("prior_weight", 0.0))
        if weight > 0:
            prompt = str(self.params["prior_prompt"])
            self.prior = generated.GeneratedSet.generate(
                self.model, {0: prompt}, int(self.params["prior_images"]), self.env.seed, ctx.task,
                steps=int(self.params.get("prior_steps", 20)), guidance=float(self.params.get("prior_guidance", 5.0)))
        self.model.unet.requires_grad_(True)

    def parameter_groups(self) -> list[dict]:
        return [{"params": list(self._params().values()), "lr": float(self.params["lr"]),
                 "weight_decay": float(self.params.get("weight_decay", 0.0))}]

    def extra_losses(self) -> dict[str, torch.Tensor]:
        if self.prior is None:
            return {}
        latents, ids, _ = self.prior.draw(self.ctx.batch_size, self.ctx.generator)
        return {"prior": float(self.params["prior_weight"]) * self.ctx.loss(latents, ids)}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {f"unet.{n}": p.detach().clone().contiguous() for n, p in self._params().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self.restore_task(0, state)

    def end_task(self, task: int) -> dict[str, torch.Tensor]:
        self.model.unet.requires_grad_(False)
        return self.trainable_state()
