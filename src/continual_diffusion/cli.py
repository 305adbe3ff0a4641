"""``cdiff``: one subcommand per pipeline stage, plus the orchestration helpers.

Every subcommand reads the same configuration: ``--params`` (default params.yaml, repeatable) with
the profile overlay, then ``--set KEY=VALUE`` overrides (``--set profile=smoke``). Failures that a
user can fix (bad input, bad parameter) print one line ``cdiff: error: ...`` and exit with status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from continual_diffusion.utils.config import OFFLINE_ENV
from continual_diffusion.utils.errors import PipelineError

log = logging.getLogger("continual_diffusion")



def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, action="append", help="params file(s), merged in order (default: params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter after the profile overlay, e.g. --set profile=smoke")
    parser.add_argument("--log", type=Path, help="also write the log to this file")


def _config(args: argparse.Namespace) -> dict:
    """params files -> profile overlay -> CDIFF_OVERRIDES (JSON object, set by the Snakefile) -> --set."""
    import json

    from continual_diffusion.utils import config

    inherited = []
    if os.environ.get("CDIFF_OVERRIDES"):
        try:
            inherited = [f"{k}={json.dumps(v)}" for k, v in json.loads(os.environ["CDIFF_OVERRIDES"]).items()]
        except (ValueError, AttributeError):
            raise PipelineError("CDIFF_OVERRIDES: expected a JSON object of dotted keys") from None
    return config.load(args.params or [Path("params.yaml")], inherited + list(args.overrides))


def _gpu_slot(cfg: dict) -> None:
    """A job that runs on the GPU (runtime.device not cpu) takes one GPU of the machine for itself before
    CUDA starts; nothing on the CPU, without GPUs, or when a scheduler set CUDA_VISIBLE_DEVICES (gpu_slots.py)."""
    from continual_diffusion.orchestration.gpu_slots import claim

    claim(cfg)


def cmd_config(args: argparse.Namespace) -> None:
    import yaml

    cfg = _config(args)
    if args.key:
        node = cfg
        for part in args.key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise PipelineError(f"{args.key}: no such parameter")
            node = node[part]
        cfg = node
    sys.stdout.write(yaml.safe_dump(cfg, sort_keys=False) if isinstance(cfg, (dict, list)) else f"{cfg}\n")


def cmd_prepare_data(args: argparse.Namespace) -> None:
    from continual_diffusion.utils.config import benchmark_config
    from continual_diffusion.stages.prepare_data import prepare_tasks

    prepare_tasks(benchmark_config(_config(args), args.benchmark), args.benchmark, args.out)


def cmd_generic_pool(args: argparse.Namespace) -> None:
    from continual_diffusion.utils.config import benchmark_config
    from continual_diffusion.stages.prepare_data import prepare_pool

    prepare_pool(benchmark_config(_config(args), args.benchmark), args.benchmark, args.out)


def cmd_base_model(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.base_model import build_base
    from continual_diffusion.utils.numerics import job_numerics

    cfg = _config(args)
    with job_numerics(cfg):  # pre-trains when model.base is pretrain
        build_base(cfg, Path("data") / cfg["profile"], args.out)


def cmd_pretrain_base(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.base_model import pretrain_base
    from continual_diffusion.utils.numerics import job_numerics

    cfg = _config(args)
    with job_numerics(cfg):
        report = pretrain_base(cfg, args.data or Path("data") / cfg["profile"], args.out)
    log.info("pre-trained base written to %s (U-Net loss %.4f -> %.4f)", args.out,
             report["unet_loss_first50"], report["unet_loss_last50"])
    if args.compare:
        from continual_diffusion.stages.base_model import verify

        reference = verify(args.compare)["files"]
        differ = sorted(k for k in set(reference) | set(report["files"]) if reference.get(k) != report["files"].get(k))
        if differ:
            raise PipelineError(f"{args.compare}: rebuilt base differs in {len(differ)} file(s), first {differ[0]}")
        log.info("rebuilt base is bit-identical to %s (%d files)", args.compare, len(reference))


def cmd_evaluator(args: argparse.Namespace) -> None:
    from continual_diffusion.utils.config import benchmark_config
    from continual_diffusion.stages.identity_evaluator import train_evaluator
    from continual_diffusion.metrics.suite import pretrained_evaluator
    from continual_diffusion.utils.numerics import job_numerics

    cfg = _config(args)
    bench = benchmark_config(cfg, args.benchmark)
    _gpu_slot(cfg)
    if bench["data"]["source"].startswith("synthetic_"):
        with job_numerics(cfg):
            train_evaluator(cfg, bench, args.tasks / "tasks.json", args.out, base=args.base)
    else:
        pretrained_evaluator(cfg, args.benchmark, args.out)


def _results_report(sub, name: str, help_text: str, func) -> None:
    """A report subcommand that reads results/<profile> and writes one output folder."""
    p = sub.add_parser(name, help=help_text)
    _common(p)
    p.add_argument("--results", type=Path, required=True, help="results/<profile>")
    p.add_argument("--out", type=Path, required=True, help="output folder (written atomically)")
    p.set_defaults(func=func)


def _n_tasks(cfg: dict) -> dict:
    return {b: cfg["data"][b]["n_tasks"] for b in cfg["benchmarks"]}


def _chain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", required=True, help="faces | landmarks")
    p.add_argument("--method", required=True, help="a method of train.methods (e.g. clora, lora_sequential)")
    p.add_argument("--seed", type=int, required=True, help="chain seed (one of seeds)")
    p.add_argument("--task", type=int, required=True, help="task number, 1-based")
    p.add_argument("--base", type=Path, required=True, help="base model folder (base_model stage)")
    p.add_argument("--runs", type=Path, required=True, help="the chain's folder: task_XX/ folders live here")


def _check_chain(cfg: dict, args: argparse.Namespace) -> None:
    if args.method not in cfg["train"]["methods"]:
        raise PipelineError(f"--method {args.method}: not in train.methods ({', '.join(cfg['train']['methods'])})")
    n = cfg["data"][args.benchmark]["n_tasks"]
    if not 1 <= args.task <= n:
        raise PipelineError(f"--task {args.task}: outside 1..{n} (data.{args.benchmark}.n_tasks)")


def cmd_train_task(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.train import copy_task, run_task
    from continual_diffusion.utils.numerics import job_numerics

    cfg = _config(args)
    _check_chain(cfg, args)
    if args.same_as is not None:
        copy_task(cfg, args.benchmark, args.method, args.seed, args.task, args.base, args.runs, args.same_as)
        return
    _gpu_slot(cfg)
    with job_numerics(cfg):
        run_task(cfg, args.benchmark, args.method, args.seed, args.task, Path("data") / cfg["profile"], args.base,
                 args.runs, args.checkpoints)


def cmd_evaluate_task(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.evaluate import evaluate_task
    from continual_diffusion.utils.numerics import job_numerics

    cfg = _config(args)
    _check_chain(cfg, args)
    _gpu_slot(cfg)
    with job_numerics(cfg):
        evaluate_task(cfg, args.benchmark, args.method, args.seed, args.task, args.base, args.runs, args.evaluator,
                      args.out, Path("data") / cfg["profile"])


def cmd_export(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.export import export_main

    cfg = _config(args)
    _gpu_slot(cfg)
    export_main(args, cfg)


def cmd_summary(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.report.summary import summarize

    cfg = _config(args)
    summarize(args.results, cfg["benchmarks"], cfg["train"]["methods"], cfg["seeds"],
              _n_tasks(cfg), args.out)


def cmd_matrices(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.report.matrices import write_matrices

    cfg = _config(args)
    write_matrices(args.results, cfg["benchmarks"], cfg["train"]["methods"], cfg["seeds"],
                   _n_tasks(cfg), args.out)


def cmd_param_cost(args: argparse.Namespace) -> None:
    from continual_diffusion.utils.io import atomic_directory, json_text
    from continual_diffusion.metrics.param_cost import markdown, profile_costs

    cfg = _config(args)
    costs = profile_costs(cfg, args.base)
    with atomic_directory(args.out) as tmp:
        (tmp / "parameter_cost.json").write_text(json_text(costs))
        (tmp / "parameter_cost.md").write_text(markdown(costs, cfg["profile"]))


def cmd_grids(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.report.grids import write_grids

    cfg = _config(args)
    write_grids(args.results, Path("data") / cfg["profile"], cfg["benchmarks"], cfg["train"]["methods"], cfg["seeds"],
                _n_tasks(cfg), cfg["report"]["grid_tasks"],
                cfg["report"]["grid_images"], args.out)


def _read_json_file(path: Path, what: str) -> dict:
    import json

    if not path.exists():
        raise PipelineError(f"{path}: {what} missing (run its rule first)")
    return json.loads(path.read_text())


def _in_method_order(summary: dict, cfg: dict) -> dict:
    """summary.json's methods (stored with sorted keys) in the order of train.methods, then any others."""
    order = list(cfg["train"]["methods"])
    return {b: dict(sorted(methods.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order),
                                                             kv[0])))
            for b, methods in summary.items()}


