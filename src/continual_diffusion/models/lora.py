"""Low-rank adapters on the U-Net's cross-attention key/value projections, and C-LoRA's memory.

PEFT supplies the adapter layers (``LoraConfig`` on the ``attn2.to_k`` / ``attn2.to_v`` modules,
added with diffusers' ``unet.add_adapter``). One adapter, the current task's, is trained at a time.
C-LoRA (Smith et al., 2024) keeps the past tasks in one dense accumulator per adapted matrix:

    W_t = W_init + acc_t + s * B_t A_t,     acc_t = sum_{i<t} s * B_i A_i

(PEFT's notation: ``lora_A`` maps in -> r, ``lora_B`` r -> out, ``s`` = lora_alpha / r.) The
accumulator is a sum of products, never a product of sums; it is folded into the frozen base weight
once per task (``apply``), so a training step costs the same as plain LoRA plus the penalty

    L_forget = reduce_over_layers  || |acc_t| (elementwise*) (s * B_t A_t) ||_F^2

with ``reduce`` = sum (default) or mean over the adapted matrices. It is zero on task 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from continual_diffusion.models.sd_v1_architecture import kv_shapes


def add_kv_lora(unet, rank: int, alpha: float | None = None, adapter: str = "current") -> list[str]:
    """Add a PEFT LoRA adapter on every cross-attention K/V projection; freeze everything else.

    Returns the names of the adapted modules.
    """
    from peft import LoraConfig

    names = sorted(kv_shapes(unet))
    if not names:
        raise ValueError("the U-Net has no cross-attention attn2.to_k / attn2.to_v modules")
    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, target_modules=names,
                        init_lora_weights=True, lora_dropout=0.0, bias="none")
    unet.requires_grad_(False)
    unet.add_adapter(config, adapter_name=adapter)
    for layer in lora_layers(unet, adapter).values():
        layer.lora_A[adapter].weight.requires_grad_(True)
        layer.lora_B[adapter].weight.requires_grad_(True)
    return names


def lora_layers(unet, adapter: str) -> dict[str, nn.Module]:
    """Adapted module name -> PEFT LoRA layer holding ``adapter``."""
    return {
        name: module
        for name, module in unet.named_modules()
        if hasattr(module, "lora_A") and adapter in getattr(module, "lora_A", {})
    }


def lora_parameters(unet, adapter: str) -> list[nn.Parameter]:
    params = []
    for layer in lora_layers(unet, adapter).values():
        params += [layer.lora_A[adapter].weight, layer.lora_B[adapter].weight]
    return params


def delta(layer: nn.Module, adapter: str) -> torch.Tensor:
    """The adapter's weight update ``s * B A`` (out x in), differentiable."""
    return layer.scaling[adapter] * (layer.lora_B[adapter].weight @ layer.lora_A[adapter].weight)


def reset_adapter(unet, adapter: str, generator: torch.Generator) -> None:
    """Fresh task adapter: A ~ Kaiming-uniform(a=sqrt(5)) from ``generator`` (CPU, seeded), B = 0."""
    layers = lora_layers(unet, adapter)
    with torch.no_grad():
        for name in sorted(layers):
            layer = layers[name]
            a = layer.lora_A[adapter].weight
            fresh = torch.empty(a.shape, dtype=torch.float32)
            nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=generator)
            a.copy_(fresh.to(a.dtype))
            layer.lora_B[adapter].weight.zero_()


class PastDeltas:
    """C-LoRA's frozen memory: W_init and the accumulated past products of every adapted matrix."""

    def __init__(self, unet, adapter: str = "current"):
        self.adapter = adapter
        self.layers = lora_layers(unet, adapter)
        self.w_init = {n: layer.base_layer.weight.detach().to(torch.float32).clone().cpu()
                       for n, layer in self.layers.items()}
        self.acc = {n: torch.zeros_like(w) for n, w in self.w_init.items()}
        self._abs_acc: dict[str, torch.Tensor] = {}

    def fold(self) -> None:
        """End of task: acc += s * B_t A_t (fp32, on CPU, layer by layer)."""
        with torch.no_grad():
            for name, layer in self.layers.items():
                self.acc[name] += delta(layer, self.adapter).detach().to(torch.float32).cpu()

    def apply(self) -> None:
        """Start of task: base weight = W_init + acc; cache |acc| for the penalty (once per task)."""
        with torch.no_grad():
            for name, layer in self.layers.items():
                weight = layer.base_layer.weight
                weight.copy_((self.w_init[name] + self.acc[name]).to(weight.dtype))
                self._abs_acc[name] = self.acc[name].abs().to(device=weight.device, dtype=weight.dtype)

    def penalty(self, reduction: str = "sum") -> torch.Tensor:
        """L_forget = reduce_l || |acc_l| * (s B_t A_t)_l ||_F^2 (call ``apply`` first)."""
        if not self._abs_acc:
            raise RuntimeError("PastDeltas.apply() must run before penalty()")
        terms = [(self._abs_acc[n] * delta(layer, self.adapter)).pow(2).sum() for n, layer in self.layers.items()]
        total = torch.stack(terms).sum()
        if reduction == "mean":
            return total / len(terms)
        if reduction != "sum":
            raise ValueError(f"clora.penalty_reduction: unknown reduction {reduction!r} (sum | mean)")
        return total


def frobenius_norms(unet, adapter: str) -> dict[str, float]:
    """||s B_t A_t||_F per adapted matrix (logged per task: the plasticity question of Jha et al.)."""
    with torch.no_grad():
        return {n: float(delta(layer, adapter).float().norm()) for n, layer in lora_layers(unet, adapter).items()}
