"""Continual metrics from a metric matrix R (T x T, R[t, i] = metric of concept i after task t,
1-based in the formulas, NaN above the diagonal):

  plasticity  P = (1/T) sum_t R[t, t]                          (just learned, averaged over tasks)
  final       A = (1/T) sum_i R[T, i]                          (after the whole sequence; the paper's A)
  forgetting  F = (1/(T-1)) sum_{i<T} s (R[i, i] - R[T, i])    (the paper's F: how much a concept's
              metric moved the wrong way between right after it was learned and the end)
  early       mean of R[i, i] and of R[T, i] over the first k concepts (k = min(5, T))
  concept 1   the curve R[1..T, 1]

s = +1 for a higher-is-better metric (accuracy, similarity), -1 for a lower-is-better one (MMD), so
F > 0 always means forgetting. CODA-Prompt's F_N averages the drop of old tasks in the same way.

Cells not evaluated (NaN: above the diagonal, skipped by the sparse schedule) are left out of the
means. Cells *undefined* for their concept (the metric has no value there, e.g. face similarity when
no face is found in the concept's real images; ``undefined`` of ``chain_metrics``) are not: a number
that reads one is NaN (missing), never an average over the remaining concepts, which would compare
a method's A over T - 1 concepts with the paper's over T.
"""

from __future__ import annotations

import numpy as np


def check_matrix(r: np.ndarray) -> np.ndarray:
    r = np.asarray(r, dtype=float)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"R must be a non-empty T x T matrix, got shape {r.shape}")
    lower = np.tril(np.ones_like(r, dtype=bool))
    if np.isnan(r[lower]).all():
        raise ValueError("R has no values on or below the diagonal")
    return r


def plasticity(r: np.ndarray) -> float:
    return float(np.nanmean(np.diag(check_matrix(r))))


def final_average(r: np.ndarray) -> float:
    return float(np.nanmean(check_matrix(r)[-1]))


def forgetting(r: np.ndarray, higher_is_better: bool = True) -> float:
    r = check_matrix(r)
    if r.shape[0] == 1:
        return 0.0
    drop = np.diag(r)[:-1] - r[-1, :-1]
    return float(np.nanmean(drop if higher_is_better else -drop))


def concept_curve(r: np.ndarray, concept: int) -> tuple[list[int], list[float], bool]:
    """Concept ``concept``'s (1-based) evaluated cells R[t, concept], t >= concept: the tasks t, the values,
    and whether cells in between were skipped (a sparse evaluation schedule), for plotting."""
    column = np.asarray(r, dtype=float)[concept - 1:, concept - 1]
    tasks = [concept + k for k in range(column.size) if np.isfinite(column[k])]
    gaps = bool(tasks) and len(tasks) < tasks[-1] - tasks[0] + 1
    return tasks, [float(column[t - concept]) for t in tasks], gaps


def cells_read(t: int, early: int = 5) -> dict[str, np.ndarray]:
    """For a T x T R: the cells each number of ``chain_metrics`` reads (boolean masks)."""
    diag = np.eye(t, dtype=bool)
    last = np.zeros((t, t), dtype=bool)
    last[-1] = True
    first = np.zeros((t, t), dtype=bool)
    first[:, :min(early, t)] = True
    forget = diag | last
    forget[:, -1] = False  # F compares concepts i < T only
    return {"plasticity": diag, "plasticity_min": diag, "final": last, "forgetting": forget,
            "early_just_learned": diag & first, "early_final": last & first}


def chain_metrics(r: np.ndarray, higher_is_better: bool = True, early: int = 5,
                  undefined: np.ndarray | None = None) -> dict:
    """Every number above for one chain (one benchmark, method and seed).

    ``undefined``: T x T bool, the cells undefined for their concept (module docstring); each number
    that reads one of them (``cells_read``) is NaN. A matrix with neither a value nor an undefined
    cell on or below the diagonal raises ValueError (the chain was not evaluated with the metric).
    """
    r = np.asarray(r, dtype=float)
    if undefined is None or not np.any(undefined):
        return _chain_metrics(check_matrix(r), higher_is_better, early)
    undefined = np.asarray(undefined, dtype=bool)
    if undefined.shape != r.shape:
        raise ValueError(f"undefined cells of shape {undefined.shape} for R of shape {r.shape}")
    out = _chain_metrics(check_matrix(np.where(undefined, 0.0, r)), higher_is_better, early)  # 0.0: a placeholder
    for name, cells in cells_read(r.shape[0], early).items():
        if (cells & undefined).any():
            out[name] = float("nan")
    out["concept1_curve"] = [float(v) for v in np.where(undefined, np.nan, r)[:, 0]]
    return out


def _chain_metrics(r: np.ndarray, higher_is_better: bool, early: int) -> dict:
    diag = np.diag(r)
    k = min(early, r.shape[0])
    return {
        "plasticity": plasticity(r),
        "plasticity_min": float(np.nanmin(diag)) if higher_is_better else float(np.nanmax(diag)),
        "final": final_average(r),
        "forgetting": forgetting(r, higher_is_better),
        "early_just_learned": float(np.nanmean(diag[:k])),
        "early_final": float(np.nanmean(r[-1, :k])),
        "concept1_curve": [float(v) for v in r[:, 0]],
    }
