"""Whether a CPU-ISA setting gives the same bits on Intel and AMD CPUs, tested on one machine by emulation.

    apt-get install qemu-user        # qemu-x86_64 (user-mode emulation), not part of `make install`
    python studies/cross_vendor_emulated.py --steps 2 --out studies/results/cross_vendor_emulated_tiny.json

Runs the same short ``cdiff train-task`` (faces, C-LoRA, task 1, ``--steps`` steps) under each ``cpu_isa``
setting natively and under ``qemu-x86_64 -cpu MODEL`` for an Intel and an AMD CPU model. The emulator answers
the CPUID instruction for the model (vendor, ISA flags, cache sizes), so MKL, oneDNN and torch pick the kernels
they would pick on that vendor's CPU, while the arithmetic stays IEEE (TCG emulates SSE/AVX2/FMA exactly).
Compared: the sha256 of the task file. Two checks make a verdict:

* fidelity: the emulated model of the host's own vendor must reproduce the native bits; if it does not, the
  emulator itself changes results and nothing else is concluded;
* vendor independence of a setting: every run of it (native, each model) gives the same bits.

The MKL branch each run took is read from ``MKL_VERBOSE`` (``CNR:AVX2``, ``CNR:AUTO``, ``CNR:COMPATIBLE``).
Emulation is slow (about 60 s per training step of the miniature, against 0.08 s natively): keep ``--steps``
small; the kernels a step runs are the same at any step count.

``--job evaluate`` compares an evaluate job instead (task 1 of the same chain, trained natively under each setting
first; 2 samples, 3 DPM-Solver++ steps): sampling, the identity evaluator and the metrics; compared: the sha256 of
the sample grid and the per-concept scores.

``--ops`` runs ``studies/op_fingerprint.py`` instead of a training job: the bits of each op family on fixed
inputs, natively and under both models. An op whose emulated bits differ from the native ones on the host's own
vendor uses an instruction whose result the x86 specification leaves to the implementation (the approximate
``rcpps`` / ``rsqrtps``, which the emulator computes exactly and which Intel and AMD CPUs implement differently):
no ISA cap makes such an op agree across vendors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from continual_diffusion.utils.config import ISA_ENVIRONMENT  # noqa: E402

# the CLI with every torch.optim.AdamW fused (its own kernel, no MKL sqrt): --fused-adamw, an experiment
FUSED_ADAMW_MAIN = ("import functools, runpy, sys, torch; torch.optim.AdamW = functools.partial(torch.optim.AdamW, "
                    "fused=True); sys.argv[0] = 'continual_diffusion'; "
                    "runpy.run_module('continual_diffusion', run_name='__main__')")
INTEL_MODEL, AMD_MODEL = "Haswell-noTSX", "EPYC-Rome"  # AVX2 + FMA, no AVX-512 (TCG has no AVX-512)
VENDOR = {INTEL_MODEL: "GenuineIntel", AMD_MODEL: "AuthenticAMD"}


def host_vendor() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _cdiff(setting: str, model: str | None, args: list[str], entry: list[str] | None = None) -> tuple[str, float]:
    """Run ``cdiff args`` under ``setting``'s caps, natively (``model`` None) or emulated; MKL's branch, seconds."""
    env = {k: v for k, v in os.environ.items() if k not in (*ISA_ENVIRONMENT["avx2"], "CDIFF_WARM", "CDIFF_OVERRIDES")}
    env.update(ISA_ENVIRONMENT[setting], PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MKL_VERBOSE="1")
    # the venv's python by its own path (not resolved): under qemu it must still find its site-packages
    python = str(Path(sys.prefix) / "bin" / "python")
    head = ["qemu-x86_64", "-cpu", model] if model else []
    started = time.perf_counter()
    proc = subprocess.run([*head, python, *(entry or ["-m", "continual_diffusion"]), *args, "--set",
                           f"cpu_isa={setting}"], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{setting} on {model or 'native'}: {args[0]} failed:\n{proc.stderr[-2000:]}")
    branches = sorted({w[4:] for w in proc.stdout.split() if w.startswith("CNR:")})
    return "+".join(branches) or "unknown", round(time.perf_counter() - started, 1)


def train(setting: str, model: str | None, steps: int, work: Path, fused_adamw: bool = False) -> dict:
    """One train-task run; ``model`` None runs natively. Returns the task hash and MKL's branch."""
    out = work / f"{setting}_{model or 'native'}{'_fused' if fused_adamw else ''}"
    shutil.rmtree(out, ignore_errors=True)
    branch, seconds = _cdiff(setting, model, [
        "train-task", "--benchmark", "faces", "--method", "clora", "--seed", "0", "--task", "1", "--base",
        "models/tiny/base", "--runs", str(out / "runs"), "--checkpoints", str(out / "ck"), "--set",
        f"train.steps.faces={steps}"], ["-c", FUSED_ADAMW_MAIN] if fused_adamw else None)
    task = out / "runs" / "task_01" / "task.safetensors"
    return {"setting": setting, "cpu": model or "native",
            "task_sha256": hashlib.sha256(task.read_bytes()).hexdigest()[:16], "mkl_branch": branch,
            "seconds": seconds}


