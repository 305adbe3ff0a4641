"""CLIP scores of generated samples (paper profiles), with a transformers ``CLIPModel``.

Images and texts are embedded in CLIP's joint space and L2-normalised: u(x) for an image (the
projected pooled vision output), v(t) for a text (the projected end-of-text token).

    clip_image_similarity(G, R) = (1 / (|G| |R|)) sum_{g in G} sum_{r in R} cos(u(g), u(r))
    clip_text_alignment(G, t)   = (1 / |G|) sum_{g in G} cos(u(g), v(t))

G: generated samples of a concept, R: its real images, t: its prompt with the placeholder token
replaced by the class word. Both are NaN for an empty G (or R). The numbers depend on the
backbone (ViT-L/14 and ViT-B/32 scores are not comparable), so the backbone id
(``ClipScorer.backbone``) must be recorded beside every number.

Weights are never downloaded: ``from_params`` reads a local folder or the local Hugging Face cache
(``local_files_only=True``; the CLI also sets HF_HUB_OFFLINE=1) and fails within seconds, on one
line, when they are absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from continual_diffusion.metrics.similarity import mean_cosine, normalize
from continual_diffusion.utils.errors import PipelineError

PATH_KEY = "evaluation.clip.path"


def _pooled(output: Any) -> torch.Tensor:
    """The projected embedding: transformers 5 returns a model output whose ``pooler_output`` holds it."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipScorer:
    """``image_features(images) -> N x D`` and ``text_features(texts) -> M x D``, rows of unit norm."""

    def __init__(self, model, image_processor, tokenizer, backbone: str = "clip", device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.backbone = backbone
        self.dim = int(model.config.projection_dim)

    @classmethod
    def from_params(cls, params: dict, device: str | torch.device = "cpu") -> ClipScorer:
        """params: {"model_id", "path": local folder or None, "revision", "cache_dir"}."""
        model, processor, tokenizer, backbone = load_clip(params)
        return cls(model, processor, tokenizer, backbone=backbone, device=device)

    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.no_grad()
    def image_features(self, images_uint8: np.ndarray, batch: int = 32) -> torch.Tensor:
        images = np.asarray(images_uint8)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected N x H x W x 3 uint8 images, got {images.shape} {images.dtype}")
        feats = [torch.zeros(0, self.dim)]
        for start in range(0, images.shape[0], batch):
            pixels = self.image_processor(images=list(images[start:start + batch]), return_tensors="pt",
                                          input_data_format="channels_last")["pixel_values"]
            out = self.model.get_image_features(pixel_values=pixels.to(self.device, self._dtype()))
            feats.append(_pooled(out).float().cpu())
        return normalize(torch.cat(feats))

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.dim)
        max_length = min(self.tokenizer.model_max_length, self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        out = self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                           attention_mask=tokens["attention_mask"].to(self.device))
        return normalize(_pooled(out).float().cpu())


def _not_found(params: dict, reason: str) -> PipelineError:
    model_id, revision = params.get("model_id"), params.get("revision") or "main"
    where = params.get("cache_dir") or "the Hugging Face cache (HF_HOME)"
    return PipelineError(
        f"{model_id}@{revision}: CLIP weights not found offline in {where} ({reason}); on a machine with network run "
        f"`hf download {model_id} --revision {revision}` and copy the cache here, or set {PATH_KEY} to a local folder "
        f"holding the model, image processor and tokenizer (save_pretrained layout)"
    )


def _hub_cached(params: dict) -> bool:
    """Whether the model's config.json is in the local cache (a quick check before loading)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(params["model_id"], "config.json", cache_dir=params.get("cache_dir"),
                                   revision=params.get("revision"))
    return isinstance(found, str)


def load_clip(params: dict) -> tuple[Any, Any, Any, str]:
    """(CLIPModel, CLIPImageProcessor, CLIPTokenizer, backbone id) from ``path`` or the local hub cache."""
    path = params.get("path")
    if path:
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise PipelineError(f"{folder}: CLIP folder not found or without config.json ({PATH_KEY}); save the model, "
                                f"image processor and tokenizer there with save_pretrained, or unset it to use the hub cache")
        source, kwargs, backbone = str(folder), {"local_files_only": True}, str(folder)
    else:
        if not params.get("model_id"):
            raise PipelineError(f"evaluation.clip.model_id and {PATH_KEY} are both unset: no CLIP backbone to load")
        if not _hub_cached(params):
            raise _not_found(params, "config.json not cached")
        source, backbone = params["model_id"], f"{params['model_id']}@{params.get('revision') or 'main'}"
        kwargs = {"revision": params.get("revision"), "cache_dir": params.get("cache_dir"), "local_files_only": True}
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    try:
        model = CLIPModel.from_pretrained(source, **kwargs)
        processor = CLIPImageProcessor.from_pretrained(source, **kwargs)
        tokenizer = CLIPTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if path:
            raise PipelineError(f"{path}: incomplete CLIP folder ({type(exc).__name__}: {str(exc).splitlines()[0]}) "
                                f"({PATH_KEY})") from None
        raise _not_found(params, f"{type(exc).__name__}") from None
    return model, processor, tokenizer, backbone


def clip_image_similarity(gen_feats: torch.Tensor, real_feats: torch.Tensor) -> float:
    """(1 / (|G| |R|)) sum_{g, r} cos(u(g), u(r)): mean pairwise cosine, NaN if either set is empty."""
    return mean_cosine(gen_feats, real_feats)


def clip_text_alignment(gen_feats: torch.Tensor, text_feat: torch.Tensor) -> float:
    """(1 / |G|) sum_g cos(u(g), v(t)), with ``text_feat`` of shape D or 1 x D.

    This is CLIPScore without torchmetrics' 100x scaling and its max(., 0) clamp, so it lies in
    [-1, 1]. t is the concept's prompt with the placeholder token (V*) replaced by the class word,
    since CLIP's tokenizer does not know the learned token.
    """
    if text_feat.numel() != gen_feats.shape[-1]:
        raise ValueError(f"expected one text feature of dim {gen_feats.shape[-1]}, got {tuple(text_feat.shape)}")
    return mean_cosine(gen_feats, text_feat.reshape(1, -1))
