"""Textual Inversion: nothing but the new token's embedding row changes."""

import torch

from tests.methods.helpers import changed, snapshot, train_tasks
from tests.model_fixtures import tiny_model


def test_only_the_new_token_row_changes(tmp_path):
    model = tiny_model(tmp_path)
    unet, vae, text = snapshot(model.unet), snapshot(model.vae), snapshot(model.text_encoder)
    rows_before = model.text_encoder.get_input_embeddings().weight.detach().clone()
    model, method, states = train_tasks(tmp_path, "textual_inversion", {}, tasks=(1,), model=model)
    assert changed(model.unet, unet) == set() and changed(model.vae, vae) == set()
    assert {n.split(".")[-2] for n in changed(model.text_encoder, text)} <= {"token_embedding"}
    rows = model.text_encoder.get_input_embeddings().weight.detach()
    token_id = model.tokenizer.convert_tokens_to_ids("<v1>")
    assert torch.equal(rows[:rows_before.shape[0]], rows_before)  # every old row bit-identical
    assert token_id == rows_before.shape[0] and not torch.allclose(rows[token_id], torch.zeros_like(rows[token_id]))
    assert states[1] == {}  # nothing stored besides the token row (the chain saves it)
