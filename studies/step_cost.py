"""What one training step of the miniature costs on this CPU, and what that implies for the default run.

    python studies/step_cost.py --out studies/results/step_cost_tiny.json

A step is what every method's task loop does at least (training.py): the text encoder on the prompt, the
U-Net forward on ``batch`` noisy latents, the backward to the cross-attention K/V weights and to the concept
token's embedding row, and an AdamW step (Custom Diffusion's trainable set; LoRA trains fewer weights
through the same backward). Timed on one thread (``torch_threads: 1``, as every job runs), batch sizes
interleaved round by round so that drift hits them equally; the median over rounds is reported with its
spread. The step cost is fitted as

    cost(batch) = fixed + per_sample * batch        (least squares over the batch sizes)

where ``fixed`` is the per-step overhead (operator dispatch, autograd, optimizer; independent of the batch)
and ``per_sample`` the arithmetic. The training floor of the default run is then

    floor = sum over benchmarks b of  n_methods * n_tasks * steps_b * cost(batch_size)   (job-seconds)

(no model loading, evaluation or replay sampling: a lower bound of the train stage). Snakemake runs two jobs
at once on two cores, so the step at the default batch size is also timed in ``--parallel`` processes at once:
their slowdown against one process alone shows what the second core adds (shared caches and memory bandwidth,
or two vCPUs on one physical core). ``--variant`` adds the
same U-Net at other latent sizes or widths, randomly initialised (timing only), to see what a smaller
miniature would cost. Run it on an idle machine: nothing else on the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from continual_diffusion.models.tiny import build_components, latent_size  # noqa: E402
from continual_diffusion.orchestration.record import cpu_description, cpu_generation  # noqa: E402
from continual_diffusion.utils import config as cfg_module  # noqa: E402

TOKENIZER = REPO / "embedded" / "tiny_base" / "tokenizer"  # the committed miniature's tokenizer


def step_function(spec: dict, batch: int, seed: int = 0, compile: bool = False):
    """A closure that runs one training step of a freshly built miniature of ``spec`` at ``batch``; with
    ``compile``, the U-Net's and the text encoder's forward go through ``torch.compile`` (inductor, static
    shapes), the backward through the compiled autograd graph."""
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER, model_max_length=spec["max_length"])
    components = build_components(spec, tokenizer, seed=seed)
    unet, text_encoder = components["unet"], components["text_encoder"]
    unet.requires_grad_(False)
    text_encoder.requires_grad_(False)
    trainable = [p for name, p in unet.named_parameters() if "attn2.to_k" in name or "attn2.to_v" in name]
    for p in trainable:
        p.requires_grad_(True)
    embedding = text_encoder.get_input_embeddings().weight
    embedding.requires_grad_(True)
    if compile:
        unet.forward = torch.compile(unet.forward, dynamic=False)
        text_encoder.forward = torch.compile(text_encoder.forward, dynamic=False)
    optimizer = torch.optim.AdamW([{"params": trainable, "lr": 1e-4}, {"params": [embedding], "lr": 1e-3}])
    generator = torch.Generator().manual_seed(seed)
    size = latent_size(spec)
    latents = torch.randn(batch, spec["latent_channels"], size, size, generator=generator)
    ids = torch.randint(0, len(tokenizer), (1, spec["max_length"]), generator=generator)
    scheduler = components["scheduler"]

    def step():
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, 1000, (batch,), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        context = text_encoder(ids.expand(batch, -1))[0]
        loss = torch.nn.functional.mse_loss(unet(noisy, timesteps, context).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def time_steps(step, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - started) / n


def fit(batches: list[int], costs: list[float]) -> tuple[float, float]:
    """Least-squares (fixed, per_sample) of cost = fixed + per_sample * batch."""
    mean_b, mean_c = statistics.fmean(batches), statistics.fmean(costs)
    slope = sum((b - mean_b) * (c - mean_c) for b, c in zip(batches, costs)) / sum((b - mean_b) ** 2 for b in batches)
    return mean_c - slope * mean_b, slope


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--steps", type=int, default=30, help="timed steps per batch size and round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="another spec, e.g. 'res32:resolution=32' or 'narrow:unet_channels=[16,32]'")
    p.add_argument("--parallel", type=int, default=2, help="processes timing the default step at once")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # one of the --parallel processes: its batch
    p.add_argument("--compile", action="store_true",
                   help="also time the default step under torch.compile: compile time (cold and warm disk cache) "
                        "and step cost against eager, in fresh processes")
    p.add_argument("--compile-worker", type=int, help=argparse.SUPPRESS)  # one compiled-vs-eager process: its batch
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.worker is None and args.compile_worker is None and len(set(args.batches)) < 2:
        p.error(f"--batches {' '.join(map(str, args.batches))}: the cost model (fixed + per sample x batch) "
                "needs at least two distinct batch sizes")

    torch.set_num_threads(1)
    cfg = cfg_module.load([REPO / "params.yaml"])
    base_spec = dict(cfg["model"]["spec"])
    if args.worker is not None:  # time the default spec at one batch size; median seconds per step to --out
        fn = step_function(base_spec, args.worker)
        time_steps(fn, 3)
        args.out.write_text(json.dumps([time_steps(fn, args.steps) for _ in range(args.rounds)]))
        return
    if args.compile_worker is not None:  # first compiled step, then compiled and eager rounds interleaved
        compiled = step_function(base_spec, args.compile_worker, compile=True)
        started = time.perf_counter()
        compiled()
        first = time.perf_counter() - started
        eager = step_function(base_spec, args.compile_worker)
        time_steps(compiled, 3)
        time_steps(eager, 3)
        rounds = {"compiled": [], "eager": []}
        for _ in range(args.rounds):
            rounds["compiled"].append(time_steps(compiled, args.steps))
            rounds["eager"].append(time_steps(eager, args.steps))
        args.out.write_text(json.dumps({"first_step_s": first, **rounds}))
        return
    specs = {"tiny (params.yaml)": base_spec}
    for text in args.variant:
        name, _, settings = text.partition(":")
        spec = dict(base_spec)
        for item in filter(None, settings.split(";")):
            key, value = cfg_module.parse_override(item)
            spec[key] = value
        specs[name] = spec

    steps_fns = {(name, b): step_function(spec, b) for name, spec in specs.items() for b in args.batches}
    for fn in steps_fns.values():  # warm-up: allocator, oneDNN primitive caches
        time_steps(fn, 3)
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in steps_fns}
    for _ in range(args.rounds):
        for key, fn in steps_fns.items():
            samples[key].append(time_steps(fn, args.steps))

    train = cfg["train"]
    n_methods, batch_size = len(train["methods"]), int(train["batch_size"])
    parallel = concurrent_step(args, batch_size)
    results = {}
    for name, spec in specs.items():
        medians = [statistics.median(samples[(name, b)]) for b in args.batches]
        fixed, per_sample = fit(args.batches, medians)
        cost = fixed + per_sample * batch_size
        floor = {b: n_methods * cfg["data"][b]["n_tasks"] * int(train["steps"][b]) * cost for b in cfg["benchmarks"]}
        results[name] = {
            "spec": spec, "latent_size": latent_size(spec),
            "ms_per_step": {str(b): {"median": 1000 * m, "min": 1000 * min(samples[(name, b)]),
                                     "max": 1000 * max(samples[(name, b)])} for b, m in zip(args.batches, medians)},
            "fixed_ms": 1000 * fixed, "per_sample_ms": 1000 * per_sample,
            "train_floor_job_s": {**{b: round(v) for b, v in floor.items()}, "total": round(sum(floor.values()))},
        }
    record = {"command": "python studies/step_cost.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_description()["model"],
              "cpu_generation": cpu_generation(cpu_description()),
              "torch": torch.__version__,
              "isa_caps": {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")
                           if k in os.environ}, "threads": 1, "steps": args.steps, "rounds": args.rounds,
              "train": {"methods": n_methods, "batch_size": batch_size, "steps": dict(train["steps"])},
              "results": results, "parallel": parallel}
    if args.compile:
        record["compile"] = compiled_step(args, batch_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(record))
    for name, r in results.items():
        per_batch = ", ".join(f"bs {b}: {v['median']:.1f} ms ({v['min']:.1f}-{v['max']:.1f})"
                              for b, v in r["ms_per_step"].items())
        print(f"{name} (latents {r['latent_size']}x{r['latent_size']}): {per_batch}; fixed {r['fixed_ms']:.1f} ms "
              f"+ {r['per_sample_ms']:.2f} ms/sample; train floor {r['train_floor_job_s']['total']} job-s "
              f"({r['train_floor_job_s']['total'] / 2 / 60:.0f} min on 2 cores)")
    print(f"{parallel['processes']} processes at once, batch {batch_size}: {parallel['ms_per_step']:.1f} ms per step "
          f"each ({parallel['slowdown']:.2f}x one process alone): {parallel['throughput_gain']:.2f}x the steps per second")
    if args.compile:
        print(compile_sentence(record["compile"]))


def markdown(r: dict) -> str:
    """The record as the table of studies/results/step_cost_tiny.md."""
    lines = [f"<!-- {r['command']} ({r['date']}) -->", "# Cost of one training step of the miniature (CPU, one thread)", "",
             f"{r['cpu']}{' (' + r['cpu_generation'] + ')' if r.get('cpu_generation') else ''}, torch {r['torch']}, "
             f"ISA caps {r.get('isa_caps') or 'none'}, {r['threads']} thread, "
             f"{r['steps']} steps x {r['rounds']} rounds per batch "
             "size (interleaved), idle machine. A step: text encoder, U-Net forward on `batch` noisy latents, backward "
             "to the cross-attention K/V weights and the token row, AdamW. Median (min-max) over rounds.", ""]
    batches = list(next(iter(r["results"].values()))["ms_per_step"])
    lines += ["| spec | latents | " + " | ".join(f"bs {b} (ms)" for b in batches)
              + " | fixed (ms) | per sample (ms) | train floor of the default run |",
              "|---|---|" + "---|" * len(batches) + "---|---|---|"]
    for name, x in r["results"].items():
        ms, floor = x["ms_per_step"], x["train_floor_job_s"]["total"]
        cells = [f"{ms[b]['median']:.1f} ({ms[b]['min']:.1f}-{ms[b]['max']:.1f})" for b in batches]
        lines.append(f"| {name} | {x['latent_size']}x{x['latent_size']} | " + " | ".join(cells)
                     + f" | {x['fixed_ms']:.1f} | {x['per_sample_ms']:.2f} | {floor} job-s "
                       f"({floor / 2 / 60:.0f} min on 2 cores) |")
    p, t = r["parallel"], r["train"]
    lines += ["", f"{p['processes']} processes at once (batch {p['batch']}): {p['ms_per_step']:.1f} ms per step each against "
              f"{p['ms_per_step_alone']:.1f} ms alone ({p['slowdown']:.2f}x), {p['throughput_gain']:.2f}x the steps per second.",
              "", f"Cost model: cost(batch) = fixed + per_sample x batch (least squares). Train floor: methods x tasks x "
              f"steps x cost({t['batch_size']}) over both benchmarks ({t['methods']} methods, 10 tasks, steps {t['steps']}): "
              "the training steps alone, without model loading, evaluation, replay sampling or the methods' extra terms. "
              "Variants other than params.yaml's are randomly initialised (timing only), never pre-trained or tuned."]
    if "compile" in r:
        lines += ["", compile_sentence(r["compile"])]
    return "\n".join(lines) + "\n"


def compiled_step(args, batch: int) -> dict:
    """The default step under ``torch.compile`` against eager, each in a fresh process sharing one new inductor
    cache folder: the first process compiles cold (what a job pays with no cache), the second finds the first's
    graphs on disk (a job after a warm-up). Step costs: medians over rounds, compiled and eager interleaved."""
    import os
    import subprocess
    import tempfile

    command = [sys.executable, __file__, "--steps", str(args.steps), "--rounds", str(args.rounds),
               "--compile-worker", str(batch)]
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(folder) / "inductor")}
        for name in ("cold", "warm"):
            out = Path(folder) / f"{name}.json"
            subprocess.run([*command, "--out", str(out)], check=True, env=env)
            runs.append(json.loads(out.read_text()))
    compiled = statistics.median(runs[0]["compiled"] + runs[1]["compiled"])
    eager = statistics.median(runs[0]["eager"] + runs[1]["eager"])
    return {"batch": batch, "first_step_s": {"cold_cache": runs[0]["first_step_s"], "warm_cache": runs[1]["first_step_s"]},
            "ms_per_step": {"compiled": 1000 * compiled, "eager": 1000 * eager,
                            "compiled_range": [1000 * min(runs[0]["compiled"] + runs[1]["compiled"]),
                                               1000 * max(runs[0]["compiled"] + runs[1]["compiled"])],
                            "eager_range": [1000 * min(runs[0]["eager"] + runs[1]["eager"]),
                                            1000 * max(runs[0]["eager"] + runs[1]["eager"])]},
            "speedup": eager / compiled}


def compile_sentence(c: dict) -> str:
    """One line: what torch.compile costs and saves per step at the default batch."""
    ms, first = c["ms_per_step"], c["first_step_s"]
    lo, hi = ms["compiled_range"]
    elo, ehi = ms["eager_range"]
    return (f"torch.compile (inductor), batch {c['batch']}: first step {first['cold_cache']:.1f} s with a cold cache, "
            f"{first['warm_cache']:.1f} s with a warm one; then {ms['compiled']:.1f} ms per step ({lo:.1f}-{hi:.1f}) "
            f"against {ms['eager']:.1f} ms eager ({elo:.1f}-{ehi:.1f}) in the same processes: {c['speedup']:.2f}x.")


def concurrent_step(args, batch: int) -> dict:
    """The default step timed in ``args.parallel`` processes at once, against one process alone."""
    import subprocess
    import tempfile

    command = [sys.executable, __file__, "--steps", str(args.steps), "--rounds", str(args.rounds), "--worker", str(batch)]
    with tempfile.TemporaryDirectory() as folder:
        alone_out = Path(folder) / "alone.json"
        subprocess.run([*command, "--out", str(alone_out)], check=True)
        outs = [Path(folder) / f"w{i}.json" for i in range(args.parallel)]
        procs = [subprocess.Popen([*command, "--out", str(out)]) for out in outs]
        if any(proc.wait() for proc in procs):
            raise SystemExit("a --parallel worker failed")
        alone = statistics.median(json.loads(alone_out.read_text()))
        together = statistics.median(statistics.median(json.loads(out.read_text())) for out in outs)
    return {"processes": args.parallel, "batch": batch, "ms_per_step_alone": 1000 * alone, "ms_per_step": 1000 * together,
            "slowdown": together / alone, "throughput_gain": args.parallel * alone / together}


if __name__ == "__main__":
    main()
