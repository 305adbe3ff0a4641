"""MMD^2_u on constructed features."""

import pytest
import torch
from torchmetrics.image.kid import poly_mmd

from continual_diffusion.metrics.mmd import median_bandwidth2, mmd2_unbiased


def test_poly_mmd_matches_a_hand_computation():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    k = lambda a, b: (a @ b / 2 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(3) for j in range(3) if i != j) / 6
    yy = sum(k(y[i], y[j]) for i in range(2) for j in range(2) if i != j) / 2
    xy = sum(k(x[i], y[j]) for i in range(3) for j in range(2)) / 6
    assert mmd2_unbiased(x, y, "poly") == pytest.approx(float(xx + yy - 2 * xy))


def test_poly_mmd_equals_torchmetrics_kid_kernel():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 8, generator=g), torch.randn(12, 8, generator=g) + 0.5
    assert mmd2_unbiased(x, y, "poly") == pytest.approx(float(poly_mmd(x.double(), y.double())), rel=1e-9)


def test_rbf_mmd_by_hand_with_given_bandwidth():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[3.0], [5.0]])
    e = lambda d: torch.exp(torch.tensor(-d * d / 2.0))  # noqa: E731  (s^2 = 1)
    expected = e(1.0) + e(2.0) - 2 * (e(3.0) + e(5.0) + e(2.0) + e(4.0)) / 4
    assert mmd2_unbiased(x, y, "rbf", bandwidth2=1.0) == pytest.approx(float(expected))


@pytest.mark.parametrize("kernel", ["poly", "rbf"])
def test_mmd_separates_shifted_from_same_distribution(kernel):
    g = torch.Generator().manual_seed(1)
    x, same, shifted = (torch.randn(64, 4, generator=g) for _ in range(3))
    shifted = shifted + 2.0
    assert abs(mmd2_unbiased(x, same, kernel)) < 0.1 * mmd2_unbiased(x, shifted, kernel)
    assert mmd2_unbiased(x, shifted, kernel) == pytest.approx(mmd2_unbiased(shifted, x, kernel))


def test_median_bandwidth_is_the_pooled_median():
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]])
    # pairwise squared distances 1, 9, 4 (each twice): median 4
    assert median_bandwidth2(x, y) == pytest.approx(4.0)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same D"):
        mmd2_unbiased(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="at least 2"):
        mmd2_unbiased(torch.zeros(1, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="unknown MMD kernel"):
        mmd2_unbiased(torch.zeros(3, 2), torch.ones(3, 2), "linear")
