"""DreamBooth (Ruiz et al., 2023), sequential: every U-Net weight trains, task after task, with the
concept token strategy of the other methods ("a photo of V*_t", the token trains too).

Prior preservation (``prior_weight`` > 0; 0 by default, the replay-free setting): before each task the
model as it is then generates ``prior_images`` images of ``prior_prompt`` (e.g. "a photo of a person")
and every step adds
    prior_weight * L_diffusion(batch of those images, prior_prompt)
Saved per task (``store``): ``full`` (default) the whole U-Net state in fp32 (``unet.<parameter>``), what
DreamBooth stores per concept; ``delta_bf16`` the difference from the base U-Net in bf16
(``unet_delta.<parameter>``): half the bytes (1.7 GB instead of 3.4 GB per task for SD v1.x), restored as
    W_t = W_base + float(bf16(W_t - W_base))
whose rounding error is relative to the task's update, not to the weight (a bf16 copy of W_t itself would
round every weight by up to 2^-9 of its size, more than many updates of lr 5e-6). Training always runs on
the fp32 weights; checkpoints and saved states are copied straight to the host (no second U-Net on the GPU).
"""

from __future__ import annotations

import torch

from continual_diffusion.methods import generated
from continual_diffusion.methods.base import ContinualMethod, TaskContext, register
from continual_diffusion.models.sd_v1_architecture import parameter_costs
from continual_diffusion.utils.errors import PipelineError

STORES = ("full", "delta_bf16")


@register
class DreamBoothSequential(ContinualMethod):
    name = "dreambooth"
    label = "DreamBooth"
    required = ("lr",)
    # prior_images and prior_prompt are needed when prior_weight > 0
    defaults = {"weight_decay": 0.0, "prior_weight": 0.0, "prior_images": None, "prior_prompt": None,
                "prior_steps": 20, "prior_guidance": 5.0, "store": "full"}
    code_modules = (generated,)

    @classmethod
    def parameter_cost(cls, params: dict, unet) -> tuple[int, int]:
        total = parameter_costs(unet, rank=1)["unet_params"]  # the whole U-Net
        return total, total

    def prepare(self, model, env=None) -> None:
        super().prepare(model, env)
        model.unet.requires_grad_(False)
        self.store = str(self.params["store"])
        if self.store not in STORES:
            raise PipelineError(f"methods.dreambooth.store: one of {', '.join(STORES)}, got {self.store!r}")
        self.base_state = ({n: p.detach().to("cpu", copy=True) for n, p in self._params().items()}
                           if self.store == "delta_bf16" else None)

    def _params(self) -> dict[str, torch.nn.Parameter]:
        return dict(self.model.unet.named_parameters())

    def restore_task(self, task: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in self._params().items():
                if f"unet.{name}" in state:
                    p.copy_(state[f"unet.{name}"].to(p.dtype))
                elif self.base_state is not None and f"unet_delta.{name}" in state:
                    p.copy_(self.base_state[name] + state[f"unet_delta.{name}"].float())
                else:
                    raise PipelineError(f"dreambooth: task {task}'s saved state has no unet.{name} "
                                        f"(store {self.store}: saved with another methods.dreambooth.store?)")

    def begin_task(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.prior = None
        weight = float(self.params["prior_weight"])
        if weight > 0:
            for key in ("prior_prompt", "prior_images"):
                if self.params[key] is None:
                    raise PipelineError(f"methods.dreambooth.{key}: needed when prior_weight > 0")
            prompt = str(self.params["prior_prompt"])
            self.prior = generated.GeneratedSet.generate(
                self.model, {0: prompt}, int(self.params["prior_images"]), self.env.seed, ctx.task,
                steps=int(self.params["prior_steps"]), guidance=float(self.params["prior_guidance"]))
        self.model.unet.requires_grad_(True)

    def parameter_groups(self) -> list[dict]:
        return [{"params": list(self._params().values()), "lr": float(self.params["lr"]),
                 "weight_decay": float(self.params["weight_decay"])}]

    def extra_losses(self) -> dict[str, torch.Tensor]:
        if self.prior is None:
            return {}
        latents, ids, _ = self.prior.draw(self.ctx.batch_size, self.ctx.generator)
        return {"prior": float(self.params["prior_weight"]) * self.ctx.loss(latents, ids)}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {f"unet.{n}": p.detach().to("cpu", copy=True).contiguous() for n, p in self._params().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self.restore_task(0, state)

    def end_task(self, task: int) -> dict[str, torch.Tensor]:
        self.model.unet.requires_grad_(False)
        if self.store == "full":
            return self.trainable_state()
        return {f"unet_delta.{n}": (p.detach().float().cpu() - self.base_state[n]).to(torch.bfloat16).contiguous()
                for n, p in self._params().items()}
