"""Plasticity / forgetting summaries against a hand-computed accuracy matrix."""

import numpy as np
import pytest

from continual_diffusion.metrics.continual import chain_metrics

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


def write_results(root, seeds=((0, 1.0), (1, 0.5)), with_meta=True):
    import json

    meta = {"accuracy": {"formula": "f", "higher_is_better": True, "features": "x"},
            "accuracy_closed": {"formula": "g", "higher_is_better": True, "features": "x"},
            "mmd": {"formula": "h", "higher_is_better": False, "features": "y"}}
    for seed, diag in seeds:
        for t in (1, 2):
            folder = root / "faces" / "clora" / f"seed_{seed}" / f"task_{t:02d}"
            folder.mkdir(parents=True)
            concepts = {str(i): {"accuracy": diag if i == t else 0.0, "accuracy_closed": 1.0,
                                 "mmd": 0.1 * t, "predicted": ["a"]} for i in range(1, t + 1)}
            (folder / "scores.json").write_text(json.dumps({"concepts": concepts, **({"metrics": meta} if with_meta else {})}))


def test_summarize_reads_scores_and_averages_over_seeds(tmp_path):
    import json

    from continual_diffusion.summary import summarize

    write_results(tmp_path / "results")
    summary = summarize(tmp_path / "results", ["faces"], ["clora"], [0, 1], {"faces": 2}, tmp_path / "out")
    open_set = summary["faces"]["clora"]["accuracy"]
    assert open_set["plasticity"]["mean"] == pytest.approx(0.75)
    assert open_set["plasticity"]["std"] == pytest.approx(np.std([1.0, 0.5], ddof=1))
    assert open_set["forgetting"]["values"] == [1.0, 0.5]
    assert summary["faces"]["clora"]["accuracy_closed"]["forgetting"]["mean"] == 0.0
    # MMD of concept 1 grew from 0.1 (after task 1) to 0.2 (after task 2): lower is better, forgetting +0.1
    assert summary["faces"]["clora"]["mmd"]["forgetting"]["mean"] == pytest.approx(0.1)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "summary.json", "summary.md", "curves_accuracy.png", "curves_accuracy_closed.png", "curves_mmd.png"}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["faces"]["clora"]["accuracy"]["R_mean"][0][1] is None
    assert "## mmd (lower is better)" in (tmp_path / "out" / "summary.md").read_text()


def test_results_without_a_metrics_entry_are_read_as_identity_accuracy(tmp_path):
    from continual_diffusion.summary import summarize

    write_results(tmp_path / "results", with_meta=False)
    summary = summarize(tmp_path / "results", ["faces"], ["clora"], [0, 1], {"faces": 2}, tmp_path / "out")
    assert set(summary["faces"]["clora"]) == {"seeds", "accuracy", "accuracy_closed"}


def test_a_seed_evaluated_without_a_metric_is_a_one_line_error_naming_it(tmp_path):
    import json

    from continual_diffusion.errors import PipelineError
    from continual_diffusion.summary import summarize

    write_results(tmp_path / "results")
    for scores in (tmp_path / "results" / "faces" / "clora" / "seed_1").glob("task_*/scores.json"):
        data = json.loads(scores.read_text())  # seed 1 evaluated before MMD existed
        for concept in data["concepts"].values():
            del concept["mmd"]
        scores.write_text(json.dumps(data))
    with pytest.raises(PipelineError, match=r"seed_1: metric 'mmd': R has no values"):
        summarize(tmp_path / "results", ["faces"], ["clora"], [0, 1], {"faces": 2}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
