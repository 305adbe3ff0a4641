"""Identity evaluator of the miniature: a small CNN that names which task concept an image shows.

Classes: the benchmark's n task concepts plus "other" (generic identities of the same family, so a
generic face is not forced onto some concept). Trained on *fresh held-out renders* of the task
concepts (a seed stream no training image uses; never the task images), validated on further
held-out renders; the validation accuracy is recorded beside every score it produces.

Training loss: cross-entropy  L = -mean_n log softmax(f(aug(x_n)))[y_n], AdamW, cosine learning rate.
Augmentation (train only, seeded): Gaussian blur sigma ~ U[0, blur_max], brightness/contrast
factors ~ U[1 - jitter, 1 + jitter], pixel noise std ~ U[0, noise_max], shifts of up to ``shift`` px,
so blurry or noisy generated samples are judged by identity rather than by sharpness.
VAE round-trips (``evaluator.vae_roundtrip``, a share r in [0, 1]): each training image is replaced, with
probability r, by its round-trip through the base model's VAE, x -> D(mean E(x)). A latent model can only
generate images on that VAE's output manifold, so an evaluator that has never seen it can reject a concept
the generator reproduces as faithfully as it can at all (the tiny base's VAE turns the green wall of
landmark concept 8 olive-grey: an evaluator trained on clean renders recognised 10% of those round-trips).
The manifest records the held-out accuracy on clean renders and on their round-trips.
Score used downstream: accuracy_i = (1/N) sum_j [argmax_k p(k | x_ij) = i] over the N samples of concept i.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from continual_diffusion.models.identity_net import MANIFEST, OTHER, OTHER_OFFSET, WEIGHTS, IdentityNet, predict, to_input
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.io import atomic_directory, json_text
from continual_diffusion.utils.progress import progress_bar
from continual_diffusion.utils.seeds import cpu_generator

log = logging.getLogger(__name__)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image separable Gaussian blur (sigma 0 leaves the image unchanged)."""
    radius = 3
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    s = sigma.clamp(min=1e-3)[:, None]
    kernel = torch.exp(-offsets[None] ** 2 / (2 * s ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # N x K
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (radius, radius, radius, radius), mode="replicate")
    flat = padded.reshape(1, n * c, h + 2 * radius, w + 2 * radius)
    k = kernel.repeat_interleave(c, dim=0)
    out = torch.nn.functional.conv2d(flat, k[:, None, None, :], groups=n * c)
    out = torch.nn.functional.conv2d(out, k[:, None, :, None], groups=n * c)
    return out.reshape(n, c, h, w)


def augment(x: torch.Tensor, g: torch.Generator, aug: dict) -> torch.Tensor:
    n = x.shape[0]
    x = _blur(x, torch.rand(n, generator=g) * aug["blur_max"])
    jitter = aug["jitter"]
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * jitter
    brightness = (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * jitter
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + brightness
    x = x + torch.randn(x.shape, generator=g) * (torch.rand(n, 1, 1, 1, generator=g) * aug["noise_max"])
    shift = aug["shift"]
    if shift:
        dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=g))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    return x.clamp(-1, 1)


