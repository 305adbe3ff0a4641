"""The miniature's identity evaluator: trained on held-out renders only, accuracy recorded."""

import json

import numpy as np
import pytest
import torch

from continual_diffusion.models.identity_net import load_evaluator, predict, to_input
from continual_diffusion.stages.identity_evaluator import augment, heldout_renders, train_evaluator, vae_roundtrip
from continual_diffusion.stages.prepare_data import prepare_tasks
from continual_diffusion.utils import config
from continual_diffusion.utils.config import benchmark_config
from continual_diffusion.utils.errors import PipelineError
from tests.model_fixtures import saved_base


@pytest.fixture(scope="module")
def smoke_tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    cfg = config.load(overrides=["profile=smoke"])
    bench = benchmark_config(cfg, "faces")
    prepare_tasks(bench, "faces", root / "tasks")
    saved_base(root / "base")
    return cfg, bench, root


def test_augment_is_seeded_and_stays_in_range():
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    aug = {"blur_max": 1.5, "jitter": 0.1, "noise_max": 0.05, "shift": 2}
    a = augment(x, torch.Generator().manual_seed(0), aug)
    b = augment(x, torch.Generator().manual_seed(0), aug)
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    none = augment(x, torch.Generator().manual_seed(0), {"blur_max": 0.0, "jitter": 0.0, "noise_max": 0.0, "shift": 0})
    assert torch.allclose(none, x, atol=1e-5)


def test_heldout_renders_are_never_training_images(smoke_tasks):
    cfg, bench, root = smoke_tasks
    tasks = json.loads((root / "tasks" / "tasks.json").read_text())["tasks"]
    ids = [t["concept_id"] for t in tasks]
    images, labels = heldout_renders(bench, ids, per_concept=6, offset=0, other=3)
    assert images.shape == (2 * 6 + 3, 32, 32, 3) and labels.tolist() == [0] * 6 + [1] * 6 + [2] * 3
    training = {np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(p).convert("RGB")).tobytes()
                for p in (root / "tasks").glob("task_*/images/*.png")}
    assert not any(image.tobytes() in training for image in images)


def test_evaluator_trains_records_heldout_accuracy_and_reloads(smoke_tasks):
    cfg, bench, root = smoke_tasks
    report = train_evaluator(cfg, bench, root / "tasks" / "tasks.json", root / "evaluator", base=root / "base")
    assert report["classes"][-1] == "other" and len(report["classes"]) == 3
    assert 0.0 <= report["heldout_accuracy"] <= 1.0 and 0.0 <= report["heldout_accuracy_vae_roundtrip"] <= 1.0
    assert set(report["heldout_accuracy_vae_roundtrip_per_class"]) == set(report["classes"])
    assert report["val_images"] == 2 * cfg["evaluator"]["val_images_per_concept"] + cfg["evaluator"]["other_val_images"]
    net, loaded = load_evaluator(root / "evaluator")
    assert loaded == json.loads((root / "evaluator" / "evaluator.json").read_text())
    probs = predict(net, np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(dim=1), torch.ones(2))
    assert to_input(np.full((1, 2, 2, 3), 255, dtype=np.uint8)).max() == 1.0


def test_vae_roundtrip_is_deterministic_and_goes_through_the_vae(smoke_tasks, tmp_path):
    from diffusers import AutoencoderKL

    cfg, bench, root = smoke_tasks
    images, _ = heldout_renders(bench, [], per_concept=0, offset=0, other=3)
    once = vae_roundtrip(images, root / "base" / "vae", batch=2)
    assert once.dtype == np.uint8 and once.shape == images.shape
    assert np.array_equal(once, vae_roundtrip(images, root / "base" / "vae"))
    assert not np.array_equal(once, images)  # a random VAE cannot reproduce its input
    vae = AutoencoderKL.from_pretrained(str(root / "base" / "vae")).eval()
    with torch.no_grad():
        expected = vae.decode(vae.encode(to_input(images)).latent_dist.mean).sample
    assert np.abs(to_input(once).numpy() - expected.clamp(-1, 1).numpy()).max() <= 1 / 127.5 + 1e-6
    with pytest.raises(PipelineError, match="no VAE"):
        vae_roundtrip(images, tmp_path / "missing")


def test_roundtrip_share_trains_on_roundtrips_and_needs_the_base(smoke_tasks, tmp_path):
    cfg, bench, root = smoke_tasks
    tasks = root / "tasks" / "tasks.json"
    with pytest.raises(PipelineError, match="evaluator.vae_roundtrip"):
        train_evaluator(cfg, bench, tasks, tmp_path / "no_base")
    assert not (tmp_path / "no_base").exists()
    clean_cfg = config.load(overrides=["profile=smoke", "evaluator.vae_roundtrip=0"])
    clean = train_evaluator(clean_cfg, bench, tasks, tmp_path / "clean")  # share 0: no base needed
    assert "heldout_accuracy_vae_roundtrip" not in clean
    mixed = train_evaluator(cfg, bench, tasks, tmp_path / "mixed", base=root / "base")
    assert mixed["params"]["vae_roundtrip"] == cfg["evaluator"]["vae_roundtrip"] > 0
    train_evaluator(cfg, bench, tasks, tmp_path / "again", base=root / "base")
    weights = {name: (tmp_path / name / "classifier.safetensors").read_bytes() for name in ("clean", "mixed", "again")}
    assert weights["mixed"] == weights["again"] and weights["mixed"] != weights["clean"]
    with pytest.raises(PipelineError, match="vae_roundtrip"):
        config.load(overrides=["profile=smoke", "evaluator.vae_roundtrip=1.5"])


def test_real_data_checks_the_pretrained_extractors_and_fails_fast(tmp_path):
    import time

    from continual_diffusion.metrics.suite import pretrained_evaluator

    cfg = config.load(overrides=["profile=paper_faces", f"evaluation.clip.cache_dir={tmp_path / 'empty_cache'}"])
    started = time.perf_counter()
    with pytest.raises(PipelineError, match="openai/clip-vit-large-patch14"):
        pretrained_evaluator(cfg, "faces", tmp_path / "out")
    cfg = config.load(overrides=["profile=paper_faces", "evaluation.metrics=[face_identity]"])
    with pytest.raises(PipelineError, match="evaluation.facenet.weights"):
        pretrained_evaluator(cfg, "faces", tmp_path / "out")
    assert time.perf_counter() - started < 20 and not (tmp_path / "out").exists()
    cfg = config.load(overrides=["profile=paper_faces", "evaluation.metrics=[identity]"])
    with pytest.raises(PipelineError, match="no miniature identity evaluator"):
        pretrained_evaluator(cfg, "faces", tmp_path / "out")
