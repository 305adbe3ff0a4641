# The Continual Diffusion pipeline. Thin by design: configuration, shared helpers and one file of
# rules per stage under workflow/rules/. The stage list lives in src/continual_diffusion/orchestration/pipeline.py
# (dvc.yaml is generated from it). Run:  snakemake --cores all   (or: dvc repro)
from snakemake.utils import min_version

min_version("9.0")

configfile: "params.yaml"

report: "workflow/report/workflow.rst"

include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/evaluator.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/resources.smk"  # gpu / mem_mb / runtime of the model rules (params' resources)


# Every DVC stage's outputs are targets, not only the reports: a deleted task folder (or base model,
# evaluator) is then a missing target that a plain run rebuilds, with the reports that read it, just as
# `dvc status` reports the stage changed. Were only the reports requested, their existing outputs would
# hide the missing inputs ("Nothing to be done").
rule all:
    default_target: True
    input:
        rules.prepare_data.input,
        rules.base_model.output,
        rules.evaluator.input,
        rules.train.input,
        rules.evaluate.input,
        rules.report.input,


onstart:
    start_warm_worker()  # common.smk: the warm worker for the heavy jobs (CDIFF_WARM=0: none)


onsuccess:
    end_rescheduling_timers()  # snakemake_timers.py: exit with the last job, not a timespan after it
    stop_warm_worker()
    record_in_dvc()


onerror:
    end_rescheduling_timers()
    stop_warm_worker()
