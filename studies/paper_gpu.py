"""What the paper setting costs: every method on randomly initialised Stable Diffusion v1 weights.

Nothing is downloaded: the U-Net (``models/sd_v1.SD_V1_UNET_CONFIG``), the VAE (/8, 512 px) and the
CLIP ViT-L/14 text encoder (77 tokens, 49,408-row vocabulary) are built with SD v1's shapes and random
weights, which cost exactly what the trained ones cost. Per method and precision (``--dtypes``) it runs
the pipeline's own code (``training.train_task``, ``sampling.generate`` under ``runtime.Runtime``):
  * task 1 for ``--task1-steps`` steps, then task 2 (C-LoRA's penalty, EWC's Fisher and anchor, replay's
    generated set all active), of which the last ``--steps`` steps are timed after ``--warmup`` steps;
  * peak memory of that training (GPU: ``torch.cuda.max_memory_allocated``; CPU: the process's peak RSS);
  * sampling time per image at ``--resolution`` (DDIM, classifier-free guidance, ``--sample-steps``
    steps, then scaled to the paper profile's ``evaluation.inference_steps`` linearly in the steps).
From these and the paper profiles' settings (steps per task, tasks, evaluation schedule and samples,
replay and Fisher settings) it estimates the device-hours of the full paper table, nine methods x ten
tasks x two benchmarks, evaluation included:
    chain_s = T S step_s + sum_t |scheduled(t)| n_eval img_s + replay images x img_s (replay_steps / steps)
              + T fisher_samples step_s (EWC) + 2 T load_s        (one train and one evaluate job per task)
    table_h = sum over benchmarks and methods of chain_s / 3600
On a CPU the script shows that the code path runs and what one CPU step costs; its "hours" are CPU hours.

    python studies/paper_gpu.py --out studies/results/paper_gpu_h200.json             # on a GPU
    python studies/paper_gpu.py --device cpu --quick --resolution 256 --out studies/results/paper_gpu_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from continual_diffusion.core.sampling import generate  # noqa: E402
from continual_diffusion.core.training import Model, TrainConfig, train_task  # noqa: E402
from continual_diffusion.methods import MethodEnv, make_method  # noqa: E402
from continual_diffusion.models.sd_v1_architecture import SD_V1_UNET_CONFIG  # noqa: E402
from continual_diffusion.models.tokens import add_concept_token, concept_token, prompt_for  # noqa: E402
from continual_diffusion.stages.evaluate import scheduled_concepts  # noqa: E402
from continual_diffusion.utils import config  # noqa: E402
from continual_diffusion.utils.runtime import Runtime, prepare_device  # noqa: E402

METHODS = ("clora", "lora_sequential", "textual_inversion", "dreambooth", "custom_diffusion_seq",
           "custom_diffusion_merge", "custom_diffusion_ewc", "generative_replay", "custom_diffusion_offline")

SD_V1_VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
                        act_fn="silu", block_out_channels=[128, 256, 512, 512],
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        scaling_factor=0.18215)
SD_V1_TEXT_CONFIG = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                         projection_dim=768)
CAPTIONS = ["a photo of a person", "a portrait of a person", "a photo of a waterfall", "a tall waterfall"] * 8


def sd_v1_random(runtime: Runtime, resolution: int, tokenizer_dir: Path, seed: int = 0) -> Model:
    """Stable Diffusion v1's components with random weights, on the runtime's device, fp32 weights."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from continual_diffusion.models.tokenizer import train_clip_bpe

    torch.manual_seed(seed)
    tokenizer = train_clip_bpe(CAPTIONS, vocab_size=300, max_length=77, out=tokenizer_dir)
    text = CLIPTextModel(CLIPTextConfig(**SD_V1_TEXT_CONFIG))  # the 49,408-row table: its AdamW cost is SD's
    vae = AutoencoderKL(sample_size=resolution, **SD_V1_VAE_CONFIG)
    unet = UNet2DConditionModel(**{**SD_V1_UNET_CONFIG, "sample_size": resolution // 8})
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, steps_offset=1)
    for part in (text, vae, unet):
        part.eval().to(runtime.device)
    return Model(tokenizer, text, vae, unet, scheduler, runtime)


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; the process's peak so far


def method_params(paper: dict, name: str, args) -> dict:
    params = config.method_params(paper, "faces", name)
    if args.quick:  # the CPU evidence: the same code, the smallest amounts
        params.update({k: v for k, v in {"fisher_samples": 1, "replay_per_concept": 1, "replay_steps": args.sample_steps,
                                         "regularization_count": 4}.items() if k in params})
    return params


def measure(name: str, runtime: Runtime, paper: dict, args, work: Path) -> dict:
    """Load time, timed step of task 2, peak training memory, and sampling time per image of one method."""
    device = runtime.device
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    model = sd_v1_random(runtime, args.resolution, work / f"tok_{name}_{runtime.dtype}")
    params = method_params(paper, name, args)
    method = make_method(name, params)
    method.prepare(model, MethodEnv(benchmark="faces", data_root=work, seed=0))
    _sync(device)
    load_s = time.perf_counter() - started
    latent = args.resolution // 8
    latents = torch.randn(args.images, 4, latent, latent, generator=torch.Generator().manual_seed(0)).to(device)
    lr = config.token_lr(paper, "faces", name)
    stamps: list[float] = []

    def on_step(step: int) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    for task, steps in ((1, args.task1_steps), (2, args.warmup + args.steps)):
        token_id = add_concept_token(model.tokenizer, model.text_encoder, concept_token(task),
                                     torch.Generator().manual_seed(task))
        stamps.clear()
        start = time.perf_counter()
        train_task(model, method, task, token_id, prompt_for(concept_token(task)), latents,
                   TrainConfig(steps=steps, batch_size=args.batch_size, token_lr=lr, seed=0, checkpoint_every=10**9),
                   work / f"ck_{name}_{task}", on_step=on_step)
        first_step_s = stamps[0] - start  # includes begin_task: replay's generation, C-LoRA's fold
        state = method.end_task(task)  # EWC's Fisher, the fold of the adapter
        if name in ("custom_diffusion_merge", "custom_diffusion_offline"):  # they sample from the saved weights
            method.restore_task(task, state)
    step_s = (stamps[-1] - stamps[args.warmup - 1]) / args.steps  # the last --steps steps, after begin_task
    train_peak = _peak_mb(device)
    method.prepare_inference([1, 2]) if name != "custom_diffusion_offline" else method.prepare_inference([2])
    sample_start = time.perf_counter()
    generate(model, [2], args.sample_images, seed=0, steps=args.sample_steps, guidance=6.0,
             batch_size=args.sample_images, scheduler="ddim", desc=f"sample {name}")
    _sync(device)
    sample_s = (time.perf_counter() - sample_start) / args.sample_images
    return {"load_s": load_s, "step_s": step_s, "task2_first_step_s": first_step_s, "train_peak_mb": train_peak,
            "sample_s_per_image": sample_s, "sample_steps": args.sample_steps, "peak_mb": _peak_mb(device)}


def chain_seconds(m: dict, name: str, paper: dict, benchmark: str) -> dict:
    """The estimate of one chain (module docstring), from the paper profile's settings."""
    ev = paper["evaluation"]
    n_tasks, steps = paper["data"][benchmark]["n_tasks"], paper["train"]["steps"][benchmark]
    params = config.method_params(paper, benchmark, name)
    img_s = m["sample_s_per_image"] * ev["inference_steps"] / m["sample_steps"]
    eval_images = sum(len(scheduled_concepts(t, n_tasks, ev["schedule"])) for t in range(1, n_tasks + 1)) \
        * ev["samples_per_concept"]
    parts = {"train": n_tasks * steps * m["step_s"], "evaluate": eval_images * img_s,
             "jobs": 2 * n_tasks * m["load_s"], "replay": 0.0, "fisher": 0.0}
    if name == "generative_replay":
        replay_images = params["replay_per_concept"] * sum(t - 1 for t in range(1, n_tasks + 1))
        parts["replay"] = replay_images * m["sample_s_per_image"] * params["replay_steps"] / m["sample_steps"]
    if name == "custom_diffusion_ewc":
        parts["fisher"] = n_tasks * params.get("fisher_samples", 16) * m["step_s"]
    parts["total"] = sum(parts.values())
    parts["eval_images"] = eval_images
    return parts


def markdown(report: dict) -> str:
    unit = "GPU" if report["device"].startswith("cuda") else "CPU"
    lines = [f"# Paper setting cost on random SD v1 weights ({report['device_name']})", "",
             f"torch {report['torch']}, resolution {report['resolution']}, batch {report['batch_size']}, "
             f"timed steps {report['steps']} after {report['warmup']} warm-up steps; sampling {report['sample_steps']} "
             f"DDIM steps with CFG, scaled to the paper's {report['paper_inference_steps']}.", "",
             f"| method | dtype | step (s) | {'train peak, GPU' if unit == 'GPU' else 'process peak RSS so far'} (MB) "
             "| sample (s / image, paper steps) | load (s) | table hours |",
             "|---|---|---|---|---|---|---|"]
    for dtype, per_method in report["methods"].items():
        for name, m in per_method.items():
            hours = sum(report["estimate"][dtype][b][name]["total"] for b in report["estimate"][dtype]) / 3600
            img = m["sample_s_per_image"] * report["paper_inference_steps"] / m["sample_steps"]
            lines.append(f"| {name} | {dtype} | {m['step_s']:.3f} | {m['train_peak_mb']:.0f} | {img:.2f} | "
                         f"{m['load_s']:.1f} | {hours:.1f} |")
    lines.append("")
    for dtype, total in report["table_hours"].items():
        lines.append(f"Full paper table (9 methods x 10 tasks x 2 benchmarks, evaluation included), {dtype}: "
                     f"**{total:.1f} {unit}-hours** per seed.")
    if unit == "CPU":
        lines += ["", "Measured on a CPU: this shows that the paper code path runs and what it costs there; "
                  "the GPU path is unmeasured by this run. The memory column is the process's peak resident "
                  "set so far (it never decreases: the methods after DreamBooth inherit its peak)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtypes", default=None, help="comma-separated fp32,bf16 (default: both on cuda, fp32 on cpu)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--images", type=int, default=4, help="task images (random latents)")
    parser.add_argument("--task1-steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--sample-images", type=int, default=4)
    parser.add_argument("--quick", action="store_true",
                        help="CPU evidence: 1 warm-up + 1 timed step, tiny replay / Fisher / samples")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True, help="JSON; a .md beside it")
    parser.add_argument("--render", action="store_true", help="only write the .md again from the saved --out JSON")
    args = parser.parse_args(argv)
    if args.render:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.out.read_text())))
        return 0
    if args.quick:
        args.task1_steps, args.warmup, args.steps, args.sample_steps, args.sample_images = 1, 1, 1, 2, 1
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps: at least 1 (the first step of a task includes its begin_task)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    dtypes = (args.dtypes or ("fp32,bf16" if device.type == "cuda" else "fp32")).split(",")
    paper = {b: config.load(overrides=[f"profile=paper_{b}"]) for b in ("faces", "landmarks")}
    report = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
              else cpu_name(), "torch": torch.__version__,
              "cuda": torch.version.cuda, "resolution": args.resolution, "batch_size": args.batch_size,
              "steps": args.steps, "warmup": args.warmup, "sample_steps": args.sample_steps,
              "paper_inference_steps": paper["faces"]["evaluation"]["inference_steps"],
              "threads": torch.get_num_threads(), "methods": {}, "estimate": {}, "table_hours": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in dtypes:
            runtime = Runtime(device, dtype)
            prepare_device(runtime)
            report["methods"][dtype], report["estimate"][dtype] = {}, {b: {} for b in paper}
            for name in args.methods.split(","):
                m = measure(name, runtime, paper["faces"], args, Path(tmp))
                report["methods"][dtype][name] = m
                for b, cfg in paper.items():
                    report["estimate"][dtype][b][name] = chain_seconds(m, name, cfg, b)
                print(f"{dtype} {name}: step {m['step_s']:.3f} s, peak {m['train_peak_mb']:.0f} MB, "
                      f"sample {m['sample_s_per_image']:.2f} s/image at {args.sample_steps} steps", flush=True)
            report["table_hours"][dtype] = sum(e["total"] for b in report["estimate"][dtype].values()
                                               for e in b.values()) / 3600
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
