import pytest

from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.stages.report.readme import BEGIN, END, replace_section, update_readme


def test_only_the_marked_section_changes(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\nintro\n{BEGIN}\nold table\n{END}\nafter\n")
    tables = tmp_path / "tables.md"
    tables.write_text("## Results (tiny profile)\n\n### faces\n\n| a |\n|---|\n| 1 |\n")
    assert update_readme(readme, tables, check=True) is True
    assert "old table" in readme.read_text()  # --check leaves it alone
    assert update_readme(readme, tables) is True
    text = readme.read_text()
    assert text.startswith("# Title\nintro\n") and text.endswith(f"{END}\nafter\n")
    assert "### Results (tiny profile)" in text and "#### faces" in text and "old table" not in text
    assert update_readme(readme, tables, check=True) is False


def test_missing_markers_fail_with_the_file_name():
    with pytest.raises(PipelineError, match="README.md: needs exactly one"):
        replace_section("no markers", "table", "README.md")


def test_the_readme_has_its_results_section():
    text = open("README.md").read()
    assert text.count(BEGIN) == 1 and text.count(END) == 1


def test_the_record_s_platform_is_written_above_the_table(tmp_path):
    import json

    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n{BEGIN}\nold\n{END}\n")
    tables = tmp_path / "tables.md"
    tables.write_text("| a |\n|---|\n| 1 |\n")
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
