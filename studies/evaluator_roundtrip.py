"""How well does an identity evaluator recognise what the base model's VAE can reproduce?

A latent model can only generate images on its VAE's output manifold, so the ceiling of any method's
identity accuracy is the evaluator's accuracy on VAE round-trips x -> D(mean E(x)) of held-out renders,
not on the renders themselves. For each evaluator folder given, this scores the evaluator stage's own
validation renders (the same indices, never training images) clean and round-tripped through
``--base``'s VAE, per class, and optionally the closed-set accuracy on the samples a chain scored after
its last task (``samples.safetensors`` of the evaluate stage).

  python studies/evaluator_roundtrip.py --benchmark landmarks \
      --evaluator old=/tmp/old_evaluator/landmarks --evaluator new=models/tiny/evaluator/landmarks \
      --samples results/tiny/landmarks --out studies/results/evaluator_vae_roundtrip_landmarks.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from continual_diffusion.metrics.identity import identity_scores  # noqa: E402
from continual_diffusion.models.identity_net import load_evaluator, predict  # noqa: E402
from continual_diffusion.stages.identity_evaluator import _accuracy, heldout_renders, vae_roundtrip  # noqa: E402
from continual_diffusion.utils import config, layout  # noqa: E402
from continual_diffusion.utils.config import benchmark_config  # noqa: E402


def per_class_accuracy(net, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Open-set accuracy (argmax over the concepts and "other") overall and per class: the evaluator stage's own."""
    overall, per_class = _accuracy(net, images, labels, classes)
    return {"overall": overall, **per_class}


def closed_accuracy_on_samples(net, samples_file: Path, classes: list[str]) -> list[float]:
    """Closed-set accuracy (metrics/identity.identity_scores) of each concept's scored samples."""
    from safetensors.torch import load_file

    samples = load_file(str(samples_file))
    return [identity_scores(predict(net, samples[f"concept_{i}"].numpy()), i - 1, classes)["accuracy_closed"]
            for i in range(1, len(classes))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", required=True)
    p.add_argument("--profile", default="tiny")
    p.add_argument("--evaluator", action="append", required=True, help="name=folder (an evaluator stage output)")
    p.add_argument("--base", type=Path, default=None, help="base model folder (default models/<profile>/base)")
    p.add_argument("--samples", type=Path, help="results/<profile>/<benchmark>: score every seed_0 chain's last samples")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True, help="JSON output")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = config.load(overrides=[f"profile={args.profile}"])
    bench = benchmark_config(cfg, args.benchmark)
    ev = cfg["evaluator"]
    base = args.base or layout.base_dir(args.profile)
    evaluators = dict(item.split("=", 1) for item in args.evaluator)
    nets = {name: load_evaluator(Path(folder)) for name, folder in evaluators.items()}
    classes = next(iter(nets.values()))[1]["classes"]
    concept_ids = classes[:-1]
    images, labels = heldout_renders(bench, concept_ids, ev["val_images_per_concept"], ev["train_images_per_concept"],
                                     ev["other_val_images"])
    roundtrips = vae_roundtrip(images, base / "vae")
    result = {"benchmark": args.benchmark, "base": str(base), "classes": classes,
              "val_images": int(len(labels)), "evaluators": {}}
    for name, (net, manifest) in nets.items():
        entry = {"folder": evaluators[name], "vae_roundtrip_share": manifest["params"].get("vae_roundtrip", 0),
                 "clean": per_class_accuracy(net, images, labels, classes),
                 "roundtrip": per_class_accuracy(net, roundtrips, labels, classes)}
        if args.samples:
            entry["last_task_samples_closed"] = {
                chain.parent.parent.parent.name: closed_accuracy_on_samples(net, chain, classes)
                for chain in sorted(args.samples.glob("*/seed_0/task_*/samples.safetensors"))}
        result["evaluators"][name] = entry
        print(f"{name}: held-out accuracy clean {entry['clean']['overall']:.3f}, "
              f"VAE round-trip {entry['roundtrip']['overall']:.3f} "
              f"(worst class {min(classes, key=lambda c: entry['roundtrip'][c])} "
              f"{min(entry['roundtrip'][c] for c in classes):.3f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.rename(args.out)


if __name__ == "__main__":
    main()
