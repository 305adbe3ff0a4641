"""Custom Diffusion's closed-form constrained merge (models/kv_merge.py)."""

import torch

from continual_diffusion.models.kv_merge import constrained_merge


def problem(seed=0, d=12, out=7, n_reg=40):
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(out, d, generator=g, dtype=torch.float64)
    reg = torch.randn(n_reg, d, generator=g, dtype=torch.float64)
    targets = [(w0 + 0.3 * torch.randn(out, d, generator=g, dtype=torch.float64),
                torch.randn(2, d, generator=g, dtype=torch.float64)) for _ in range(3)]
    return w0, reg, targets


def test_merged_weights_reproduce_every_concepts_outputs():
    w0, reg, targets = problem()
    merged = constrained_merge(w0, reg, targets, ridge=0.0)
    for wi, ci in targets:
        torch.testing.assert_close(merged @ ci.T, wi @ ci.T, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(merged, targets[0][0])  # not simply one of the inputs


def test_merge_is_the_constrained_minimum():
    """Any other feasible W (W* + N with N C^T = 0) is farther from W0 on the regularization features."""
    w0, reg, targets = problem(seed=1)
    merged = constrained_merge(w0, reg, targets, ridge=0.0)
    c = torch.cat([ci for _, ci in targets])
    null = torch.linalg.svd(c).Vh[c.shape[0]:]  # rows spanning {x : C x = 0}
    objective = lambda w: ((w - w0) @ reg.T).pow(2).sum()  # noqa: E731
    g = torch.Generator().manual_seed(5)
    for _ in range(5):
        other = merged + torch.randn(w0.shape[0], null.shape[0], generator=g, dtype=torch.float64) @ null * 0.1
        torch.testing.assert_close(other @ c.T, merged @ c.T)
        assert objective(other) > objective(merged)


def test_single_task_is_its_own_weights_and_none_is_the_base():
    w0, reg, targets = problem(seed=2)
    assert torch.equal(constrained_merge(w0, reg, targets[:1]), targets[0][0])
    assert torch.equal(constrained_merge(w0, reg, []), w0)
