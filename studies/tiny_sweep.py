"""Small hyper-parameter sweep of the miniature's task chain (how the tiny-profile values were chosen).

For each variant (a set of ``--set``-style overrides on top of params.yaml), trains the first
``--tasks`` tasks of one benchmark for the given methods and seeds with the pipeline's own code
(``chain.run_task`` / ``evaluate.evaluate_task``) into a scratch folder, and reports the identity
accuracy matrix: plasticity (R[t,t]) and what is left of concept 1 after the last task. Needs the
built stages ``prepare_data``, ``base_model`` and ``evaluator`` (``make run`` or snakemake).

  python studies/tiny_sweep.py --benchmark faces --tasks 5 --methods clora,lora_sequential \
      --variant "base" --variant "methods.clora.penalty_weight=10" --out /tmp/sweep
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from continual_diffusion.stages.evaluate import evaluate_task  # noqa: E402
from continual_diffusion.stages.report.matrices import metric_matrix  # noqa: E402
from continual_diffusion.stages.train import run_task  # noqa: E402
from continual_diffusion.utils import config, layout  # noqa: E402
from continual_diffusion.utils.layout import profile_root  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", default="faces")
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--methods", default="clora,lora_sequential")
    p.add_argument("--seeds", default="0")
    p.add_argument("--variant", action="append", required=True,
                   help="'name' or 'name:key=value,key=value' (overrides on params.yaml)")
    p.add_argument("--profile", default="tiny")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    rows = []
    for variant in args.variant:
        name, _, text = variant.partition(":")
        overrides = [o for o in text.split(",") if o]
        cfg = config.load(overrides=[f"profile={args.profile}", *overrides])
        data = profile_root("data", args.profile)
        base = layout.base_dir(args.profile)
        evaluator = layout.evaluator_dir(args.profile, args.benchmark)
        for method in args.methods.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                root = layout.chain_dir(args.out / name, method, seed)
                start = time.perf_counter()
                for task in range(1, args.tasks + 1):
                    if not layout.task_dir(root / "runs", task).exists():
                        run_task(cfg, args.benchmark, method, seed, task, data, base, root / "runs", root / "ckpt")
                train_s = time.perf_counter() - start
                for task in range(1, args.tasks + 1):
                    if not layout.task_dir(root / "results", task).exists():
                        evaluate_task(cfg, args.benchmark, method, seed, task, base, root / "runs", evaluator,
                                      layout.task_dir(root / "results", task), data)
                r = metric_matrix(root / "results", args.tasks)
                row = {"variant": name, "overrides": overrides, "method": method, "seed": seed,
                       "diag": np.diag(r).round(3).tolist(), "concept1_curve": r[:, 0].round(3).tolist(),
                       "final_row": r[-1].round(3).tolist(), "train_s": round(train_s, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| variant | method | seed | R[t,t] | concept 1 over tasks | train s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['method']} | {r['seed']} | {r['diag']} | {r['concept1_curve']} | {r['train_s']} |")


if __name__ == "__main__":
    main()
