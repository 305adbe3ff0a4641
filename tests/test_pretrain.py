"""Pre-training phases on a tiny model: losses fall, reruns are bit-identical, scaling is set."""

import torch

from continual_diffusion.models.pretrain import PhaseConfig, encode_pool, latent_scale, train_denoiser, train_vae
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


def test_min_snr_weights_match_hand_computed_values():
    from continual_diffusion.models.pretrain import min_snr_weights

    alphas_cumprod = torch.tensor([0.99, 0.5, 0.2])  # SNR = 99, 1, 0.25
    w = min_snr_weights(alphas_cumprod, torch.tensor([0, 1, 2]), gamma=5.0)
    # min(SNR, 5) / SNR: 5/99 for the nearly clean step, 1 where SNR <= gamma
    assert torch.allclose(w, torch.tensor([5.0 / 99.0, 1.0, 1.0]))


def test_min_snr_weighting_changes_training_but_not_the_logged_mse_definition(tmp_path):
    runs = {}
    # gamma far below the SNR of every sampled timestep: each sample gets its own weight gamma / SNR(t)
    # (with gamma 5 most random batches contain no step with SNR > 5 and nothing would change)
    for gamma in (None, 0.01):
        model = tiny_model(tmp_path / str(gamma))
        latents = encode_pool(model.vae, pool())
        log = train_denoiser(model.unet, model.text_encoder, model.tokenizer, model.scheduler, latents,
                             ["a photo of a person"] * 12, PhaseConfig(steps=3, batch_size=4, lr=2e-3, seed=0),
                             caption_dropout=0.0, snr_gamma=gamma)
        runs[gamma] = (log, {k: v.clone() for k, v in model.unet.state_dict().items()})
    # same batches, same first prediction: the first logged (unweighted) MSE agrees ...
    assert runs[None][0][0]["loss"] == runs[0.01][0][0]["loss"]
    # ... but the weighted loss moves the weights differently
    assert any(not torch.equal(runs[None][1][k], runs[0.01][1][k]) for k in runs[None][1])
