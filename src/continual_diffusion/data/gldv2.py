"""Google Landmarks v2 landmarks from a local copy of the training set.

Expected files (names configurable under ``gldv2`` in params.yaml, relative to ``root``):
  train.csv                       columns ``id,url,landmark_id``
  train_label_to_category.csv     columns ``landmark_id,category`` (category: a Wikimedia Commons URL)
  train/<a>/<b>/<c>/<id>.jpg      the image tree (a, b, c: first three characters of the id)
Landmarks are kept when their category matches ``category_filter`` (a regular expression, searched
case-insensitively; the paper used waterfalls).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

from continual_diffusion.data.images import load_rgb
from continual_diffusion.data.sources import ConceptRecord, ImageItem, LoadedImage
from continual_diffusion.utils.errors import PipelineError


def _read_csv(path: Path, key: str, columns: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.exists():
        raise PipelineError(f"{path}: file not found (set sources.{key} in params.yaml)")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}")
        return list(reader)


def image_path(images_dir: Path, image_id: str, extension: str) -> Path:
    return images_dir / image_id[0] / image_id[1] / image_id[2] / f"{image_id}{extension}"


def gldv2_records(params: dict, non_rgb: str) -> list[ConceptRecord]:
    """One record per landmark whose category matches the filter, images ordered by id."""
    root = Path(params["root"])
    if not root.is_dir():
        raise PipelineError(f"{root}: Google Landmarks v2 root folder not found (set sources.gldv2.root in params.yaml)")
    images_dir = root / params["images_dir"]
    if not images_dir.is_dir():
        raise PipelineError(f"{images_dir}: image folder not found (set sources.gldv2.images_dir in params.yaml)")
    categories = _read_csv(root / params["category_file"], "gldv2.category_file", ("landmark_id", "category"))
    try:
        pattern = re.compile(params["category_filter"], re.IGNORECASE)
    except re.error as exc:
        raise PipelineError(f"sources.gldv2.category_filter: invalid regular expression ({exc})") from None
    wanted = {row["landmark_id"]: row["category"] for row in categories if pattern.search(row["category"])}
    by_landmark: dict[str, list[str]] = defaultdict(list)
    for row in _read_csv(root / params["train_file"], "gldv2.train_file", ("id", "landmark_id")):
        if row["landmark_id"] in wanted:
            by_landmark[row["landmark_id"]].append(row["id"])
    extension = params["image_extension"]
    records = []
    for landmark in sorted(by_landmark, key=lambda x: (len(x), x)):
        items = []
        for image_id in sorted(by_landmark[landmark]):
            path = image_path(images_dir, image_id, extension)
            items.append(ImageItem(
                source_id=image_id, origin=str(path), loader=lambda p=path: LoadedImage(*load_rgb(p, non_rgb))
            ))
        records.append(ConceptRecord(
            concept_id=f"gldv2_{landmark}", items=items,
            metadata={"landmark_id": landmark, "category": wanted[landmark]},
        ))
    return records
