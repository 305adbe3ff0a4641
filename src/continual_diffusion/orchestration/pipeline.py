"""The stage list: the one source of truth for both orchestrators.

Snakemake schedules the fine-grained jobs (one per benchmark, later one per method and task);
DVC versions the results with one stage per pipeline phase whose command is the Snakemake target
rule of the same name. ``dvc.yaml`` is generated from ``STAGES`` (``cdiff dvc-yaml``) and the
Snakefile takes each rule's code inputs from here, so the two cannot drift apart without the
agreement tests failing.

Division of labour (only one tool executes compute):
  * ``dvc repro``        -> runs ``snakemake <stage>`` for each changed stage, then records hashes.
  * ``snakemake --cores N`` -> runs the jobs, then (``onsuccess``) ``cdiff dvc-record`` commits the
    stages Snakemake considers complete into ``dvc.lock``, so a following ``dvc repro`` is a no-op.

DVC outputs may not overlap, so every stage owns its own top folder per profile. The planned chain:
  prepare_data   data/{profile}/             tasks/<benchmark>/task_XX, pool/<benchmark>
  base_model     models/{profile}/base       diffusers layout (pre-trained miniature, committed copy,
                                             or a pointer to Stable Diffusion)
  evaluator      models/{profile}/evaluator  <benchmark>/: identity classifier (synthetic benchmarks)
  train          runs/{profile}/             <benchmark>/<method>/seed_<s>/task_XX (one Snakemake job
                                             per method, seed and task, each starting from task_XX-1;
                                             killed jobs resume from checkpoints/{profile}/...)
  evaluate       results/{profile}/          <benchmark>/<method>/seed_<s>/task_XX: scores, samples
  report         reports/{profile}/          matrices/ (R per chain and metric), summary/, grids/, tables/,
                                             figures/, audit/, metrics.json + plots/ (dvc.yaml metrics, plots),
                                             export/ (LoRA-type chains for stock diffusers)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PACKAGE = "src/continual_diffusion"
SNAKEMAKE_CMD = "snakemake --cores all"


@dataclass(frozen=True)
class Stage:
    name: str  # DVC stage name == Snakemake target rule
    description: str
    rules: tuple[str, ...]  # the Snakemake job rules of this stage
    code: tuple[str, ...]  # code it depends on (files or folders, repo-relative)
    params: tuple[str, ...]  # params.yaml keys it depends on; "{profile}" is the active profile
    outs: tuple[str, ...]  # folders it produces; "{profile}" is the active profile
    deps: tuple[str, ...] = ()  # other stages' outs (or committed folders) it reads; "{profile}" as above

    def outs_for(self, profile: str) -> list[str]:
        return [o.format(profile=profile) for o in self.outs]


STAGES: tuple[Stage, ...] = (
    Stage(
        name="prepare_data",
        description="Sample each benchmark's task sequence (and render the synthetic generic pool)",
        rules=("sample_tasks", "generic_pool"),
        code=(f"{PACKAGE}/stages/prepare_data.py", f"{PACKAGE}/data", f"{PACKAGE}/utils", "workflow/rules/data.smk"),
        params=("profile", "benchmarks", "data", "sources", "profiles.{profile}"),
        outs=("data/{profile}",),
    ),
    Stage(
        name="base_model",
        description="The frozen base model (pre-trained miniature, its committed copy, or Stable Diffusion v1.x)",
        rules=("base_model", "rebuild_embedded_base"),
        code=(f"{PACKAGE}/stages/base_model.py", f"{PACKAGE}/models", f"{PACKAGE}/utils", "workflow/rules/model.smk"),
        params=("profile", "model", "cpu_isa", "profiles.{profile}"),
        outs=("models/{profile}/base",),
        deps=("data/{profile}", "embedded"),
    ),
    Stage(
        name="evaluator",
        description="Identity evaluator of each synthetic benchmark, trained on held-out renders (for real data, "
                    "a check that the pretrained facenet / CLIP extractors load)",
        rules=("identity_evaluator",),
        code=(f"{PACKAGE}/stages/identity_evaluator.py", f"{PACKAGE}/data", f"{PACKAGE}/metrics", f"{PACKAGE}/models",
              f"{PACKAGE}/utils", "workflow/rules/evaluator.smk"),
        params=("profile", "evaluator", "evaluation.metrics", "evaluation.features", "evaluation.facenet",
                "evaluation.clip", "torch_threads", "cpu_isa", "profiles.{profile}"),
        outs=("models/{profile}/evaluator",),
        deps=("data/{profile}", "models/{profile}/base"),
    ),
    Stage(
        name="train",
        description="The task chains, one job per benchmark, method, seed and task",
        rules=("train_task",),
        code=(f"{PACKAGE}/stages/train.py", f"{PACKAGE}/stages/shared_tasks.py", f"{PACKAGE}/core", f"{PACKAGE}/methods",
              f"{PACKAGE}/models", f"{PACKAGE}/data/task_images.py", f"{PACKAGE}/utils", "workflow/rules/train.smk"),
        params=("profile", "seeds", "torch_threads", "cpu_isa", "runtime", "train", "methods", "profiles.{profile}"),
        outs=("runs/{profile}",),
        deps=("data/{profile}", "models/{profile}/base"),
    ),
    Stage(
        name="evaluate",
        description="After every task, sample each learned concept and score it with every metric",
        rules=("evaluate_task",),
        code=(f"{PACKAGE}/stages/evaluate.py", f"{PACKAGE}/stages/report/grids.py", f"{PACKAGE}/core", f"{PACKAGE}/methods",
              f"{PACKAGE}/metrics", f"{PACKAGE}/models", f"{PACKAGE}/data/task_images.py", f"{PACKAGE}/utils",
              "workflow/rules/evaluate.smk"),
        params=("profile", "seeds", "torch_threads", "cpu_isa", "runtime", "evaluation", "profiles.{profile}"),
        outs=("results/{profile}",),
        deps=("data/{profile}", "runs/{profile}", "models/{profile}/base", "models/{profile}/evaluator"),
    ),
    Stage(
        name="report",
        description="Metric matrices R, plasticity and forgetting over seeds, sample grids, parameter costs, paper-style "
                    "tables, figures, the reproduced-vs-reported audit, DVC metrics and plots, diffusers export",
        rules=("metric_matrices", "continual_summary", "sample_grids", "parameter_costs", "tables", "figures", "audit",
               "dvc_outputs", "export_diffusers"),
        code=(f"{PACKAGE}/stages/report", f"{PACKAGE}/stages/export.py", f"{PACKAGE}/methods", f"{PACKAGE}/metrics",
              f"{PACKAGE}/models", f"{PACKAGE}/data/task_images.py", f"{PACKAGE}/utils", "workflow/rules/report.smk"),
        params=("profile", "seeds", "benchmarks", "data", "train.methods", "methods", "report", "profiles"),
        outs=("reports/{profile}",),
        deps=("data/{profile}", "models/{profile}/base", "runs/{profile}", "results/{profile}",
              "reports/reported/paper_numbers.yaml"),
    ),
)


# dvc.yaml's top-level metrics and plots (files of the report stage; `dvc metrics show`, `dvc plots show`).
DVC_METRICS = ("reports/${profile}/metrics.json",)
DVC_IMAGE_PLOTS = "reports/${profile}/figures/"
DVC_PLOT_TEMPLATE = "workflow/dvc_plots/by_method.json"
DVC_PLOTS = {
    "Concept 1 over the task sequence, R[t, 1]": ("reports/${profile}/plots/concept1.csv", "after_task"),
    "Just learned, R[t, t]": ("reports/${profile}/plots/just_learned.csv", "task"),
    "After the last task, R[T, i]": ("reports/${profile}/plots/final.csv", "concept"),
    "LoRA update norm and C-LoRA penalty per task": ("reports/${profile}/plots/clora_plasticity.csv", "task"),
}


def stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(name)


METHODS_DIR = f"{PACKAGE}/methods"


def code_files(name: str, root: Path = Path("."), method: str | None = None) -> list[str]:
    """The Python/Snakemake files behind a stage's code deps (Snakemake needs files, not folders).

    With ``method``, the methods package contributes only that method's own modules (its class
    hierarchy, ``methods.method_code_files``): adding or editing one method reruns only its chains.
    DVC's stage keeps the whole folder (it hands the decision to Snakemake).
    """
    files: list[str] = []
    for dep in stage(name).code:
        path = root / dep
        if method is not None and dep == METHODS_DIR:
            from continual_diffusion.methods import method_code_files

            files += method_code_files(method)
        elif path.is_dir():
            files += sorted(str(p.relative_to(root)) for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        else:
            files.append(dep)
    return files


def dvc_yaml() -> str:
    """The text of dvc.yaml (deterministic)."""
    lines = [
        "# GENERATED by `cdiff dvc-yaml --write` from src/continual_diffusion/orchestration/pipeline.py: do not edit by hand.",
        "# Each stage runs the Snakemake target rule of the same name; Snakemake schedules the jobs.",
        "stages:",
    ]
    for s in STAGES:
        if ": " in s.description or s.description.startswith(("-", "{", "[")):
            raise ValueError(f"stage {s.name}: description must be a plain YAML scalar")
        lines += [f"  {s.name}:", f"    desc: {s.description}", f"    cmd: {SNAKEMAKE_CMD} {s.name}", "    deps:"]
        lines += [f"      - {d}" for d in s.code]
        lines += [f"      - {d.format(profile='${profile}')}" for d in s.deps]
        lines += ["    params:"] + [f"      - {p.format(profile='${profile}')}" for p in s.params]
        lines += ["    outs:"]
        for o in s.outs:
            lines += [f"      - {o.format(profile='${profile}')}:", "          persist: true"]
    lines += ["metrics:"] + [f"  - {m}" for m in DVC_METRICS]
    lines += ["plots:", f"  - {DVC_IMAGE_PLOTS}"]
    for title, (path, x) in DVC_PLOTS.items():
        lines += [f"  - {title}:", f"      template: {DVC_PLOT_TEMPLATE}", f"      x: {x}", "      y:",
                  f"        {path}: value"]
    return "\n".join(lines) + "\n"


def run_dvc_yaml(write: bool = False, check: bool = False) -> None:
    """``cdiff dvc-yaml``: print dvc.yaml generated from the stage list, ``write`` it, or ``check`` that the
    committed one is up to date."""
    import sys

    from continual_diffusion.utils.errors import PipelineError
    from continual_diffusion.utils.io import write_text_atomic

    text = dvc_yaml()
    if check:
        current = Path("dvc.yaml").read_text() if Path("dvc.yaml").exists() else ""
        if current != text:
            raise PipelineError("dvc.yaml: out of date with src/continual_diffusion/orchestration/pipeline.py "
                                "(run `cdiff dvc-yaml --write`)")
        return
    if write:
        write_text_atomic(Path("dvc.yaml"), text)
    else:
        sys.stdout.write(text)
