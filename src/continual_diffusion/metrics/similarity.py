"""Embedding similarity between generated and real images of one concept.

    sim(G, R) = (1 / (|G| |R|)) sum_{g in G} sum_{r in R} cos(g, r),   cos(g, r) = g.r / (||g|| ||r||)

The mean over all generated x real pairs (not the cosine of the mean embeddings), so one collapsed
sample lowers the score by its share. Higher is better; 1 only when every pair points the same way.
"""

from __future__ import annotations

import torch


def normalize(features: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to unit L2 norm (rows of zeros stay zero)."""
    features = features.double() if features.dtype == torch.float64 else features.float()
    return features / features.norm(dim=1, keepdim=True).clamp(min=eps)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a| x |b| matrix of cos(a_j, b_k)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two N x D feature matrices of the same D, got {tuple(a.shape)} and {tuple(b.shape)}")
    return normalize(a) @ normalize(b).T


def mean_cosine(generated: torch.Tensor, real: torch.Tensor) -> float:
    """sim(G, R) above; NaN when either set is empty (e.g. no face detected in any sample)."""
    if generated.shape[0] == 0 or real.shape[0] == 0:
        return float("nan")
    return float(cosine_matrix(generated, real).mean())
