"""``cdiff``: one subcommand per pipeline stage, plus the orchestration helpers.

Every subcommand reads the same configuration: ``--params`` (default params.yaml, repeatable) with
the profile overlay, then ``--set KEY=VALUE`` overrides (``--set profile=smoke``). Failures that a
user can fix (bad input, bad parameter) print one line ``cdiff: error: ...`` and exit with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from continual_diffusion.utils.config import OFFLINE_ENV
from continual_diffusion.utils.errors import PipelineError

log = logging.getLogger("continual_diffusion")

PACKAGE = "continual_diffusion"


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call: its flags (or positional name) and keyword arguments."""

    flags: tuple[str, ...]
    options: dict


def arg(*flags: str, **options) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class OneOf:
    """Arguments of which at most one may be given (a mutually exclusive group)."""

    arguments: tuple[Arg, ...]


# A flag of a command: always (True), never (False), or a predicate of (cfg, the handler's keyword arguments).
Flag = bool | Callable[[dict | None, dict], bool]


@dataclass(frozen=True)
class Command:
    """A subcommand. ``handler``: "module:function" below ``continual_diffusion`` (looked up when the command
    runs, so its module is imported only then), or a function of this module; it is called with the
    configuration (when ``config``) and one keyword argument per argument of the command (its dest).
    ``config``: takes --params / --set / --log and reads the configuration. ``check``: "module:function"
    called like the handler before anything else (a one-line error for bad arguments). ``gpu``: claims a GPU
    of the machine before the handler runs (``orchestration.gpu_slots``; the warm worker's commands).
    ``numerics``: the handler runs in the job's numerics (``utils.numerics.job_numerics``: a computing job)."""

    name: str
    help: str
    handler: str | Callable
    arguments: tuple[Arg | OneOf, ...] = ()
    config: bool = True
    check: str | None = None
    gpu: Flag = False
    numerics: Flag = False


# ----- the arguments several commands share

COMMON = (
    arg("--params", type=Path, action="append", help="params file(s), merged in order (default: params.yaml)"),
    arg("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a parameter after the profile overlay, e.g. --set profile=smoke"),
    arg("--log", type=Path, help="also write the log to this file"),
)
COMMON_DESTS = frozenset({"params", "overrides", "log"})

BENCHMARK = arg("--benchmark", required=True, help="faces | landmarks")
OUT = arg("--out", type=Path, required=True, help="output folder (written atomically)")
CHAIN = (
    BENCHMARK,
    arg("--method", required=True, help="a method of train.methods (e.g. clora)"),
    arg("--seed", type=int, required=True, help="chain seed (one of seeds)"),
    arg("--task", type=int, required=True, help="task number, 1-based"),
    arg("--base", type=Path, required=True, help="base model folder (base_model stage)"),
    arg("--runs", type=Path, required=True, help="the chain's folder: task_XX/ folders live here"),
)
RESULTS = (arg("--results", type=Path, required=True, help="results/<profile>"), OUT)
SUMMARY = arg("--summary", type=Path, required=True, help="the continual summary folder (summary.json)")
COSTS = arg("--costs", type=Path, required=True, help="the parameter-cost folder (parameter_cost.json)")
RUNS = arg("--runs", type=Path, default=None, help="runs/<profile> (training logs of the chains)")

REPORT = "stages.report.commands"


def _trains(cfg: dict | None, kwargs: dict) -> bool:
    """train-task trains (on the GPU, in the job's numerics) unless --same-as makes it a copy."""
    return kwargs["same_as"] is None


def _trains_evaluator(cfg: dict | None, kwargs: dict) -> bool:
    return _resolve("stages.identity_evaluator:trains_evaluator")(cfg, kwargs["benchmark"])


# ----- thin adapters (the command line's own output, or a stage entry that takes other arguments)

def _print_config(cfg: dict, key: str | None) -> None:
    import yaml

    if key:
        node = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise PipelineError(f"{key}: no such parameter")
            node = node[part]
        cfg = node
    sys.stdout.write(yaml.safe_dump(cfg, sort_keys=False) if isinstance(cfg, (dict, list)) else f"{cfg}\n")


def _export(cfg: dict, **kwargs) -> None:
    from continual_diffusion.stages.export import export_main

    export_main(argparse.Namespace(**kwargs), cfg)


def _warm_serve(socket: str, parent_pid: int | None, idle_timeout: float) -> None:
    from continual_diffusion.orchestration.warm import serve

    serve(socket, main, parent_pid=parent_pid, idle_timeout=idle_timeout)


# ----- the subcommands, in the order of `cdiff --help`