def _summary_and_costs(args: argparse.Namespace, cfg: dict) -> tuple[dict, dict]:
    return (_in_method_order(_read_json_file(args.summary / "summary.json", "continual summary"), cfg),
            _read_json_file(args.costs / "parameter_cost.json", "parameter costs"))


def cmd_tables(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.report.tables import write_tables

    cfg = _config(args)
    summary, costs = _summary_and_costs(args, cfg)
    write_tables(summary, costs, cfg["profile"], args.out)


def cmd_figures(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.report.figures import write_figures

    cfg = _config(args)
    summary = _in_method_order(_read_json_file(args.summary / "summary.json", "continual summary"), cfg)
    write_figures(summary, args.out, args.runs, cfg["seeds"], _n_tasks(cfg))


def _scope(cfg: dict) -> dict:
    paper = cfg["model"]["base"] == "stable_diffusion" and not any(
        cfg["data"][b]["source"].startswith("synthetic_") for b in cfg["benchmarks"])
    return {"profile": cfg["profile"], "setting": "paper" if paper else "miniature",
            "setting_text": "Stable Diffusion v1.x on the real benchmarks" if paper else
            "the offline miniature: tiny SD-structured model, synthetic concepts",
            "benchmarks": list(cfg["benchmarks"]), "methods": list(cfg["train"]["methods"]), "seeds": list(cfg["seeds"])}


def cmd_audit(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.report.audit import write_audit

    cfg = _config(args)
    summary, costs = _summary_and_costs(args, cfg)
    write_audit(args.reported, summary, costs, _scope(cfg), args.out)


def cmd_dvc_outputs(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.report.dvc_outputs import write_dvc_outputs

    cfg = _config(args)
    summary, costs = _summary_and_costs(args, cfg)
    write_dvc_outputs(summary, costs, args.metrics, args.plots, args.runs, cfg["seeds"], _n_tasks(cfg))


def cmd_readme_results(args: argparse.Namespace) -> None:
    from continual_diffusion.stages.report.readme import update_readme

    record = args.record if args.record is not None else Path("reports/record") / f"{args.tables.parent.name}.json"
    changed = update_readme(args.readme, args.tables / "tables.md", check=args.check,
                            record=record if record.exists() else None)
    if args.check and changed:
        raise PipelineError(f"{args.readme}: its results section differs from {args.tables / 'tables.md'} "
                            "(run `cdiff readme-results` to update it)")


def cmd_dvc_yaml(args: argparse.Namespace) -> None:
    from continual_diffusion.utils.io import write_text_atomic
    from continual_diffusion.orchestration.pipeline import dvc_yaml

    text = dvc_yaml()
    if args.check:
        current = Path("dvc.yaml").read_text() if Path("dvc.yaml").exists() else ""
        if current != text:
            raise PipelineError("dvc.yaml: out of date with src/continual_diffusion/orchestration/pipeline.py (run `cdiff dvc-yaml --write`)")
        return
    if args.write:
        write_text_atomic(Path("dvc.yaml"), text)
    else:
        sys.stdout.write(text)


def cmd_dvc_record(args: argparse.Namespace) -> None:
    from continual_diffusion.orchestration.dvc_record import record

    record(_config(args), snakemake_args=args.snakemake_arg)


def cmd_record(args: argparse.Namespace) -> None:
    import json

    from continual_diffusion.orchestration import record

    cfg = _config(args)
    profile = cfg["profile"]
    if args.write:
        path = record.write_record(profile, cfg["cpu_isa"], args.lock)
        log.info("wrote %s", path)
        return
    report = record.check(profile, cfg["cpu_isa"], args.lock, args.record, partial=args.partial)
    sys.stdout.write(json.dumps(report, indent=1) + "\n" if args.json else record.check_text(report))
    if not report["ok"]:
        first = report["first_difference"]
        where = (f"first differing stage: {first['stage']} ({first.get('file', first['output'])})" if first
                 else "all stage outputs equal")
        raise PipelineError(f"the rerun differs from {args.record or record.record_path(profile)} "
                            f"({report['mode']}; {where}; {len(report['problems'])} problem(s) above)")


def cmd_warm_serve(args: argparse.Namespace) -> None:
    from continual_diffusion.orchestration.warm import serve

    serve(args.socket, main, parent_pid=args.parent_pid, idle_timeout=args.idle_timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdiff", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("config", help="print the resolved, validated configuration")
    _common(p)
    p.add_argument("key", nargs="?", help="dotted key to print (default: everything)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("prepare-data", help="sample a benchmark's task sequence into per-task folders with manifests")
    _common(p)
    p.add_argument("--benchmark", required=True, help="faces | landmarks")
    p.add_argument("--out", type=Path, required=True, help="output folder (written atomically)")
    p.set_defaults(func=cmd_prepare_data)

    p = sub.add_parser("generic-pool", help="render the generic pre-training pool of a synthetic benchmark")
    _common(p)
    p.add_argument("--benchmark", required=True, help="faces | landmarks")
    p.add_argument("--out", type=Path, required=True, help="output folder (written atomically)")
    p.set_defaults(func=cmd_generic_pool)

    p = sub.add_parser("base-model", help="build the base model folder (model.base: embedded | pretrain | stable_diffusion)")
    _common(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (written atomically)")
    p.set_defaults(func=cmd_base_model)

    p = sub.add_parser("pretrain-base", help="pre-train the miniature on the generic pools (rebuilds the embedded base)")
    _common(p)
    p.add_argument("--data", type=Path, help="folder with pool/<benchmark> (default: data/<profile>)")
    p.add_argument("--compare", type=Path, help="fail unless the result is bit-identical to this base folder")
    p.add_argument("--out", type=Path, required=True, help="output folder (written atomically)")
    p.set_defaults(func=cmd_pretrain_base)

    p = sub.add_parser("evaluator", help="train a synthetic benchmark's identity evaluator on held-out renders "
                                         "(real data: check that the pretrained facenet / CLIP extractors load)")
    _common(p)
    p.add_argument("--benchmark", required=True, help="faces | landmarks")
    p.add_argument("--tasks", type=Path, required=True, help="the benchmark's task folder (with tasks.json)")
    p.add_argument("--base", type=Path, help="base model folder whose VAE makes the round-trips "
                                             "(synthetic benchmarks with evaluator.vae_roundtrip > 0)")
    p.add_argument("--out", type=Path, required=True, help="output folder (written atomically)")
    p.set_defaults(func=cmd_evaluator)

    p = sub.add_parser("train-task", help="train one task of one method's chain (resumes from its checkpoint)")
    _common(p)
    _chain_args(p)
    p.add_argument("--checkpoints", type=Path, required=True, help="where this chain keeps resumable checkpoints")
    p.add_argument("--same-as", type=Path, metavar="RUNS",
                   help="copy the task from this other method's chain, which trains the same thing "
                        "(train.share_identical_tasks; shared_tasks.py) instead of training it")
    p.set_defaults(func=cmd_train_task)

    p = sub.add_parser("evaluate-task", help="sample and score every concept learned up to a task")
    _common(p)
    _chain_args(p)
    p.add_argument("--evaluator", type=Path, required=True, help="evaluator folder (evaluator stage)")
    p.add_argument("--out", type=Path, required=True, help="output folder (written atomically)")
    p.set_defaults(func=cmd_evaluate_task)

    p = sub.add_parser("export", help="export a LoRA-type chain (clora, lora_sequential) for stock diffusers: "
                                      "one LoRA of the summed task adapters + textual-inversion tokens")
    _common(p)
    p.add_argument("--benchmark", required=True, help="faces | landmarks")
    p.add_argument("--method", required=True, help="a LoRA-type method: clora | lora_sequential")
    p.add_argument("--seed", type=int, required=True, help="chain seed (one of seeds)")
    p.add_argument("--task", type=int, help="export the chain after this task (default: the benchmark's last)")
    p.add_argument("--base", type=Path, required=True, help="base model folder (base_model stage)")
    p.add_argument("--runs", type=Path, required=True, help="the chain's folder: task_XX/ folders live here")
    p.add_argument("--out", type=Path, required=True, help="output folder (written atomically)")
    p.set_defaults(func=cmd_export)

    _results_report(sub, "summary", "plasticity / forgetting summary of every metric matrix over seeds", cmd_summary)
    _results_report(sub, "matrices", "write every chain's metric matrices R[t, i] as CSV and JSON", cmd_matrices)


    p = sub.add_parser("param-cost", help="parameters trained and stored per task by every method (N_param)")
    _common(p)
    p.add_argument("--base", type=Path, required=True, help="base model folder (its unet/ and text_encoder/ configs)")
    p.add_argument("--out", type=Path, required=True, help="output folder (written atomically)")
    p.set_defaults(func=cmd_param_cost)

    _results_report(sub, "grids", "post-sequence sample grids of the report.grid_tasks concepts (PNG and PDF)", cmd_grids)

    def report_inputs(p: argparse.ArgumentParser, runs: bool = False, costs: bool = True) -> None:
        _common(p)
        p.add_argument("--summary", type=Path, required=True, help="the continual summary folder (summary.json)")
        if costs:
            p.add_argument("--costs", type=Path, required=True, help="the parameter-cost folder (parameter_cost.json)")
        if runs:
            p.add_argument("--runs", type=Path, default=None, help="runs/<profile> (training logs of the chains)")

    p = sub.add_parser("tables", help="paper-style tables (N_param, A and F of every metric) as Markdown, CSV, LaTeX")
    report_inputs(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (written atomically)")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("figures", help="concept curves, R heatmaps and C-LoRA's update norms / penalty (PNG)")
    report_inputs(p, runs=True, costs=False)
    p.add_argument("--out", type=Path, required=True, help="output folder (written atomically)")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("audit", help="reproduced-vs-reported audit of the paper's values and claims")
    report_inputs(p)
    p.add_argument("--reported", type=Path, default=Path("reports/reported/paper_numbers.yaml"),
                   help="the paper's values and claims (YAML)")
    p.add_argument("--out", type=Path, required=True, help="output folder: audit.md, audit.json (atomic)")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("dvc-outputs", help="metrics.json and the plot CSVs declared in dvc.yaml")
    report_inputs(p, runs=True)
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON file to write")
    p.add_argument("--plots", type=Path, required=True, help="plots folder to write (atomically)")
    p.set_defaults(func=cmd_dvc_outputs)

    p = sub.add_parser("readme-results", help="insert the generated results table into README.md (or --check it)")
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--tables", type=Path, required=True, help="the tables folder (tables.md)")
    p.add_argument("--check", action="store_true", help="fail if the README's copy differs")
    p.add_argument("--record", type=Path, help="the run's record, for the platform line "
                   "(default: reports/record/<profile>.json beside reports/<profile>/tables, when it exists)")
    p.set_defaults(func=cmd_readme_results)

    p = sub.add_parser("dvc-yaml", help="print (or --write / --check) dvc.yaml generated from the stage list")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write dvc.yaml")
    mode.add_argument("--check", action="store_true", help="fail if dvc.yaml differs from the generated text")
    p.set_defaults(func=cmd_dvc_yaml)

    p = sub.add_parser("record", help="write the run's record (--write) or check a rerun against it (default)")
    _common(p)
    p.add_argument("--write", action="store_true", help="write reports/record/<profile>.json from this run")
    p.add_argument("--lock", type=Path, default=Path("dvc.lock"), help="the dvc.lock of this run (default: dvc.lock)")
    p.add_argument("--record", type=Path, help="record to check against (default: reports/record/<profile>.json)")
    p.add_argument("--json", action="store_true", help="print the check as JSON")
    p.add_argument("--partial", action="store_true",
                   help="check a rerun of part of the pipeline (some chains, e.g. `make ci-slice`): only the "
                        "files on disk, no report stage, no dvc.lock, the numbers of the methods that ran")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("dvc-record", help="record the stages Snakemake has completed into dvc.lock (dvc commit)")
    _common(p)
    p.add_argument("--snakemake-arg", action="append", default=[], help="extra argument for the check run of snakemake")
    p.set_defaults(func=cmd_dvc_record)

    p = sub.add_parser("warm-serve", help="warm worker: pre-import torch/diffusers once and fork one process per heavy "
                                          "job (train-task, evaluate-task, evaluator, export) whose CDIFF_WARM names "
                                          "the socket (the Snakefile starts it; see warm.py)")
    p.add_argument("--socket", required=True, help="Unix socket path to listen on (removed on exit)")
    p.add_argument("--parent-pid", type=int, help="exit once this process (the Snakemake run) is gone")
    p.add_argument("--idle-timeout", type=float, default=900.0,
                   help="exit after this many seconds without a job (default 900)")
    p.set_defaults(func=cmd_warm_serve)
    return parser


def _setup_logging(path: Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)


def main(argv: list[str] | None = None) -> int:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    _setup_logging(getattr(args, "log", None))
    try:
        args.func(args)
    except PipelineError as exc:
        log.debug("failed", exc_info=True)
        print(f"cdiff: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cdiff: interrupted", file=sys.stderr)
        return 130
    return 0
