"""Stage ``base_model``: the frozen text-to-image model every method starts from.

``model.base`` selects one of three sources, all ending in ``models/<profile>/base/``:
  * ``pretrain``  build the miniature from ``model.spec`` and pre-train it on the generic synthetic
                  pools (``pretrain.py``): tokenizer, VAE, then text encoder + U-Net; saved in the
                  diffusers layout (``StableDiffusionPipeline.from_pretrained`` loads it).
  * ``embedded``  copy the committed pre-trained miniature (``model.embedded``), after checking every
                  file against the sha256 its manifest records. ``cdiff pretrain-base --out <dir>``
                  rebuilds it bit-identically (same code, params and pool, same thread count).
  * ``stable_diffusion``  the paper's model: resolved offline from a local folder or the hub cache,
                  checked to load (fails fast when absent); the folder holds a pointer, not a copy.
``base.json`` in the folder records the source, the spec, pre-training logs and file hashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

from continual_diffusion.models.base_folder import MANIFEST, POINTER
from continual_diffusion.utils import layout
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.io import atomic_directory, json_text
from continual_diffusion.utils.seeds import cpu_generator

log = logging.getLogger(__name__)



def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the manifest, by relative POSIX path."""
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def verify(folder: Path) -> dict:
    """Check ``folder``'s files against its manifest; returns the manifest."""
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        raise PipelineError(f"{manifest_path}: base model manifest not found")
    manifest = json.loads(manifest_path.read_text())
    actual = file_hashes(folder)
    expected = manifest.get("files", {})
    for name in sorted(set(expected) | set(actual)):
        if expected.get(name) != actual.get(name):
            state = "missing" if name not in actual else "unexpected" if name not in expected else "sha256 mismatch"
            raise PipelineError(f"{folder / name}: {state} (against {manifest_path})")
    return manifest


def load_pools(data_root: Path, benchmarks: list[str]):
    """Concatenated generic pools (uint8 N x H x W x 3) and captions of the given benchmarks."""
    import torch
    from safetensors.numpy import load_file

    images, captions = [], []
    for benchmark in benchmarks:
        folder = layout.pool_dir(data_root, benchmark)
        if not (folder / "images.safetensors").exists():
            raise PipelineError(f"{folder / 'images.safetensors'}: generic pool missing (run the prepare_data stage)")
        images.append(torch.from_numpy(load_file(str(folder / "images.safetensors"))["images"]))
        captions += json.loads((folder / "captions.json").read_text())
    return torch.cat(images), captions


def pretrain_base(cfg: dict, data_root: Path, out: Path) -> dict:
    """Build and pre-train the miniature on the pools under ``data_root``; write it to ``out``."""
    import torch

    from continual_diffusion.models.pretrain import PhaseConfig, encode_pool, latent_scale, train_denoiser, train_vae
    from continual_diffusion.models.tiny import build_components, save_pipeline
    from continual_diffusion.models.tokenizer import train_clip_bpe

    model_cfg = cfg["model"]
    spec, pre = model_cfg["spec"], model_cfg["pretrain"]
    torch.set_num_threads(pre["threads"])
    benchmarks = [b for b in cfg["benchmarks"] if cfg["data"][b]["source"].startswith("synthetic_")]  # the rule's pools
    images, captions = load_pools(data_root, benchmarks)
    if images.shape[1] != spec["resolution"]:
        raise PipelineError(f"model.spec.resolution: {spec['resolution']} but the pool images are {images.shape[1]} px")
    report: dict = {"source": "pretrain", "spec": spec, "pretrain": pre, "pool_images": int(images.shape[0]),
                    "pool_benchmarks": benchmarks}
    with atomic_directory(out) as tmp:
        tokenizer = train_clip_bpe(captions, vocab_size=pre["vocab_size"], max_length=spec["max_length"],
                                   out=tmp / "_tokenizer")
        shutil.rmtree(tmp / "_tokenizer")
        parts = build_components(spec, tokenizer, seed=pre["seed"])
        start = time.perf_counter()
        vae = pre["vae"]
        vae_log = train_vae(parts["vae"], images, PhaseConfig(vae["steps"], vae["batch_size"], vae["lr"], pre["seed"]),
                            kl_weight=vae["kl_weight"])
        report["vae_seconds"] = round(time.perf_counter() - start, 1)
        # Scale from a fixed random subset of all pools (not the first images: they are one benchmark).
        subset = torch.randperm(images.shape[0], generator=cpu_generator(pre["seed"]))[:2048]
        parts["vae"].register_to_config(scaling_factor=latent_scale(parts["vae"], images[subset]))
        start = time.perf_counter()
        latents = encode_pool(parts["vae"], images)
        unet = pre["unet"]
        unet_log = train_denoiser(
            parts["unet"], parts["text_encoder"], tokenizer, parts["scheduler"], latents, captions,
            PhaseConfig(unet["steps"], unet["batch_size"], unet["lr"], pre["seed"] + 1),
            caption_dropout=unet["caption_dropout"], offset_noise=unet["offset_noise"],
            warmup_steps=unet["warmup_steps"], snr_gamma=unet.get("snr_gamma"),
        )
        report["unet_seconds"] = round(time.perf_counter() - start, 1)
        report["vae_mse_last50"] = sum(e["mse"] for e in vae_log[-50:]) / max(len(vae_log[-50:]), 1)
        report["unet_loss_first50"] = sum(e["loss"] for e in unet_log[:50]) / max(len(unet_log[:50]), 1)
        report["unet_loss_last50"] = sum(e["loss"] for e in unet_log[-50:]) / max(len(unet_log[-50:]), 1)
        report["scaling_factor"] = float(parts["vae"].config.scaling_factor)
        report["params"] = {k: sum(p.numel() for p in parts[k].parameters()) for k in ("vae", "unet", "text_encoder")}
        save_pipeline(parts, tmp)
        (tmp / "pretrain_log.json").write_text(json_text({"vae": vae_log, "unet": unet_log}))
        # Wall times vary between runs; keep them out of the hashed files (logged only).
        log.info("pre-training took %.0f s (vae) + %.0f s (unet)", report.pop("vae_seconds"), report.pop("unet_seconds"))
        report["files"] = file_hashes(tmp)
        (tmp / MANIFEST).write_text(json_text(report))
    return report


