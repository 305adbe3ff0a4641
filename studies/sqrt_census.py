"""Which calls of a pipeline job take a square root of a float tensor, and where they come from.

    python studies/sqrt_census.py -- train-task --benchmark faces --method clora --seed 0 --task 1 \
        --base models/tiny/base --runs /tmp/census/runs --checkpoints /tmp/census/ck --set train.steps.faces=2

    python studies/sqrt_census.py --suite --cpu-isa portable --out studies/results/sqrt_census_portable.json

Runs one ``cdiff`` subcommand in this process under a ``TorchDispatchMode`` that sees every aten op, and counts
the ops that compute a square root on CPU float tensors (``sqrt``, ``pow`` with exponent +-0.5, the foreach
and fused forms), each with the first Python frame outside torch's dispatch machinery that called it.
``--suite`` runs the jobs of every stage that computes (a few steps each, under ``--cpu-isa``, in ``--work``):
the faces evaluator, tasks 1 and 2 of every method of ``train.methods`` and the evaluate job of task 2.

Why: torch computes the square root of a float CPU tensor with MKL's vector math, whose kernel on AMD CPUs
(and on Intel CPUs under ``MKL_CBWR=COMPATIBLE``) starts from the approximate ``rsqrtps`` instruction, whose
bits the x86 specification leaves to each CPU design (studies/results/cross_vendor.md). A job whose census
is empty under ``cpu_isa: portable`` takes no vendor-dependent square root. ``rsqrt`` is listed too; its MKL
kernel was reproduced exactly by emulation (cross_vendor_ops_tiny.json), so it is reported, not flagged.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# aten ops whose float CPU kernel is MKL's vector-math square root (flagged) or reciprocal square root (listed)
SQRT_OPS = {"sqrt", "sqrt_", "_foreach_sqrt", "_foreach_sqrt_", "_fused_adam_", "_fused_adamw_"}
RSQRT_OPS = {"rsqrt", "rsqrt_", "_foreach_rsqrt"}
POW_OPS = {"pow", "pow_"}


def _takes_sqrt(name: str, args: tuple) -> str | None:
    """'sqrt' when the op takes a square root through MKL, 'rsqrt' for the reciprocal one, else None."""
    import torch

    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    lists = [t for a in args if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]
    first = (tensors or lists or [None])[0]
    if first is None or first.device.type != "cpu" or not first.is_floating_point():
        return None
    if name.startswith("_fused_adam"):  # the fused optimizer's own kernel: exact sqrt (Vectorized::sqrt)
        return None
    if name in SQRT_OPS:
        return "sqrt"
    if name in RSQRT_OPS:
        return "rsqrt"
    if name in POW_OPS and len(args) > 1 and isinstance(args[1], (int, float)) and abs(args[1]) == 0.5:
        return "sqrt"
    return None


def _caller() -> str:
    """The innermost frame outside torch's plumbing and this file (torch.optim counts as a caller)."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        path = frame.filename
        if path == __file__ or ("/torch/" in path and "/torch/optim/" not in path):
            continue
        short = path.split("site-packages/")[-1].split("/src/")[-1]
        return f"{short}:{frame.lineno} ({frame.name})"
    return "?"


