"""Mean pairwise cosine similarity."""

import math

import pytest
import torch

from continual_diffusion.metrics.similarity import cosine_matrix, mean_cosine


def test_mean_over_pairs_by_hand():
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    r = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    # cos: (1, 0) -> 1, 1/sqrt2 ; (0, 1) -> 0, 1/sqrt2
    assert mean_cosine(g, r) == pytest.approx((1 + 2 / math.sqrt(2)) / 4)
    assert torch.allclose(cosine_matrix(g, g).diagonal(), torch.ones(2))


def test_empty_sets_give_nan_and_bad_shapes_are_refused():
    assert math.isnan(mean_cosine(torch.zeros(0, 3), torch.ones(2, 3)))
    with pytest.raises(ValueError, match="same D"):
        cosine_matrix(torch.ones(2, 3), torch.ones(2, 4))
