"""Pre-training phases on a tiny model: losses fall, reruns are bit-identical, scaling is set."""

import torch

from continual_diffusion.pretrain import PhaseConfig, encode_pool, latent_scale, train_denoiser, train_vae
from tests.model_fixtures import tiny_model


def pool(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (3, 16, 16, 3), generator=g, dtype=torch.uint8)
    return base[torch.arange(n) % 3]  # three repeated "concepts": learnable


def test_vae_phase_learns_and_is_deterministic(tmp_path):
    logs, weights = [], []
    for run in ("a", "b"):
        model = tiny_model(tmp_path / run)
        log = train_vae(model.vae, pool(), PhaseConfig(steps=30, batch_size=4, lr=3e-3, seed=0), kl_weight=1e-4)
        logs.append(log)
        weights.append({k: v.clone() for k, v in model.vae.state_dict().items()})
    assert logs[0] == logs[1]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert sum(e["mse"] for e in logs[0][-5:]) < sum(e["mse"] for e in logs[0][:5])
    scale = latent_scale(model.vae, pool())
    model.vae.register_to_config(scaling_factor=scale)
    latents = encode_pool(model.vae, pool())
    assert abs(float(latents.std()) - 1.0) < 1e-3


def test_denoiser_phase_learns(tmp_path):
    model = tiny_model(tmp_path)
    latents = encode_pool(model.vae, pool())
    captions = ["a photo of a person with blond short hair", "a photo of a waterfall", "a photo of a person"] * 4
    log = train_denoiser(model.unet, model.text_encoder, model.tokenizer, model.scheduler, latents, captions,
                         PhaseConfig(steps=40, batch_size=4, lr=2e-3, seed=0), caption_dropout=0.1)
    assert len(log) == 40
    assert sum(e["loss"] for e in log[-10:]) < sum(e["loss"] for e in log[:10])
    assert not any(p.requires_grad for p in model.unet.parameters())
