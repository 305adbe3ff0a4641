"""Face identity of generated samples (paper profiles): facenet-pytorch MTCNN + InceptionResnetV1.

Each image goes through MTCNN (one face per image, the largest box, plus ``margin`` pixels, cropped
and resized to ``image_size`` and standardised as (x - 127.5) / 128), then through
InceptionResnetV1 with the VGGFace2 weights, giving a 512-d embedding e(x) with ||e(x)|| = 1.

    s(g)                   = (1 / |R|) sum_{r in R} cos(e(g), e(r))   if MTCNN found a face in g
                           = 0                                       otherwise (NO_FACE)
    face_similarity(G, R)  = (1 / |G|) sum_{g in G} s(g)  =  face_detection_rate(G) * (mean of s over G_d)
    face_detection_rate(G) = |G_d| / |G|

where G are the generated samples, G_d those in which MTCNN found a face and R the embeddings of
the concept's real images in which MTCNN found a face. Every generated sample counts: one without a
face scores 0, the cosine of two orthogonal embeddings, i.e. no more like the concept than the face of
an unrelated person (facenet embeds different people at low cosine, the same person well above it).
A method therefore cannot raise its score by destroying a concept's faces: a sample that lost its
face lowers the mean by its share instead of being left out of it (which rewarded broken samples),
and it is not ranked below every real face either, as the floor -1 would.

Undefined for a whole concept, never a failure of the method: with no real face (R empty) there is
nothing to compare with, and with no generated sample nothing to score. ``face_scores`` then records
``face_similarity: null`` with the reason under ``face_similarity_missing`` (metrics/missing.py);
the summary, tables, figures and audit show it as n/a with that reason.

Weights are never downloaded: MTCNN's detector weights ship inside the pip package; the
InceptionResnetV1 VGGFace2 state dict is a local file (``evaluation.facenet.weights``) read with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from continual_diffusion.metrics.missing import missing_key
from continual_diffusion.metrics.similarity import cosine_matrix, normalize
from continual_diffusion.utils.errors import PipelineError

if TYPE_CHECKING:
    from facenet_pytorch import MTCNN

EMBED_DIM = 512
NO_FACE = 0.0  # s(g) of a generated sample in which MTCNN found no face (module docstring)
WEIGHTS_KEY = "evaluation.facenet.weights"
WEIGHTS_ASSET = "20180402-114759-vggface2.pt"
WEIGHTS_URL = f"https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/{WEIGHTS_ASSET}"


def _missing_weights(path: Any) -> PipelineError:
    where = f"{path} does not exist" if path else f"{WEIGHTS_KEY} is not set"
    return PipelineError(
        f"facenet-pytorch InceptionResnetV1 vggface2 weights missing: {where}; download the release asset "
        f"{WEIGHTS_ASSET} ({WEIGHTS_URL}) on a machine with network and set {WEIGHTS_KEY} to its local path"
    )


def load_embedder(path: str | Path | None) -> nn.Module:
    """InceptionResnetV1 (embedding mode, eval) with the state dict read from the local file ``path``.

    The released file also holds the VGGFace2 classifier (``logits.*``, 8631 identities), which the
    embedding does not use: those keys are dropped, every other key must match exactly.
    """
    if not path or not Path(path).is_file():
        raise _missing_weights(path)
    from facenet_pytorch import InceptionResnetV1

    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated or not a plain tensor dict
        raise PipelineError(f"{path}: not a loadable torch state dict ({type(exc).__name__}); expected {WEIGHTS_ASSET}") from None
    if not isinstance(state, dict):
        raise PipelineError(f"{path}: holds a {type(state).__name__}, not a state dict; expected {WEIGHTS_ASSET}")
    state = {k: v for k, v in state.items() if not str(k).startswith("logits.")}
    model = InceptionResnetV1(pretrained=None, classify=False)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a shape mismatch
        raise PipelineError(f"{path}: not InceptionResnetV1 weights ({str(exc).splitlines()[0]})") from None
    if missing or unexpected:
        raise PipelineError(
            f"{path}: not InceptionResnetV1 weights ({len(missing)} missing keys, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected keys, e.g. {unexpected[:2]}); expected {WEIGHTS_ASSET}"
        )
    return model.eval()


def _to_pil(images_uint8: np.ndarray) -> list:
    from PIL import Image

    images = np.asarray(images_uint8)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected N x H x W x 3 uint8 images, got {images.shape} {images.dtype}")
    return [Image.fromarray(img) for img in images]


class FaceIdentity:
    """``embed(images) -> (K x 512 unit-norm embeddings, N bool mask of detected faces)``.

    ``detector=None`` takes the images as already-cropped faces: each is resized to ``image_size``
    and standardised like MTCNN's output, and counts as detected.
    """

    name = "facenet_vggface2"

    def __init__(self, embedder: nn.Module, detector: MTCNN | None = None, image_size: int = 160,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.embedder = embedder.eval().to(self.device)
        self.detector = detector
        self.image_size = detector.image_size if detector is not None else image_size

    @classmethod
    def from_params(cls, params: dict, device: str | torch.device = "cpu") -> FaceIdentity:
        """params: {"weights": local vggface2 .pt, "margin": int, "image_size": int}."""
        embedder = load_embedder(params.get("weights"))  # fails first: no detector built for nothing
        from facenet_pytorch import MTCNN

        image_size = int(params.get("image_size", 160))
        detector = MTCNN(image_size=image_size, margin=int(params.get("margin", 0)), keep_all=False,
                         select_largest=True, post_process=True, device=torch.device(device))
        return cls(embedder, detector, image_size=image_size, device=device)

    def crops(self, images_uint8: np.ndarray, batch: int = 32) -> list[torch.Tensor | None]:
        """One standardised 3 x S x S face crop per image, None where no face was found."""
        from facenet_pytorch import extract_face, fixed_image_standardization

        pil = _to_pil(images_uint8)
        if self.detector is None:
            return [fixed_image_standardization(extract_face(im, (0, 0, *im.size), self.image_size)) for im in pil]
        out: list[torch.Tensor | None] = []
        for start in range(0, len(pil), batch):
            chunk = pil[start:start + batch]
            boxes, _ = self.detector.detect(chunk)  # per image: boxes largest first, or None
            for im, im_boxes in zip(chunk, boxes):
                if im_boxes is None or len(im_boxes) == 0:
                    out.append(None)
                    continue
                face = extract_face(im, im_boxes[0], self.image_size, self.detector.margin)
                out.append(fixed_image_standardization(face))
        return out

    @torch.no_grad()
    def embed(self, images_uint8: np.ndarray, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        crops = self.crops(images_uint8, batch)
        detected = torch.tensor([c is not None for c in crops], dtype=torch.bool)
        faces = [c for c in crops if c is not None]
        if not faces:
            return torch.zeros(0, EMBED_DIM), detected
        feats = [self.embedder(torch.stack(faces[i:i + batch]).to(self.device)).float().cpu()
                 for i in range(0, len(faces), batch)]
        return normalize(torch.cat(feats)), detected


def face_similarity(extractor: FaceIdentity, generated_uint8: np.ndarray, real_embeddings: torch.Tensor) -> dict:
    """{"face_similarity": (1/|G|) sum_g s(g), s(g) = mean cos(e(g), e(r)) over the real faces r, or NO_FACE
    where no face was found in g (NaN when G or the real faces are empty: undefined),
    "face_detection_rate": |G_d| / |G| (NaN for no samples)}."""
    feats, detected = extractor.embed(generated_uint8)
    n = int(detected.numel())
    similarity = float("nan")
    if n and real_embeddings.shape[0]:
        per_sample = torch.full((n,), NO_FACE, dtype=torch.float64)
        if feats.shape[0]:
            per_sample[detected] = cosine_matrix(feats, real_embeddings).double().mean(dim=1)
        similarity = float(per_sample.mean())
    return {"face_similarity": similarity, "face_detection_rate": float(detected.sum()) / n if n else float("nan")}


def face_scores(extractor: FaceIdentity, generated_uint8: np.ndarray, real_uint8: np.ndarray) -> dict:
    """The face numbers of one concept as scores.json records them: ``face_similarity`` of the generated
    samples against the faces of the concept's real images and ``face_detection_rate``; where the
    similarity is undefined for the concept, ``face_similarity`` is None and ``face_similarity_missing``
    says why (no face in any real image, or no generated sample)."""
    real_faces, _ = extractor.embed(real_uint8)
    scores = face_similarity(extractor, generated_uint8, real_faces)
    if real_faces.shape[0] == 0:
        reason = f"no face detected in the concept's {len(real_uint8)} real images"
    elif len(generated_uint8) == 0:
        reason = "no generated samples"
    else:
        return scores
    return {**scores, "face_similarity": None, missing_key("face_similarity"): reason}
