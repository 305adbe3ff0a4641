"""Deep generative replay: replay batches are generated images of past concepts, never real ones."""

import torch

from continual_diffusion.core.training import train_task
from continual_diffusion.methods.generated import GeneratedSet
from continual_diffusion.models.tokens import add_concept_token
from tests.methods.helpers import CFG, train_tasks
from tests.model_fixtures import task_latents, tiny_model

PARAMS = {"lr": 1e-2, "replay_per_concept": 3, "replay_steps": 2, "replay_guidance": 3.0, "replay_batch_size": 4}


def test_replay_batches_hold_generated_images_of_past_concepts_only(tmp_path):
    seen = []
    model, method, _ = train_tasks(tmp_path, "generative_replay", PARAMS, tasks=(1, 2))
    original = method.extra_losses

    def spy():
        out = original()
        seen.append(method.last_replay_groups.clone())
        return out

    assert method.replay is not None and len(method.replay) == 3  # task 2 replays concept 1 x 3
    assert set(method.replay.groups.tolist()) == {1}
    token_id = add_concept_token(model.tokenizer, model.text_encoder, "<v3>", torch.Generator().manual_seed(3))
    method.extra_losses = spy
    log = train_task(model, method, 3, token_id, "a photo of <v3>", task_latents(model, 3), CFG, tmp_path / "w3")
    assert set(method.replay.groups.tolist()) == {1, 2} and len(method.replay) == 6
    drawn = torch.cat(seen)
    assert len(drawn) == CFG.steps * 4 and set(drawn.tolist()) <= {1, 2}
    assert all("replay" in entry for entry in log)
    real = torch.cat([task_latents(model, t) for t in (1, 2, 3)])
    for latent in method.replay.latents:  # generated, not any real task image
        assert not any(torch.allclose(latent, r) for r in real)
    ids = method.replay.ids
    v1, v2 = (model.tokenizer.convert_tokens_to_ids(t) for t in ("<v1>", "<v2>"))
    for group, row in zip(method.replay.groups.tolist(), ids.tolist()):
        assert ({1: v1, 2: v2}[group] in row) and token_id not in row  # its own past concept's prompt


def test_generated_set_is_seeded_per_image(tmp_path):
    model = tiny_model(tmp_path)
    a = GeneratedSet.generate(model, {1: "a photo of a person", 2: "a photo"}, 2, seed=0, task=2, steps=2,
                              guidance=2.0, batch_size=4)
    b = GeneratedSet.generate(model, {1: "a photo of a person"}, 2, seed=0, task=2, steps=2, guidance=2.0,
                              batch_size=1)
    torch.testing.assert_close(a.latents[:2], b.latents, rtol=1e-4, atol=1e-4)  # batching: float rounding only
    assert a.groups.tolist() == [1, 1, 2, 2]
