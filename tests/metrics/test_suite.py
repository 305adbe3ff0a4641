"""The metric suite on the miniature: the identity evaluator's embedding as feature space.

The key property: on real held-out renders (never training images), the similarity and MMD of a
concept's renders to its own task images beat those to every other concept's task images by a
wide margin, so the metrics measure identity.
"""

import itertools

import numpy as np
import pytest

from continual_diffusion.data.task_images import concept_images
from continual_diffusion.metrics.suite import MetricSuite
from continual_diffusion.stages.identity_evaluator import heldout_renders, train_evaluator
from continual_diffusion.stages.prepare_data import prepare_tasks
from continual_diffusion.utils import config
from continual_diffusion.utils.config import benchmark_config
from continual_diffusion.utils.errors import PipelineError

N_TASKS = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    cfg = config.load(overrides=[
        "profile=smoke", f"data.faces.n_tasks={N_TASKS}", "evaluator.steps=200", "evaluator.train_images_per_concept=48",
        "evaluator.other_train_images=48", "evaluator.width=16", "evaluator.batch_size=32",
        "evaluator.vae_roundtrip=0",  # clean renders only: no base model here (round-trips: tests/test_evaluator.py)
    ])
    bench = benchmark_config(cfg, "faces")
    prepare_tasks(bench, "faces", root / "data" / "tasks" / "faces")
    train_evaluator(cfg, bench, root / "data" / "tasks" / "faces" / "tasks.json", root / "evaluator")
    ids = [t["concept_id"]
           for t in __import__("json").loads((root / "data" / "tasks" / "faces" / "tasks.json").read_text())["tasks"]]
    renders, labels = heldout_renders(bench, ids, per_concept=12, offset=5000, other=0)  # unseen by the evaluator
    held_out = {i + 1: renders[labels == i] for i in range(N_TASKS)}
    return cfg, root, held_out


def test_similarity_and_mmd_separate_right_from_wrong_concepts(trained):
    cfg, root, held_out = trained
    suite = MetricSuite(cfg, "faces", root / "evaluator")
    real = {i: concept_images(root / "data", "faces", i) for i in held_out}
    score = {(i, j): suite.score(i, held_out[i], real[j]) for i, j in itertools.product(held_out, repeat=2)}
    right_sim = np.mean([score[i, i]["image_similarity"] for i in held_out])
    wrong_sim = np.mean([score[i, j]["image_similarity"] for i, j in score if i != j])
    assert right_sim - wrong_sim > 0.3, (right_sim, wrong_sim)
    for i, j in score:
        if i != j:
            assert score[i, i]["image_similarity"] > score[i, j]["image_similarity"]
            assert score[i, i]["mmd"] < score[i, j]["mmd"]
    assert np.mean([score[i, i]["accuracy_closed"] for i in held_out]) >= 0.8


def test_describe_names_formula_direction_and_feature_space(trained):
    cfg, root, _ = trained
    meta = MetricSuite(cfg, "faces", root / "evaluator").describe()
    assert set(meta) == {"accuracy", "accuracy_closed", "other_rate", "p_true", "image_similarity", "mmd"}
    assert meta["mmd"]["higher_is_better"] is False and "kernel poly" in meta["mmd"]["formula"]
    assert meta["image_similarity"]["features"].startswith("identity_evaluator (held-out accuracy ")


def test_metrics_can_be_selected(trained):
    cfg, root, held_out = trained
    only = config.load(overrides=["profile=smoke", f"data.faces.n_tasks={N_TASKS}", "evaluation.metrics=[mmd]",
                                  "evaluation.mmd_kernel=rbf"])
    scores = MetricSuite(only, "faces", root / "evaluator").score(1, held_out[1], concept_images(root / "data", "faces", 1))
    assert set(scores) == {"mmd"}


def test_a_missing_evaluator_or_unknown_metric_is_a_clear_error(trained, tmp_path):
    cfg, _, _ = trained
    with pytest.raises(PipelineError, match="evaluator not built"):
        MetricSuite(cfg, "faces", tmp_path / "nowhere")
    with pytest.raises(PipelineError, match="evaluation.metrics"):
        config.load(overrides=["evaluation.metrics=[fid]"])


class FakeFaces:
    """FaceIdentity's ``embed`` contract: an image with a positive mean has a face, embedded as e_0."""

    def embed(self, images):
        import torch

        detected = torch.tensor([bool(img.mean() > 0) for img in images], dtype=torch.bool)
        feats = torch.zeros(int(detected.sum()), 512)
        feats[:, 0] = 1.0
        return feats, detected


def face_only_suite():
    suite = MetricSuite.__new__(MetricSuite)  # the face branch only: no evaluator, no weights
    suite.metrics, suite.features, suite.face, suite.text_feature = ["face_identity"], None, FakeFaces(), None
    return suite


def test_face_branch_counts_faceless_samples_as_failures_and_records_why_a_concept_is_undefined():
    face, blank = np.full((8, 8, 3), 200, np.uint8), np.zeros((8, 8, 3), np.uint8)
    suite = face_only_suite()
    scores = suite.score(1, np.stack([face, blank, face, blank]), np.stack([face, face]))
    assert scores == {"face_similarity": pytest.approx(0.5), "face_detection_rate": 0.5}
    scores = suite.score(2, np.stack([face, blank]), np.stack([blank, blank, blank]))
    assert scores == {"face_similarity": None, "face_detection_rate": 0.5,
                      "face_similarity_missing": "no face detected in the concept's 3 real images"}


def test_face_similarity_formula_states_the_failure_value():
    suite = MetricSuite.__new__(MetricSuite)
    suite.metrics, suite.kernel, suite.class_word, suite.clip_id, suite.features_name = (
        ["face_identity"], "poly", "person", "clip", "clip")
    formula = suite.describe()["face_similarity"]["formula"]
    assert "s(g) = 0 for a generated image g with no face detected" in formula
    assert "face_similarity_missing" in formula
