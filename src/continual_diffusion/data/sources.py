"""What the task sampler needs from any dataset: concepts, each with an ordered list of images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB
    source_sha256: str  # sha256 of the source file bytes (real data) or of the pixels (synthetic)
    converted_from: str | None = None  # original mode when it was converted to RGB


@dataclass(frozen=True)
class ImageItem:
    """One image of a concept, loaded on demand (only the sampled images are ever read)."""

    source_id: str
    origin: str  # a path or generator address a person can look up
    loader: Callable[[], LoadedImage]


@dataclass(frozen=True)
class ConceptRecord:
    concept_id: str
    items: list[ImageItem]
    metadata: dict = field(default_factory=dict)
