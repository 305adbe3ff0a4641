# Stage prepare_data: per benchmark, the sampled task folders; for synthetic benchmarks, also the
# generic pre-training pool.


rule sample_tasks:
    input:
        code=code("prepare_data"),
    output:
        directory(TASK_DATA),
    params:
        bench=lambda w: bench_params(w.benchmark),
        config=CONFIG_ARGS,
    benchmark:
        f"{LOGS}/timings/prepare_data/tasks_{{benchmark}}.tsv",
    log:
        f"{LOGS}/prepare_data/tasks_{{benchmark}}.log",
    wildcard_constraints:
        benchmark="|".join(BENCHMARKS),
    conda:
        ENV
    shell:
        "python -m continual_diffusion prepare-data --benchmark {wildcards.benchmark} --out {output} {params.config} --log {log}"


rule generic_pool:
    input:
        code=code("prepare_data"),
    output:
        directory(POOL),
    params:
        bench=lambda w: bench_params(w.benchmark),
        config=CONFIG_ARGS,
    benchmark:
        f"{LOGS}/timings/prepare_data/pool_{{benchmark}}.tsv",
    log:
        f"{LOGS}/prepare_data/pool_{{benchmark}}.log",
    wildcard_constraints:
        benchmark="|".join(b for b in BENCHMARKS if is_synthetic(b)) or "^$",
    conda:
        ENV
    shell:
        "python -m continual_diffusion generic-pool --benchmark {wildcards.benchmark} --out {output} {params.config} --log {log}"


rule prepare_data:
    """Target of the DVC stage of the same name."""
    input:
        expand(TASK_DATA, benchmark=BENCHMARKS),
        expand(POOL, benchmark=[b for b in BENCHMARKS if is_synthetic(b)]),
