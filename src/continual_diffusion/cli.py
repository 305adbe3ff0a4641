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

from .errors import PipelineError

log = logging.getLogger("continual_diffusion")

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, action="append", help="params file(s), merged in order (default: params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter after the profile overlay, e.g. --set profile=smoke")
    parser.add_argument("--log", type=Path, help="also write the log to this file")


def _config(args: argparse.Namespace) -> dict:
    from . import config

    return config.load(args.params or [Path("params.yaml")], args.overrides)


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
    from .config import benchmark_config
    from .data.prepare import prepare_tasks

    prepare_tasks(benchmark_config(_config(args), args.benchmark), args.benchmark, args.out)


def cmd_generic_pool(args: argparse.Namespace) -> None:
    from .config import benchmark_config
    from .data.prepare import prepare_pool

    prepare_pool(benchmark_config(_config(args), args.benchmark), args.benchmark, args.out)


def cmd_dvc_yaml(args: argparse.Namespace) -> None:
    from .io_utils import write_text_atomic
    from .pipeline import dvc_yaml

    text = dvc_yaml()
    if args.check:
        current = Path("dvc.yaml").read_text() if Path("dvc.yaml").exists() else ""
        if current != text:
            raise PipelineError("dvc.yaml: out of date with src/continual_diffusion/pipeline.py (run `cdiff dvc-yaml --write`)")
        return
    if args.write:
        write_text_atomic(Path("dvc.yaml"), text)
    else:
        sys.stdout.write(text)


def cmd_dvc_record(args: argparse.Namespace) -> None:
    from .dvc_record import record

    record(_config(args), snakemake_args=args.snakemake_arg)


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

    p = sub.add_parser("dvc-yaml", help="print (or --write / --check) dvc.yaml generated from the stage list")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write dvc.yaml")
    mode.add_argument("--check", action="store_true", help="fail if dvc.yaml differs from the generated text")
    p.set_defaults(func=cmd_dvc_yaml)

    p = sub.add_parser("dvc-record", help="record the stages Snakemake has completed into dvc.lock (dvc commit)")
    _common(p)
    p.add_argument("--snakemake-arg", action="append", default=[], help="extra argument for the check run of snakemake")
    p.set_defaults(func=cmd_dvc_record)
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
