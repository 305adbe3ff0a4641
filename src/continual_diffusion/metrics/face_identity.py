"""Face identity of generated samples (paper profiles): facenet-pytorch MTCNN + InceptionResnetV1.

Each image goes through MTCNN (one face per image, the largest box, plus ``margin`` pixels, cropped
and resized to ``image_size`` and standardised as (x - 127.5) / 128), then through
InceptionResnetV1 with the VGGFace2 weights, giving a 512-d embedding e(x) with ||e(x)|| = 1.

    face_similarity(G, R)  = (1 / (|G_d| |R|)) sum_{g in G_d} sum_{r in R} cos(e(g), e(r))
    face_detection_rate(G) = |G_d| / |G|

where G are the generated samples, G_d those in which MTCNN found a face and R the embeddings of
the concept's real images. Samples without a detected face are excluded from the similarity (they
have no embedding) and counted in the detection rate; with no face detected at all the similarity
is NaN (never 0, which would read as "a face of someone else").

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

from ..errors import PipelineError
from .similarity import mean_cosine, normalize

if TYPE_CHECKING:
    from facenet_pytorch import MTCNN

EMBED_DIM = 512
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
    """{"face_similarity": mean cos over (detected generated, real) pairs (NaN if none detected),
    "face_detection_rate": detected / generated (NaN for no samples)}."""
    feats, detected = extractor.embed(generated_uint8)
    n = int(detected.numel())
    return {
        "face_similarity": mean_cosine(feats, real_embeddings),
        "face_detection_rate": float(detected.sum()) / n if n else float("nan"),
    }
