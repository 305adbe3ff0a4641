# The Continual Diffusion pipeline. Thin by design: configuration, shared helpers and one file of
# rules per stage under workflow/rules/. The stage list lives in src/continual_diffusion/pipeline.py
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


rule all:
    default_target: True
    input:
        rules.prepare_data.input,
        rules.report.input,


onsuccess:
    record_in_dvc()