COMMANDS: tuple[Command, ...] = (
    Command("config", "print the resolved, validated configuration", _print_config,
            (arg("key", nargs="?", help="dotted key to print (default: everything)"),)),
    Command("prepare-data", "sample a benchmark's task sequence into per-task folders with manifests",
            "stages.prepare_data:run_prepare_data", (BENCHMARK, OUT)),
    Command("generic-pool", "render the generic pre-training pool of a synthetic benchmark",
            "stages.prepare_data:run_generic_pool", (BENCHMARK, OUT)),
    Command("base-model", "build the base model folder (model.base: embedded | pretrain | stable_diffusion)",
            "stages.base_model:run_base_model", (OUT,), numerics=True),  # pre-trains when model.base is pretrain
    Command("pretrain-base", "pre-train the miniature on the generic pools (rebuilds the embedded base)",
            "stages.base_model:run_pretrain_base", (
                arg("--data", type=Path, help="folder with pool/<benchmark> (default: data/<profile>)"),
                arg("--compare", type=Path, help="fail unless the result is bit-identical to this base folder"),
                OUT,
            ), numerics=True),
    Command("evaluator", "train a synthetic benchmark's identity evaluator on held-out renders "
                         "(real data: check that the pretrained facenet / CLIP extractors load)",
            "stages.identity_evaluator:run_evaluator", (
                BENCHMARK,
                arg("--tasks", type=Path, required=True, help="the benchmark's task folder (with tasks.json)"),
                arg("--base", type=Path, help="base model folder whose VAE makes the round-trips "
                                              "(synthetic benchmarks with evaluator.vae_roundtrip > 0)"),
                OUT,
            ), gpu=True, numerics=_trains_evaluator),
    Command("train-task", "train one task of one method's chain (resumes from its checkpoint)",
            "stages.train:run_train_task", (
                *CHAIN,
                arg("--checkpoints", type=Path, required=True, help="where this chain keeps resumable checkpoints"),
                arg("--same-as", type=Path, metavar="RUNS",
                    help="copy the task from this other method's chain, which trains the same thing "
                         "(train.share_identical_tasks; shared_tasks.py) instead of training it"),
            ), check="stages.train:check_chain", gpu=_trains, numerics=_trains),
    Command("evaluate-task", "sample and score every concept learned up to a task",
            "stages.evaluate:run_evaluate_task", (
                *CHAIN,
                arg("--evaluator", type=Path, required=True, help="evaluator folder (evaluator stage)"),
                OUT,
            ), check="stages.train:check_chain", gpu=True, numerics=True),
    Command("export", "export a LoRA-type chain (a method with exports_diffusers, e.g. clora) for stock diffusers: "
                      "one LoRA of the summed task adapters + textual-inversion tokens",
            _export, (
                BENCHMARK,
                arg("--method", required=True,
                    help="a method of train.methods whose class sets exports_diffusers (clora, lora_sequential)"),
                arg("--seed", type=int, required=True, help="chain seed (one of seeds)"),
                arg("--task", type=int, help="export the chain after this task (default: the benchmark's last)"),
                arg("--base", type=Path, required=True, help="base model folder (base_model stage)"),
                arg("--runs", type=Path, required=True, help="the chain's folder: task_XX/ folders live here"),
                OUT,
            ), gpu=True),
    Command("summary", "plasticity / forgetting summary of every metric matrix over seeds",
            f"{REPORT}:run_summary", RESULTS),
    Command("matrices", "write every chain's metric matrices R[t, i] as CSV and JSON",
            f"{REPORT}:run_matrices", RESULTS),
    Command("param-cost", "parameters trained and stored per task by every method (N_param)",
            f"{REPORT}:run_param_cost", (
                arg("--base", type=Path, required=True, help="base model folder (its unet/ and text_encoder/ configs)"),
                OUT,
            )),
    Command("grids", "post-sequence sample grids of the report.grid_tasks concepts (PNG and PDF)",
            f"{REPORT}:run_grids", RESULTS),
    Command("tables", "paper-style tables (N_param, A and F of every metric) as Markdown, CSV, LaTeX",
            f"{REPORT}:run_tables", (SUMMARY, COSTS, OUT)),
    Command("figures", "concept curves, R heatmaps and C-LoRA's update norms / penalty (PNG)",
            f"{REPORT}:run_figures", (SUMMARY, RUNS, OUT)),
    Command("audit", "reproduced-vs-reported audit of the paper's values and claims",
            f"{REPORT}:run_audit", (
                SUMMARY, COSTS,
                arg("--reported", type=Path, default=Path("reports/reported/paper_numbers.yaml"),
                    help="the paper's values and claims (YAML)"),
                arg("--out", type=Path, required=True, help="output folder: audit.md, audit.json (atomic)"),
            )),
    Command("dvc-outputs", "metrics.json and the plot CSVs declared in dvc.yaml",
            f"{REPORT}:run_dvc_outputs", (
                SUMMARY, COSTS, RUNS,
                arg("--metrics", type=Path, required=True, help="metrics JSON file to write"),
                arg("--plots", type=Path, required=True, help="plots folder to write (atomically)"),
            )),
    Command("readme-results", "insert the generated results table into README.md (or --check it)",
            f"{REPORT}:run_readme_results", (
                arg("--readme", type=Path, default=Path("README.md")),
                arg("--tables", type=Path, required=True, help="the tables folder (tables.md)"),
                arg("--check", action="store_true", help="fail if the README's copy differs"),
                arg("--record", type=Path, help="the run's record, for the platform line "
                    "(default: reports/record/<profile>.json beside reports/<profile>/tables, when it exists)"),
            ), config=False),
    Command("dvc-yaml", "print (or --write / --check) dvc.yaml generated from the stage list",
            "orchestration.pipeline:run_dvc_yaml", (
                OneOf((arg("--write", action="store_true", help="write dvc.yaml"),
                       arg("--check", action="store_true", help="fail if dvc.yaml differs from the generated text"))),
            ), config=False),
    Command("record", "write the run's record (--write) or check a rerun against it (default)",
            "orchestration.record:run_record", (
                arg("--write", action="store_true", help="write reports/record/<profile>.json from this run"),
                arg("--lock", type=Path, default=Path("dvc.lock"), help="the dvc.lock of this run (default: dvc.lock)"),
                arg("--record", dest="reference", metavar="RECORD", type=Path,
                    help="record to check against (default: reports/record/<profile>.json)"),
                arg("--json", dest="as_json", action="store_true", help="print the check as JSON"),
                arg("--partial", action="store_true",
                    help="check a rerun of part of the pipeline (some chains, e.g. `make ci-slice`): only the "
                         "files on disk, no report stage, no dvc.lock, the numbers of the methods that ran"),
            )),
    Command("dvc-record", "record the stages Snakemake has completed into dvc.lock (dvc commit)",
            "orchestration.dvc_record:record", (
                arg("--snakemake-arg", dest="snakemake_args", metavar="SNAKEMAKE_ARG", action="append", default=[],
                    help="extra argument for the check run of snakemake"),
            )),
    Command("warm-serve", "warm worker: pre-import torch/diffusers once and fork one process per heavy "
                          "job (train-task, evaluate-task, evaluator, export) whose CDIFF_WARM names "
                          "the socket (the Snakefile starts it; see warm.py)",
            _warm_serve, (
                arg("--socket", required=True, help="Unix socket path to listen on (removed on exit)"),
                arg("--parent-pid", type=int, help="exit once this process (the Snakemake run) is gone"),
                arg("--idle-timeout", type=float, default=900.0,
                    help="exit after this many seconds without a job (default 900)"),
            ), config=False),
)


