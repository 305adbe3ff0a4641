"""Identity accuracy of the miniature's identity classifier (evaluator.py) on generated samples.

For the N samples x_j of concept i (class index i-1) and class probabilities p(k | x):
  accuracy_i        = (1/N) sum_j [argmax_k p(k | x_j) = i]        over the concepts and "other"
                      (open set: a sample that looks like no task concept counts as wrong)
  accuracy_closed_i = the same with the argmax over the task concepts only (which concept is it
                      most like)
  other_rate_i      = (1/N) sum_j [argmax_k p(k | x_j) = other]
  p_true_i          = (1/N) sum_j p(i | x_j)
"""

from __future__ import annotations

import torch


def identity_scores(probs: torch.Tensor, label: int, classes: list[str]) -> dict:
    """The numbers above for samples whose true class index is ``label`` ("other" is the last class)."""
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ValueError(f"expected N x {len(classes)} probabilities, got {tuple(probs.shape)}")
    predicted = probs.argmax(dim=1)
    closed = probs[:, :-1].argmax(dim=1)
    return {
        "accuracy": float((predicted == label).float().mean()),
        "accuracy_closed": float((closed == label).float().mean()),
        "other_rate": float((predicted == probs.shape[1] - 1).float().mean()),
        "p_true": float(probs[:, label].mean()),
        "predicted": [classes[k] for k in predicted.tolist()],
    }
