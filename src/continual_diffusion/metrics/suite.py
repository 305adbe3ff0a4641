"""The metric suite of one benchmark: which metrics score the generated samples, in which feature space.

``evaluation.metrics`` (params) selects from:
  identity          the miniature's identity classifier: accuracy, accuracy_closed, other_rate, p_true
                    (identity.py; synthetic benchmarks only)
  image_similarity  mean pairwise cosine between generated and real images of the concept in the
                    feature space ``evaluation.features`` (similarity.py)
  mmd               MMD^2_u between generated and real images of the concept in that space, kernel
                    ``evaluation.mmd_kernel`` (mmd.py; the paper's A_mmd / F_mmd)
  face_identity     facenet: face_similarity and face_detection_rate (face_identity.py)
  clip_text         CLIP image-text alignment with the prompt "a photo of a <class word>" (clip_score.py)
``evaluation.features``: ``identity_evaluator`` (the miniature: the evaluator's embedding, extractors.py)
or ``clip`` (the paper profiles: CLIP image features). Real images = the concept's task images.
Every score file carries ``describe()``: the formula, direction and feature space beside the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from continual_diffusion.metrics.identity import identity_scores
from continual_diffusion.metrics.mmd import mmd2_unbiased
from continual_diffusion.metrics.similarity import mean_cosine
from continual_diffusion.models.identity_net import MANIFEST, load_evaluator, predict
from continual_diffusion.utils.errors import PipelineError

METRICS = ("identity", "image_similarity", "mmd", "face_identity", "clip_text")

# key -> (metric that produces it, higher is better, formula)
KEYS = {
    "accuracy": ("identity", True, "(1/N) sum_j [argmax_k p(k|x_j) = i], k over the task concepts and 'other' (open set)"),
    "accuracy_closed": ("identity", True, "(1/N) sum_j [argmax_k p(k|x_j) = i], k over the task concepts only (closed set)"),
    "other_rate": ("identity", False, "(1/N) sum_j [argmax_k p(k|x_j) = other]"),
    "p_true": ("identity", True, "(1/N) sum_j p(i|x_j)"),
    "image_similarity": ("image_similarity", True,
                         "(1/(|G||R|)) sum_g sum_r cos(f(g), f(r)), G generated, R real images of concept i"),
    "mmd": ("mmd", False, "unbiased MMD^2 between f(G) and f(R), kernel {kernel}"),
    "face_similarity": ("face_identity", True,
                        "(1/|G|) sum_g s(g), s(g) = mean_r cos(facenet(g), facenet(r)) over the real images r with a face "
                        "detected by MTCNN, s(g) = 0 for a generated image g with no face detected; undefined (n/a, "
                        "reason under face_similarity_missing) when no real image has a detected face"),
    "face_detection_rate": ("face_identity", True, "generated images with a face detected by MTCNN / generated images"),
    "clip_text_alignment": ("clip_text", True, "(1/|G|) sum_g cos(CLIP_img(g), CLIP_txt('a photo of a {class_word}'))"),
}


def extractor_device() -> str:
    """Where the pretrained extractors (facenet, CLIP) run when the job names no device: the GPU when
    there is one (the job's own GPU: gpu_slots.py pins each job to one through CUDA_VISIBLE_DEVICES)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def needs_clip(ev: dict) -> bool:
    """Whether the selected metrics use CLIP (text alignment, or CLIP as the feature space)."""
    return "clip_text" in ev["metrics"] or (ev["features"] == "clip" and bool({"image_similarity", "mmd"} & set(ev["metrics"])))


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise PipelineError(f"{path}: evaluator not built (run the evaluator stage)")
    return json.loads(path.read_text())


class MetricSuite:
    """Scores the samples of one concept against its real images with every selected metric."""

    def __init__(self, cfg: dict, benchmark: str, evaluator: Path, device=None):
        """``device``: where facenet and CLIP run (the job's runtime device); None: ``extractor_device()``."""
        ev = cfg["evaluation"]
        device = str(device) if device is not None else extractor_device()
        self.metrics = list(ev["metrics"])
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise PipelineError(f"evaluation.metrics: unknown metric {unknown[0]!r} (expected {', '.join(METRICS)})")
        self.kernel = ev["mmd_kernel"]
        self.clip_id = ev["clip"]["model_id"]
        self.class_word = ev["class_words"][benchmark]
        self.manifest = read_manifest(evaluator)
        self.classifier = None
        self.classes: list[str] = []
        needs_classifier = "identity" in self.metrics or (
            ev["features"] == "identity_evaluator" and {"image_similarity", "mmd"} & set(self.metrics))
        if needs_classifier:
            if self.manifest.get("kind", "classifier") != "classifier":
                raise PipelineError(f"evaluation.metrics/features: benchmark {benchmark} has no miniature identity "
                                    "evaluator (real data): use features 'clip' and drop 'identity'")
            self.classifier, report = load_evaluator(evaluator)
            self.classes = report["classes"]
        self.features_name = ev["features"]
        self.features = None
        self.clip = None
        if needs_clip(ev):
            from continual_diffusion.metrics.clip_score import ClipScorer

            self.clip = ClipScorer.from_params(ev["clip"], device=device)
            self.clip_id = self.clip.backbone
        if {"image_similarity", "mmd"} & set(self.metrics):
            if ev["features"] == "identity_evaluator":
                from continual_diffusion.metrics.extractors import IdentityEmbedding

                self.features = IdentityEmbedding(self.classifier, self.manifest["heldout_accuracy"]).embed
                self.features_name = f"identity_evaluator (held-out accuracy {self.manifest['heldout_accuracy']:.3f})"
            else:
                self.features = self.clip.image_features
                self.features_name = f"clip {self.clip_id}"
        self.face = None
        if "face_identity" in self.metrics:
            from continual_diffusion.metrics.face_identity import FaceIdentity

            self.face = FaceIdentity.from_params(ev["facenet"], device=device)
        self.text_feature = self.clip.text_features([f"a photo of a {self.class_word}"]) if "clip_text" in self.metrics else None

    def describe(self) -> dict:
        """{key: {formula, higher_is_better, features}} for every number ``score`` returns."""
        out = {}
        for key, (metric, higher, formula) in KEYS.items():
            if metric not in self.metrics:
                continue
            features = {"identity": "identity classifier",
                        "face_identity": "facenet-pytorch MTCNN + InceptionResnetV1 (vggface2)",
                        "clip_text": f"clip {self.clip_id}"}.get(metric, self.features_name)
            out[key] = {"formula": formula.format(kernel=self.kernel, class_word=self.class_word),
                        "higher_is_better": higher, "features": features}
        return out

    def score(self, concept: int, samples: np.ndarray, real: np.ndarray) -> dict:
        """Numbers for the samples of concept ``concept`` (1-based) against its real images."""
        scores: dict = {}
        if "identity" in self.metrics:
            scores.update(identity_scores(predict(self.classifier, samples), concept - 1, self.classes))
        if self.features is not None:
            generated, reference = self.features(samples), self.features(real)
            if "image_similarity" in self.metrics:
                scores["image_similarity"] = mean_cosine(generated, reference)
            if "mmd" in self.metrics:
                scores["mmd"] = mmd2_unbiased(generated, reference, self.kernel)
        if self.face is not None:
            from continual_diffusion.metrics.face_identity import face_scores

            scores.update(face_scores(self.face, samples, real))
        if self.text_feature is not None:
            from continual_diffusion.metrics.clip_score import clip_text_alignment

            scores["clip_text_alignment"] = clip_text_alignment(self.clip.image_features(samples), self.text_feature)
        return scores


def pretrained_evaluator(cfg: dict, benchmark: str, out: Path) -> dict:
    """The evaluator stage on real data: load the pretrained extractors the selected metrics need
    (fails within seconds, naming the file to fetch, when weights are absent) and record which."""
    from continual_diffusion.utils.io import atomic_directory, json_text

    ev = cfg["evaluation"]
    if "identity" in ev["metrics"] or (ev["features"] == "identity_evaluator"
                                       and {"image_similarity", "mmd"} & set(ev["metrics"])):
        raise PipelineError(f"evaluation.metrics/features: benchmark {benchmark} uses real data, which has no "
                            "miniature identity evaluator: drop 'identity' and set features to 'clip'")
    manifest: dict = {"kind": "pretrained", "benchmark": benchmark, "metrics": list(ev["metrics"]),
                      "features": ev["features"], "heldout_accuracy": None}
    if needs_clip(ev):
        from continual_diffusion.metrics.clip_score import ClipScorer

        ClipScorer.from_params(ev["clip"])
        manifest["clip"] = dict(ev["clip"])
    if "face_identity" in ev["metrics"]:
        import hashlib

        from continual_diffusion.metrics.face_identity import FaceIdentity

        FaceIdentity.from_params(ev["facenet"])
        weights = Path(ev["facenet"]["weights"])
        manifest["facenet"] = {**ev["facenet"], "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    with atomic_directory(out) as tmp:
        (tmp / MANIFEST).write_text(json_text(manifest))
    return manifest
