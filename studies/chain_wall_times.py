"""Wall time of each task chain, from the Snakemake ``benchmark:`` files of a finished run.

Every job of the base_model, evaluator, train and evaluate rules writes a TSV under
``logs/<profile>/timings/``; this sums them per (benchmark, method, seed) chain, training and
evaluation separately, and prints a Markdown table (JSON with ``--out``).

  python studies/chain_wall_times.py --profile tiny
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path

from continual_diffusion.utils.layout import CHAIN_GLOB, TASK_GLOB


def seconds(tsv: Path) -> float:
    with open(tsv) as handle:
        return float(next(csv.DictReader(handle, delimiter="\t"))["s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="tiny")
    p.add_argument("--root", type=Path, default=Path("logs"))
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    root = args.root / args.profile / "timings"
    chains: dict[tuple, dict] = defaultdict(lambda: {"train_s": 0.0, "evaluate_s": 0.0, "tasks": 0})
    for kind in ("train", "evaluate"):
        for tsv in sorted((root / kind).glob(f"{CHAIN_GLOB}/{TASK_GLOB}.tsv")):
            benchmark, method, seed = tsv.parts[-4], tsv.parts[-3], tsv.parts[-2]
            chains[(benchmark, method, seed)][f"{kind}_s"] += seconds(tsv)
            if kind == "train":
                chains[(benchmark, method, seed)]["tasks"] += 1
    other = {}
    if (root / "base_model.tsv").exists():
        other["base_model_s"] = seconds(root / "base_model.tsv")
    for tsv in sorted((root / "evaluator").glob("*.tsv")):
        other[f"evaluator_{tsv.stem}_s"] = seconds(tsv)
    print("| benchmark | method | seed | tasks | train (s) | evaluate (s) | chain total (s) |\n|---|---|---|---|---|---|---|")
    for (b, m, s), c in sorted(chains.items()):
        print(f"| {b} | {m} | {s} | {c['tasks']} | {c['train_s']:.0f} | {c['evaluate_s']:.0f} "
              f"| {c['train_s'] + c['evaluate_s']:.0f} |")
    totals = [c["train_s"] + c["evaluate_s"] for c in chains.values()]
    if totals:
        print(f"\nchains: {len(totals)}, median chain {statistics.median(totals):.0f} s, "
              f"sum of all job times {sum(totals):.0f} s (serial CPU time; jobs run in parallel)")
    for k, v in other.items():
        print(f"{k}: {v:.0f}")
    if args.out:
        args.out.write_text(json.dumps({"chains": {"/".join(k): v for k, v in chains.items()}, **other}, indent=2) + "\n")


if __name__ == "__main__":
    main()
