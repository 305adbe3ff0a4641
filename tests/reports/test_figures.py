import json

import pytest

from continual_diffusion.stages.report import figures
from continual_diffusion.utils.errors import PipelineError
from tests.reports.helpers import fake_summary, lower

R = lower([[1.0], [0.5, 0.9]])


def fake_runs(root, methods=("clora", "lora_sequential")):
    for m in methods:
        for t in (1, 2):
            folder = root / "faces" / m / "seed_0" / f"task_{t:02d}"
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps({"delta_norm_mean": 1.0 / t, "delta_norm_max": 2.0 / t}))
            log = [{"step": s, "diffusion": 0.1, **({"forget_raw": 1e-4 * s * (t - 1)} if m == "clora" else {})}
                   for s in (1, 2, 3)]
            (folder / "log.json").write_text(json.dumps(log))


def test_every_figure_is_written_and_reruns_are_byte_identical(tmp_path):
    summary = fake_summary({("faces", m, k): [R] for m in ("clora", "lora_sequential")
                            for k in ("accuracy_closed", "mmd")})
    fake_runs(tmp_path / "runs")
    names = figures.write_figures(summary, tmp_path / "a", tmp_path / "runs", [0], {"faces": 2})
    assert names == ["clora_plasticity.png", "concept_curves_accuracy_closed.png", "concept_curves_mmd.png",
                     "heatmap_faces_accuracy_closed.png", "heatmap_faces_mmd.png"]
    figures.write_figures(summary, tmp_path / "b", tmp_path / "runs", [0], {"faces": 2})
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_adapter_history_reads_the_norms_and_penalties(tmp_path):
    fake_runs(tmp_path)
    h = figures.adapter_history(tmp_path, "faces", "clora", 0, 2)
    assert h["norm_mean"] == [1.0, 0.5] and h["norm_max"] == [2.0, 1.0]
    assert h["penalty_mean"] == pytest.approx([0.0, 2e-4])


def test_a_missing_training_log_names_the_file(tmp_path):
    fake_runs(tmp_path)
    (tmp_path / "faces" / "clora" / "seed_0" / "task_02" / "log.json").unlink()
    with pytest.raises(PipelineError, match=r"task_02/log.json: missing"):
        figures.adapter_history(tmp_path, "faces", "clora", 0, 2)


def drawn_texts(monkeypatch):
    """Every text drawn in an axes of the figures closed from now on, per figure."""
    import matplotlib.pyplot as plt

    texts, close = [], plt.close

    def keep(fig):
        texts.append([t.get_text() for ax in fig.axes for t in ax.texts])
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
    return texts


def test_an_undefined_metric_is_drawn_as_n_a_with_its_reason(tmp_path, monkeypatch):
    from tests.reports.helpers import face_summary
    from tests.test_summary import NO_FACE

    summary = face_summary(tmp_path)
    texts = drawn_texts(monkeypatch)
    figures.heatmaps(summary, "faces", "face_similarity", tmp_path / "heatmap.png")
    assert texts[-1].count("n/a") == 6  # C-LoRA's six cells on and below the diagonal
    assert f"n/a: undefined for concepts 1, 2, 3: {NO_FACE}" in [t.replace("\n", " ") for t in texts[-1]]
    assert "0.90" in texts[-1]  # LoRA's cells keep their values
    figures.concept_curves(summary, "face_similarity", tmp_path / "curves.png")
    assert [t.replace("\n", " ") for t in texts[-1]] == [f"n/a: undefined for concepts 1, 2, 3: {NO_FACE}"]
    names = figures.write_figures(summary, tmp_path / "figures")
    assert "heatmap_faces_face_similarity.png" in names and "concept_curves_face_similarity.png" in names


def test_a_heatmap_with_no_defined_cell_at_all_is_drawn(tmp_path, monkeypatch):
    from tests.reports.helpers import face_summary

    every = {("clora", 0): {1, 2, 3}, ("lora_sequential", 0): {1, 2, 3}}
    summary = face_summary(tmp_path, every)
    texts = drawn_texts(monkeypatch)
    figures.heatmaps(summary, "faces", "face_similarity", tmp_path / "heatmap.png")
    assert texts[-1].count("n/a") == 12 and (tmp_path / "heatmap.png").stat().st_size > 0


def test_finite_figures_draw_no_n_a(tmp_path, monkeypatch):
    summary = fake_summary({("faces", m, "accuracy_closed"): [R] for m in ("clora", "lora_sequential")})
    texts = drawn_texts(monkeypatch)
    figures.heatmaps(summary, "faces", "accuracy_closed", tmp_path / "heatmap.png")
    figures.concept_curves(summary, "accuracy_closed", tmp_path / "curves.png")
    assert texts[0] == ["1.00", "0.50", "0.90", "1.00", "0.50", "0.90"] and texts[1] == []
