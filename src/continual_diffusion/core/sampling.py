"""Generating images of learned concepts: "a photo of V*_i", fixed CPU seeds per image, batched.

Image j of concept i starts from noise drawn by its own generator, seeded from (seed, i, j), so an
image does not depend on the batch it was generated in. Classifier-free guidance:
    eps = eps(z_t, "") + w * (eps(z_t, prompt) - eps(z_t, ""))
Samplers (``scheduler``): ``ddim`` (deterministic DDIM, eta 0), ``ddpm`` (ancestral), ``dpm``
(DPM-Solver++ 2M multistep: about the quality of DDIM with half the steps).
Under a bf16 runtime (runtime.py) the text encoder and U-Net denoise under autocast and the VAE decodes
the final latents in fp32 outside it; in fp32 the pipeline decodes itself, as it always did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from continual_diffusion.models.tokens import concept_token, prompt_for
from continual_diffusion.utils.progress import progress_bar
from continual_diffusion.utils.runtime import CPU_FP32
from continual_diffusion.utils.seeds import cpu_generator, image_seed

# evaluation.scheduler -> the diffusers scheduler class (the export's snippet names the same class)
SCHEDULER_CLASSES = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler", "dpm": "DPMSolverMultistepScheduler"}


def sampling_pipeline(model, scheduler: str = "ddim"):
    import diffusers
    from diffusers import StableDiffusionPipeline

    cls = getattr(diffusers, SCHEDULER_CLASSES[scheduler])
    pipe = StableDiffusionPipeline(
        vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet,
        scheduler=cls.from_config(model.scheduler.config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def decode_images(pipe, latents: torch.Tensor) -> np.ndarray:
    """Latents -> N x H x W x 3 floats in [0, 1], the VAE in fp32 (outside any autocast)."""
    vae = pipe.vae
    with torch.no_grad():
        image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type="np")


def run_pipeline(pipe, runtime, prompts: list[str], output_type: str, **kwargs):
    """The pipeline's output (``output_type`` "np" or "latent"), under the runtime's precision: in fp32
    the pipeline runs as it is; in bf16 it denoises under autocast and images are decoded in fp32."""
    with torch.no_grad():
        if runtime.dtype == "fp32":
            return pipe(prompts, output_type=output_type, **kwargs).images
        with runtime.autocast():
            latents = pipe(prompts, output_type="latent", **kwargs).images
        return latents.float() if output_type == "latent" else decode_images(pipe, latents)


def seeded_batches(model, jobs: list[tuple[int, int]], prompt_of: Callable[[int], str],
                   seed_of: Callable[[int, int], int], steps: int, guidance: float, batch_size: int,
                   output_type: str, scheduler: str = "ddim", desc: str = "sample"
                   ) -> Iterator[tuple[list[tuple[int, int]], Any]]:
    """The one seeded, batched generation loop: (chunk, pipeline output) for consecutive chunks of
    ``batch_size`` jobs (group, index), in order. Job (g, j) is prompted ``prompt_of(g)`` and starts from
    noise drawn by its own CPU generator seeded ``seed_of(g, j)`` (utils/seeds.py), so an image does not
    depend on the batch it falls in. ``output_type``: "np" (images) or "latent" (run_pipeline)."""
    pipe = sampling_pipeline(model, scheduler)
    runtime = getattr(model, "runtime", CPU_FP32)
    with progress_bar(total=len(jobs), desc=desc, unit="img") as bar:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            prompts = [prompt_of(g) for g, _ in chunk]
            generators = [cpu_generator(seed_of(g, j)) for g, j in chunk]
            yield chunk, run_pipeline(pipe, runtime, prompts, output_type, num_inference_steps=steps,
                                      guidance_scale=guidance, generator=generators)
            bar.update(len(chunk))


def generate(model, concepts: list[int], per_concept: int, seed: int, steps: int, guidance: float,
             batch_size: int, scheduler: str = "ddim", desc: str = "sample") -> dict[int, np.ndarray]:
    """{concept: uint8 array per_concept x H x W x 3} for the concept tokens <v_i> (seeds: ``image_seed``)."""
    jobs = [(c, j) for c in concepts for j in range(per_concept)]
    images: dict[int, list[np.ndarray]] = {c: [] for c in concepts}
    batches = seeded_batches(model, jobs, lambda c: prompt_for(concept_token(c)), lambda c, j: image_seed(seed, c, j),
                             steps, guidance, batch_size, "np", scheduler, desc)
    for chunk, out in batches:
        for (c, _), image in zip(chunk, out):
            images[c].append((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    return {c: np.stack(v) for c, v in images.items()}


def grid(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Rows of N x H x W x 3 uint8 images -> one image, white padding."""
    n = max(r.shape[0] for r in rows)
    h, w = rows[0].shape[1:3]
    out = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = image
    return out
