"""Stable Diffusion v1.x U-Net architecture, as a config (no weights), and parameter costs.

The config is the one shipped with SD v1.4/v1.5 (``unet/config.json``); building it on the meta
device gives exact parameter counts without allocating memory. Costs are reported as a percentage
of all U-Net parameters, the paper's N_param.
"""

from __future__ import annotations

import re

SD_V1_UNET_CONFIG: dict = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

KV_PATTERN = re.compile(r"(^|\.)attn2\.(to_k|to_v)$")


def build_unet(config: dict, device: str = "cpu"):
    """A randomly initialised ``UNet2DConditionModel`` (use device="meta" to count parameters)."""
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device(device):
        return UNet2DConditionModel(**config)


def kv_shapes(unet) -> dict[str, tuple[int, int]]:
    """(out, in) of every cross-attention key/value projection: the matrices C-LoRA adapts."""
    import torch

    shapes = {}
    for name, module in unet.named_modules():
        linear = getattr(module, "base_layer", module)  # a PEFT LoRA layer wraps the Linear
        if KV_PATTERN.search(name) and isinstance(linear, torch.nn.Linear):
            shapes[name] = tuple(linear.weight.shape)
    return shapes


def parameter_costs(unet, rank: int) -> dict[str, float]:
    """Parameters trained and stored per task, absolute and as % of the U-Net (N_param).

    kv_full   = sum over K/V matrices of out * in            (Custom Diffusion: K/V fine-tuning)
    lora      = sum over K/V matrices of rank * (out + in)   (LoRA / C-LoRA of that rank)
    unet      = all U-Net parameters                          (DreamBooth)
    """
    total = sum(p.numel() for n, p in unet.named_parameters() if "lora_" not in n)  # adapters excluded
    shapes = kv_shapes(unet).values()
    kv_full = sum(o * i for o, i in shapes)
    lora = sum(rank * (o + i) for o, i in shapes)
    return {
        "unet_params": total,
        "kv_matrices": len(shapes),
        "kv_full_params": kv_full,
        "kv_full_percent": 100.0 * kv_full / total,
        "lora_params": lora,
        "lora_percent": 100.0 * lora / total,
    }
