"""Isolated plasticity of the miniature: every task concept trained alone from the base, then scored.

For each concept k of a benchmark, trains one task of ``--method`` from the base model on concept k's
images (the chain's own ``run_task``, as task 1 of a scratch chain, so no earlier task interferes),
samples ``evaluation.samples_per_concept`` images with the pipeline's sampler at each guidance scale
given, and scores them with the benchmark's identity evaluator:
    closed_k = (1/N) sum_j [argmax over task concepts of p(. | x_j) = k]
    open_k   = (1/N) sum_j [argmax over task concepts and "other" = k]
This is the ceiling of the chain's plasticity R[t,t] for the base model and task settings. Needs the
``prepare_data``, ``base_model`` and ``evaluator`` stages.

  python studies/isolated_plasticity.py --benchmark faces --guidance 3,5,8 --out /tmp/iso
  python studies/isolated_plasticity.py --benchmark faces --set train.steps.faces=600 --out /tmp/iso600
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from continual_diffusion.core.chain import build_model, restore_chain  # noqa: E402
from continual_diffusion.core.sampling import generate  # noqa: E402
from continual_diffusion.methods import MethodEnv, make_method  # noqa: E402
from continual_diffusion.models.identity_net import load_evaluator, predict  # noqa: E402
from continual_diffusion.stages.train import run_task  # noqa: E402
from continual_diffusion.utils import config, layout  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", default="faces")
    p.add_argument("--method", default="lora_sequential")
    p.add_argument("--concepts", default="1,2,3,4,5,6,7,8,9,10")
    p.add_argument("--guidance", default="5", help="comma-separated guidance scales (same adapters)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="params override key=value (repeatable)")
    p.add_argument("--base", type=Path, help="default: models/<profile>/base")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    cfg = config.load(overrides=args.set)
    profile, bench = cfg["profile"], args.benchmark
    base = args.base or layout.base_dir(profile)
    net, report = load_evaluator(layout.evaluator_dir(profile, bench))
    guidances = [float(g) for g in args.guidance.split(",")]
    scores = {g: {} for g in guidances}
    started = time.perf_counter()
    for k in (int(c) for c in args.concepts.split(",")):
        data = args.out / f"concept_{k:02d}" / "data"
        link = layout.concept_task_dir(data, bench, 1)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(layout.concept_task_dir(layout.profile_root("data", profile), bench, k).resolve())
        runs = args.out / f"concept_{k:02d}" / "runs"
        if not (runs / "task_01").exists():
            run_task(cfg, bench, args.method, args.seed, 1, data, base, runs, args.out / f"concept_{k:02d}" / "ckpt")
        model = build_model(base)
        method = make_method(args.method, config.method_params(cfg, bench, args.method))
        method.prepare(model, MethodEnv(benchmark=bench, data_root=data, seed=args.seed))
        restore_chain(model, method, runs, 1)
        method.prepare_inference([1])
        for g in guidances:
            samples = generate(model, [1], cfg["evaluation"]["samples_per_concept"], seed=args.seed,
                               steps=cfg["evaluation"]["inference_steps"], guidance=g,
                               batch_size=cfg["evaluation"]["batch_size"], scheduler=cfg["evaluation"]["scheduler"])[1]
            probs = predict(net, samples)
            scores[g][k] = {"closed": float((probs[:, :-1].argmax(1) == k - 1).float().mean()),
                            "open": float((probs.argmax(1) == k - 1).float().mean())}
    seconds = time.perf_counter() - started
    print(f"{bench}, {args.method}, base {base}, overrides {args.set or '-'}, {seconds:.0f} s")
    print("| guidance | closed (mean) | open (mean) | closed per concept |")
    print("|---|---|---|---|")
    for g in guidances:
        closed = [v["closed"] for v in scores[g].values()]
        opened = [v["open"] for v in scores[g].values()]
        print(f"| {g:g} | {np.mean(closed):.3f} | {np.mean(opened):.3f} | {', '.join(f'{c:.2f}' for c in closed)} |")
    (args.out / "isolated_plasticity.json").write_text(json.dumps(
        {"benchmark": bench, "method": args.method, "base": str(base), "overrides": args.set,
         "seconds": round(seconds, 1), "scores": {str(g): v for g, v in scores.items()}}, indent=1))


if __name__ == "__main__":
    main()
