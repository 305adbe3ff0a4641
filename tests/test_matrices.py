"""Metric matrices R per chain: read from scores, written as CSV and JSON."""

import json

import numpy as np
import pytest

from continual_diffusion.errors import PipelineError
from continual_diffusion.matrices import matrix_csv, metric_matrix, write_matrices
from tests.test_summary import write_results


def test_matrix_from_scores_and_its_csv(tmp_path):
    write_results(tmp_path / "results")
    r = metric_matrix(tmp_path / "results" / "faces" / "clora" / "seed_0", 2, "accuracy")
    assert r[0, 0] == 1.0 and r[1, 0] == 0.0 and r[1, 1] == 1.0 and np.isnan(r[0, 1])
    assert matrix_csv(r) == "after_task,concept_1,concept_2\n1,1,\n2,0,1\n"


def test_write_matrices_one_pair_per_chain_and_key(tmp_path):
    write_results(tmp_path / "results")
    write_matrices(tmp_path / "results", ["faces"], ["clora"], [0, 1], {"faces": 2}, tmp_path / "out")
    folder = tmp_path / "out" / "faces" / "clora" / "seed_1"
    assert {p.name for p in folder.iterdir()} == {f"{k}.{e}" for k in ("accuracy", "accuracy_closed", "mmd") for e in ("csv", "json")}
    data = json.loads((folder / "mmd.json").read_text())
    assert data["higher_is_better"] is False and data["R"] == [[pytest.approx(0.1), None], [pytest.approx(0.2), pytest.approx(0.2)]]


def test_a_missing_task_result_names_the_file(tmp_path):
    write_results(tmp_path / "results")
    with pytest.raises(PipelineError, match=r"task_03/scores.json: evaluation result missing"):
        metric_matrix(tmp_path / "results" / "faces" / "clora" / "seed_0", 3)
