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

    from continual_diffusion.stages.report.summary import summarize

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
    from continual_diffusion.stages.report.summary import summarize

    write_results(tmp_path / "results", with_meta=False)
    summary = summarize(tmp_path / "results", ["faces"], ["clora"], [0, 1], {"faces": 2}, tmp_path / "out")
    assert set(summary["faces"]["clora"]) == {"seeds", "accuracy", "accuracy_closed"}


def test_a_seed_evaluated_without_a_metric_is_a_one_line_error_naming_it(tmp_path):
    import json

    from continual_diffusion.stages.report.summary import summarize
    from continual_diffusion.utils.errors import PipelineError

    write_results(tmp_path / "results")
    for scores in (tmp_path / "results" / "faces" / "clora" / "seed_1").glob("task_*/scores.json"):
        data = json.loads(scores.read_text())  # seed 1 evaluated before MMD existed
        for concept in data["concepts"].values():
            del concept["mmd"]
        scores.write_text(json.dumps(data))
    with pytest.raises(PipelineError, match=r"seed_1: metric 'mmd': R has no values") as err:
        summarize(tmp_path / "results", ["faces"], ["clora"], [0, 1], {"faces": 2}, tmp_path / "out")
    assert "no scores.json of this chain records it" in str(err.value)
    assert "seed_0/task_02/scores.json has it (evaluated with another metric list)" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


NO_FACE = "no face detected in the concept's 15 real images"
FACE_META = {"accuracy_closed": {"formula": "g", "higher_is_better": True, "features": "x"},
             "face_similarity": {"formula": "(1/|G|) sum_g s(g)", "higher_is_better": True, "features": "facenet"},
             "face_detection_rate": {"formula": "|G_d| / |G|", "higher_is_better": True, "features": "facenet"}}


def face_value(t, i):
    """face_similarity of concept i after task t in ``write_face_results``: 0.9 when just learned, -0.1 a task."""
    return round(0.9 - 0.1 * (t - i), 6)


def write_face_results(root, undefined, methods=("clora", "lora_sequential"), seeds=(0, 1), tasks=3):
    """Full-schedule results of a face benchmark; face_similarity is null with the reason NO_FACE for the
    concepts ``undefined[(method, seed)]``, as metrics/face_identity.face_scores records it."""
    import json

    for m in methods:
        for seed in seeds:
            for t in range(1, tasks + 1):
                concepts = {}
                for i in range(1, t + 1):
                    c = {"accuracy_closed": 1.0, "face_detection_rate": 0.8, "face_similarity": face_value(t, i)}
                    if i in undefined.get((m, seed), ()):
                        c.update(face_similarity=None, face_similarity_missing=NO_FACE)
                    concepts[str(i)] = c
                folder = root / "faces" / m / f"seed_{seed}" / f"task_{t:02d}"
                folder.mkdir(parents=True)
                (folder / "scores.json").write_text(json.dumps({"concepts": concepts, "metrics": FACE_META}))


def summarize_faces(tmp_path, undefined):
    from continual_diffusion.stages.report.summary import summarize

    write_face_results(tmp_path / "results", undefined)
    return summarize(tmp_path / "results", ["faces"], ["clora", "lora_sequential"], [0, 1], {"faces": 3},
                     tmp_path / "out")


def test_a_metric_undefined_for_every_concept_is_missing_with_its_reason_not_an_error(tmp_path):
    import json

    from continual_diffusion.stages.report.summary import SUMMARY_KEYS

    summary = summarize_faces(tmp_path, {("clora", 0): {1, 2, 3}, ("clora", 1): {1, 2, 3}})
    clora = summary["faces"]["clora"]["face_similarity"]
    assert clora["missing"] == f"undefined for concepts 1, 2, 3: {NO_FACE}"
    assert clora["undefined"] == [[1, 1], [2, 1], [2, 2], [3, 1], [3, 2], [3, 3]]
    for k in SUMMARY_KEYS:
        assert np.isnan(clora[k]["mean"]) and np.isnan(clora[k]["std"]), k
    lora = summary["faces"]["lora_sequential"]["face_similarity"]  # the other method is unaffected
    assert "missing" not in lora and "undefined" not in lora
    assert lora["final"]["mean"] == pytest.approx(np.mean([0.7, 0.8, 0.9]))
    assert lora["forgetting"]["mean"] == pytest.approx(np.mean([0.2, 0.1]))
    assert summary["faces"]["clora"]["accuracy_closed"]["final"]["mean"] == 1.0  # other metrics of the chain too
    assert summary["faces"]["clora"]["face_detection_rate"]["final"]["mean"] == pytest.approx(0.8)
    stored = json.loads((tmp_path / "out" / "summary.json").read_text())["faces"]["clora"]["face_similarity"]
    assert stored["final"] == {"mean": None, "std": None, "values": [None, None]}
    assert stored["missing"] == clora["missing"] and stored["R_mean"][2] == [None, None, None]
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| faces | clora | n/a | n/a | n/a | n/a | n/a | n/a |" in md
    assert f"- faces / clora: undefined for concepts 1, 2, 3: {NO_FACE}; a number that reads those cells is n/a." in md
    assert "| faces | lora_sequential | 0.900 +- 0.000 |" in md
    assert (tmp_path / "out" / "curves_face_similarity.png").exists()


def test_a_concept_undefined_makes_the_numbers_reading_it_missing_and_keeps_the_other_cells(tmp_path):
    summary = summarize_faces(tmp_path, {("lora_sequential", 0): {3}, ("lora_sequential", 1): {3}})
    entry = summary["faces"]["lora_sequential"]["face_similarity"]
    assert entry["missing"] == f"undefined for concept 3: {NO_FACE}" and entry["undefined"] == [[3, 3]]
    for k in ("plasticity", "plasticity_min", "final", "early_just_learned", "early_final"):  # read R[3, 3]
        assert np.isnan(entry[k]["mean"]), k
    # F compares concepts i < T only: concept 3 is not read, so F stays defined
    assert entry["forgetting"]["mean"] == pytest.approx(np.mean([0.2, 0.1]))
    assert entry["R_mean"][2][:2] == pytest.approx([0.7, 0.8]) and np.isnan(entry["R_mean"][2][2])


def test_a_concept_undefined_in_one_seed_is_missing_in_the_seed_mean_and_names_the_seed(tmp_path):
    summary = summarize_faces(tmp_path, {("clora", 1): {2}})
    entry = summary["faces"]["clora"]["face_similarity"]
    assert entry["missing"] == f"undefined for concept 2 (seeds 1): {NO_FACE}"
    assert entry["final"]["values"][0] == pytest.approx(0.8) and np.isnan(entry["final"]["values"][1])
    assert np.isnan(entry["final"]["mean"])
    assert np.isnan(entry["R_mean"][2][1])  # seed 0's value alone is not the seed mean
    assert entry["R_per_seed"][0][2][1] == pytest.approx(0.8)
