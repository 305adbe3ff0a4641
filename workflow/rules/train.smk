# Stage train: one job per (benchmark, method, seed, task); task t reads tasks 1..t-1 of its chain
# (RUNS, earlier_tasks, chain_params, all_tasks: common.smk). A task that another method's job trains
# identically (shared_tasks.py, train.share_identical_tasks) is copied from that job's folder (--same-as).


rule train_task:
    input:
        code=method_code("train"),
        base=f"models/{PROFILE}/base",
        task_data=lambda w: f"data/{PROFILE}/tasks/{w.benchmark}",
        earlier=earlier_tasks,
        same_as=shared_task,
    output:
        directory(f"{RUNS}/task_{{task}}"),
    params:
        chain=chain_params,
        config=CONFIG_ARGS,
        runs=lambda w: RUNS.format(**w),
        checkpoints=lambda w: f"checkpoints/{PROFILE}/{w.benchmark}/{w.method}/seed_{w.seed}",
        same_as=shared_task_arg,
    wildcard_constraints:
        benchmark="|".join(BENCHMARKS),
        method="|".join(CFG["train"]["methods"]),
        seed=r"\d+",
        task=r"\d\d",
    threads: CFG["torch_threads"]
    benchmark:
        f"logs/{PROFILE}/timings/train/{{benchmark}}/{{method}}/seed_{{seed}}/task_{{task}}.tsv"
    log:
        f"logs/{PROFILE}/train/{{benchmark}}/{{method}}/seed_{{seed}}/task_{{task}}.log",
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
