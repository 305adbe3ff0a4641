"""Plasticity / forgetting summaries against a hand-computed accuracy matrix."""

import numpy as np
import pytest

from continual_diffusion.summary import chain_metrics

NAN = np.nan
R = np.array([
    [1.0, NAN, NAN],
    [0.5, 0.8, NAN],
    [0.25, 0.6, 0.9],
])


def test_chain_metrics_by_hand():
    m = chain_metrics(R, early=2)
    assert m["plasticity"] == pytest.approx((1.0 + 0.8 + 0.9) / 3)
    assert m["plasticity_min"] == pytest.approx(0.8)
    assert m["final"] == pytest.approx((0.25 + 0.6 + 0.9) / 3)
    assert m["forgetting"] == pytest.approx(((1.0 - 0.25) + (0.8 - 0.6)) / 2)
    assert m["early_just_learned"] == pytest.approx(0.9)
    assert m["early_final"] == pytest.approx((0.25 + 0.6) / 2)
    assert m["concept1_curve"] == [1.0, 0.5, 0.25]


def test_no_forgetting_on_a_single_task():
    assert chain_metrics(np.array([[0.7]]))["forgetting"] == 0.0
