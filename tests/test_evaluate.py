"""The evaluation schedule: which cells R[t, i] an evaluate job scores (evaluate.scheduled_concepts)."""

import numpy as np
import pytest

from continual_diffusion.metrics.continual import chain_metrics
from continual_diffusion.stages.evaluate import scheduled_concepts
from continual_diffusion.utils.errors import PipelineError


def test_full_schedule_scores_every_learned_concept():
    assert [scheduled_concepts(t, 4, "full") for t in range(1, 5)] == [[1], [1, 2], [1, 2, 3], [1, 2, 3, 4]]


def test_sparse_schedule_scores_the_new_concept_concept_1_and_everything_at_the_end():
    cells = {t: scheduled_concepts(t, 10, "sparse") for t in range(1, 11)}
    assert cells[1] == [1]
    assert cells[2] == [1, 2] and cells[5] == [1, 5] and cells[9] == [1, 9]
    assert cells[10] == list(range(1, 11))
    assert sum(len(c) for c in cells.values()) == 27   # of the full schedule's 55


def test_sparse_and_full_give_the_same_p_a_f():
    """P, A and F read only cells the sparse schedule keeps: blanking the others changes none of them."""
    rng = np.random.default_rng(0)
    t = 6
    full = np.tril(rng.uniform(size=(t, t)))
    full[np.triu_indices(t, 1)] = np.nan
    sparse = np.full_like(full, np.nan)
    for task in range(1, t + 1):
        for i in scheduled_concepts(task, t, "sparse"):
            sparse[task - 1, i - 1] = full[task - 1, i - 1]
    a, b = chain_metrics(full), chain_metrics(sparse)
    for key in ("plasticity", "final", "forgetting", "early_just_learned", "early_final"):
        assert a[key] == pytest.approx(b[key])
    assert a["concept1_curve"] == b["concept1_curve"]
    assert np.isnan(sparse[3, 1])   # R[4, 2] skipped


@pytest.mark.parametrize("task, n, schedule", [(0, 10, "sparse"), (11, 10, "full"), (3, 10, "dense")])
def test_bad_schedule_or_task_is_a_one_line_error(task, n, schedule):
    with pytest.raises(PipelineError):
        scheduled_concepts(task, n, schedule)
