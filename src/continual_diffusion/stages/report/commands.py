"""The report subcommands (``cdiff summary``, ``matrices``, ``param-cost``, ``grids``, ``tables``, ``figures``,
``audit``, ``dvc-outputs``, ``readme-results``): each reads the configuration and the files its output is
made from, then calls the module that writes it. Each imports its module when it runs, so a command loads
only what it needs (``grids`` and ``figures`` draw with matplotlib, ``param-cost`` builds U-Nets)."""

from __future__ import annotations

import json
from pathlib import Path

from continual_diffusion.utils import layout
from continual_diffusion.utils.errors import PipelineError


def n_tasks(cfg: dict) -> dict:
    """benchmark -> its number of tasks, for every benchmark of the run."""
    return {b: cfg["data"][b]["n_tasks"] for b in cfg["benchmarks"]}


def read_json_file(path: Path, what: str) -> dict:
    """``path``'s JSON, or a one-line error naming ``what`` is missing."""
    if not path.exists():
        raise PipelineError(f"{path}: {what} missing (run its rule first)")
    return json.loads(path.read_text())


def in_method_order(summary: dict, cfg: dict) -> dict:
    """summary.json's methods (stored with sorted keys) in the order of train.methods, then any others."""
    order = list(cfg["train"]["methods"])
    return {b: dict(sorted(methods.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order),
                                                             kv[0])))
            for b, methods in summary.items()}


def read_summary(summary: Path, cfg: dict) -> dict:
    """The continual summary (``summary``/summary.json), its methods in the order of train.methods."""
    return in_method_order(read_json_file(summary / "summary.json", "continual summary"), cfg)


def read_summary_and_costs(summary: Path, costs: Path, cfg: dict) -> tuple[dict, dict]:
    """The continual summary (``read_summary``) and the parameter costs (``costs``/parameter_cost.json)."""
    return read_summary(summary, cfg), read_json_file(costs / "parameter_cost.json", "parameter costs")


def audit_scope(cfg: dict) -> dict:
    """What the run reproduces, for the audit: the paper's setting (Stable Diffusion on the real benchmarks)
    or the offline miniature, and the run's benchmarks, methods and seeds."""
    paper = cfg["model"]["base"] == "stable_diffusion" and not any(
        cfg["data"][b]["source"].startswith("synthetic_") for b in cfg["benchmarks"])
    return {"profile": cfg["profile"], "setting": "paper" if paper else "miniature",
            "setting_text": "Stable Diffusion v1.x on the real benchmarks" if paper else
            "the offline miniature: tiny SD-structured model, synthetic concepts",
            "benchmarks": list(cfg["benchmarks"]), "methods": list(cfg["train"]["methods"]),
            "seeds": list(cfg["seeds"])}


def run_summary(cfg: dict, results: Path, out: Path) -> None:
    from continual_diffusion.stages.report.summary import summarize

    summarize(results, cfg["benchmarks"], cfg["train"]["methods"], cfg["seeds"], n_tasks(cfg), out)


def run_matrices(cfg: dict, results: Path, out: Path) -> None:
    from continual_diffusion.stages.report.matrices import write_matrices

    write_matrices(results, cfg["benchmarks"], cfg["train"]["methods"], cfg["seeds"], n_tasks(cfg), out)


def run_param_cost(cfg: dict, base: Path, out: Path) -> None:
    """parameter_cost.json and parameter_cost.md of every method (the method registry's cost formulas) on
    the base model's U-Net and on SD v1.x, written atomically to ``out``."""
    from continual_diffusion.methods import METHODS
    from continual_diffusion.metrics.param_cost import markdown, profile_costs
    from continual_diffusion.utils.io import atomic_directory, json_text

    costs = profile_costs(cfg, base, METHODS)
    with atomic_directory(out) as tmp:
        (tmp / "parameter_cost.json").write_text(json_text(costs))
        (tmp / "parameter_cost.md").write_text(markdown(costs, cfg["profile"]))


def run_grids(cfg: dict, results: Path, out: Path) -> None:
    from continual_diffusion.stages.report.grids import write_grids

    write_grids(results, layout.profile_root("data", cfg["profile"]), cfg["benchmarks"], cfg["train"]["methods"], cfg["seeds"],
                n_tasks(cfg), cfg["report"]["grid_tasks"], cfg["report"]["grid_images"], out)


def run_tables(cfg: dict, summary: Path, costs: Path, out: Path) -> None:
    from continual_diffusion.stages.report.tables import write_tables

    write_tables(*read_summary_and_costs(summary, costs, cfg), cfg["profile"], out)


def run_figures(cfg: dict, summary: Path, runs: Path | None, out: Path) -> None:
    from continual_diffusion.stages.report.figures import write_figures

    write_figures(read_summary(summary, cfg), out, runs, cfg["seeds"], n_tasks(cfg))


def run_audit(cfg: dict, summary: Path, costs: Path, reported: Path, out: Path) -> None:
    from continual_diffusion.stages.report.audit import write_audit

    write_audit(reported, *read_summary_and_costs(summary, costs, cfg), audit_scope(cfg), out)


def run_dvc_outputs(cfg: dict, summary: Path, costs: Path, runs: Path | None, metrics: Path, plots: Path) -> None:
    from continual_diffusion.stages.report.dvc_outputs import write_dvc_outputs

    write_dvc_outputs(*read_summary_and_costs(summary, costs, cfg), metrics, plots, runs, cfg["seeds"], n_tasks(cfg))


def run_readme_results(readme: Path, tables: Path, check: bool, record: Path | None) -> None:
    """Insert ``tables``/tables.md into ``readme`` (with the platform line of the run's ``record``, by default
    reports/record/<profile>.json beside reports/<profile>/tables when it exists), or ``check`` it is there."""
    from continual_diffusion.stages.report.readme import update_readme

    record = record if record is not None else Path("reports/record") / f"{tables.parent.name}.json"
    changed = update_readme(readme, tables / "tables.md", check=check, record=record if record.exists() else None)
    if check and changed:
        raise PipelineError(f"{readme}: its results section differs from {tables / 'tables.md'} "
                            "(run `cdiff readme-results` to update it)")
