"""What makes CPU results differ between x86 machines, and what capping the kernels' ISA costs.

    python studies/cross_isa.py --out studies/results/cross_isa_tiny.json

Runs the same ``cdiff train-task`` (faces, C-LoRA, task 1, ``--steps`` steps) and the same
``cdiff evaluate-task`` on it in fresh processes under each ISA setting: native (this CPU's best kernels),
each library capped alone (torch's ATen kernels ``ATEN_CPU_CAPABILITY=avx2``, oneDNN
``ONEDNN_MAX_CPU_ISA=AVX2``, MKL ``MKL_CBWR=AVX2``) and all three capped (params ``cpu_isa: avx2``).
A setting that changes the sha256 of the task file or the scores is a source of cross-machine
differences: another CPU picks other kernels for that library. Each setting runs ``--repeats`` times
(the hashes must agree: run-to-run determinism) and its wall times are reported (median, min, max).
Needs the base model and the faces evaluator (``snakemake --cores 2 evaluator``); run it on an idle machine.

Two settings test the MKL part of the difference between CPU vendors: ``avx2_mkl_compatible`` (params
``cpu_isa: avx2_mkl_compatible``: the caps with ``MKL_CBWR=COMPATIBLE``, the one MKL branch besides AUTO that
MKL runs on non-Intel CPUs: there it ignores ``MKL_CBWR=AVX2`` and runs AUTO) and
``avx2_mkl_compatible_no_onednn`` (the same with ``torch.backends.mkldnn`` off, so that convolutions run torch's
own kernels and MKL's GEMM instead of oneDNN). ``portable`` (params ``cpu_isa: portable``) adds exact square
roots to ``avx2_mkl_compatible`` (src/continual_diffusion/utils/numerics.py). For each setting the record keeps
the branch MKL reports (``MKL_VERBOSE``: ``CNR:AVX2``, ``CNR:AUTO``, ...) and the CPU it ran on. Compare two machines' records
(the task file and sample hashes of each setting):

    python studies/cross_isa.py --compare studies/results/cross_isa_tiny.json studies/results/cross_isa_tiny_epyc.json

``--settings`` runs a subset (e.g. ``--settings all_avx2 avx2_mkl_compatible``). On one machine,
``studies/cross_vendor_emulated.py`` tells the vendor-dependent parts apart by emulating another vendor's CPU.
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
from continual_diffusion.utils.config import ISA_ENVIRONMENT  # noqa: E402

CAPS = ISA_ENVIRONMENT["avx2"]  # what params' cpu_isa: avx2 sets for every job
NAMES = {"ATEN_CPU_CAPABILITY": "aten_avx2", "ONEDNN_MAX_CPU_ISA": "onednn_avx2", "MKL_CBWR": "mkl_avx2"}
SETTINGS = {"native": {}, **{NAMES.get(k, k): {k: v} for k, v in CAPS.items()}, "all_avx2 (cpu_isa: avx2)": dict(CAPS),
            "avx2_mkl_compatible (cpu_isa: avx2_mkl_compatible)": dict(ISA_ENVIRONMENT["avx2_mkl_compatible"]),
            "avx2_mkl_compatible_no_onednn": dict(ISA_ENVIRONMENT["avx2_mkl_compatible"]),
            "portable (cpu_isa: portable)": dict(ISA_ENVIRONMENT["portable"])}
NO_ONEDNN = {"avx2_mkl_compatible_no_onednn"}  # settings whose jobs run with torch.backends.mkldnn off
CPU_ISA = {"native": "native", "avx2_mkl_compatible": "avx2_mkl_compatible",  # params' cpu_isa per setting
           "avx2_mkl_compatible_no_onednn": "avx2_mkl_compatible", "portable": "portable"}
# the CLI with oneDNN switched off before any model is built (torch has no environment variable for it)
NO_ONEDNN_MAIN = ("import runpy, sys, torch; torch.backends.mkldnn.enabled = False; "
                  "sys.argv[0] = 'continual_diffusion'; runpy.run_module('continual_diffusion', run_name='__main__')")
MKL_PROBE = "import torch; torch.ones(64, 64) @ torch.ones(64, 64)"  # one SGEMM, logged under MKL_VERBOSE=1


def short(name: str) -> str:
    return name.split()[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def cdiff(args: list[str], env: dict, no_onednn: bool = False) -> float:
    started = time.perf_counter()
    head = ["-c", NO_ONEDNN_MAIN] if no_onednn else ["-m", "continual_diffusion"]
    subprocess.run([sys.executable, *head, *args], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def mkl_branch(env: dict) -> str:
    """The CNR branch MKL runs under ``env``, as its verbose log names it (``CNR:<branch>``)."""
    out = subprocess.run([sys.executable, "-c", MKL_PROBE], env={**env, "MKL_VERBOSE": "1"}, capture_output=True,
                         text=True, check=True).stdout
    branches = {word[4:] for word in out.split() if word.startswith("CNR:")}
    return "+".join(sorted(branches)) or "unknown"


def compare(paths: list[Path]) -> int:
    """Prints, per setting in both records, whether the task file and the samples agree bit for bit."""
    a, b = (json.loads(p.read_text()) for p in paths)
    print(f"A: {paths[0]} ({a.get('platform', {}).get('cpu', 'cpu not recorded')}, {a['steps']} steps)")
    print(f"B: {paths[1]} ({b.get('platform', {}).get('cpu', 'cpu not recorded')}, {b['steps']} steps)")
    if a["steps"] != b["steps"]:
        print("the records ran different step counts: their hashes do not compare")
        return 2
    print("| setting | MKL branch A | MKL branch B | task file | samples |\n|---|---|---|---|---|")
    for name in a["settings"]:
        if name not in b["settings"]:
            continue
        ra, rb = a["settings"][name]["runs"][0], b["settings"][name]["runs"][0]
        print(f"| {name} | {a['settings'][name].get('mkl_branch', '?')} | {b['settings'][name].get('mkl_branch', '?')} "
              f"| {'same' if ra['task_sha256'] == rb['task_sha256'] else 'differs'} "
              f"| {'same' if ra['samples_sha256'] == rb['samples_sha256'] else 'differs'} |")
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("/tmp/cross_isa"))
    p.add_argument("--out", type=Path)
    p.add_argument("--interleave", action="store_true",
                   help="run the settings in rounds (one run of each per round) and report per-round time ratios")
    p.add_argument("--settings", nargs="+", metavar="NAME", choices=sorted({short(n) for n in SETTINGS}),
                   help="run these settings only (default: all)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"),
                   help="compare two records (e.g. two machines) setting by setting; runs nothing")
    args = p.parse_args()
    if args.compare:
        raise SystemExit(compare(args.compare))
    if args.out is None:
        p.error("--out is required (or --compare A.json B.json)")
    from continual_diffusion.orchestration.record import CPU_GENERATION_FIELDS, cpu_description

    base_env = {k: v for k, v in os.environ.items() if k not in (*CAPS, "CDIFF_WARM", "CDIFF_OVERRIDES")}
    base_env.update(PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                    TRANSFORMERS_OFFLINE="1")
    chosen = {name: caps for name, caps in SETTINGS.items() if not args.settings or short(name) in args.settings}

    def run_once(name: str, caps: dict, repeat: int) -> dict:
        env = {**base_env, **caps}
        cpu_isa = CPU_ISA.get(short(name), "avx2" if caps else "native")
        work = args.work / f"{short(name)}_{repeat}"
        shutil.rmtree(work, ignore_errors=True)
        common = ["--set", f"train.steps.faces={args.steps}", "--set", f"cpu_isa={cpu_isa}"]
        no_onednn = short(name) in NO_ONEDNN
        t_train = cdiff(["train-task", "--benchmark", "faces", "--method", "clora", "--seed", "0", "--task", "1",
                         "--base", "models/tiny/base", "--runs", str(work / "runs"), "--checkpoints",
                         str(work / "ck"), *common], env, no_onednn)
        t_eval = cdiff(["evaluate-task", "--benchmark", "faces", "--method", "clora", "--seed", "0", "--task", "1",
                        "--base", "models/tiny/base", "--runs", str(work / "runs"), "--evaluator",
                        "models/tiny/evaluator/faces", "--out", str(work / "results"), *common], env, no_onednn)
        scores = json.loads((work / "results" / "scores.json").read_text())["concepts"]
        return {"task_sha256": sha(work / "runs" / "task_01" / "task.safetensors"),
                "samples_sha256": sha(work / "results" / "samples.png"),
                "accuracy_closed_concept1": scores["1"]["accuracy_closed"], "train_s": t_train, "evaluate_s": t_eval}

    # --interleave: round r runs every setting once, so a drift of the machine's speed hits all settings alike
    order = ([(name, r) for r in range(args.repeats) for name in chosen] if args.interleave
             else [(name, r) for name in chosen for r in range(args.repeats)])
    all_runs = {name: [] for name in chosen}
    for name, repeat in order:
        all_runs[name].append(run_once(name, chosen[name], repeat))
    results = {}
    for name, runs in all_runs.items():
        caps = chosen[name]
        results[name] = {
            "caps": caps, "mkl_branch": mkl_branch({**base_env, **caps}),
            "onednn": "off" if short(name) in NO_ONEDNN else "on", "runs": runs,
            "deterministic": len({(r["task_sha256"], r["samples_sha256"]) for r in runs}) == 1,
            "train_s": {"median": statistics.median(r["train_s"] for r in runs),
                        "min": min(r["train_s"] for r in runs), "max": max(r["train_s"] for r in runs)},
            "evaluate_s": {"median": statistics.median(r["evaluate_s"] for r in runs),
                           "min": min(r["evaluate_s"] for r in runs), "max": max(r["evaluate_s"] for r in runs)},
        }
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "runs"}), runs[0]["task_sha256"],
              runs[0]["samples_sha256"], flush=True)
    first = next(iter(results))
    for name, entry in results.items():  # per round, this setting's time over the first setting's (interleaved)
        if args.interleave and name != first:
            ratios = [r["train_s"] / f["train_s"] for r, f in zip(entry["runs"], results[first]["runs"])]
            entry["train_s_ratio_to_first"] = {"setting": first, "median": statistics.median(ratios),
                                               "min": min(ratios), "max": max(ratios)}
            print(f"{name}: train job time / {first}'s, per round: median {statistics.median(ratios):.3f} "
                  f"({min(ratios):.3f}-{max(ratios):.3f})", flush=True)
    if "native" in results:
        native = results["native"]["runs"][0]
        for entry in results.values():
            entry["differs_from_native"] = (entry["runs"][0]["task_sha256"] != native["task_sha256"]
                                            or entry["runs"][0]["samples_sha256"] != native["samples_sha256"])
    import torch

    cpu = cpu_description()
    platform = {"cpu": cpu["model"], "isa_flags": cpu["isa_flags"],
                **{k: cpu[k] for k in CPU_GENERATION_FIELDS.values() if k in cpu},
                "torch": torch.__version__, "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                                                      capture_output=True, text=True).stdout.strip()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "steps": args.steps, "platform": platform,
                                    "settings": results}, indent=1))


if __name__ == "__main__":
    main()
