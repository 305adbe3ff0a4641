"""CLIP scores, through the real load and feature paths with a tiny randomly initialised CLIPModel
(no CLIP weights offline), saved with save_pretrained and read back by ClipScorer.from_params."""

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from continual_diffusion.metrics.clip_score import ClipScorer, clip_image_similarity, clip_text_alignment  # noqa: E402
from continual_diffusion.models.tokenizer import train_clip_bpe  # noqa: E402
from continual_diffusion.utils.errors import PipelineError  # noqa: E402

CAPTIONS = ["a photo of a person", "a photo of a dog", "a painting of a cat on a table", "a close-up of a face"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-clip")
    tokenizer = train_clip_bpe(CAPTIONS, vocab_size=200, max_length=32, out=folder)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=32, **ids),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=37),
        projection_dim=16,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(folder)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def scorer(clip_dir):
    return ClipScorer.from_params({"model_id": "openai/clip-vit-large-patch14", "path": str(clip_dir),
                                   "revision": "main", "cache_dir": None})


def images(n, size=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_loaded_model_is_the_saved_one(scorer, clip_dir):
    reloaded = transformers.CLIPModel.from_pretrained(clip_dir)
    assert torch.equal(scorer.model.visual_projection.weight, reloaded.visual_projection.weight)
    assert scorer.backbone == str(clip_dir) and scorer.dim == 16 and not scorer.model.training


def test_image_features_are_unit_norm_batched_and_identical_images_score_one(scorer):
    x = images(5)
    feats = scorer.image_features(x, batch=2)
    assert feats.shape == (5, 16)
    assert torch.allclose(feats.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(feats, scorer.image_features(x, batch=8), atol=1e-5)  # batching changes nothing
    assert clip_image_similarity(feats[:1], feats[:1]) == pytest.approx(1.0, abs=1e-5)
    assert clip_image_similarity(feats[:2], feats[:2]) < 0.9999  # different images differ
    assert scorer.image_features(images(0)).shape == (0, 16)


def test_text_features_and_alignment_match_a_hand_computation(scorer):
    texts = ["a photo of a person", "a painting of a dog on a table"]
    text = scorer.text_features(texts)
    assert text.shape == (2, 16)
    assert torch.allclose(text.norm(dim=1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(text[0], text[1])
    gen = scorer.image_features(images(3, seed=1))
    expected = F.cosine_similarity(gen, text[0].expand_as(gen), dim=1).mean().item()
    assert clip_text_alignment(gen, text[0]) == pytest.approx(expected, abs=1e-6)
    assert clip_text_alignment(gen, text[:1]) == pytest.approx(expected, abs=1e-6)
    assert math.isnan(clip_text_alignment(gen[:0], text[0]))
    with pytest.raises(ValueError):
        clip_text_alignment(gen, text)


def test_text_feature_is_the_projected_end_of_text_token(scorer):
    tokens = scorer.tokenizer(["a photo of a dog"], return_tensors="pt")
    with torch.no_grad():
        hidden = scorer.model.text_model(**tokens).last_hidden_state
    eos = tokens["input_ids"][0].tolist().index(scorer.tokenizer.eos_token_id)
    by_hand = F.normalize(scorer.model.text_projection(hidden[:, eos]), dim=1)
    assert torch.allclose(scorer.text_features(["a photo of a dog"]), by_hand, atol=1e-5)


@pytest.mark.parametrize("params", [
    {"model_id": "openai/clip-vit-large-patch14", "path": "/nonexistent/clip", "revision": "main", "cache_dir": None},
    {"model_id": "openai/clip-vit-large-patch14", "path": None, "revision": "main", "cache_dir": "EMPTY"},
])
def test_absent_weights_fail_fast_on_one_line(params, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if params["cache_dir"] == "EMPTY":
        params = {**params, "cache_dir": str(tmp_path)}
    start = time.monotonic()
    with pytest.raises(PipelineError) as err:
        ClipScorer.from_params(params)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "\n" not in message and "evaluation.clip.path" in message
    assert (params["path"] or params["model_id"]) in message
    if params["path"] is None:
        assert "hf download openai/clip-vit-large-patch14" in message


def test_folder_without_tokenizer_names_the_folder(clip_dir, tmp_path):
    (tmp_path / "config.json").write_text((clip_dir / "config.json").read_text())
    with pytest.raises(PipelineError, match=str(tmp_path)):
        ClipScorer.from_params({"model_id": "x/y", "path": str(tmp_path), "revision": "main", "cache_dir": None})
