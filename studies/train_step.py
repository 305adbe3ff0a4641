"""Time (and peak memory) of one U-Net training step: C-LoRA vs plain PEFT LoRA, side by side.

Variants, all on the same randomly initialised U-Net and batch:
  peft_lora        one PEFT LoRA adapter on the cross-attention K/V projections; diffusion loss only
  clora            the same adapter with ``--past-tasks`` earlier tasks folded into the frozen base
                   weights (C-LoRA's accumulator) and the loss  L = L_diffusion + lambda * L_forget
  peft_multi       the alternative design: one PEFT adapter per task, all active, newest trained
                   (``--past-tasks`` + 1 adapters), diffusion loss only
A step is forward + backward + AdamW step + zero_grad. Timings interleave the variants round by
round so drift hits them equally; the median over rounds is reported.

  python studies/train_step.py --size tiny --device cpu             # the default miniature (params.yaml)
  python studies/train_step.py --size tiny --benchmark landmarks    # ... at the landmarks rank
  python studies/train_step.py --size small --device cpu            # an earlier small config
  python studies/train_step.py --size sd --device cuda --dtype bf16  # SD v1.x scale (GPU)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from continual_diffusion.models.lora import PastDeltas, add_kv_lora, lora_parameters, reset_adapter  # noqa: E402
from continual_diffusion.models.sd_v1_architecture import SD_V1_UNET_CONFIG, build_unet, parameter_costs  # noqa: E402

SMALL = dict(
    sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[32, 64],
    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
    cross_attention_dim=64, attention_head_dim=8, norm_num_groups=8,
)


def tiny_from_params(benchmark: str) -> tuple[dict, int, int, int, int]:
    """The default miniature's U-Net (model.spec in params.yaml), C-LoRA's rank on ``benchmark`` and the batch."""
    from continual_diffusion.utils.config import load, method_params

    cfg = load([Path(__file__).resolve().parents[1] / "params.yaml"])
    spec = cfg["model"]["spec"]
    att = spec["unet_attention"]
    side = spec["resolution"] // 2 ** (len(spec["vae_channels"]) - 1)
    config = dict(
        sample_size=side, in_channels=spec["latent_channels"], out_channels=spec["latent_channels"],
        layers_per_block=spec["layers_per_block"], block_out_channels=list(spec["unet_channels"]),
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in att],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(att)],
        cross_attention_dim=spec["text_hidden"], attention_head_dim=spec["attention_head_dim"],
        norm_num_groups=spec["norm_groups"],
    )
    rank = int(method_params(cfg, benchmark, "clora")["rank"])
    return config, side, spec["max_length"], rank, cfg["train"]["batch_size"]


SIZES = {
    # name: (unet config, latent side, context length, rank, batch); "tiny": tiny_from_params(--benchmark)
    "small": (SMALL, 16, 16, 4, 4),
    "sd": (SD_V1_UNET_CONFIG, 64, 77, 16, 2),
}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_model(config, rank, dtype, device, adapters: list[str], seed: int):
    torch.manual_seed(seed)
    unet = build_unet(config, device=device).to(dtype)
    for name in adapters:
        add_kv_lora(unet, rank, alpha=rank, adapter=name)
        reset_adapter(unet, name, torch.Generator().manual_seed(seed + len(name)))
    return unet.to(device)


def random_past(unet, adapter, past_tasks, seed):
    """Fold ``past_tasks`` random adapters into C-LoRA's accumulator (as after that many tasks)."""
    past = PastDeltas(unet, adapter)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(past_tasks):
            for layer in past.layers.values():
                for p in (layer.lora_A[adapter].weight, layer.lora_B[adapter].weight):
                    p.copy_((0.02 * torch.randn(p.shape, generator=g)).to(p.dtype))
            past.fold()
    reset_adapter(unet, adapter, torch.Generator().manual_seed(seed + 1))
    past.apply()
    return past


