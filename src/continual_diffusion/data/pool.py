"""The generic pre-training pool of a synthetic benchmark (the tiny base model learns the class here).

Output layout::

  <out>/images.safetensors   ``images`` uint8 [N, H, W, 3], ``concept`` int32 [N] (index into concepts)
  <out>/captions.json        one generic caption per image ("a photo of a person with ...")
  <out>/manifest.json        generator parameters, concepts with attributes, sha256 of images.safetensors
  <out>/preview.png          the first image of the first 64 concepts
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from continual_diffusion.data.images import png_bytes, sha256_bytes
from continual_diffusion.data.synthetic import SyntheticSource
from continual_diffusion.data.tasks import contact_sheet
from continual_diffusion.utils.io import atomic_directory, default_file_mode, json_text
from continual_diffusion.utils.progress import progress_bar


def write_pool(out: Path, source: SyntheticSource, benchmark: str) -> None:
    concepts = source.generic_pool
    per_concept = int(source.params["pool_images_per_concept"])
    n = len(concepts) * per_concept
    images = np.zeros((n, source.size, source.size, 3), dtype=np.uint8)
    labels = np.zeros((n,), dtype=np.int32)
    captions = []
    firsts = []
    with atomic_directory(out) as tmp:
        with progress_bar(total=n, desc=f"generic pool {benchmark}", unit="img") as progress:
            k = 0
            for c, concept in enumerate(concepts):
                caption = source.generator.caption(concept)
                for j in range(per_concept):
                    image = source.pool_image(concept, j)
                    images[k] = np.asarray(image, dtype=np.uint8)
                    labels[k] = c
                    captions.append(caption)
                    if j == 0 and len(firsts) < 64:
                        firsts.append(image)
                    k += 1
                    progress.update(1)
        save_file({"images": images, "concept": labels}, str(tmp / "images.safetensors"))
        default_file_mode(tmp / "images.safetensors")  # safetensors writes 0600
        (tmp / "captions.json").write_text(json_text(captions))
        (tmp / "manifest.json").write_text(json_text({
            "benchmark": benchmark,
            "generator": source.name,
            "class_word": source.generator.class_word,
            "params": source.params,
            "resolution": source.size,
            "n_images": n,
            "images_sha256": sha256_bytes((tmp / "images.safetensors").read_bytes()),
            "concepts": [c.to_json() for c in concepts],
        }))
        rows = [firsts[i : i + 8] for i in range(0, len(firsts), 8)]
        (tmp / "preview.png").write_bytes(png_bytes(contact_sheet(rows, source.size)))