def count_roots(run) -> tuple[object, dict[str, Counter]]:
    """Call ``run()`` under the census: its result and {"sqrt" | "rsqrt": {caller: count}}."""
    from torch.utils._python_dispatch import TorchDispatchMode

    found: dict[str, Counter] = {"sqrt": Counter(), "rsqrt": Counter()}

    class Census(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kind = _takes_sqrt(func._overloadpacket.__name__, args)
            if kind:
                found[kind][_caller()] += 1
            return func(*args, **(kwargs or {}))

    with Census():
        result = run()
    return result, found


def census(argv: list[str]) -> dict:
    """Run ``cdiff argv`` here under the census; {kind: {caller: count}} and the job's exit status."""
    from continual_diffusion.cli import main

    status, found = count_roots(lambda: main(argv))
    return {"command": ["cdiff", *argv], "returncode": status,
            "sqrt": dict(found["sqrt"].most_common()), "rsqrt": dict(found["rsqrt"].most_common())}


# a few steps of each job: the ops a job runs do not depend on the step count
SHORT = ["--set", "train.steps.faces=3", "--set", "methods.generative_replay.replay_steps=3", "--set",
         "methods.custom_diffusion_ewc.fisher_samples=2", "--set", "methods.dreambooth.prior_images=2", "--set",
         "methods.custom_diffusion_merge.regularization_count=20", "--set", "evaluation.samples_per_concept=2",
         "--set", "evaluation.inference_steps=3"]
SHORT_EVALUATOR = ["--set", "evaluator.steps=3", "--set", "evaluator.train_images_per_concept=4", "--set",
                   "evaluator.val_images_per_concept=2", "--set", "evaluator.other_train_images=8", "--set",
                   "evaluator.other_val_images=4"]


def suite_jobs(work: Path, cpu_isa: str, methods: list[str]) -> list[tuple[str, list[str]]]:
    """(name, cdiff argv) of every computing job of the faces benchmark, shortened (``SHORT``)."""
    isa = ["--set", f"cpu_isa={cpu_isa}"]
    jobs = [("evaluator", ["evaluator", "--benchmark", "faces", "--tasks", "data/tiny/tasks/faces", "--base",
                           "models/tiny/base", "--out", str(work / "evaluator"), *SHORT_EVALUATOR, *isa])]
    for method in methods:
        chain = ["--benchmark", "faces", "--method", method, "--seed", "0", "--base", "models/tiny/base",
                 "--runs", str(work / "runs" / method)]
        for task in (1, 2):
            jobs.append((f"train {method} task {task}", ["train-task", *chain, "--task", str(task), "--checkpoints",
                                                          str(work / "ck" / method), *SHORT, *isa]))
        jobs.append((f"evaluate {method} task 2", ["evaluate-task", *chain, "--task", "2", "--evaluator",
                                                   "models/tiny/evaluator/faces", "--out",
                                                   str(work / "results" / method), *SHORT, *isa]))
    return jobs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="write the census here as JSON (default: print only)")
    p.add_argument("--suite", action="store_true", help="census every computing job (see above)")
    p.add_argument("--cpu-isa", default="avx2", help="--suite: the jobs' cpu_isa (default avx2)")
    p.add_argument("--work", type=Path, default=Path("/tmp/sqrt_census"), help="--suite: where the jobs write")
    p.add_argument("cdiff_args", nargs=argparse.REMAINDER, help="-- then the cdiff subcommand and its arguments")
    args = p.parse_args()
    if args.suite:
        import shutil

        from continual_diffusion.utils import config

        shutil.rmtree(args.work, ignore_errors=True)
        methods = config.load()["train"]["methods"]
        jobs = {name: census(argv) for name, argv in suite_jobs(args.work, args.cpu_isa, methods)}
        result = {"command": " ".join(["studies/sqrt_census.py", *sys.argv[1:]]), "cpu_isa": args.cpu_isa,
                  "jobs": jobs, "returncode": max(j["returncode"] for j in jobs.values()),
                  "sqrt": sum((Counter(j["sqrt"]) for j in jobs.values()), Counter()),
                  "rsqrt": sum((Counter(j["rsqrt"]) for j in jobs.values()), Counter())}
        result["sqrt"], result["rsqrt"] = dict(result["sqrt"].most_common()), dict(result["rsqrt"].most_common())
        text = json.dumps({k: result[k] for k in ("command", "cpu_isa", "returncode", "sqrt", "rsqrt")}, indent=1)
        print(text)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1) + "\n")
        sys.exit(0 if result["returncode"] == 0 else 1)
    argv = args.cdiff_args[1:] if args.cdiff_args[:1] == ["--"] else args.cdiff_args
    if not argv:
        p.error("give the cdiff subcommand after --")
    result = census(argv)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    sys.exit(0 if result["returncode"] == 0 else 1)


if __name__ == "__main__":
    main()
