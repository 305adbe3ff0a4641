"""Identity accuracy of C-LoRA and LoRA (sequential) over seeds, for chains spread over several folders.

`cdiff summary` needs every metric of the current suite in every chain; chains evaluated before the
suite (identity accuracy only) are summarised here instead, with the same per-chain numbers
(metrics/continual.chain_metrics): P = mean_t R[t,t], A = mean_i R[T,i], F = mean_{i<T} (R[i,i] - R[T,i]).

  python studies/identity_seed_summary.py --results DIR   # DIR/<benchmark>/<method>/seed_<s>/task_XX/scores.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from continual_diffusion.metrics.continual import chain_metrics  # noqa: E402
from continual_diffusion.stages.report.matrices import metric_matrix  # noqa: E402
from continual_diffusion.utils import layout  # noqa: E402

# (column, chain_metrics key)
COLUMNS = (("P", "plasticity"), ("min_t R[t,t]", "plasticity_min"), ("final A", "final"), ("F", "forgetting"),
           ("concepts 1-5 just learned", "early_just_learned"), ("after task T", "early_final"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--benchmarks", default="faces,landmarks")
    p.add_argument("--methods", default="clora,lora_sequential")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--tasks", type=int, default=10)
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    for key in ("accuracy_closed", "accuracy"):
        print(f"\n## {key}\n\n| benchmark | method | " + " | ".join(c for c, _ in COLUMNS) + " | per-seed P |\n|"
              + "---|" * (len(COLUMNS) + 3))
        for b in args.benchmarks.split(","):
            for m in args.methods.split(","):
                per_seed = [chain_metrics(metric_matrix(layout.chain_dir(args.results, b, m, s), args.tasks, key))
                            for s in seeds]
                a = np.array([[c[k] for _, k in COLUMNS] for c in per_seed])
                cells = [f"{a[:, j].mean():.3f} +- {a[:, j].std(ddof=1 if len(a) > 1 else 0):.3f}" for j in range(len(COLUMNS))]
                print(f"| {b} | {m} | " + " | ".join(cells) + " | " + " / ".join(f"{x:.3f}" for x in a[:, 0]) + " |")


if __name__ == "__main__":
    main()
