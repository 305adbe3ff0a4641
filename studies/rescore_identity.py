"""Re-score evaluated chains with another identity evaluator, from the samples they already generated.

An evaluate job writes every scored sample into ``samples.png`` (sampling.grid: one row per scored concept,
2 px white padding, native resolution, lossless PNG), so the exact uint8 samples can be cut out again and
classified by a different evaluator without sampling anew (seconds instead of a re-evaluation). The
identity numbers are those of the evaluate stage (metrics/identity.identity_scores on each concept's
samples); other metrics are not recomputed. Check it against chains the pipeline itself re-evaluated
with ``--check``: every accuracy field must be equal.

  python studies/rescore_identity.py --results /work/extra_seeds/results/tiny \
      --evaluators models/tiny/evaluator --seeds 1,2 --out /tmp/rescored
  python studies/identity_seed_summary.py --results /tmp/rescored      # (seed-0 chains linked in)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from continual_diffusion.metrics.identity import identity_scores  # noqa: E402
from continual_diffusion.models.identity_net import load_evaluator, predict  # noqa: E402
from continual_diffusion.utils import layout  # noqa: E402

PAD = 2  # sampling.grid's padding


def cut_grid(grid: np.ndarray, rows: int, size: int, pad: int = PAD) -> list[np.ndarray]:
    """Inverse of sampling.grid for ``rows`` rows of square ``size`` images: one N x size x size x 3 array per row."""
    n = (grid.shape[1] - pad) // (size + pad)
    if grid.shape[0] != rows * (size + pad) + pad or grid.shape[1] != n * (size + pad) + pad:
        raise ValueError(f"grid {grid.shape} is not {rows} rows of {size}px images with {pad}px padding")
    return [np.stack([grid[pad + i * (size + pad):pad + i * (size + pad) + size,
                           pad + j * (size + pad):pad + j * (size + pad) + size] for j in range(n)])
            for i in range(rows)]


def rescore_task(task_dir: Path, task: int, net, manifest: dict) -> dict:
    """Rows of samples.png are the scored concepts in the order of scores.json (all i <= t when it has none)."""
    scores = task_dir / "scores.json"
    concepts = ([int(i) for i in json.loads(scores.read_text())["concepts"]] if scores.exists()
                else list(range(1, task + 1)))
    grid = np.asarray(Image.open(task_dir / "samples.png").convert("RGB"))
    rows = cut_grid(grid, len(concepts), manifest["resolution"])
    return {str(i): identity_scores(predict(net, row), i - 1, manifest["classes"]) for i, row in zip(concepts, rows)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, required=True, help="DIR/<benchmark>/<method>/seed_<s>/task_XX/samples.png")
    p.add_argument("--evaluators", type=Path, required=True, help="folder with <benchmark>/ evaluator stage outputs")
    p.add_argument("--benchmarks", default="faces,landmarks")
    p.add_argument("--methods", default="clora,lora_sequential")
    p.add_argument("--seeds", default="0")
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--out", type=Path, help="write DIR/.../task_XX/scores.json (identity numbers only)")
    p.add_argument("--check", action="store_true", help="compare with the scores.json beside each samples.png")
    args = p.parse_args()
    mismatches = checked = 0
    for b in args.benchmarks.split(","):
        net, manifest = load_evaluator(args.evaluators / b)
        for m in args.methods.split(","):
            for s in (int(x) for x in args.seeds.split(",")):
                for t in range(1, args.tasks + 1):
                    rel = layout.task_dir(layout.chain_dir("", b, m, s), t)
                    concepts = rescore_task(args.results / rel, t, net, manifest)
                    if args.check:
                        recorded = json.loads((args.results / rel / "scores.json").read_text())["concepts"]
                        for i, ours in concepts.items():
                            checked += 1
                            same = all(ours[k] == recorded[i][k] for k in ("accuracy", "accuracy_closed", "other_rate",
                                                                           "predicted"))
                            same = same and abs(ours["p_true"] - recorded[i]["p_true"]) < 1e-5
                            if not same:
                                mismatches += 1
                                print(f"MISMATCH {rel} concept {i}: {ours['accuracy_closed']} "
                                      f"vs {recorded[i]['accuracy_closed']}")
                    if args.out:
                        target = args.out / rel
                        target.mkdir(parents=True, exist_ok=True)
                        (target / "scores.json").write_text(json.dumps({
                            "rescored_from": str(args.results / rel / "samples.png"),
                            "evaluator": str(args.evaluators / b),
                            "evaluator_heldout_accuracy": manifest["heldout_accuracy"],
                            "evaluator_heldout_accuracy_vae_roundtrip": manifest.get("heldout_accuracy_vae_roundtrip"),
                            "concepts": concepts}, indent=1) + "\n")
    if args.check:
        print(f"checked {checked} concept scores against the recorded scores.json: {mismatches} mismatches")
        sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