class Variant:
    def __init__(self, name, unet, params, penalty=None, lam=0.0):
        self.name, self.unet, self.penalty, self.lam = name, unet, penalty, lam
        self.optimizer = torch.optim.AdamW(params, lr=1e-4)
        self.times: list[float] = []
        self.peak_mb = None

    def step(self, batch):
        x, t, ctx, noise = batch
        pred = self.unet(x, t, ctx).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
        if self.penalty is not None:
            loss = loss + self.lam * self.penalty.penalty().float()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(["tiny", *SIZES]), default="small")
    parser.add_argument("--benchmark", default="faces", help="--size tiny: whose C-LoRA rank (params.yaml)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--past-tasks", type=int, default=9, help="tasks already learned (9: training task 10)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lam", type=float, default=1e8, help="C-LoRA penalty weight (does not change cost)")
    parser.add_argument("--variants", default="peft_lora,clora,peft_multi")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tiny = args.size == "tiny"
    config, side, ctx_len, rank, batch_size = tiny_from_params(args.benchmark) if tiny else SIZES[args.size]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    device = args.device

    wanted = args.variants.split(",")
    variants = []
    if {"peft_lora", "clora"} & set(wanted):
        unet = make_model(config, rank, dtype, device, ["current"], seed=0)
        past = random_past(unet, "current", args.past_tasks, seed=1)
        params = lora_parameters(unet, "current")
        if "peft_lora" in wanted:
            variants.append(Variant("peft_lora", unet, params))
        if "clora" in wanted:
            variants.append(Variant("clora", unet, params, penalty=past, lam=args.lam))
    if "peft_multi" in wanted:
        names = [f"task_{i:02d}" for i in range(1, args.past_tasks + 2)]
        multi = make_model(config, rank, dtype, device, names, seed=0)
        multi.set_adapters(names)
        multi.requires_grad_(False)
        current = lora_parameters(multi, names[-1])
        for p in current:
            p.requires_grad_(True)
        variants.append(Variant("peft_multi", multi, current))

    g = torch.Generator().manual_seed(2)
    cross_dim = config["cross_attention_dim"]
    batch = (
        torch.randn(batch_size, 4, side, side, generator=g).to(device, dtype),
        torch.randint(0, 1000, (batch_size,), generator=g).to(device),
        torch.randn(batch_size, ctx_len, cross_dim, generator=g).to(device, dtype),
        torch.randn(batch_size, 4, side, side, generator=g).to(device, dtype),
    )

    for v in variants:
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        for _ in range(args.warmup):
            v.step(batch)
        synchronize(device)
        if device.startswith("cuda"):
            v.peak_mb = torch.cuda.max_memory_allocated() / 2**20
    for _ in range(args.rounds):
        for v in variants:
            synchronize(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                v.step(batch)
            synchronize(device)
            v.times.append((time.perf_counter() - start) / args.steps)

    costs = parameter_costs(variants[0].unet, rank)
    device_name = torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu ({args.threads} thread(s))"
    results = {
        "size": args.size, "benchmark": args.benchmark if tiny else None, "device": device_name, "dtype": args.dtype,
        "batch": batch_size, "latent": side,
        "rank": rank, "past_tasks": args.past_tasks, "unet_params": costs["unet_params"],
        "torch": torch.__version__,
        "variants": {
            v.name: {"median_step_s": statistics.median(v.times), "min_step_s": min(v.times), "peak_mb": v.peak_mb}
            for v in variants
        },
    }
    base = results["variants"].get("peft_lora", {}).get("median_step_s")
    print(f"{args.size} U-Net ({costs['unet_params']:,} params), {device_name}, {args.dtype}, batch {batch_size}, "
          f"{side}x{side} latents, rank {rank}, {args.past_tasks} past tasks")
    print("| variant | median step (s) | vs peft_lora | peak memory (MiB) |\n|---|---|---|---|")
    for name, r in results["variants"].items():
        ratio = f"{r['median_step_s'] / base:.3f}x" if base else "-"
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] is not None else "-"
        print(f"| {name} | {r['median_step_s']:.4f} | {ratio} | {peak} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
