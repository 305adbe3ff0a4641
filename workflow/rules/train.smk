# Stage train: one job per (benchmark, method, seed, task); task t reads tasks 1..t-1 of its chain
# (RUNS, earlier_tasks, chain_params, all_tasks: common.smk). A task that another method's job trains
# identically (shared_tasks.py, train.share_identical_tasks) is copied from that job's folder (--same-as).


rule train_task:
    input:
        code=method_code("train"),
        base=BASE,
        task_data=lambda w: TASK_DATA.format(benchmark=w.benchmark),
        earlier=earlier_tasks,
        same_as=shared_task,
    output:
        directory(f"{RUNS}/{cd_layout.TASK_PATTERN}"),
    params:
        chain=chain_params,
        config=CONFIG_ARGS,
        runs=lambda w: RUNS.format(**w),
        checkpoints=lambda w: CHECKPOINTS.format(**w),
        same_as=shared_task_arg,
    wildcard_constraints:
        benchmark="|".join(BENCHMARKS),
        method="|".join(CFG["train"]["methods"]),
        seed=r"\d+",
        task=r"\d\d",
    threads: CFG["torch_threads"]
    benchmark:
        f"{LOGS}/timings/train/{TASK_OF}.tsv"
    log:
        f"{LOGS}/train/{TASK_OF}.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion train-task --benchmark {wildcards.benchmark} --method {wildcards.method} "
        "--seed {wildcards.seed} --task {wildcards.task} --base {input.base} --runs {params.runs} "
        "--checkpoints {params.checkpoints} {params.same_as} {params.config} --log {log}"


rule train:
    """Target of the DVC stage of the same name."""
    input:
        all_tasks(RUNS),
