"""A tiny random text-to-image model and task data for training tests (seconds on CPU)."""

from __future__ import annotations

from pathlib import Path

import torch

from continual_diffusion.core.training import Model, encode_latents
from continual_diffusion.models.tiny import build_components
from continual_diffusion.models.tokenizer import train_clip_bpe

SPEC = dict(
    resolution=16, vae_channels=[8, 16], latent_channels=4, unet_channels=[16, 32], unet_attention=[True, False],
    layers_per_block=1, attention_head_dim=8, norm_groups=8, text_hidden=16, text_layers=1, text_heads=2,
    max_length=16,
)
CAPTIONS = ["a photo of a person with blond short hair", "a photo of a waterfall with grey cliffs"] * 3


def tiny_model(tmp_path) -> Model:
    tokenizer = train_clip_bpe(CAPTIONS, vocab_size=200, max_length=16, out=tmp_path / "tokenizer")
    parts = build_components(SPEC, tokenizer, seed=0)
    for part in ("text_encoder", "vae", "unet"):
        parts[part].eval()
    return Model(**parts)


def task_latents(model: Model, seed: int, n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 16, 16, generator=g) * 2 - 1
    return encode_latents(model.vae, images)


def saved_base(folder) -> Path:
    """The tiny random model saved as a base_model stage output (diffusers layout + base.json)."""
    from continual_diffusion.models.tiny import save_pipeline
    from continual_diffusion.stages.base_model import MANIFEST, file_hashes
    from continual_diffusion.utils.io import json_text

    folder = Path(folder)
    tokenizer = train_clip_bpe(CAPTIONS, vocab_size=200, max_length=16, out=folder.parent / f"{folder.name}_tok")
    save_pipeline(build_components(SPEC, tokenizer, seed=0), folder)
    (folder / MANIFEST).write_text(json_text({"source": "pretrain", "files": file_hashes(folder)}))
    return folder


def smoke_workspace(root, tasks=(1, 2)) -> Path:
    """A saved base (``root/base``) and faces task folders ``root/data/tasks/faces/task_XX`` (seed = task):
    what a train job reads. Returns the base folder."""
    root = Path(root)
    base = saved_base(root / "base")
    for task in tasks:
        write_task(root / "data" / "tasks" / "faces" / f"task_{task:02d}", seed=task)
    return base


def write_task(folder, seed: int, n: int = 4, size: int = 16) -> None:
    """A task folder (manifest + PNG images) as prepare_data writes it."""
    import json

    import numpy as np
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for j in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / "images" / f"{j:03d}.png")
        entries.append({"file": f"images/{j:03d}.png"})
    (folder / "manifest.json").write_text(json.dumps({"images": entries}))
