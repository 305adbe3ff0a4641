"""Continual metrics on a hand-computed matrix."""

import numpy as np
import pytest

from continual_diffusion.metrics.continual import chain_metrics, final_average, forgetting, plasticity

NAN = np.nan
R = np.array([[0.9, NAN, NAN],
              [0.6, 0.8, NAN],
              [0.3, 0.7, 1.0]])


def test_by_hand():
    assert plasticity(R) == pytest.approx((0.9 + 0.8 + 1.0) / 3)
    assert final_average(R) == pytest.approx((0.3 + 0.7 + 1.0) / 3)
    assert forgetting(R) == pytest.approx(((0.9 - 0.3) + (0.8 - 0.7)) / 2)
    m = chain_metrics(R, early=2)
    assert m["early_just_learned"] == pytest.approx(0.85) and m["early_final"] == pytest.approx(0.5)
    assert m["plasticity_min"] == pytest.approx(0.8)
    assert m["concept1_curve"] == pytest.approx([0.9, 0.6, 0.3])


def test_lower_is_better_metrics_forget_upwards():
    d = np.array([[0.1, NAN], [0.4, 0.2]])  # an MMD that grew from 0.1 to 0.4: forgetting 0.3
    assert forgetting(d, higher_is_better=False) == pytest.approx(0.3)
    assert chain_metrics(d, higher_is_better=False)["plasticity_min"] == pytest.approx(0.2)  # the worst


def test_one_task_has_no_forgetting_and_bad_shapes_are_refused():
    assert forgetting(np.array([[0.7]])) == 0.0
    with pytest.raises(ValueError, match="T x T"):
        plasticity(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no values"):
        plasticity(np.full((2, 2), NAN))


def test_concept_curve_keeps_only_evaluated_cells_and_flags_gaps():
    from continual_diffusion.metrics.continual import concept_curve

    nan = np.nan
    r = np.array([[0.9, nan, nan, nan],
                  [0.8, 0.7, nan, nan],
                  [nan, nan, 0.6, nan],   # a sparse schedule skipped R[3, 1] and R[3, 2]
                  [0.5, 0.4, 0.3, 0.2]])
    assert concept_curve(r, 1) == ([1, 2, 4], [0.9, 0.8, 0.5], True)
    assert concept_curve(r, 2) == ([2, 4], [0.7, 0.4], True)
    assert concept_curve(r, 3) == ([3, 4], [0.6, 0.3], False)
    assert concept_curve(r, 4) == ([4], [0.2], False)


def test_a_number_reading_an_undefined_cell_is_missing_not_an_average_of_fewer_concepts():
    undefined = np.zeros((3, 3), dtype=bool)
    undefined[1:, 1] = True  # concept 2 undefined wherever it was evaluated (e.g. no face in its real images)
    r = np.where(undefined, NAN, R)
    m = chain_metrics(r, early=1, undefined=undefined)
    for name in ("plasticity", "plasticity_min", "final", "forgetting"):
        assert np.isnan(m[name]), name
    assert m["early_just_learned"] == pytest.approx(0.9) and m["early_final"] == pytest.approx(0.3)  # concept 1 only
    assert m["concept1_curve"] == pytest.approx([0.9, 0.6, 0.3])
    # without the mask the same NaN cells read as "not evaluated" and are averaged over (the schedule's gaps)
    assert chain_metrics(r, early=1)["final"] == pytest.approx((0.3 + 1.0) / 2)


def test_an_entirely_undefined_matrix_is_all_missing_but_an_unevaluated_one_is_an_error():
    undefined = np.tril(np.ones((3, 3), dtype=bool))
    m = chain_metrics(np.full((3, 3), NAN), undefined=undefined)
    assert all(np.isnan(m[k]) for k in ("plasticity", "plasticity_min", "final", "forgetting", "early_just_learned",
                                        "early_final"))
    assert all(np.isnan(v) for v in m["concept1_curve"])
    with pytest.raises(ValueError, match="no values"):
        chain_metrics(np.full((3, 3), NAN), undefined=np.zeros((3, 3), dtype=bool))


def test_cells_read_by_each_number():
    from continual_diffusion.metrics.continual import cells_read

    cells = {k: sorted(zip(*np.nonzero(v))) for k, v in cells_read(3, early=2).items()}
    assert cells["plasticity"] == cells["plasticity_min"] == [(0, 0), (1, 1), (2, 2)]
    assert cells["final"] == [(2, 0), (2, 1), (2, 2)]
    assert cells["forgetting"] == [(0, 0), (1, 1), (2, 0), (2, 1)]
    assert cells["early_just_learned"] == [(0, 0), (1, 1)] and cells["early_final"] == [(2, 0), (2, 1)]
