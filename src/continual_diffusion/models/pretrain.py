"""Pre-training of the miniature's base model on the generic synthetic pool (tiny/smoke profiles).

Phase 1, the autoencoder (VAE), on pool images x in [-1, 1]:
    L_vae = mean (x - D(z))^2 + kl_weight * KL(q(z|x) || N(0, I)),   z ~ q(z|x) (reparameterised)
    then scaling_factor = 1 / std(posterior means), so latents have unit variance as in SD.
Phase 2, the text encoder and U-Net together, on cached latents z0 of the pool images:
    L = mean || eps - unet(z_t, t, text_encoder(caption)) ||^2, captions replaced by "" with
    probability ``caption_dropout`` (classifier-free guidance needs the unconditional model);
    eps = n + offset_noise * m with n ~ N(0, I) per element and m ~ N(0, I) per (image, channel)
    ("offset noise": SD's schedule leaves signal at t = T, and without it samples drift to the
    pool's mean colour). Learning rate: linear warm-up over ``warmup_steps``, then cosine to 0.
    With ``snr_gamma`` set, each sample's squared error is weighted by the Min-SNR rule
    (Hang et al. 2023, as diffusers' ``--snr_gamma``) for epsilon prediction:
        w(t) = min(SNR(t), gamma) / SNR(t),   SNR(t) = alpha_bar_t / (1 - alpha_bar_t)
    which stops the many nearly-noise-free timesteps from dominating and speeds up convergence.
Both phases draw every random number from seeded CPU generators: reruns are bit-identical on CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from continual_diffusion.utils.progress import progress_bar
from continual_diffusion.utils.seeds import cpu_generator


@dataclass
class PhaseConfig:
    steps: int
    batch_size: int
    lr: float
    seed: int


def to_unit_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x 3 x H x W float in [-1, 1]."""
    return images_uint8.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: (step+1)/warmup during warm-up, then 0.5 (1 + cos(pi * progress))."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def train_vae(vae, images_uint8: torch.Tensor, cfg: PhaseConfig, kl_weight: float) -> list[dict]:
    g = cpu_generator(cfg.seed)
    vae.requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    log = []
    with progress_bar(total=cfg.steps, desc="pretrain vae", unit="step") as bar:
        for step in range(cfg.steps):
            x = to_unit_range(images_uint8[torch.randint(images_uint8.shape[0], (cfg.batch_size,), generator=g)])
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)
            reconstruction = vae.decode(z).sample
            mse = torch.nn.functional.mse_loss(reconstruction, x)
            kl = posterior.kl().mean() / z[0].numel()
            loss = mse + kl_weight * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            log.append({"step": step + 1, "mse": float(mse.detach()), "kl": float(kl.detach())})
            bar.update(1)
            bar.set_postfix(mse=f"{log[-1]['mse']:.4f}", refresh=False)
    vae.requires_grad_(False)
    return log


def posterior_means(vae, images_uint8: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Means of q(z|x) for uint8 images, in batches, without gradients."""
    with torch.no_grad():
        return torch.cat([vae.encode(to_unit_range(images_uint8[i:i + batch])).latent_dist.mean
                          for i in range(0, images_uint8.shape[0], batch)])


def latent_scale(vae, images_uint8: torch.Tensor) -> float:
    """1 / std of the posterior means over ``images`` (SD's scaling_factor, 0.18215, is the same idea)."""
    return float(1.0 / posterior_means(vae, images_uint8).std())


def encode_pool(vae, images_uint8: torch.Tensor) -> torch.Tensor:
    """Latents z0 = posterior mean x scaling factor (as the task loop caches them)."""
    return posterior_means(vae, images_uint8) * vae.config.scaling_factor


def min_snr_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """w(t) = min(SNR(t), gamma) / SNR(t) with SNR(t) = alpha_bar_t / (1 - alpha_bar_t) (epsilon prediction)."""
    alpha_bar = alphas_cumprod[t]
    snr = alpha_bar / (1.0 - alpha_bar)
    return torch.clamp(snr, max=gamma) / snr


def train_denoiser(unet, text_encoder, tokenizer, scheduler, latents: torch.Tensor, captions: list[str],
                   cfg: PhaseConfig, caption_dropout: float, offset_noise: float = 0.0,
                   warmup_steps: int = 0, snr_gamma: float | None = None) -> list[dict]:
    g = cpu_generator(cfg.seed)
    ids = tokenizer(captions + [""], padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    empty = ids[-1:]
    ids = ids[:-1]
    unet.requires_grad_(True)
    text_encoder.requires_grad_(True)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup_steps, cfg.steps))
    steps_total = scheduler.config.num_train_timesteps
    log = []
    with progress_bar(total=cfg.steps, desc="pretrain unet", unit="step") as bar:
        for step in range(cfg.steps):
            index = torch.randint(latents.shape[0], (cfg.batch_size,), generator=g)
            drop = torch.rand(cfg.batch_size, generator=g) < caption_dropout
            batch_ids = torch.where(drop[:, None], empty.expand(cfg.batch_size, -1), ids[index])
            z0 = latents[index]
            noise = torch.randn(z0.shape, generator=g)
            if offset_noise:
                noise = noise + offset_noise * torch.randn(z0.shape[0], z0.shape[1], 1, 1, generator=g)
            t = torch.randint(0, steps_total, (cfg.batch_size,), generator=g)
            prediction = unet(scheduler.add_noise(z0, noise, t), t, text_encoder(batch_ids)[0]).sample
            mse = torch.nn.functional.mse_loss(prediction, noise)
            if snr_gamma:
                per_sample = (prediction - noise).pow(2).mean(dim=(1, 2, 3))
                loss = (per_sample * min_snr_weights(scheduler.alphas_cumprod, t, snr_gamma)).mean()
            else:
                loss = mse
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            log.append({"step": step + 1, "loss": float(mse.detach())})
            bar.update(1)
            bar.set_postfix(loss=f"{log[-1]['loss']:.4f}", refresh=False)
    unet.requires_grad_(False)
    text_encoder.requires_grad_(False)
    return log