# ----- the parser and the runner (no knowledge of any command)

def _add(parser, argument: Arg | OneOf) -> list[str]:
    """Add ``argument`` to ``parser``; the dests it adds."""
    if isinstance(argument, OneOf):
        group = parser.add_mutually_exclusive_group()
        return [dest for a in argument.arguments for dest in _add(group, a)]
    return [parser.add_argument(*argument.flags, **argument.options).dest]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdiff", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help)
        for argument in COMMON if command.config else ():
            _add(p, argument)
        dests = [dest for argument in command.arguments for dest in _add(p, argument)]
        p.set_defaults(_command=command, _dests=tuple(dests))
    return parser


def _resolve(handler: str | Callable) -> Callable:
    """A handler named "module:function" (below ``continual_diffusion``): imported now, looked up by name."""
    if callable(handler):
        return handler
    module, _, name = handler.partition(":")
    return getattr(importlib.import_module(f"{PACKAGE}.{module}"), name)


def _wants(flag: Flag, cfg: dict | None, kwargs: dict) -> bool:
    return flag(cfg, kwargs) if callable(flag) else flag


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


def run(command: Command, args: argparse.Namespace) -> None:
    """Run ``command`` with its parsed ``args``: configuration, check, GPU slot, numerics, handler."""
    kwargs = {dest: getattr(args, dest) for dest in args._dests}
    cfg = _config(args) if command.config else None
    given = (cfg,) if command.config else ()
    if command.check:
        _resolve(command.check)(*given, **kwargs)
    handler = _resolve(command.handler)
    gpu, numerics = _wants(command.gpu, cfg, kwargs), _wants(command.numerics, cfg, kwargs)
    if gpu:
        # A job that runs on the GPU (runtime.device not cpu) takes one GPU of the machine for itself before
        # CUDA starts; nothing on the CPU, without GPUs, or when a scheduler set CUDA_VISIBLE_DEVICES.
        from continual_diffusion.orchestration import gpu_slots

        gpu_slots.claim(cfg)
    if numerics:
        from continual_diffusion.utils.numerics import job_numerics

        context = job_numerics(cfg)
    else:
        context = contextlib.nullcontext()
    with context:
        handler(*given, **kwargs)


def _setup_logging(path: Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers,
                        force=True)


def main(argv: list[str] | None = None) -> int:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    _setup_logging(getattr(args, "log", None))
    try:
        run(args._command, args)
    except PipelineError as exc:
        log.debug("failed", exc_info=True)
        print(f"cdiff: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cdiff: interrupted", file=sys.stderr)
        return 130
    return 0
