"""LoRA (sequential) and C-LoRA: a new rank-r adapter per task on the cross-attention K/V projections.

Both fold each finished task's product ``s B_t A_t`` into the per-matrix accumulator (see
``models/lora.py``) and start the next task from a fresh adapter. C-LoRA adds the self-regularisation

    L = L_diffusion + lambda * reduce_l || |sum_{i<t} s B_i A_i|  (elementwise*)  s B_t A_t ||_F^2

(``lambda`` = ``penalty_weight``, ``reduce`` = ``penalty_reduction``: sum or mean over matrices);
LoRA (sequential) is the same with lambda = 0, the paper's "C-LoRA without the penalty" baseline.
Saved per task: ``<module>.lora_A`` / ``<module>.lora_B`` of that task's adapter.
"""

from __future__ import annotations

import statistics

import torch

from continual_diffusion.methods.base import ContinualMethod, TaskContext, register
from continual_diffusion.models.lora import PastDeltas, add_kv_lora, frobenius_norms, lora_layers, reset_adapter
from continual_diffusion.models.sd_v1_architecture import parameter_costs

ADAPTER = "current"


class _KVLoRA(ContinualMethod):
    """Trained and stored per task: sum over the K/V matrices of r (out + in) (rank r)."""

    required = ("rank", "lr")
    defaults = {"alpha": None}  # LoRA scale alpha / rank; None: alpha = rank (scale 1)
    exports_diffusers = True
    adapter_history = True

    @classmethod
    def parameter_cost(cls, params: dict, unet) -> tuple[int, int]:
        lora = parameter_costs(unet, rank=int(cls.resolve_params(params)["rank"]))["lora_params"]
        return lora, lora

    def prepare(self, model, env=None) -> None:
        super().prepare(model, env)
        add_kv_lora(model.unet, int(self.params["rank"]), self.params["alpha"], adapter=ADAPTER)
        self.layers = lora_layers(model.unet, ADAPTER)
        self.past = PastDeltas(model.unet, ADAPTER)
        self.weight = float(self.params["penalty_weight"]) if self.penalised else 0.0
        self.reduction = self.params["penalty_reduction"] if self.penalised else "sum"
        self._last_penalty = 0.0

    def _load_adapter(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, layer in self.layers.items():
                layer.lora_A[ADAPTER].weight.copy_(state[f"{name}.lora_A"])
                layer.lora_B[ADAPTER].weight.copy_(state[f"{name}.lora_B"])

    def restore_task(self, task: int, state: dict[str, torch.Tensor]) -> None:
        self._load_adapter(state)
        self.past.fold()

    def begin_task(self, ctx: TaskContext) -> None:
        reset_adapter(self.model.unet, ADAPTER, ctx.generator)
        self.past.apply()

    def parameter_groups(self) -> list[dict]:
        params = []
        for layer in self.layers.values():
            params += [layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight]
        return [{"params": params, "lr": float(self.params["lr"]), "weight_decay": 0.0}]

    def extra_losses(self) -> dict[str, torch.Tensor]:
        if not self.penalised:
            return {}
        penalty = self.past.penalty(self.reduction)
        self._last_penalty = float(penalty.detach())
        return {"forget": self.weight * penalty}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        state = {}
        for name, layer in self.layers.items():
            state[f"{name}.lora_A"] = layer.lora_A[ADAPTER].weight.detach().clone().contiguous()
            state[f"{name}.lora_B"] = layer.lora_B[ADAPTER].weight.detach().clone().contiguous()
        return state

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self._load_adapter(state)

    def end_task(self, task: int) -> dict[str, torch.Tensor]:
        state = self.trainable_state()
        self._norms = frobenius_norms(self.model.unet, ADAPTER)
        self.past.fold()
        return state

    def prepare_inference(self, concepts=None) -> None:
        """W = W_init + sum of the restored products; the (empty) current adapter contributes 0."""
        with torch.no_grad():
            for layer in self.layers.values():
                layer.lora_B[ADAPTER].weight.zero_()
        self.past.apply()

    def step_metrics(self) -> dict[str, float]:
        return {"forget_raw": self._last_penalty} if self.penalised else {}

    def task_metrics(self) -> dict[str, float]:
        norms = getattr(self, "_norms", {})
        return {
            "delta_norm_mean": statistics.fmean(norms.values()) if norms else 0.0,
            "delta_norm_max": max(norms.values(), default=0.0),
        }


@register
class LoRASequential(_KVLoRA):
    name = "lora_sequential"
    label = "LoRA (sequential)"


@register
class CLoRA(_KVLoRA):
    name = "clora"
    label = "C-LoRA"
    defaults = {"penalty_weight": 0.0, "penalty_reduction": "sum"}  # lambda; over the adapted matrices: sum | mean
    penalised = True
