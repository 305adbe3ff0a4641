# Stage evaluate: after every task of every chain, sample each concept learned so far and score it.

rule evaluate_task:
    input:
        code=method_code("evaluate"),
        base=BASE,
        evaluator=lambda w: EVALUATOR.format(benchmark=w.benchmark),
        task_data=lambda w: TASK_DATA.format(benchmark=w.benchmark),
        tasks=lambda w: [task_folder(RUNS.format(**w), t) for t in range(1, int(w.task) + 1)],
    output:
        directory(f"{RESULTS}/{cd_layout.TASK_PATTERN}"),
    params:
        evaluation=lambda w: evaluation_params(w.benchmark),
        method=lambda w: json.dumps(cd_config.method_params(CFG, w.benchmark, w.method), sort_keys=True),
        config=CONFIG_ARGS,
        runs=lambda w: RUNS.format(**w),
    wildcard_constraints:
        benchmark="|".join(BENCHMARKS),
        method="|".join(CFG["train"]["methods"]),
        seed=r"\d+",
        task=r"\d\d",
    threads: CFG["torch_threads"]
    benchmark:
        f"{LOGS}/timings/evaluate/{TASK_OF}.tsv"
    log:
        f"{LOGS}/evaluate/{TASK_OF}.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion evaluate-task --benchmark {wildcards.benchmark} --method {wildcards.method} "
        "--seed {wildcards.seed} --task {wildcards.task} --base {input.base} --runs {params.runs} "
        "--evaluator {input.evaluator} --out {output} {params.config} --log {log}"


rule evaluate:
    """Target of the DVC stage of the same name."""
    input:
        all_tasks(RESULTS),
