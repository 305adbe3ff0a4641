"""The base_model stage: committed miniature checked against its recorded hashes, bit-identical
pre-training, offline Stable Diffusion failing fast."""

import json
import shutil
import time

import pytest
import torch

from continual_diffusion.models.base_folder import load_base
from continual_diffusion.stages.base_model import MANIFEST, build_base, copy_embedded, pretrain_base, verify
from continual_diffusion.stages.prepare_data import prepare_pool
from continual_diffusion.utils import config
from continual_diffusion.utils.config import benchmark_config
from continual_diffusion.utils.errors import PipelineError
from tests.helpers import REPO

EMBEDDED = REPO / "embedded" / "tiny_base"


def test_committed_base_matches_the_hashes_its_stage_recorded():
    manifest = verify(EMBEDDED)
    assert manifest["source"] == "pretrain"
    assert {"unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/model.safetensors", "model_index.json"} <= set(manifest["files"])


def test_committed_base_was_built_from_the_current_params():
    cfg = config.load()
    manifest = json.loads((EMBEDDED / MANIFEST).read_text())
    assert manifest["spec"] == cfg["model"]["spec"]
    assert manifest["pretrain"] == cfg["model"]["pretrain"]  # else: `snakemake rebuild_embedded_base`


def test_tampering_is_detected_and_named(tmp_path):
    copy = tmp_path / "base"
    shutil.copytree(EMBEDDED, copy)
    with open(copy / "unet" / "config.json", "a") as handle:
        handle.write(" ")
    with pytest.raises(PipelineError, match=r"unet/config.json: sha256 mismatch"):
        verify(copy)
    with pytest.raises(PipelineError, match=r"unet/config.json: sha256 mismatch"):
        copy_embedded(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_embedded_copy_loads_in_a_stock_pipeline(tmp_path):
    cfg = config.load()
    build_base(cfg, REPO / "data" / "tiny", tmp_path / "base")
    pipe = load_base(tmp_path / "base")
    assert pipe.unet.config.cross_attention_dim == cfg["model"]["spec"]["text_hidden"]
    assert pipe.vae.config.scaling_factor != 0.18215  # measured on the pool, not SD's constant


@pytest.fixture(scope="module")
def smoke_pools(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke_data")
    cfg = config.load(overrides=["profile=smoke"])
    for b in ("faces", "landmarks"):
        prepare_pool(benchmark_config(cfg, b), b, root / "pool" / b)
    return cfg, root


def test_smoke_pretraining_is_bit_identical(smoke_pools, tmp_path):
    cfg, root = smoke_pools
    a = pretrain_base(cfg, root, tmp_path / "a")
    b = pretrain_base(cfg, root, tmp_path / "b")
    assert a["files"] == b["files"]
    losses = [e["loss"] for e in json.loads((tmp_path / "a" / "pretrain_log.json").read_text())["unet"]]
    assert sum(losses[-5:]) < sum(losses[:5])
    pipe = load_base(tmp_path / "a")
    assert pipe.unet.config.sample_size == 16 and len(pipe.tokenizer) <= cfg["model"]["pretrain"]["vocab_size"]


def test_pretraining_refuses_a_pool_of_another_resolution(smoke_pools, tmp_path):
    cfg, root = smoke_pools
    cfg = config.load(overrides=["profile=smoke", "model.spec.resolution=64"])
    with pytest.raises(PipelineError, match="model.spec.resolution: 64 but the pool images are 32 px"):
        pretrain_base(cfg, root, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_absent_stable_diffusion_fails_fast_with_what_to_fetch(tmp_path):
    cfg = config.load(overrides=["profile=paper_faces", f"model.stable_diffusion.cache_dir={tmp_path / 'hub'}"])
    start = time.perf_counter()
    with pytest.raises(PipelineError,
                       match=r"CompVis/stable-diffusion-v1-4@main: Stable Diffusion weights not found offline.*hf download"):
        build_base(cfg, tmp_path, tmp_path / "base")
    assert time.perf_counter() - start < 30
    assert not (tmp_path / "base").exists()


def test_missing_base_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="base model not built"):
        load_base(tmp_path)
    assert torch.get_num_threads() >= 1
