"""What makes CPU results differ between x86 machines, and what capping the kernels' ISA costs.

    python benchmarks/cross_isa.py --out benchmarks/results/cross_isa_tiny.json

Runs the same ``cdiff train-task`` (faces, C-LoRA, task 1, ``--steps`` steps) and the same
``cdiff evaluate-task`` on it in fresh processes under each ISA setting: native (this CPU's best kernels),
each library capped alone (torch's ATen kernels ``ATEN_CPU_CAPABILITY=avx2``, oneDNN
``ONEDNN_MAX_CPU_ISA=AVX2``, MKL ``MKL_CBWR=AVX2``) and all three capped (params ``cpu_isa: avx2``).
A setting that changes the sha256 of the task file or the scores is a source of cross-machine
differences: another CPU picks other kernels for that library. Each setting runs ``--repeats`` times
(the hashes must agree: run-to-run determinism) and its wall times are reported (median, min, max).
Needs the base model and the faces evaluator (``snakemake --cores 2 evaluator``); run it on an idle machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from continual_diffusion.config import ISA_ENVIRONMENT  # noqa: E402

CAPS = ISA_ENVIRONMENT["avx2"]  # what params' cpu_isa: avx2 sets for every job
NAMES = {"ATEN_CPU_CAPABILITY": "aten_avx2", "ONEDNN_MAX_CPU_ISA": "onednn_avx2", "MKL_CBWR": "mkl_avx2"}
SETTINGS = {"native": {}, **{NAMES.get(k, k): {k: v} for k, v in CAPS.items()}, "all_avx2 (cpu_isa: avx2)": dict(CAPS)}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def cdiff(args: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "continual_diffusion", *args], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("/tmp/cross_isa"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    base_env = {k: v for k, v in os.environ.items() if k not in (*CAPS, "CDIFF_WARM", "CDIFF_OVERRIDES")}
    base_env.update(PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                    TRANSFORMERS_OFFLINE="1")
    results = {}
    for name, caps in SETTINGS.items():
        runs = []
        for repeat in range(args.repeats):
            work = args.work / f"{name.split()[0]}_{repeat}"
            shutil.rmtree(work, ignore_errors=True)
            env = {**base_env, **caps}
            common = ["--set", f"train.steps.faces={args.steps}", "--set", f"cpu_isa={'avx2' if caps else 'native'}"]
            t_train = cdiff(["train-task", "--benchmark", "faces", "--method", "clora", "--seed", "0", "--task", "1",
                             "--base", "models/tiny/base", "--runs", str(work / "runs"), "--checkpoints",
                             str(work / "ck"), *common], env)
            t_eval = cdiff(["evaluate-task", "--benchmark", "faces", "--method", "clora", "--seed", "0", "--task", "1",
                            "--base", "models/tiny/base", "--runs", str(work / "runs"), "--evaluator",
                            "models/tiny/evaluator/faces", "--out", str(work / "results"), *common], env)
            scores = json.loads((work / "results" / "scores.json").read_text())["concepts"]
            runs.append({"task_sha256": sha(work / "runs" / "task_01" / "task.safetensors"),
                         "samples_sha256": sha(work / "results" / "samples.png"),
                         "accuracy_closed_concept1": scores["1"]["accuracy_closed"],
                         "train_s": t_train, "evaluate_s": t_eval})
        results[name] = {
            "caps": caps, "runs": runs,
            "deterministic": len({(r["task_sha256"], r["samples_sha256"]) for r in runs}) == 1,
            "train_s": {"median": statistics.median(r["train_s"] for r in runs),
                        "min": min(r["train_s"] for r in runs), "max": max(r["train_s"] for r in runs)},
            "evaluate_s": {"median": statistics.median(r["evaluate_s"] for r in runs),
                           "min": min(r["evaluate_s"] for r in runs), "max": max(r["evaluate_s"] for r in runs)},
        }
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "runs"}), runs[0]["task_sha256"],
              runs[0]["samples_sha256"], flush=True)
    native = results["native"]["runs"][0]
    for entry in results.values():
        entry["differs_from_native"] = (entry["runs"][0]["task_sha256"] != native["task_sha256"]
                                        or entry["runs"][0]["samples_sha256"] != native["samples_sha256"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "steps": args.steps, "settings": results}, indent=1))


if __name__ == "__main__":
    main()
