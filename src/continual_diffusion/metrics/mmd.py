"""Maximum mean discrepancy between generated and real features (the paper's A_mmd / F_mmd).

Unbiased estimate of MMD^2 between samples X (m rows) and Y (n rows) with kernel k:

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
              - 2/(m n) sum_{i, j} k(x_i, y_j)

Kernels (the paper's kernel and scale are UNCERTAIN: a parameter):
  poly   k(x, y) = (x.y / d + 1)^3          (d = feature dimension; KID's kernel, Binkowski et al. 2018)
  rbf    k(x, y) = exp(-||x - y||^2 / (2 s^2)), s^2 = median of the pooled pairwise squared distances

MMD^2_u can be slightly negative when the sets match. Lower is better.
"""

from __future__ import annotations

import torch

KERNELS = ("poly", "rbf")


def _kernel(a: torch.Tensor, b: torch.Tensor, kernel: str, bandwidth2: float | None, dim: int) -> torch.Tensor:
    if kernel == "poly":
        return (a @ b.T / dim + 1.0) ** 3
    if kernel == "rbf":
        return torch.exp(-torch.cdist(a, b).pow(2) / (2.0 * bandwidth2))
    raise ValueError(f"unknown MMD kernel {kernel!r} (expected one of {', '.join(KERNELS)})")


def median_bandwidth2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Median of the pooled pairwise squared distances (i != j): the rbf kernel's s^2."""
    z = torch.cat([x, y]).double()
    d2 = torch.cdist(z, z).pow(2)
    off = d2[~torch.eye(z.shape[0], dtype=torch.bool)]
    median = float(off.median()) if off.numel() else 1.0
    return median if median > 0 else 1.0


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, kernel: str = "poly", bandwidth2: float | None = None) -> float:
    """MMD^2_u(X, Y) above, computed in float64."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected two N x D feature matrices of the same D, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"MMD needs at least 2 rows per set, got {m} and {n}")
    x, y = x.double(), y.double()
    if kernel == "rbf" and bandwidth2 is None:
        bandwidth2 = median_bandwidth2(x, y)
    d = x.shape[1]
    kxx, kyy, kxy = (_kernel(a, b, kernel, bandwidth2, d) for a, b in ((x, x), (y, y), (x, y)))
    sum_xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    sum_yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sum_xx + sum_yy - 2.0 * kxy.mean())

