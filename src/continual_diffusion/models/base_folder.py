"""Reading a base-model folder (``models/<profile>/base/``, written by the ``base_model`` stage).

``base.json`` records the source; a Stable Diffusion base holds ``stable_diffusion.json``, a pointer to the
model (a local folder or a hub-cache id), instead of a copy.
"""

from __future__ import annotations

import json
from pathlib import Path

from continual_diffusion.utils.errors import PipelineError

MANIFEST = "base.json"
POINTER = "stable_diffusion.json"


def load_base(folder: Path):
    """The pipeline a stage starts from (a fresh copy each call: callers modify it)."""
    import torch
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        raise PipelineError(f"{folder}: base model not built (run the base_model stage)")
    pointer = folder / POINTER
    if pointer.exists():
        from continual_diffusion.models.sd_v1_weights import load_stable_diffusion

        ref = json.loads(pointer.read_text())
        pipe = load_stable_diffusion(ref["model"], revision=ref["revision"], cache_dir=ref["cache_dir"],
                                     dtype=torch.float32)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe
