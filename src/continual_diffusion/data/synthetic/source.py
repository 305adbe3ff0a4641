"""A synthetic dataset: a pool of concepts with variable image counts, plus a generic pre-training pool.

It mirrors the real datasets: like CelebA-HQ, some identities have fewer images than the task
filter asks for (``images_per_concept`` is a range that straddles ``min_images``), so the filter is
exercised. The generic pool (``pool_concepts`` x ``pool_images_per_concept``) holds *other*
identities, each at attribute distance >= ``min_attribute_distance`` from every concept of the
concept pool, so the task concepts are new to a base model pre-trained on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image

from continual_diffusion.data.sources import ConceptRecord, ImageItem, LoadedImage
from continual_diffusion.data.synthetic import faces, landmarks
from continual_diffusion.data.synthetic.common import Concept, image_digest, sample_separated
from continual_diffusion.utils.seeds import (
    STREAM_CONCEPT_IMAGES,
    STREAM_CONCEPTS,
    STREAM_HELDOUT_IMAGES,
    STREAM_IMAGE_COUNTS,
    STREAM_POOL,
    STREAM_POOL_IMAGES,
    rng_for,
)


@dataclass(frozen=True)
class Generator:
    """One family of synthetic concepts: its attributes and the functions that draw and render them."""

    kind: str
    class_word: str
    attributes: dict[str, tuple[str, ...]]
    draw_concept: Callable[[np.random.Generator, int], Concept]
    draw_nuisance: Callable[[np.random.Generator], dict]
    render: Callable[[Concept, dict, int, int], Image.Image]
    caption: Callable[[Concept], str]


GENERATORS: dict[str, Generator] = {
    "synthetic_faces": Generator(
        faces.KIND, faces.CLASS_WORD, faces.FACE_ATTRIBUTES, faces.draw_face_concept,
        faces.draw_face_nuisance, faces.render_face, faces.face_caption,
    ),
    "synthetic_landmarks": Generator(
        landmarks.KIND, landmarks.CLASS_WORD, landmarks.LANDMARK_ATTRIBUTES, landmarks.draw_landmark_concept,
        landmarks.draw_landmark_nuisance, landmarks.render_landmark, landmarks.landmark_caption,
    ),
}


class SyntheticSource:
    """Concept pool and generic pool of one generator, fully determined by ``params`` and ``seed``.

    ``params`` keys (``sources.<generator>`` in params.yaml, plus ``generator``): ``seed``,
    ``concepts``, ``images_per_concept`` ([lo, hi], inclusive), ``pool_concepts``,
    ``pool_images_per_concept``, ``min_attribute_distance``, ``supersample``.
    """

    def __init__(self, params: dict, size: int):
        self.name = params["generator"]
        self.generator = GENERATORS[self.name]
        self.params = params
        self.seed = int(params["seed"])
        self.size = int(size)
        self.supersample = int(params["supersample"])

    # ----- concept pool (the stand-in for CelebA-HQ identities / GLDv2 landmarks)
    @cached_property
    def concept_pool(self) -> list[Concept]:
        return sample_separated(
            self.generator.draw_concept, int(self.params["concepts"]), self.seed, STREAM_CONCEPTS,
            int(self.params["min_attribute_distance"]),
        )

    def image_count(self, concept: Concept) -> int:
        lo, hi = self.params["images_per_concept"]
        return int(rng_for(self.seed, STREAM_IMAGE_COUNTS, concept.index).integers(lo, hi + 1))

    def render(self, concept: Concept, image_index: int, stream: int = STREAM_CONCEPT_IMAGES) -> Image.Image:
        nuisance = self.generator.draw_nuisance(rng_for(self.seed, stream, concept.index, image_index))
        return self.generator.render(concept, nuisance, self.size, self.supersample)

    def heldout(self, concept: Concept, image_index: int) -> Image.Image:
        """A fresh render of ``concept`` from a stream that no training image uses."""
        return self.render(concept, image_index, STREAM_HELDOUT_IMAGES)

    @staticmethod
    def _loaded(image: Image.Image) -> LoadedImage:
        return LoadedImage(image=image, source_sha256=image_digest(image))

    def records(self) -> list[ConceptRecord]:
        """The concept pool as the task sampler sees any dataset."""
        out = []
        for concept in self.concept_pool:
            items = [
                ImageItem(
                    source_id=f"{concept.concept_id}/img_{j:03d}",
                    origin=f"{self.name}(seed={self.seed}):{concept.concept_id}/img_{j:03d}",
                    loader=(lambda c=concept, j=j: self._loaded(self.render(c, j))),
                )
                for j in range(self.image_count(concept))
            ]
            out.append(ConceptRecord(concept_id=concept.concept_id, items=items, metadata=concept.to_json()))
        return out

    # ----- generic pre-training pool
    @cached_property
    def generic_pool(self) -> list[Concept]:
        return sample_separated(
            self.generator.draw_concept, int(self.params["pool_concepts"]), self.seed, STREAM_POOL,
            min_distance=1, avoid=self.concept_pool,
            avoid_distance=int(self.params["min_attribute_distance"]),
        )

    def pool_image(self, concept: Concept, image_index: int) -> Image.Image:
        return self.render(concept, image_index, STREAM_POOL_IMAGES)

