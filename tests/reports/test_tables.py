import csv
import io

import numpy as np
import pytest

from continual_diffusion.reports import tables
from tests.reports.helpers import COSTS, fake_summary, lower

CLORA = lower([[1.0], [0.9, 0.8], [0.9, 0.8, 0.7]])
LORA = lower([[1.0], [0.5, 1.0], [0.2, 0.4, 1.0]])


@pytest.fixture
def summary():
    return fake_summary({("faces", "clora", "accuracy_closed"): [CLORA, CLORA * 0.5],
                         ("faces", "lora_sequential", "accuracy_closed"): [LORA, LORA],
                         ("faces", "clora", "mmd"): [CLORA * 0.01, CLORA * 0.02],
                         ("faces", "lora_sequential", "mmd"): [LORA * 0.01, LORA * 0.01]}, seeds=(0, 1))


def test_csv_holds_a_and_f_from_the_matrices(summary):
    rows = list(csv.DictReader(io.StringIO(tables.csv_text(summary, COSTS, "faces"))))
    assert [r["method"] for r in rows] == ["clora", "lora_sequential"]
    lora = rows[1]
    assert float(lora["A_accuracy_closed_mean"]) == pytest.approx(np.mean([0.2, 0.4, 1.0]))
    assert float(lora["F_accuracy_closed_mean"]) == pytest.approx(np.mean([1.0 - 0.2, 1.0 - 0.4]))
    assert float(lora["A_accuracy_closed_std"]) == 0.0
    clora = rows[0]  # two seeds: CLORA and CLORA / 2
    finals = [np.mean(CLORA[-1]), np.mean(CLORA[-1] * 0.5)]
    assert float(clora["A_accuracy_closed_mean"]) == pytest.approx(np.mean(finals))
    assert float(clora["A_accuracy_closed_std"]) == pytest.approx(np.std(finals, ddof=1))
    assert float(clora["n_param_percent"]) == 0.41
    # MMD: lower is better, so forgetting is the growth R[T, i] - R[i, i]
    assert float(lora["F_mmd_mean"]) == pytest.approx(-0.01 * np.mean([1.0 - 0.2, 1.0 - 0.4]))


def test_markdown_has_one_row_per_method_and_the_formulas(summary):
    md = tables.markdown(summary, COSTS, "faces")
    body = [line for line in md.splitlines() if line.startswith("| ") and "method" not in line]
    assert [line.split(" | ")[0] for line in body] == ["| C-LoRA", "| LoRA (sequential)"]
    assert "A = (1/T) sum_i R[T, i]" in md and "unbiased MMD^2, kernel poly" in md
    assert "0.00" in md  # small MMD values keep three significant digits


def test_latex_is_a_tabular_with_every_column(summary):
    tex = tables.latex(summary, COSTS, "faces")
    assert r"\begin{tabular}{lrrrrr}" in tex  # method, N_param, 2 metrics x (A, F)
    assert tex.count(r"\\") == 3  # header + 2 rows
    assert "MMD\\^{}2" in tex and "accuracy\\_closed" in tex


def test_write_tables_writes_every_format(summary, tmp_path):
    tables.write_tables(summary, COSTS, "smoke", tmp_path / "tables")
    names = {p.name for p in (tmp_path / "tables").iterdir()}
    assert names == {"faces.md", "faces.csv", "faces.tex", "tables.md"}
    assert (tmp_path / "tables" / "tables.md").read_text().startswith("## Results (smoke profile)")


def test_n_param_is_the_benchmarks_own():
    both = fake_summary({("faces", "clora", "accuracy_closed"): [CLORA],
                         ("landmarks", "clora", "accuracy_closed"): [CLORA]})
    assert tables.table_rows(both, COSTS, "faces")[0]["n_param"] == 0.41
    assert tables.table_rows(both, COSTS, "landmarks")[0]["n_param"] == 1.64  # a larger rank there
