import json
from pathlib import Path

import pytest

from continual_diffusion.stages.report.readme import BEGIN, END, FIGURE, figure_paths, replace_section, update_readme
from continual_diffusion.utils.errors import PipelineError


def run_outputs(tmp_path, table="| a |\n|---|\n| 1 |\n", figure=b"\x89PNG figure"):
    """A README beside reports/tiny/{tables/tables.md, figures/FIGURE}, as `make readme-results` finds them."""
    tables = tmp_path / "reports" / "tiny" / "tables" / "tables.md"
    tables.parent.mkdir(parents=True)
    tables.write_text(table)
    if figure is not None:
        (tmp_path / "reports" / "tiny" / "figures").mkdir(parents=True)
        (tmp_path / "reports" / "tiny" / "figures" / FIGURE).write_bytes(figure)
    return tables


def test_only_the_marked_section_changes(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\nintro\n{BEGIN}\nold table\n{END}\nafter\n")
    tables = run_outputs(tmp_path, "## Results (tiny profile)\n\n### faces\n\n| a |\n|---|\n| 1 |\n")
    assert update_readme(readme, tables, check=True) is True
    assert "old table" in readme.read_text()  # --check leaves it alone
    assert update_readme(readme, tables) is True
    text = readme.read_text()
    assert text.startswith("# Title\nintro\n") and text.endswith(f"{END}\nafter\n")
    assert "### Results (tiny profile)" in text and "#### faces" in text and "old table" not in text
    assert update_readme(readme, tables, check=True) is False


def test_the_figure_is_copied_beside_the_readme_and_checked(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n{BEGIN}\nold\n{END}\n")
    tables = run_outputs(tmp_path, figure=b"\x89PNG first")
    copy = tmp_path / "docs" / "img" / f"default_run_{FIGURE}"
    assert figure_paths(readme, tables) == (tmp_path / "reports" / "tiny" / "figures" / FIGURE, copy)
    assert update_readme(readme, tables, check=True) is True and not copy.exists()  # --check writes nothing
    assert update_readme(readme, tables) is True
    assert copy.read_bytes() == b"\x89PNG first"
    assert update_readme(readme, tables, check=True) is False
    # a new run's figure alone makes the README stale, and the update replaces the copy (no temporary left)
    (tmp_path / "reports" / "tiny" / "figures" / FIGURE).write_bytes(b"\x89PNG second")
    before = readme.read_text()
    assert update_readme(readme, tables, check=True) is True
    assert update_readme(readme, tables) is True
    assert copy.read_bytes() == b"\x89PNG second" and readme.read_text() == before
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]


def test_a_missing_figure_is_a_one_line_error_naming_it_and_nothing_is_written(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n{BEGIN}\nold\n{END}\n")
    tables = run_outputs(tmp_path, figure=None)
    missing = tmp_path / "reports" / "tiny" / "figures" / FIGURE
    with pytest.raises(PipelineError) as error:
        update_readme(readme, tables)
    assert str(error.value) == f"{missing}: missing"
    assert "\n" not in str(error.value)
    assert "old" in readme.read_text() and not (tmp_path / "docs").exists()


def test_missing_markers_fail_with_the_file_name():
    with pytest.raises(PipelineError, match="README.md: needs exactly one"):
        replace_section("no markers", "table", "README.md")


def test_the_readme_has_its_results_section_and_embeds_the_committed_figure():
    text = open("README.md").read()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    _, copy = figure_paths(Path("README.md"), Path("reports/tiny/tables/tables.md"))
    assert f"]({copy.as_posix()})" in text and copy.is_file()


def test_the_record_s_platform_is_written_above_the_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n{BEGIN}\nold\n{END}\n")
    tables = run_outputs(tmp_path)
    record = tmp_path / "tiny.json"
    record.write_text(json.dumps({"platform": {
        "cpu": {"model": "Some Xeon", "machine": "x86_64", "isa_flags": ["avx2", "avx512f"]},
        "isa_caps": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": None},
        "torch": "2.14.1", "mkl": "2024.2", "onednn": "3.12.0", "numpy": "2.4", "python": "3.11.7",
        "bit_identity_key": "KEY"}}))
    assert update_readme(readme, tables, record=record) is True
    text = readme.read_text()
    assert "Recorded on Some Xeon (x86_64, ISA flags avx2 avx512f; kernels capped: ATEN_CPU_CAPABILITY=avx2)" in text
    assert "`KEY`" in text and text.index("Recorded on") < text.index("| a |")
