"""facenet face identity, through the real code paths with a randomly initialised InceptionResnetV1
(the VGGFace2 weights are not available offline) and facenet-pytorch's own MTCNN."""

import math
import time

import numpy as np
import pytest
import torch

facenet_pytorch = pytest.importorskip("facenet_pytorch")

from continual_diffusion.metrics.face_identity import NO_FACE, FaceIdentity, face_scores, face_similarity, load_embedder  # noqa: E402
from continual_diffusion.utils.errors import PipelineError  # noqa: E402

SMALL = 96  # smallest convenient input of InceptionResnetV1 (it needs >= ~75 px); keeps CPU time low


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("facenet") / "random-vggface2.pt"
    torch.save(facenet_pytorch.InceptionResnetV1(pretrained=None, classify=False).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def identity(weights):
    return FaceIdentity.from_params({"weights": str(weights), "margin": 8, "image_size": SMALL})


def noise(n, size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


class StubDetector:
    """MTCNN's ``detect`` contract: per image an array of boxes (largest first) or None."""

    image_size, margin = SMALL, 0

    def __init__(self, boxes):
        self.boxes = boxes

    def detect(self, images):
        assert len(images) == len(self.boxes)
        return list(self.boxes), None


class CallsDetector(StubDetector):
    """One list of boxes per ``detect`` call, in order (e.g. the real images, then the generated ones)."""

    def __init__(self, *calls):
        self.calls = list(calls)

    def detect(self, images):
        self.boxes = self.calls.pop(0)
        return super().detect(images)


BOX = np.array([[8.0, 8.0, 56.0, 56.0]])


def test_from_params_loads_the_file_and_builds_mtcnn(identity, weights):
    expected = torch.load(weights, weights_only=True)["last_linear.weight"]
    assert torch.equal(identity.embedder.last_linear.weight, expected)
    assert not identity.embedder.training
    assert isinstance(identity.detector, facenet_pytorch.MTCNN)
    assert identity.detector.image_size == SMALL and identity.detector.margin == 8
    assert not identity.detector.keep_all and identity.detector.selection_method == "largest"


def test_released_file_layout_with_classifier_head_loads(tmp_path, weights):
    state = torch.load(weights, weights_only=True)
    state["logits.weight"], state["logits.bias"] = torch.zeros(8631, 512), torch.zeros(8631)
    torch.save(state, tmp_path / "with-logits.pt")
    assert not hasattr(load_embedder(tmp_path / "with-logits.pt"), "logits")


def test_aligned_crops_give_unit_norm_512d_and_identical_images_cosine_one(identity):
    crops = FaceIdentity(identity.embedder, detector=None, image_size=SMALL)
    images = noise(2, size=40, seed=1)
    feats, detected = crops.embed(np.concatenate([images, images[:1]]))
    assert feats.shape == (3, 512) and detected.tolist() == [True, True, True]
    assert torch.allclose(feats.norm(dim=1), torch.ones(3), atol=1e-5)
    assert feats[0] @ feats[2] == pytest.approx(1.0, abs=1e-5)
    assert not torch.allclose(feats[0], feats[1], atol=1e-4)  # different images, different embeddings


def test_detected_path_embeds_only_images_with_a_face(identity):
    box = np.array([[8.0, 8.0, 56.0, 56.0]])
    extractor = FaceIdentity(identity.embedder, detector=StubDetector([box, None, box]))
    images = noise(3, seed=2)
    images[2] = images[0]
    feats, detected = extractor.embed(images)
    assert detected.tolist() == [True, False, True]
    assert feats.shape == (2, 512)
    assert torch.allclose(feats.norm(dim=1), torch.ones(2), atol=1e-5)
    assert feats[0] @ feats[1] == pytest.approx(1.0, abs=1e-5)
    scores = face_similarity(extractor, images, feats[:1])
    # s = 1 for the two images with a face (identical to the real one), NO_FACE = 0 for the one without
    assert scores["face_similarity"] == pytest.approx((1.0 + 0.0 + 1.0) / 3, abs=1e-5)
    assert scores["face_detection_rate"] == pytest.approx(2 / 3)


def test_real_mtcnn_finds_no_face_in_noise_and_nothing_crashes(identity):
    feats, detected = identity.embed(noise(3, seed=3))
    assert feats.shape == (0, 512) and detected.tolist() == [False, False, False]
    scores = face_similarity(identity, noise(2, seed=4), torch.randn(4, 512))
    assert scores["face_similarity"] == NO_FACE == 0.0  # every sample failed: the failure value, not NaN
    assert scores["face_detection_rate"] == 0.0


def test_a_sample_without_a_face_lowers_the_similarity_by_its_share(identity):
    images = noise(4, seed=5)
    images[3] = images[0]  # the sample that loses its face matches the real face exactly: s = 1
    real, _ = FaceIdentity(identity.embedder, detector=StubDetector([BOX])).embed(images[:1])
    every = face_similarity(FaceIdentity(identity.embedder, detector=StubDetector([BOX] * 4)), images, real)
    one_lost = face_similarity(FaceIdentity(identity.embedder, detector=StubDetector([BOX] * 3 + [None])), images, real)
    feats, _ = FaceIdentity(identity.embedder, detector=StubDetector([BOX] * 4)).embed(images)
    s = (feats @ real[0]).double()  # per-sample cosine to the one real face
    assert every["face_similarity"] == pytest.approx(float(s.mean()), abs=1e-6)
    assert one_lost["face_similarity"] == pytest.approx(float(s[:3].sum() + NO_FACE) / 4, abs=1e-6)
    assert s[3] == pytest.approx(1.0, abs=1e-5)
    assert one_lost["face_similarity"] == pytest.approx(every["face_similarity"] - 1.0 / 4, abs=1e-6)
    assert (every["face_detection_rate"], one_lost["face_detection_rate"]) == (1.0, 0.75)
    none = face_similarity(FaceIdentity(identity.embedder, detector=StubDetector([None] * 4)), images, real)
    assert none == {"face_similarity": NO_FACE, "face_detection_rate": 0.0}


def test_face_scores_mark_a_concept_without_real_faces_missing_with_the_reason(identity):
    generated, real = noise(2, seed=6), noise(5, seed=7)
    no_real = face_scores(FaceIdentity(identity.embedder, detector=CallsDetector([None] * 5, [BOX, BOX])),
                          generated, real)
    assert no_real == {"face_similarity": None, "face_detection_rate": 1.0,
                       "face_similarity_missing": "no face detected in the concept's 5 real images"}
    defined = face_scores(FaceIdentity(identity.embedder, detector=CallsDetector([BOX] + [None] * 4, [None, None])),
                          generated, real)
    assert defined == {"face_similarity": NO_FACE, "face_detection_rate": 0.0}  # a failure of the method, not missing
    empty = face_scores(FaceIdentity(identity.embedder, detector=CallsDetector([BOX] * 5, [])), noise(0), real)
    assert empty["face_similarity"] is None and empty["face_similarity_missing"] == "no generated samples"
    assert math.isnan(empty["face_detection_rate"])


@pytest.mark.parametrize("weights_value", [None, "/nonexistent/20180402-114759-vggface2.pt"])
def test_missing_weights_fail_fast_on_one_line(weights_value):
    start = time.monotonic()
    with pytest.raises(PipelineError, match=r"evaluation\.facenet\.weights") as err:
        FaceIdentity.from_params({"weights": weights_value, "margin": 0, "image_size": 160})
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "\n" not in message and "20180402-114759-vggface2.pt" in message and "InceptionResnetV1" in message
    if weights_value:
        assert weights_value in message


def test_state_dict_with_wrong_keys_names_the_file(tmp_path):
    bad = tmp_path / "not-facenet.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), bad)
    with pytest.raises(PipelineError, match="not-facenet.pt"):
        FaceIdentity.from_params({"weights": str(bad), "margin": 0, "image_size": 160})
