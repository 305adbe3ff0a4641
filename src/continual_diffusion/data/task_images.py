"""A task folder's images in manifest order: uint8 arrays for scoring and figures, or a [-1, 1] tensor for training
(one reader for both)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.layout import concept_task_dir


def read_task_images(task_folder: Path) -> np.ndarray:
    """N x H x W x 3 uint8, in the order of the folder's ``manifest.json``."""
    manifest_path = Path(task_folder) / "manifest.json"
    if not manifest_path.exists():
        raise PipelineError(f"{manifest_path}: task manifest not found (run the prepare_data stage)")
    arrays = []
    for entry in json.loads(manifest_path.read_text())["images"]:
        path = Path(task_folder) / entry["file"]
        try:
            with Image.open(path) as image:
                arrays.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
        except (OSError, ValueError) as exc:
            raise PipelineError(f"{path}: cannot read task image ({exc})") from None
    if not arrays:
        raise PipelineError(f"{manifest_path}: no images")
    return np.stack(arrays)


def concept_images(data_root: Path, benchmark: str, concept: int) -> np.ndarray:
    """The real images of the concept of task ``concept`` (the references of the similarity metrics)."""
    return read_task_images(concept_task_dir(data_root, benchmark, concept))


def load_task_images(task_folder: Path):
    """The task's images (manifest order) as an N x 3 x H x W float tensor in [-1, 1] (x / 127.5 - 1)."""
    import torch

    return torch.from_numpy(read_task_images(task_folder)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
