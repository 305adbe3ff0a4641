"""Custom Diffusion's closed-form constrained merge of fine-tuned cross-attention K/V weights.

Kumari et al. (2023), Sec. 3.2: for one projection W (out x d) with pre-trained value W0, given
  C_reg (n x d)   text features of regularization prompts (the merged model should act like W0 on them)
  C     (m x d)   text features of the concept prompts' positions to keep, stacked over concepts
  V     (m x out) the outputs each concept's own fine-tuned weights give there: V[j] = W_i(j) C[j]
solve
  W* = argmin_W || (W - W0) C_reg^T ||_F^2   subject to   W C^T = V^T
with the Lagrangian; for M = C_reg^T C_reg (+ ridge * I, d x d) the solution is
  W* = W0 + (V^T - W0 C^T) (C M^-1 C^T)^-1 C M^-1 .
It meets the constraint exactly (W* C^T = V^T) whenever C has full row rank (m <= d). Computed in
float64. A single concept needs no merge: its fine-tuned weights are returned unchanged.
"""

from __future__ import annotations

import torch


def constrained_merge(w0: torch.Tensor, reg_features: torch.Tensor, targets: list[tuple[torch.Tensor, torch.Tensor]],
                      ridge: float = 1e-6) -> torch.Tensor:
    """W* for one projection; ``targets`` = [(W_i, C_i)]: concept i's fine-tuned weights and its
    constrained feature rows (m_i x d). ``ridge`` is relative to the mean diagonal of C_reg^T C_reg."""
    if not targets:
        return w0.clone()
    if len(targets) == 1:
        return targets[0][0].clone()
    dtype = w0.dtype
    w0 = w0.double()
    reg = reg_features.double()
    m = reg.T @ reg
    m = m + ridge * m.diagonal().mean() * torch.eye(m.shape[0], dtype=m.dtype)
    c = torch.cat([ci.double() for _, ci in targets])
    v_t = torch.cat([wi.double() @ ci.double().T for wi, ci in targets], dim=1)  # out x m
    d = torch.linalg.solve(m, c.T).T  # C M^-1  (m x d); M is symmetric
    gram = d @ c.T  # C M^-1 C^T (m x m)
    residual = v_t - w0 @ c.T  # out x m
    update = torch.linalg.solve(gram.T, residual.T).T  # residual (C M^-1 C^T)^-1
    return (w0 + update @ d).to(dtype)
