"""Textual Inversion (Gal et al., 2022): only the concept token's embedding row trains (the shared loop
trains it for every method); the U-Net, the VAE and the rest of the text encoder stay the base model.
Nothing is saved besides the token row, so nothing of an earlier concept can be overwritten."""

from __future__ import annotations

import torch

from continual_diffusion.methods.base import ContinualMethod, TaskContext, register


@register
class TextualInversion(ContinualMethod):
    name = "textual_inversion"
    label = "Textual Inversion"

    @classmethod
    def parameter_cost(cls, params: dict, unet) -> tuple[int, int]:
        return 0, 0  # the token only

    def prepare(self, model, env=None) -> None:
        super().prepare(model, env)
        model.unet.requires_grad_(False)

    def restore_task(self, task: int, state: dict[str, torch.Tensor]) -> None:
        pass

    def begin_task(self, ctx: TaskContext) -> None:
        pass

    def parameter_groups(self) -> list[dict]:
        return []

    def end_task(self, task: int) -> dict[str, torch.Tensor]:
        return {}
