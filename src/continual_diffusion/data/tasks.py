"""Task sampling: pick the concepts of a benchmark's task sequence and write one folder per task.

Filter and sample (``data.<benchmark>`` in params.yaml):
  eligible = concepts with >= ``min_images`` images
  order    = ``n_tasks`` distinct eligible concepts drawn uniformly at random (PCG64 seeded by
             ``data.seed``); the draw order is the task order
  images   = all images of the concept, or ``max_images`` of them drawn at random (kept in source order)
Every image is read fully, checked (corrupt, truncated, non-RGB), centre-cropped, resized to
``resolution`` and written as PNG; exact duplicates (same source sha256) anywhere in the sampled
images are an error.
Output layout::

  <out>/tasks.json                      the sequence: concept ids, filter, seed, counts
  <out>/overview.png                    one row per task (first 8 images)
  <out>/task_01/manifest.json           source ids, sha256 of every image, seed, filter
  <out>/task_01/images/000.png ...
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from continual_diffusion.data.images import png_bytes, sha256_bytes, square_resize
from continual_diffusion.data.sources import ConceptRecord, ImageItem
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.io import atomic_directory, json_text
from continual_diffusion.utils.layout import task_name
from continual_diffusion.utils.progress import progress_bar
from continual_diffusion.utils.seeds import STREAM_TASK_SAMPLER, rng_for

log = logging.getLogger(__name__)

OVERVIEW_COLUMNS = 8


@dataclass(frozen=True)
class SampledTask:
    task: int  # 1-based, as in the paper ("task 1, 6 and 10")
    record: ConceptRecord
    items: list[ImageItem]


def task_dirname(task: int) -> str:
    return task_name(task)


def sample_tasks(
    records: list[ConceptRecord], n_tasks: int, min_images: int, max_images: int | None, seed: int, key: str
) -> tuple[list[SampledTask], int]:
    """Choose the task sequence. Returns (tasks, number of eligible concepts)."""
    eligible = [r for r in records if len(r.items) >= min_images]
    if len(eligible) < n_tasks:
        raise PipelineError(
            f"{key}: only {len(eligible)} of {len(records)} concepts have >= {min_images} images "
            f"({key}.min_images), but {n_tasks} tasks were asked ({key}.n_tasks)"
        )
    rng = rng_for(seed, STREAM_TASK_SAMPLER)
    order = rng.choice(len(eligible), size=n_tasks, replace=False)
    tasks = []
    for position, index in enumerate(order, start=1):
        record = eligible[int(index)]
        items = record.items
        if max_images is not None and len(items) > max_images:
            keep = sorted(int(i) for i in rng.choice(len(items), size=max_images, replace=False))
            items = [items[i] for i in keep]
        tasks.append(SampledTask(task=position, record=record, items=items))
    return tasks, len(eligible)


def write_tasks(
    out: Path, tasks: list[SampledTask], *, benchmark: str, source: str, class_word: str,
    resolution: int, sampling: dict,
) -> None:
    """Render/load, check and write every sampled image; all-or-nothing (built in a temporary folder)."""
    seen: dict[str, str] = {}
    with atomic_directory(out) as tmp:
        overview_rows = []
        summary = []
        total = sum(len(t.items) for t in tasks)
        with progress_bar(total=total, desc=f"prepare-data {benchmark}", unit="img") as progress:
            for task in tasks:
                folder = tmp / task_dirname(task.task)
                entries = []
                row = []
                for j, item in enumerate(task.items):
                    loaded = item.loader()
                    duplicate_of = seen.get(loaded.source_sha256)
                    if duplicate_of is not None:
                        raise PipelineError(f"{item.origin}: duplicate image (identical to {duplicate_of})")
                    seen[loaded.source_sha256] = item.origin
                    image = square_resize(loaded.image, resolution)
                    data = png_bytes(image)
                    name = f"images/{j:03d}.png"
                    (folder / name).parent.mkdir(parents=True, exist_ok=True)
                    (folder / name).write_bytes(data)
                    entry = {
                        "file": name,
                        "sha256": sha256_bytes(data),
                        "source_id": item.source_id,
                        "source_sha256": loaded.source_sha256,
                    }
                    if loaded.converted_from:
                        entry["converted_from"] = loaded.converted_from
                        log.warning("%s: converted from %s to RGB", item.origin, loaded.converted_from)
                    entries.append(entry)
                    if len(row) < OVERVIEW_COLUMNS:
                        row.append(image)
                    progress.update(1)
                manifest = {
                    "benchmark": benchmark,
                    "task": task.task,
                    "concept_id": task.record.concept_id,
                    "class_word": class_word,
                    "source": source,
                    "resolution": resolution,
                    "n_images": len(entries),
                    "images": entries,
                    "sampling": sampling,
                    "concept": task.record.metadata,
                }
                (folder / "manifest.json").write_text(json_text(manifest))
                overview_rows.append(row)
                summary.append({
                    "task": task.task, "dir": task_dirname(task.task), "concept_id": task.record.concept_id,
                    "n_images": len(entries),
                })
        (tmp / "tasks.json").write_text(json_text({
            "benchmark": benchmark, "source": source, "class_word": class_word, "resolution": resolution,
            "n_tasks": len(tasks), "tasks": summary, "sampling": sampling,
        }))
        (tmp / "overview.png").write_bytes(png_bytes(contact_sheet(overview_rows, resolution)))


def contact_sheet(rows: list[list[Image.Image]], size: int, pad: int = 2) -> Image.Image:
    """A grid with one row per list of images, padded in white."""
    columns = max((len(r) for r in rows), default=1)
    sheet = Image.new("RGB", (columns * (size + pad) + pad, len(rows) * (size + pad) + pad), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            sheet.paste(image, (pad + c * (size + pad), pad + r * (size + pad)))
    return sheet
