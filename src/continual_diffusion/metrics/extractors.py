"""The miniature's feature space: the identity evaluator's embedding.

No pretrained facenet or CLIP weights exist offline, so the tiny profiles embed images with their
own identity evaluator (evaluator.py, trained on held-out renders, never on task images): the
64-d output of ``IdentityNet.embedding`` (before the classification head), L2-normalised. It plays
facenet's role (identity similarity) and CLIP's role (image similarity, MMD features) in the same
metric code; its held-out accuracy is recorded beside every number it produces.
"""

from __future__ import annotations

import numpy as np
import torch

from continual_diffusion.metrics.similarity import normalize
from continual_diffusion.models.identity_net import IdentityNet, to_input


class IdentityEmbedding:
    """``embed(images) -> N x D`` unit-norm rows of the identity evaluator's embedding."""

    name = "identity_evaluator"

    def __init__(self, net: IdentityNet, heldout_accuracy: float):
        self.net = net.eval()
        self.heldout_accuracy = heldout_accuracy

    def embed(self, images_uint8: np.ndarray, batch: int = 256) -> torch.Tensor:
        x = to_input(images_uint8)
        if x.shape[0] == 0:
            return torch.zeros(0, self.net.embed.out_features)
        with torch.no_grad():
            return normalize(torch.cat([self.net.embedding(x[i:i + batch]) for i in range(0, x.shape[0], batch)]))