def heldout_renders(bench: dict, concept_ids: list[str], per_concept: int, offset: int,
                    other: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out renders of the task concepts (indices offset..offset+per_concept) and of ``other``
    generic identities (one image each); labels 0..n-1 for concepts, n for "other"."""
    from continual_diffusion.stages.prepare_data import synthetic_source

    source = synthetic_source(bench)
    by_id = {c.concept_id: c for c in source.concept_pool}
    missing = [c for c in concept_ids if c not in by_id]
    if missing:
        raise PipelineError(f"tasks.json: concept {missing[0]} is not in the synthetic source (regenerate the data)")
    images, labels = [], []
    with progress_bar(total=len(concept_ids) * per_concept + other, desc="render held-out", unit="img") as bar:
        for label, cid in enumerate(concept_ids):
            for j in range(offset, offset + per_concept):
                images.append(np.asarray(source.heldout(by_id[cid], j).convert("RGB")))
                labels.append(label)
                bar.update(1)
        pool = source.generic_pool
        for k in range(other):
            concept = pool[k % len(pool)]
            images.append(np.asarray(source.heldout(concept, OTHER_OFFSET + offset + k).convert("RGB")))
            labels.append(len(concept_ids))
            bar.update(1)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def vae_roundtrip(images_uint8: np.ndarray, vae_folder: Path, batch: int = 128) -> np.ndarray:
    """x -> D(mean E(x)) through a diffusers ``AutoencoderKL`` folder; uint8 N x H x W x 3 in and out.
    Deterministic (the posterior mean, no sampling)."""
    from diffusers import AutoencoderKL

    if not (Path(vae_folder) / "config.json").exists():
        raise PipelineError(f"{vae_folder}: no VAE (config.json missing; run the base_model stage)")
    vae = AutoencoderKL.from_pretrained(str(vae_folder)).eval()
    out = []
    with progress_bar(total=len(images_uint8), desc="VAE round-trip", unit="img") as bar:
        with torch.no_grad():
            for i in range(0, len(images_uint8), batch):
                x = to_input(images_uint8[i:i + batch])
                y = vae.decode(vae.encode(x).latent_dist.mean).sample
                out.append(((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
                bar.update(len(x))
    return np.concatenate(out)


def _accuracy(net: IdentityNet, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> tuple[float, dict]:
    predicted = predict(net, images).argmax(dim=1).numpy()
    per_class = {name: float((predicted[labels == k] == k).mean()) for k, name in enumerate(classes)}
    return float((predicted == labels).mean()), per_class


def train_evaluator(cfg: dict, bench: dict, tasks_json: Path, out: Path, base: Path | None = None) -> dict:
    """Train the benchmark's evaluator and write ``out`` (weights + manifest with held-out accuracy).
    ``base``: the base model folder whose VAE makes the round-trips (needed when ``vae_roundtrip`` > 0)."""
    from safetensors.torch import save_file

    ev = cfg["evaluator"]
    share = float(ev["vae_roundtrip"])
    if share > 0 and base is None:
        raise PipelineError("evaluator.vae_roundtrip > 0 needs the base model (--base models/<profile>/base)")
    torch.set_num_threads(cfg["torch_threads"])
    if not bench["data"]["source"].startswith("synthetic_"):
        raise PipelineError(
            f"evaluator: source {bench['data']['source']} has no miniature identity evaluator "
            "(real data is scored with facenet / CLIP by the evaluation stage)"
        )
    if not tasks_json.exists():
        raise PipelineError(f"{tasks_json}: not found (run the prepare_data stage)")
    concept_ids = [t["concept_id"] for t in json.loads(tasks_json.read_text())["tasks"]]
    n_train, n_val = ev["train_images_per_concept"], ev["val_images_per_concept"]
    x_train, y_train = heldout_renders(bench, concept_ids, n_train, 0, ev["other_train_images"])
    x_val, y_val = heldout_renders(bench, concept_ids, n_val, n_train, ev["other_val_images"])
    if share > 0:
        vae = Path(base) / "vae"
        r_train, r_val = vae_roundtrip(x_train, vae), vae_roundtrip(x_val, vae)
    torch.manual_seed(ev["seed"])
    net = IdentityNet(len(concept_ids) + 1, width=ev["width"], input_size=ev["input_size"])
    g = cpu_generator(ev["seed"])
    optimizer = torch.optim.AdamW(net.parameters(), lr=ev["lr"], weight_decay=1e-4)
    steps = ev["steps"]
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    inputs, targets = to_input(x_train), torch.from_numpy(y_train)
    roundtrips = to_input(r_train) if share > 0 else None
    with progress_bar(total=steps, desc="train evaluator", unit="step") as bar:
        net.train()
        for _ in range(steps):
            index = torch.randint(inputs.shape[0], (ev["batch_size"],), generator=g)
            batch = inputs[index]
            if roundtrips is not None:
                use = torch.rand(len(index), generator=g) < share
                batch = torch.where(use[:, None, None, None], roundtrips[index], batch)
            loss = torch.nn.functional.cross_entropy(net(augment(batch, g, ev["augment"])), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
    classes = concept_ids + [OTHER]
    accuracy, per_class = _accuracy(net, x_val, y_val, classes)
    report = {
        "classes": classes, "heldout_accuracy": accuracy,
        "heldout_accuracy_per_class": per_class, "train_images": int(len(y_train)), "val_images": int(len(y_val)),
        "params": ev, "resolution": int(x_train.shape[1]),
    }
    if share > 0:
        report["heldout_accuracy_vae_roundtrip"], report["heldout_accuracy_vae_roundtrip_per_class"] = \
            _accuracy(net, r_val, y_val, classes)
    with atomic_directory(out) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / WEIGHTS))
        (tmp / MANIFEST).write_text(json_text(report))
    log.info("evaluator held-out accuracy %.3f (VAE round-trips: %s)", report["heldout_accuracy"],
             report.get("heldout_accuracy_vae_roundtrip", "not used"))
    return report


def trains_evaluator(cfg: dict, benchmark: str) -> bool:
    """Whether ``benchmark``'s evaluator stage trains a network (synthetic data) or only checks that the
    pretrained extractors load (real data)."""
    from continual_diffusion.utils.config import benchmark_config

    return benchmark_config(cfg, benchmark)["data"]["source"].startswith("synthetic_")


def run_evaluator(cfg: dict, benchmark: str, tasks: Path, base: Path | None, out: Path) -> None:
    """``cdiff evaluator``: train a synthetic benchmark's identity evaluator on held-out renders of the
    task folder ``tasks``; on real data, check the pretrained facenet / CLIP extractors load."""
    from continual_diffusion.utils.config import benchmark_config

    if trains_evaluator(cfg, benchmark):
        train_evaluator(cfg, benchmark_config(cfg, benchmark), tasks / "tasks.json", out, base=base)
    else:
        from continual_diffusion.metrics.suite import pretrained_evaluator

        pretrained_evaluator(cfg, benchmark, out)
