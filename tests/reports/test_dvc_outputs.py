import csv
import json

import pytest

from continual_diffusion.stages.report import dvc_outputs
from tests.reports.helpers import COSTS, fake_summary, lower

R = lower([[1.0], [0.5, 0.9], [0.25, 0.75, 0.8]])


def test_metrics_and_long_csvs_hold_the_matrix(tmp_path):
    summary = fake_summary({("faces", "clora", "accuracy_closed"): [R]})
    dvc_outputs.write_dvc_outputs(summary, COSTS, tmp_path / "metrics.json", tmp_path / "plots", None, [0],
                                  {"faces": 3})
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["faces"]["clora"]["accuracy_closed"] == {
        "A": pytest.approx(0.6), "F": pytest.approx(((1 - 0.25) + (0.9 - 0.75)) / 2), "P": pytest.approx(0.9)}
    assert metrics["faces"]["clora"]["n_param_percent"] == 0.41
    rows = list(csv.DictReader((tmp_path / "plots" / "concept1.csv").open()))
    assert [(r["after_task"], float(r["value"])) for r in rows] == [("1", 1.0), ("2", 0.5), ("3", 0.25)]
    diag = list(csv.DictReader((tmp_path / "plots" / "just_learned.csv").open()))
    assert [float(r["value"]) for r in diag] == [1.0, 0.9, 0.8]
    assert {r["metric"] for r in diag} == {"accuracy_closed"} and {r["method"] for r in diag} == {"clora"}
