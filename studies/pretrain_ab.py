"""A/B of the miniature's U-Net pre-training settings: short runs from scratch, one held-out loss.

Every variant trains a fresh text encoder + U-Net (the spec in params.yaml) for ``--steps`` steps on
the cached latents of the generic pools, encoded with the VAE of an existing base (so variants differ
only in the denoiser phase), then reports the plain epsilon-MSE on 256 fixed pool images at fixed
timesteps with fixed noise (the same numbers for every variant and for ``--base``):
    val(t) = mean || eps - unet(sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, t, text(caption)) ||^2
and writes a sample grid (real image, then 7 samples, for three pool captions) per variant.

  python studies/pretrain_ab.py --steps 800 --variant base:lr=1e-3 \
      --variant snr5:lr=1e-3,snr_gamma=5 --variant snr5lr2:lr=2e-3,snr_gamma=5 --out /tmp/ab
  python studies/pretrain_ab.py --base models/tiny/base --out /tmp/ab     # score an existing base
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from continual_diffusion.core.sampling import grid  # noqa: E402
from continual_diffusion.models.base_folder import load_base  # noqa: E402
from continual_diffusion.models.pretrain import PhaseConfig, encode_pool, train_denoiser  # noqa: E402
from continual_diffusion.models.tiny import build_components  # noqa: E402
from continual_diffusion.stages.base_model import load_pools  # noqa: E402
from continual_diffusion.utils import config  # noqa: E402
from continual_diffusion.utils.layout import profile_root  # noqa: E402

TIMESTEPS = [50, 200, 400, 600, 800, 950]


def held_out_loss(unet, text_encoder, tokenizer, scheduler, latents, captions) -> dict[int, float]:
    g = torch.Generator().manual_seed(123)
    index = torch.randperm(latents.shape[0], generator=g)[:256]
    ids = tokenizer([captions[i] for i in index], padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    out = {}
    with torch.no_grad():
        embedding = text_encoder(ids)[0]
        for t in TIMESTEPS:
            noise = torch.randn(latents[index].shape, generator=g)
            steps = torch.full((index.shape[0],), t)
            prediction = unet(scheduler.add_noise(latents[index], noise, steps), steps, embedding).sample
            out[t] = round(float((prediction - noise).pow(2).mean()), 4)
    return out


def sample_grid(base, unet, text_encoder, images, captions, path: Path) -> None:
    import diffusers
    from PIL import Image

    pipe = diffusers.StableDiffusionPipeline(
        vae=base.vae, text_encoder=text_encoder, tokenizer=base.tokenizer, unet=unet,
        scheduler=diffusers.DDIMScheduler.from_config(base.scheduler.config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    rows = []
    for i in (12 * 7, 12 * 50, images.shape[0] - 12 * 20):
        generators = [torch.Generator().manual_seed(j) for j in range(7)]
        out = pipe([captions[i]] * 7, num_inference_steps=20, guidance_scale=5.0, generator=generators,
                   output_type="np").images
        rows.append(np.concatenate([images[i].numpy()[None], (out * 255).round().astype(np.uint8)]))
    Image.fromarray(grid(rows)).save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, default=Path("models/tiny/base"), help="VAE/tokenizer source (and scored itself)")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--variant", action="append", default=[], help="'name:lr=..,snr_gamma=..,warmup=..'")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = config.load()
    base = load_base(args.base)
    images, captions = load_pools(profile_root("data", cfg["profile"]), ["faces", "landmarks"])
    latents = encode_pool(base.vae, images)
    rows = [{"variant": f"existing base {args.base}", "steps": None,
             "val": held_out_loss(base.unet, base.text_encoder, base.tokenizer, base.scheduler, latents, captions)}]
    pre = cfg["model"]["pretrain"]["unet"]
    for variant in args.variant:
        name, _, text = variant.partition(":")
        settings = {"lr": pre["lr"], "snr_gamma": None, "warmup": pre["warmup_steps"]}
        settings.update({k: float(v) for k, v in (kv.split("=") for kv in text.split(",") if kv)})
        parts = build_components(cfg["model"]["spec"], base.tokenizer, seed=cfg["model"]["pretrain"]["seed"])
        start = time.perf_counter()
        train_denoiser(parts["unet"], parts["text_encoder"], base.tokenizer, parts["scheduler"], latents, captions,
                       PhaseConfig(args.steps, pre["batch_size"], settings["lr"], 1),
                       caption_dropout=pre["caption_dropout"], offset_noise=pre["offset_noise"],
                       warmup_steps=int(settings["warmup"]), snr_gamma=settings["snr_gamma"] or None)
        seconds = time.perf_counter() - start
        rows.append({"variant": name, "steps": args.steps, "settings": settings, "seconds": round(seconds, 1),
                     "val": held_out_loss(parts["unet"], parts["text_encoder"], base.tokenizer, parts["scheduler"],
                                          latents, captions)})
        sample_grid(base, parts["unet"], parts["text_encoder"], images, captions, args.out / f"{name}_samples.png")
    print("| variant | steps | " + " | ".join(f"val t={t}" for t in TIMESTEPS) + " | mean |")
    print("|---|---|" + "---|" * (len(TIMESTEPS) + 1))
    for row in rows:
        values = [row["val"][t] for t in TIMESTEPS]
        print(f"| {row['variant']} | {row['steps'] or '-'} | " + " | ".join(f"{v:.4f}" for v in values)
              + f" | {np.mean(values):.4f} |")
    (args.out / "pretrain_ab.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
