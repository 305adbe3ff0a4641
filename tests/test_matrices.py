"""Metric matrices R per chain: read from scores, written as CSV and JSON."""

import json

import numpy as np
import pytest

from continual_diffusion.stages.report.matrices import matrix_csv, metric_matrix, read_metric, write_matrices
from continual_diffusion.utils.errors import PipelineError
from tests.test_summary import NO_FACE, write_face_results, write_results


def test_matrix_from_scores_and_its_csv(tmp_path):
    write_results(tmp_path / "results")
    r = metric_matrix(tmp_path / "results" / "faces" / "clora" / "seed_0", 2, "accuracy")
    assert r[0, 0] == 1.0 and r[1, 0] == 0.0 and r[1, 1] == 1.0 and np.isnan(r[0, 1])
    assert matrix_csv(r) == "after_task,concept_1,concept_2\n1,1,\n2,0,1\n"


def test_write_matrices_one_pair_per_chain_and_key(tmp_path):
    write_results(tmp_path / "results")
    write_matrices(tmp_path / "results", ["faces"], ["clora"], [0, 1], {"faces": 2}, tmp_path / "out")
    folder = tmp_path / "out" / "faces" / "clora" / "seed_1"
    assert {p.name for p in folder.iterdir()} == {f"{k}.{e}" for k in ("accuracy", "accuracy_closed", "mmd")
                                                  for e in ("csv", "json")}
    data = json.loads((folder / "mmd.json").read_text())
    assert data["higher_is_better"] is False
    assert data["R"] == [[pytest.approx(0.1), None], [pytest.approx(0.2), pytest.approx(0.2)]]


def test_a_missing_task_result_names_the_file(tmp_path):
    write_results(tmp_path / "results")
    with pytest.raises(PipelineError, match=r"task_03/scores.json: evaluation result missing"):
        metric_matrix(tmp_path / "results" / "faces" / "clora" / "seed_0", 3)


def test_undefined_cells_are_told_apart_from_cells_not_evaluated(tmp_path):
    write_face_results(tmp_path / "results", {("clora", 0): {2}}, methods=("clora",), seeds=(0,))
    chain = tmp_path / "results" / "faces" / "clora" / "seed_0"
    r, undefined = read_metric(chain, 3, "face_similarity")
    assert undefined == {(2, 2): NO_FACE, (3, 2): NO_FACE}
    assert np.isnan(r[1, 1]) and np.isnan(r[2, 1]) and r[2, 0] == pytest.approx(0.7)
    assert read_metric(chain, 3, "accuracy_closed")[1] == {}
    assert matrix_csv(r, undefined) == ("after_task,concept_1,concept_2,concept_3\n1,0.9,,\n2,0.8,n/a,\n"
                                        "3,0.7,n/a,0.9\n")


def test_a_null_without_a_reason_is_undefined_with_a_generic_one(tmp_path):
    write_results(tmp_path / "results")
    path = tmp_path / "results" / "faces" / "clora" / "seed_0" / "task_02" / "scores.json"
    data = json.loads(path.read_text())
    data["concepts"]["1"]["mmd"] = None
    path.write_text(json.dumps(data))
    _, undefined = read_metric(tmp_path / "results" / "faces" / "clora" / "seed_0", 2, "mmd")
    assert undefined == {(2, 1): "recorded without a value and without a reason"}


def test_write_matrices_lists_undefined_cells_only_where_there_are_some(tmp_path):
    write_face_results(tmp_path / "results", {("clora", 0): {1}}, methods=("clora",), seeds=(0,))
    write_matrices(tmp_path / "results", ["faces"], ["clora"], [0], {"faces": 3}, tmp_path / "out")
    folder = tmp_path / "out" / "faces" / "clora" / "seed_0"
    face = json.loads((folder / "face_similarity.json").read_text())
    assert face["undefined"] == [{"after_task": t, "concept": 1, "reason": NO_FACE} for t in (1, 2, 3)]
    assert face["R"][2] == [None, pytest.approx(0.8), pytest.approx(0.9)]
    assert "undefined" not in json.loads((folder / "accuracy_closed.json").read_text())
    assert (folder / "face_similarity.csv").read_text().splitlines()[3] == "3,n/a,0.8,0.9"
