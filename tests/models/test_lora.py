"""C-LoRA's adapters, accumulator and penalty on a small random U-Net."""

import pytest
import torch

from continual_diffusion.models.lora import (
    PastDeltas,
    add_kv_lora,
    delta,
    lora_layers,
    lora_parameters,
    reset_adapter,
)
from continual_diffusion.models.sd_v1_architecture import build_unet, kv_shapes

SMALL_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[32, 64],
    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
    cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8,
)


@pytest.fixture
def unet():
    torch.manual_seed(0)
    model = build_unet(SMALL_UNET)
    add_kv_lora(model, rank=2, alpha=4)
    return model


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model, "current").values():
            for p in (layer.lora_A["current"].weight, layer.lora_B["current"].weight):
                p.copy_(torch.randn(p.shape, generator=g))


def test_adapters_only_on_cross_attention_kv(unet):
    layers = lora_layers(unet, "current")
    assert set(layers) == set(kv_shapes(unet)) and len(layers) == 8  # 4 transformer blocks x (to_k, to_v)
    assert all(".attn2.to_k" in n or ".attn2.to_v" in n for n in layers)
    trainable = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n and ".attn2." in n for n in trainable)
    assert len(trainable) == len(lora_parameters(unet, "current"))


def test_penalty_matches_hand_computation(unet):
    past = PastDeltas(unet)
    name = sorted(past.layers)[0]
    out, inp = past.acc[name].shape
    acc = torch.zeros(out, inp)
    acc[0, 0], acc[1, 2] = -2.0, 3.0
    past.acc[name] += acc
    past.apply()
    layer = past.layers[name]
    with torch.no_grad():
        layer.lora_A["current"].weight.zero_()
        layer.lora_B["current"].weight.zero_()
        layer.lora_A["current"].weight[0, 0] = 1.0  # A: r x in
        layer.lora_A["current"].weight[0, 2] = 0.5
        layer.lora_B["current"].weight[0, 0] = 1.0  # B: out x r
        layer.lora_B["current"].weight[1, 0] = 2.0
        for other in set(past.layers) - {name}:
            past.layers[other].lora_B["current"].weight.zero_()
    s = layer.scaling["current"]  # alpha / r = 2
    # s*B A has entries [0,0] = s*1*1, [1,2] = s*2*0.5; |acc| picks -2 and 3:
    expected = (2.0 * s * 1.0) ** 2 + (3.0 * s * 1.0) ** 2
    assert past.penalty().item() == pytest.approx(expected)
    assert past.penalty("mean").item() == pytest.approx(expected / 8)


def test_penalty_is_zero_on_the_first_task(unet):
    randomise(unet, 1)
    past = PastDeltas(unet)
    past.apply()
    assert all(not torch.any(a) for a in past.acc.values()) and past.penalty().item() == 0.0


def test_accumulator_is_a_sum_of_products_not_a_product_of_sums(unet):
    past = PastDeltas(unet)
    factors = []
    for seed in (1, 2):
        randomise(unet, seed)
        factors.append({n: (layer.lora_A["current"].weight.clone(), layer.lora_B["current"].weight.clone(),
                            layer.scaling["current"])
                        for n, layer in past.layers.items()})
        past.fold()
    for name in past.layers:
        (a1, b1, s), (a2, b2, _) = factors[0][name], factors[1][name]
        assert torch.allclose(past.acc[name], s * b1 @ a1 + s * b2 @ a2, atol=1e-6)
        assert not torch.allclose(past.acc[name], s * (b1 + b2) @ (a1 + a2), atol=1e-3)


def test_folded_model_equals_explicit_sum(unet):
    """After two tasks are folded and a fresh adapter starts (B = 0), the U-Net computes with
    W_init + s B1 A1 + s B2 A2 exactly."""
    x, t, ctx = torch.randn(1, 4, 8, 8), torch.tensor([10]), torch.randn(1, 3, 16)
    past = PastDeltas(unet)
    deltas = {}
    for seed in (1, 2):
        randomise(unet, seed)
        for n, layer in past.layers.items():
            deltas[n] = deltas.get(n, 0) + delta(layer, "current").detach()
        past.fold()
    reset_adapter(unet, "current", torch.Generator().manual_seed(0))
    past.apply()
    with torch.no_grad():
        folded = unet(x, t, ctx).sample
        for n, layer in past.layers.items():
            layer.base_layer.weight.copy_(past.w_init[n] + deltas[n])
        explicit = unet(x, t, ctx).sample
    assert torch.allclose(folded, explicit, atol=1e-6)


def test_reset_is_seeded_and_starts_from_zero_delta(unet):
    reset_adapter(unet, "current", torch.Generator().manual_seed(5))
    first = [p.clone() for p in lora_parameters(unet, "current")]
    reset_adapter(unet, "current", torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(first, lora_parameters(unet, "current")))
    assert all(not torch.any(delta(layer, "current")) for layer in lora_layers(unet, "current").values())


def test_penalty_gradient_reaches_only_the_current_adapter(unet):
    randomise(unet, 3)
    past = PastDeltas(unet)
    past.fold()
    randomise(unet, 4)
    past.apply()
    past.penalty().backward()
    grads = {n: p.grad for n, p in unet.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in n for n in grads)
    assert any(torch.any(g != 0) for g in grads.values())
