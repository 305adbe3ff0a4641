"""Load Stable Diffusion v1.x for the paper profiles, from a local folder or the local hub cache.

Nothing is ever downloaded: with the hub offline, a missing model fails within seconds with one
line saying what to fetch and where to put it. The safety checker and its feature extractor are not
loaded (the pipeline never runs them: it samples through ``sampling.sampling_pipeline`` without one),
so a snapshot without those folders loads too and no memory is spent on them.
"""

from __future__ import annotations

from pathlib import Path

from continual_diffusion.utils.errors import PipelineError


def load_stable_diffusion(source: str, revision: str | None = None, cache_dir: str | None = None, **kwargs):
    """``source``: a local diffusers folder, or a hub id resolved in the local cache only."""
    from diffusers import StableDiffusionPipeline

    kwargs = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False, **kwargs}

    path = Path(source)
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise PipelineError(f"{path}: not a diffusers pipeline folder (model_index.json missing)")
        return StableDiffusionPipeline.from_pretrained(path, **kwargs)
    if source.startswith((".", "/")) or source.count("/") != 1:
        raise PipelineError(f"{source}: Stable Diffusion folder not found (set it to a diffusers folder or a hub id)")
    try:
        return StableDiffusionPipeline.from_pretrained(
            source, revision=revision, cache_dir=cache_dir, local_files_only=True, **kwargs
        )
    except (OSError, ValueError) as exc:
        where = cache_dir or "the Hugging Face cache (HF_HOME)"
        raise PipelineError(
            f"{source}@{revision or 'main'}: Stable Diffusion weights not found offline in {where}; on a machine "
            f"with network run `hf download {source}{f' --revision {revision}' if revision else ''}` and copy the "
            f"cache here, or point the model path at a local diffusers folder ({type(exc).__name__})"
        ) from None