def copy_embedded(source: Path, out: Path) -> dict:
    """Verify the committed miniature against its manifest and copy it to ``out``."""
    if not source.is_dir():
        raise PipelineError(f"{source}: embedded base model folder not found (model.embedded)")
    manifest = verify(source)
    with atomic_directory(out) as tmp:
        for name in manifest["files"]:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, tmp / name)
        shutil.copyfile(source / MANIFEST, tmp / MANIFEST)
        verify(tmp)
    return manifest


def link_stable_diffusion(cfg: dict, out: Path) -> dict:
    """Resolve SD v1.x offline, check that it loads, and write a pointer to it in ``out``."""
    from continual_diffusion.models.sd_v1_weights import load_stable_diffusion

    sd = cfg["model"]["stable_diffusion"]
    source = sd["path"] or sd["repo_id"]
    pipe = load_stable_diffusion(source, revision=sd["revision"], cache_dir=sd["cache_dir"])
    report = {"source": "stable_diffusion", "model": source, "revision": sd["revision"],
              "cache_dir": sd["cache_dir"], "unet_params": sum(p.numel() for p in pipe.unet.parameters())}
    with atomic_directory(out) as tmp:
        (tmp / POINTER).write_text(json_text({k: report[k] for k in ("model", "revision", "cache_dir")}))
        report["files"] = file_hashes(tmp)
        (tmp / MANIFEST).write_text(json_text(report))
    return report


def build_base(cfg: dict, data_root: Path, out: Path) -> dict:
    kind = cfg["model"]["base"]
    if kind == "pretrain":
        return pretrain_base(cfg, data_root, out)
    if kind == "embedded":
        return copy_embedded(Path(cfg["model"]["embedded"]), out)
    if kind == "stable_diffusion":
        return link_stable_diffusion(cfg, out)
    raise PipelineError(f"model.base: unknown source {kind!r} (pretrain | embedded | stable_diffusion)")


def run_base_model(cfg: dict, out: Path) -> dict:
    """``cdiff base-model``: the base model folder from the profile's data (pre-trains when model.base is
    pretrain)."""
    return build_base(cfg, layout.profile_root("data", cfg["profile"]), out)


def run_pretrain_base(cfg: dict, data: Path | None, compare: Path | None, out: Path) -> dict:
    """``cdiff pretrain-base``: pre-train the miniature on the pools under ``data`` (default data/<profile>);
    with ``compare``, fail unless the result is bit-identical to that base folder."""
    report = pretrain_base(cfg, data or layout.profile_root("data", cfg["profile"]), out)
    log.info("pre-trained base written to %s (U-Net loss %.4f -> %.4f)", out,
             report["unet_loss_first50"], report["unet_loss_last50"])
    if compare:
        reference = verify(compare)["files"]
        differ = sorted(k for k in set(reference) | set(report["files"]) if reference.get(k) != report["files"].get(k))
        if differ:
            raise PipelineError(f"{compare}: rebuilt base differs in {len(differ)} file(s), first {differ[0]}")
        log.info("rebuilt base is bit-identical to %s (%d files)", compare, len(reference))
    return report