def evaluate(setting: str, model: str | None, work: Path) -> dict:
    """One evaluate-task run of task 1 on the chain ``train(setting, None, ...)`` wrote. The sha256 of the
    sample grid and the per-concept scores (``task_sha256`` so that the verdicts read it alike)."""
    runs = work / f"{setting}_native" / "runs"
    out = work / f"{setting}_{model or 'native'}_evaluate"
    shutil.rmtree(out, ignore_errors=True)
    branch, seconds = _cdiff(setting, model, [
        "evaluate-task", "--benchmark", "faces", "--method", "clora", "--seed", "0", "--task", "1", "--base",
        "models/tiny/base", "--runs", str(runs), "--evaluator", "models/tiny/evaluator/faces", "--out", str(out),
        "--set", "evaluation.samples_per_concept=2", "--set", "evaluation.inference_steps=3"])
    scores = json.loads((out / "scores.json").read_text())["concepts"]
    digest = hashlib.sha256((out / "samples.png").read_bytes() + json.dumps(scores, sort_keys=True).encode())
    return {"setting": setting, "cpu": model or "native", "task_sha256": digest.hexdigest()[:16],
            "mkl_branch": branch, "seconds": seconds}


def fingerprint(setting: str, model: str | None) -> dict:
    """op_fingerprint.py's {op: hash} under ``setting``, natively (``model`` None) or emulated."""
    env = {k: v for k, v in os.environ.items() if k not in ISA_ENVIRONMENT["avx2"]}
    env.update(ISA_ENVIRONMENT[setting], OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    head = ["qemu-x86_64", "-cpu", model] if model else []
    python = str(Path(sys.prefix) / "bin" / "python")
    proc = subprocess.run([*head, python, str(REPO / "studies" / "op_fingerprint.py")], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"op_fingerprint.py under {setting} on {model or 'native'} failed:\n{proc.stderr[-2000:]}")
    return {"setting": setting, "cpu": model or "native", "ops": json.loads(proc.stdout)}


def ops_table(runs: list[dict], vendor: str) -> tuple[str, dict]:
    """Per setting and op: whether the host vendor's emulated model reproduces native, and Intel == AMD."""
    same_vendor = next((m for m, v in VENDOR.items() if v == vendor), None)
    lines = ["| cpu_isa | op | emulation reproduces the host | emulated Intel == emulated AMD |", "|---|---|---|---|"]
    result = {}
    for setting in sorted({r["setting"] for r in runs}):
        by_cpu = {r["cpu"]: r["ops"] for r in runs if r["setting"] == setting}
        for op, native in by_cpu["native"].items():
            faithful = same_vendor is not None and by_cpu[same_vendor][op] == native
            vendors_agree = by_cpu[INTEL_MODEL][op] == by_cpu[AMD_MODEL][op]
            result.setdefault(setting, {})[op] = {"emulation_reproduces_host": faithful,
                                                  "intel_equals_amd_emulated": vendors_agree}
            lines.append(f"| {setting} | {op} | {'yes' if faithful else '**NO**'} | {'yes' if vendors_agree else '**no**'} |")
    return "\n".join(lines), result


def verdicts(runs: list[dict], vendor: str) -> dict:
    """Per setting: fidelity (the host vendor's emulated model == native) and vendor independence."""
    same_vendor = next((m for m, v in VENDOR.items() if v == vendor), None)
    out = {}
    for setting in sorted({r["setting"] for r in runs}):
        by_cpu = {r["cpu"]: r["task_sha256"] for r in runs if r["setting"] == setting}
        faithful = same_vendor is not None and by_cpu.get(same_vendor) == by_cpu.get("native")
        out[setting] = {"emulation_reproduces_host": faithful,
                        "same_bits_on_every_cpu": faithful and len(set(by_cpu.values())) == 1}
    return out


def table(runs: list[dict], result: dict) -> str:
    models = ["native", INTEL_MODEL, AMD_MODEL]
    optimizer = "torch's fused AdamW (experiment)" if result.get("fused_adamw") else "the pipeline's AdamW"
    what = (f"{result['steps']} training steps of faces/clora task 1 per run, {optimizer}; task-file sha256"
            if result.get("job", "train") == "train" else
            f"an evaluate job of faces/clora task 1 (trained natively, {result['steps']} steps; 2 samples, 3 "
            "DPM-Solver++ steps) per run; sha256 of the sample grid and the scores")
    lines = [f"Host: {result['host']['vendor']} ({result['host']['cpu']}); {what} (first 16 hex) and the MKL "
             "branch (MKL_VERBOSE).", "",
             "| cpu_isa | " + " | ".join(f"{m} ({VENDOR.get(m, 'host')})" for m in models)
             + " | emulation reproduces the host | same bits on every CPU |",
             "|---|" + "---|" * (len(models) + 2)]
    for setting, verdict in result["verdicts"].items():
        cells = []
        for m in models:
            r = next((r for r in runs if r["setting"] == setting and r["cpu"] == m), None)
            cells.append(f"`{r['task_sha256']}` {r['mkl_branch']}" if r else "-")
        faithful = "yes" if verdict["emulation_reproduces_host"] else "NO"
        lines.append(f"| {setting} | " + " | ".join(cells)
                     + f" | {faithful} | {'yes' if verdict['same_bits_on_every_cpu'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--job", choices=["train", "evaluate"], default="train", help="the job compared (default train)")
    p.add_argument("--settings", nargs="+", default=["avx2", "avx2_mkl_compatible", "portable"],
                   choices=sorted(set(ISA_ENVIRONMENT) - {"native"}))
    p.add_argument("--jobs", type=int, default=2, help="runs at once (the result does not depend on it)")
    p.add_argument("--work", type=Path, default=Path("/tmp/cross_vendor"))
    p.add_argument("--fused-adamw", action="store_true",
                   help="experiment: train with torch's fused AdamW (the pipeline uses the default foreach one)")
    p.add_argument("--ops", action="store_true", help="fingerprint op families (op_fingerprint.py), no training")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if shutil.which("qemu-x86_64") is None:
        raise SystemExit("qemu-x86_64 not found: apt-get install qemu-user")
    plan = [(s, m) for s in args.settings for m in (None, INTEL_MODEL, AMD_MODEL)]
    from continual_diffusion.orchestration.record import cpu_description

    vendor = host_vendor()
    if args.ops:
        with ThreadPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(lambda sm: fingerprint(*sm), plan))
        text, per_op = ops_table(runs, vendor)
        text = (f"Host: {vendor} ({cpu_description()['model']}); studies/op_fingerprint.py natively and under "
                f"qemu-x86_64 -cpu {INTEL_MODEL} / {AMD_MODEL}.\n\n{text}")
        print(text)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "host": {"vendor": vendor,
                                        "cpu": cpu_description()["model"]}, "runs": runs, "ops": per_op,
                                        "table": text}, indent=1))
        return
    if args.job == "evaluate":
        for setting in args.settings:  # the chain each setting's evaluate jobs read
            train(setting, None, args.steps, args.work)
    with ThreadPoolExecutor(args.jobs) as pool:
        if args.job == "evaluate":
            runs = list(pool.map(lambda sm: evaluate(*sm, args.work), plan))
        else:
            runs = list(pool.map(lambda sm: train(*sm, args.steps, args.work, args.fused_adamw), plan))
    result = {"command": " ".join(sys.argv), "job": args.job, "steps": args.steps, "fused_adamw": args.fused_adamw,
              "host": {"vendor": vendor, "cpu": cpu_description()["model"]}, "runs": runs}
    result["verdicts"] = verdicts(runs, vendor)
    result["table"] = table(runs, result)
    print(result["table"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
