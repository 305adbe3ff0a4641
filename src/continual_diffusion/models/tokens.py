"""Concept tokens: one new token V*_t per concept, learned during its task and frozen afterwards.

The embedding of a new token is initialised at random with the mean norm of the existing
vocabulary's embeddings (its direction uniform on the sphere, from a seeded CPU generator): the
paper initialises it randomly; the scale is an assumption (``init_norm`` = "mean" or a number).
Prompts use the token without the class word: "a photo of V*_t".

Only the current token's row trains: the whole embedding table is handed to the optimizer, and
``restore_frozen_rows`` puts every other row back after each step, so decay and momentum cannot
move them (the diffusers textual-inversion examples do the same).
"""

from __future__ import annotations

import torch


def concept_token(task: int) -> str:
    return f"<v{task}>"


def prompt_for(token: str) -> str:
    return f"a photo of {token}"


def add_concept_token(tokenizer, text_encoder, token: str, generator: torch.Generator, init_norm="mean") -> int:
    """Add ``token`` to the tokenizer and a randomly initialised row to the text encoder; its id."""
    if token in tokenizer.get_vocab():
        raise ValueError(f"token {token!r} is already in the vocabulary")
    tokenizer.add_tokens([token])
    token_id = tokenizer.convert_tokens_to_ids(token)
    embeddings = text_encoder.get_input_embeddings().weight
    scale = embeddings.detach().norm(dim=1).mean().item() if init_norm == "mean" else float(init_norm)
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    embeddings = text_encoder.get_input_embeddings().weight
    direction = torch.randn(embeddings.shape[1], generator=generator, dtype=torch.float32)
    with torch.no_grad():
        embeddings[token_id] = (direction / direction.norm() * scale).to(device=embeddings.device, dtype=embeddings.dtype)
    return token_id


def set_concept_token(tokenizer, text_encoder, token: str, row: torch.Tensor) -> int:
    """Re-create a learned token (e.g. from a saved task) with its stored embedding row."""
    if token not in tokenizer.get_vocab():
        tokenizer.add_tokens([token])
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    token_id = tokenizer.convert_tokens_to_ids(token)
    embeddings = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        embeddings[token_id] = row.to(device=embeddings.device, dtype=embeddings.dtype)
    return token_id


class TokenRowTrainer:
    """Makes one embedding row trainable and keeps every other row bit-identical."""

    def __init__(self, text_encoder, token_id: int):
        self.weight = text_encoder.get_input_embeddings().weight
        self.token_id = token_id
        self.frozen = self.weight.detach().clone()
        self.mask = torch.ones(self.weight.shape[0], dtype=torch.bool, device=self.weight.device)
        self.mask[token_id] = False
        self.weight.requires_grad_(True)

    def restore_frozen_rows(self) -> None:
        with torch.no_grad():
            self.weight[self.mask] = self.frozen[self.mask]

    def row(self) -> torch.Tensor:
        return self.weight.detach()[self.token_id].clone()
