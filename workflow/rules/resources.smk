# What each model job asks the scheduler for: gpu (GPUs), mem_mb (host memory, MB), runtime (minutes), from
# params.yaml's `resources` section (config.job_resources; docs/gpu_and_cluster.md). Locally they limit nothing
# unless given as totals (`snakemake --resources gpu=N`); the SLURM profile turns them into sbatch requests.
#
# Included last by the Snakefile: it sets the resources of the rules that the stage files define, instead of a
# `resources:` block in each. Those files are code dependencies of their stages (pipeline.py: DVC deps and
# Snakemake inputs), so an edit there reruns every job of the stage, while resources change no result; this
# file is no stage's dependency, and no rule's params read `resources`.
# Precedence as for a rule's own resources: --set-resources (command line or Snakemake profile) wins over
# these values, and these win over --default-resources.


def _chain_resource(rule_name, key):
    """Input function: one resource of a chain's job, its method's value first (resources.<rule>.methods)."""
    return lambda wildcards: cd_config.job_resources(CFG, rule_name, wildcards.method)[key]


def _set_job_resources():
    chosen_by_user = workflow.resource_settings.overwrite_resources  # --set-resources RULE:KEY=VALUE
    for name in cd_config.RESOURCE_RULES:
        values = cd_config.job_resources(CFG, name)
        if name in ("train_task", "evaluate_task"):
            values = {key: _chain_resource(name, key) for key in values}
        workflow.get_rule(name).resources.update(
            {key: value for key, value in values.items() if key not in chosen_by_user.get(name, {})})


_set_job_resources()
