import csv
import io

import numpy as np
import pytest

from continual_diffusion.stages.report import tables
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


def test_a_metric_undefined_for_a_method_is_n_a_with_its_reason_in_every_format(tmp_path):
    from tests.reports.helpers import face_summary
    from tests.test_summary import NO_FACE

    summary = face_summary(tmp_path)
    md = tables.markdown(summary, COSTS, "faces")
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    rows = {cells[0]: cells for cells in (line.strip("| ").split(" | ") for line in lines)}
    heads = rows["method"]
    a, f = heads.index("A_face_similarity (up)"), heads.index("F_face_similarity (down)")
    assert rows["C-LoRA"][a] == rows["C-LoRA"][f] == "n/a"
    assert rows["LoRA (sequential)"][a] == "0.800 +- 0.000" and rows["LoRA (sequential)"][f] == "0.150 +- 0.000"
    assert rows["C-LoRA"][heads.index("A_accuracy_closed (up)")] == "1.000 +- 0.000"
    note = f"face_similarity, C-LoRA: undefined for concepts 1, 2, 3: {NO_FACE}; a value that reads those cells is n/a."
    assert f"- {note}" in md
    clora = next(csv.DictReader(io.StringIO(tables.csv_text(summary, COSTS, "faces"))))
    assert (clora["A_face_similarity_mean"], clora["F_face_similarity_std"]) == ("n/a", "n/a")
    assert clora["A_accuracy_closed_mean"] == "1.0"
    tex = tables.latex(summary, COSTS, "faces")
    assert "n/a $\\pm$" not in tex and tex.count(" & n/a") == 2
    assert "no face detected in the concept's 15 real images" in tex
    tables.write_tables(summary, COSTS, "paper_faces", tmp_path / "tables")
    assert "| C-LoRA |" in (tmp_path / "tables" / "tables.md").read_text()


def test_finite_tables_carry_no_missing_notes(summary):
    md = tables.markdown(summary, COSTS, "faces")
    assert "n/a" not in md and "n/a" not in tables.csv_text(summary, COSTS, "faces")
