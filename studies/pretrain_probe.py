"""Probe of the miniature's pre-training: time per step and quality of each phase on the real pool.

Trains the VAE, then the text encoder + U-Net, on the generic pools written by ``prepare_data``
(``data/<profile>/pool/*``), and reports time per step, VAE reconstruction PSNR on task images
(never seen in pre-training), the denoiser's loss, and writes a grid of samples for pool captions.

  python studies/pretrain_probe.py --vae-steps 800 --unet-steps 1500 --out /tmp/probe
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from continual_diffusion.models.pretrain import PhaseConfig, encode_pool, latent_scale, to_unit_range, train_denoiser, train_vae  # noqa: E402
from continual_diffusion.models.tiny import build_components  # noqa: E402
from continual_diffusion.models.tokenizer import train_clip_bpe  # noqa: E402
from continual_diffusion.utils.layout import profile_root  # noqa: E402

SPEC = dict(
    resolution=64, vae_channels=[32, 64, 64], latent_channels=4, unet_channels=[64, 128], unet_attention=[True, True],
    layers_per_block=1, attention_head_dim=8, norm_groups=16, text_hidden=64, text_layers=2, text_heads=2,
    max_length=32,
)


def load_pool(folder: Path):
    from safetensors.numpy import load_file

    arrays = load_file(str(folder / "images.safetensors"))
    return torch.from_numpy(arrays["images"]), json.loads((folder / "captions.json").read_text())


def task_images(folder: Path) -> torch.Tensor:
    files = sorted(folder.glob("task_*/images/*.png"))
    return torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))


def psnr(vae, images_uint8) -> float:
    with torch.no_grad():
        x = to_unit_range(images_uint8)
        r = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    mse = float(((r - x) / 2).pow(2).mean())
    return 10 * np.log10(1.0 / mse)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="tiny")
    p.add_argument("--vae-steps", type=int, default=800)
    p.add_argument("--unet-steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--spec", default="{}", help="JSON overrides of SPEC, e.g. '{\"unet_channels\": [32, 64]}'")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    SPEC.update(json.loads(args.spec))
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    root = profile_root("data", args.profile)
    pools = [load_pool(root / "pool" / b) for b in ("faces", "landmarks")]
    images = torch.cat([im for im, _ in pools])
    captions = [c for _, caps in pools for c in caps]
    held_out = torch.cat([task_images(root / "tasks" / b)[:64] for b in ("faces", "landmarks")])
    tokenizer = train_clip_bpe(captions, vocab_size=1000, max_length=SPEC["max_length"], out=args.out / "tokenizer")
    parts = build_components(SPEC, tokenizer, seed=0)
    report = {"spec": SPEC, "pool_images": int(images.shape[0]), "vocab": len(tokenizer),
              "params": {k: sum(p.numel() for p in parts[k].parameters()) for k in ("vae", "unet", "text_encoder")}}
    print(json.dumps(report), flush=True)

    start = time.perf_counter()
    vae_log = train_vae(parts["vae"], images, PhaseConfig(args.vae_steps, args.batch, 1e-3, 0), kl_weight=1e-6)
    report["vae_s_per_step"] = (time.perf_counter() - start) / max(args.vae_steps, 1)
    report["vae_psnr_task_images"] = psnr(parts["vae"], held_out)
    report["vae_mse_last50"] = float(np.mean([e["mse"] for e in vae_log[-50:]]))
    parts["vae"].register_to_config(scaling_factor=latent_scale(parts["vae"], images[:2048]))
    print(json.dumps({k: report[k] for k in ("vae_s_per_step", "vae_psnr_task_images", "vae_mse_last50")}), flush=True)

    start = time.perf_counter()
    latents = encode_pool(parts["vae"], images)
    report["encode_pool_s"] = time.perf_counter() - start
    start = time.perf_counter()
    unet_log = train_denoiser(parts["unet"], parts["text_encoder"], tokenizer, parts["scheduler"], latents, captions,
                              PhaseConfig(args.unet_steps, args.batch, 1e-3, 0), caption_dropout=0.1)
    report["unet_s_per_step"] = (time.perf_counter() - start) / max(args.unet_steps, 1)
    report["unet_loss_first50"] = float(np.mean([e["loss"] for e in unet_log[:50]]))
    report["unet_loss_last50"] = float(np.mean([e["loss"] for e in unet_log[-50:]]))

    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    prompts = [captions[0], captions[12 * 7], captions[len(pools[0][1])], captions[len(pools[0][1]) + 12 * 5]]
    start = time.perf_counter()
    rows = [pipe([prompt] * 6, num_inference_steps=25, guidance_scale=3.0,
                 generator=torch.Generator().manual_seed(0), output_type="np").images for prompt in prompts]
    report["sample_s_per_image"] = (time.perf_counter() - start) / 24
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    Image.fromarray((grid * 255).round().astype(np.uint8)).save(args.out / "samples.png")
    report["prompts"] = prompts
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()
