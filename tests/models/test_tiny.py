"""The miniature model: built from configs, saved in the diffusers layout, loaded by the stock pipeline."""

import time

import pytest
import torch

from continual_diffusion.models.sd_v1_weights import load_stable_diffusion
from continual_diffusion.models.tiny import build_components, latent_size, save_pipeline
from continual_diffusion.models.tokenizer import train_clip_bpe
from continual_diffusion.utils.errors import PipelineError
from tests.model_fixtures import CAPTIONS, SPEC


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_clip_bpe(CAPTIONS, vocab_size=200, max_length=16, out=tmp_path_factory.mktemp("tok"))


def test_tokenizer_follows_clip_conventions(tokenizer):
    ids = tokenizer("a photo of a person").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    assert len(tokenizer("A PHOTO of 7 Cats!").input_ids) > 2  # unseen words fall back to characters
    padded = tokenizer("a photo", padding="max_length", max_length=16).input_ids
    assert len(padded) == 16


def test_tokenizer_training_is_deterministic(tmp_path, tokenizer):
    again = train_clip_bpe(CAPTIONS, vocab_size=200, max_length=16, out=tmp_path / "again")
    assert again.get_vocab() == tokenizer.get_vocab()


def test_new_concept_token_gets_its_own_id(tmp_path, tokenizer):
    tokenizer.add_tokens(["<v1>"])
    ids = tokenizer("a photo of <v1>").input_ids
    assert tokenizer.convert_tokens_to_ids("<v1>") in ids


def test_saved_model_loads_in_stock_pipeline_and_generates(tmp_path, tokenizer):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    components = build_components(SPEC, tokenizer, seed=0)
    assert latent_size(SPEC) == SPEC["resolution"] // 2
    save_pipeline(components, tmp_path / "base")
    assert (tmp_path / "base" / "unet" / "diffusion_pytorch_model.safetensors").exists()
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "base")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    def generate():
        return pipe("a photo of a person", num_inference_steps=2, guidance_scale=3.0,
                    generator=torch.Generator().manual_seed(0), output_type="np").images

    first, second = generate(), generate()
    assert first.shape == (1, SPEC["resolution"], SPEC["resolution"], 3)
    assert (first == second).all()  # seeded CPU generator: bit-identical


def test_missing_stable_diffusion_fails_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(PipelineError, match="Stable Diffusion weights not found offline"):
        load_stable_diffusion("CompVis/stable-diffusion-v1-4", revision="main", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(PipelineError, match="Stable Diffusion folder not found"):
        load_stable_diffusion(str(tmp_path / "no-such-folder"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="model_index.json missing"):
        load_stable_diffusion(str(tmp_path / "empty"))
    assert time.monotonic() - start < 10
