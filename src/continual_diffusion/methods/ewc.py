"""Custom Diffusion + EWC (Kirkpatrick et al., 2017): sequential K/V fine-tuning held near the past.

After task i the diagonal empirical Fisher of every K/V weight is estimated from ``fisher_samples``
single-image diffusion losses of that task (fresh noise and timestep each):
    F_i = (1/N) sum_n (dL_n / dW)^2
and accumulated over tasks (online EWC): F_<t = sum_{i<t} F_i. Task t trains with
    L = L_diffusion + (lambda / 2) sum_W sum_k F_<t[k] (W[k] - W*_{t-1}[k])^2
(W*_{t-1}: the weights after task t-1, the anchor; lambda = ``ewc_weight``, 1e6 in the paper), whose
gradient is lambda F_<t (W - W*_{t-1}). Saved per task: the weights and that task's Fisher
(``<module>.fisher``).
"""

from __future__ import annotations

import torch

from continual_diffusion.methods.base import TaskContext, register
from continual_diffusion.methods.custom_diffusion import CustomDiffusionSequential


def ewc_penalty(weights: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
                fisher: dict[str, torch.Tensor]) -> torch.Tensor:
    """(1/2) sum_W sum_k F[k] (W[k] - W*[k])^2 (unweighted)."""
    return 0.5 * torch.stack([(fisher[n] * (weights[n] - anchor[n]).pow(2)).sum() for n in weights]).sum()


@register
class CustomDiffusionEWC(CustomDiffusionSequential):
    name = "custom_diffusion_ewc"
    label = "Custom Diffusion + EWC"
    required = ("ewc_weight",)
    defaults = {"fisher_samples": 16}

    @classmethod
    def parameter_cost(cls, params: dict, unet) -> tuple[int, int]:
        trained, stored = super().parameter_cost(params, unet)
        return trained, 2 * stored  # the weights and their Fisher

    def prepare(self, model, env=None) -> None:
        super().prepare(model, env)
        self.fisher = {n: torch.zeros_like(w) for n, w in self.w_base.items()}
        self._last_penalty = 0.0

    def restore_task(self, task: int, state: dict[str, torch.Tensor]) -> None:
        super().restore_task(task, state)
        for n in self.fisher:
            self.fisher[n] += state[f"{n}.fisher"].to(device=self.fisher[n].device, dtype=self.fisher[n].dtype)

    def training_recipe(self, task: int) -> tuple | None:
        """Never shared: every task also saves its Fisher."""
        return None

    def begin_task(self, ctx: TaskContext) -> None:
        super().begin_task(ctx)
        self.anchor = {n: m.weight.detach().clone() for n, m in self.linears.items()}
        self.weight = float(self.params["ewc_weight"])

    def extra_losses(self) -> dict[str, torch.Tensor]:
        if self.ctx.task == 1:
            return {}
        penalty = ewc_penalty({n: m.weight for n, m in self.linears.items()}, self.anchor, self.fisher)
        self._last_penalty = float(penalty.detach())
        return {"ewc": self.weight * penalty}

    def step_metrics(self) -> dict[str, float]:
        return {"ewc_raw": self._last_penalty} if self.ctx.task > 1 else {}

    def task_fisher(self) -> dict[str, torch.Tensor]:
        """F_t = mean over ``fisher_samples`` single-image losses of the squared K/V gradients."""
        n = int(self.params["fisher_samples"])
        weights = [m.weight for m in self.linears.values()]
        fisher = [torch.zeros_like(w) for w in weights]
        for _ in range(n):
            index = torch.randint(self.ctx.latents.shape[0], (1,), generator=self.ctx.generator)
            loss = self.ctx.loss(self.ctx.latents[index.to(self.ctx.latents.device)], self.ctx.prompt_ids)
            for f, g in zip(fisher, torch.autograd.grad(loss, weights)):
                f += g.detach().pow(2) / n
        return dict(zip(self.linears, fisher))

    def end_task(self, task: int) -> dict[str, torch.Tensor]:
        fisher = self.task_fisher()
        state = super().end_task(task)
        self._fisher_mean = float(torch.cat([f.flatten() for f in fisher.values()]).mean())
        state.update({f"{n}.fisher": f.contiguous() for n, f in fisher.items()})
        return state

    def task_metrics(self) -> dict[str, float]:
        return {**super().task_metrics(), "fisher_mean": getattr(self, "_fisher_mean", 0.0)}
