"""DreamBooth (sequential): the whole U-Net trains; prior preservation adds its own loss term."""

import pytest

from tests.methods.helpers import changed, snapshot, train_tasks
from tests.model_fixtures import tiny_model


def test_the_whole_unet_and_the_token_train(tmp_path):
    model = tiny_model(tmp_path)
    unet, vae, text = snapshot(model.unet), snapshot(model.vae), snapshot(model.text_encoder)
    model, method, states = train_tasks(tmp_path, "dreambooth", {"lr": 1e-3, "prior_weight": 0.0}, tasks=(1,),
                                        model=model)
    moved = changed(model.unet, unet)
    assert len(moved) > 0.8 * len(unet)  # (nearly) every tensor moves, not only attention
    assert any(".resnets." in n for n in moved) and any("attn1" in n for n in moved)
    assert changed(model.vae, vae) == set()
    assert {n.split(".")[-2] for n in changed(model.text_encoder, text)} == {"token_embedding"}
    assert set(states[1]) == {f"unet.{n}" for n in unet}


def test_prior_preservation_is_a_logged_loss_term_when_on(tmp_path):
    params = {"lr": 1e-3, "prior_weight": 1.0, "prior_images": 2, "prior_prompt": "a photo of a person",
              "prior_steps": 2}
    _, method, _ = train_tasks(tmp_path, "dreambooth", params, tasks=(1,))
    assert method.prior is not None and len(method.prior) == 2
    _, off, _ = train_tasks(tmp_path / "off", "dreambooth", {"lr": 1e-3, "prior_weight": 0.0}, tasks=(1,))
    assert off.prior is None and off.extra_losses() == {}
    assert "prior" in method.extra_losses()


def test_store_delta_bf16_saves_the_change_from_the_base_in_bf16_and_restores_it_closely(tmp_path):
    import torch

    from continual_diffusion.methods import make_method
    from continual_diffusion.utils.errors import PipelineError

    params = {"lr": 1e-3, "prior_weight": 0.0, "store": "delta_bf16"}
    base = snapshot(tiny_model(tmp_path / "base").unet)
    model, _, states = train_tasks(tmp_path, "dreambooth", params, tasks=(1, 2))
    trained = snapshot(model.unet)
    saved = states[2]
    assert set(saved) == {f"unet_delta.{n}" for n in trained}
    assert all(v.dtype == torch.bfloat16 for v in saved.values())
    fresh = tiny_model(tmp_path / "fresh")
    method = make_method("dreambooth", params)
    method.prepare(fresh)
    method.restore_task(2, saved)
    for name, p in fresh.unet.named_parameters():
        change = (trained[name] - base[name]).abs().max()
        error = (p.detach() - trained[name]).abs().max()
        assert error <= change * 2 ** -8 + 1e-12, name  # bf16's relative rounding of the change, not of the weight
    full = make_method("dreambooth", {"lr": 1e-3, "prior_weight": 0.0})
    full.prepare(tiny_model(tmp_path / "full"))
    with pytest.raises(PipelineError, match="saved with another methods.dreambooth.store"):
        full.restore_task(2, saved)
    with pytest.raises(PipelineError, match="methods.dreambooth.store"):
        make_method("dreambooth", {"lr": 1e-3, "store": "fp16"}).prepare(tiny_model(tmp_path / "bad"))
