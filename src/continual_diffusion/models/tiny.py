"""The miniature text-to-image model: Stable Diffusion's structure at a size 2 CPU cores can train.

Components, each built from a config (no hub access): a CLIP BPE tokenizer (``tokenizer.py``), a
CLIP text encoder, a KL autoencoder (VAE) and a ``UNet2DConditionModel`` with cross-attention, with
SD's DDPM noise schedule (scaled-linear betas 0.00085 -> 0.012 over 1000 steps). Saved with
``StableDiffusionPipeline.save_pretrained`` in the standard diffusers layout (safetensors), so
``StableDiffusionPipeline.from_pretrained(path)`` loads it like SD v1.x.

``spec`` keys: ``resolution`` (pixels), ``vae_channels`` (one per VAE block; latents are
resolution / 2**(len-1)), ``latent_channels``, ``unet_channels``, ``unet_attention`` (per U-Net block:
cross-attention or not), ``layers_per_block``, ``attention_head_dim``, ``norm_groups``,
``text_hidden``, ``text_layers``, ``text_heads``, ``max_length``.
"""

from __future__ import annotations

from pathlib import Path


def latent_size(spec: dict) -> int:
    return spec["resolution"] // 2 ** (len(spec["vae_channels"]) - 1)


def build_components(spec: dict, tokenizer, seed: int = 0) -> dict:
    """Randomly initialised components (seeded), ready for pre-training."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    hidden = spec["text_hidden"]
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
        num_hidden_layers=spec["text_layers"], num_attention_heads=spec["text_heads"],
        max_position_embeddings=spec["max_length"], projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    n_vae = len(spec["vae_channels"])
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=spec["latent_channels"],
        down_block_types=["DownEncoderBlock2D"] * n_vae, up_block_types=["UpDecoderBlock2D"] * n_vae,
        block_out_channels=list(spec["vae_channels"]), layers_per_block=1,
        norm_num_groups=spec["norm_groups"], sample_size=spec["resolution"],
    )
    attention = spec["unet_attention"]
    unet = UNet2DConditionModel(
        sample_size=latent_size(spec), in_channels=spec["latent_channels"], out_channels=spec["latent_channels"],
        block_out_channels=list(spec["unet_channels"]), layers_per_block=spec["layers_per_block"],
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        cross_attention_dim=hidden, attention_head_dim=spec["attention_head_dim"],
        norm_num_groups=spec["norm_groups"],
    )
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False, prediction_type="epsilon",
                              steps_offset=1)
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "unet": unet, "scheduler": scheduler}


def save_pipeline(components: dict, out: Path) -> None:
    """Write the diffusers layout (model_index.json, one folder per component, safetensors)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
