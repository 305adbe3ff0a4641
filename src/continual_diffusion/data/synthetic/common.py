"""Shared machinery of the procedural concept generators.

A *concept* (a face identity, a waterfall landmark) is a fixed combination of discrete attributes
plus a few continuous shape parameters, drawn once from the concept's seed. Every *image* of a
concept renders those fixed attributes under fresh nuisance variation (pose, scale, lighting,
background, ...) drawn from the image's own seed. Seeds are derived with ``numpy.random.SeedSequence``
from integer paths ``(root_seed, stream, concept_index, image_index)`` so any image can be re-rendered
on its own, bit-identically, on any machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from continual_diffusion.utils.seeds import rng_for  # seed streams that never share a draw: utils/seeds.py


@dataclass(frozen=True)
class Concept:
    """One synthetic concept: discrete attributes (name -> value) and continuous shape parameters."""

    kind: str
    index: int
    attributes: Mapping[str, str]
    shape: Mapping[str, float] = field(default_factory=dict)

    @property
    def concept_id(self) -> str:
        return f"{self.kind}_{self.index:05d}"

    def key(self, names: Sequence[str]) -> tuple[str, ...]:
        return tuple(self.attributes[n] for n in names)

    def to_json(self) -> dict:
        return {
            "concept_id": self.concept_id,
            "attributes": dict(self.attributes),
            "shape": {k: round(float(v), 6) for k, v in self.shape.items()},
        }


def attribute_distance(a: Concept, b: Concept) -> int:
    """Number of discrete attributes in which two concepts differ (Hamming distance)."""
    return sum(a.attributes[k] != b.attributes[k] for k in a.attributes)


def sample_separated(
    draw: Callable[[np.random.Generator, int], Concept],
    n: int,
    root_seed: int,
    stream: int,
    min_distance: int,
    avoid: Sequence[Concept] = (),
    avoid_distance: int = 0,
    max_tries_per_concept: int = 1000,
) -> list[Concept]:
    """Draw ``n`` concepts that differ pairwise in >= ``min_distance`` discrete attributes and from
    every concept of ``avoid`` in >= ``avoid_distance``.

    Candidate ``j`` is drawn from ``rng_for(root_seed, stream, j)``; rejected candidates are skipped,
    so the result depends only on the arguments.
    """
    accepted: list[Concept] = []
    candidate = 0
    while len(accepted) < n:
        if candidate >= max_tries_per_concept * max(n, 1):
            raise ValueError(
                f"cannot draw {n} concepts at attribute distance >= {min_distance}; "
                "lower the separation or the number of concepts"
            )
        concept = draw(rng_for(root_seed, stream, candidate), len(accepted))
        candidate += 1
        if all(attribute_distance(concept, other) >= min_distance for other in accepted) and all(
            attribute_distance(concept, other) >= avoid_distance for other in avoid
        ):
            accepted.append(concept)
    return accepted


def choice(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def scale_rgb(rgb: Sequence[int], factor: float) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.rint(np.asarray(rgb, dtype=np.float64) * factor), 0, 255))


def apply_lighting(image: Image.Image, brightness: float, gradient: float, angle: float) -> Image.Image:
    """Global brightness times a linear light gradient across the image along ``angle`` (radians).

    pixel' = clip(pixel * brightness * (1 + gradient * u)), with u in [-1, 1] the position along
    the light direction.
    """
    arr = np.asarray(image, dtype=np.float32)
    h, w = arr.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = ((xs / max(w - 1, 1)) * 2 - 1) * np.float32(np.cos(angle)) + (
        (ys / max(h - 1, 1)) * 2 - 1
    ) * np.float32(np.sin(angle))
    u /= np.float32(np.sqrt(2.0))
    factor = np.float32(brightness) * (1 + np.float32(gradient) * u)
    out = np.clip(np.rint(arr * factor[..., None]), 0, 255).astype(np.uint8)
    return Image.fromarray(out, mode="RGB")


def finish(canvas: Image.Image, size: int) -> Image.Image:
    """Antialias a supersampled canvas down to ``size`` x ``size`` (Lanczos)."""
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def image_digest(image: Image.Image) -> str:
    """sha256 of the raw RGB pixel bytes (independent of the file encoding)."""
    return hashlib.sha256(image.tobytes()).hexdigest()
