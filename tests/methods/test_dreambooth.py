"""DreamBooth (sequential): the whole U-Net trains; prior preservation adds its own loss term."""

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
