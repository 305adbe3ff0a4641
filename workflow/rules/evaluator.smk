# Stage evaluator: the miniature's identity evaluator per synthetic benchmark (for real data, a check that
# the pretrained facenet / CLIP extractors load). Trained on held-out renders and, for a share of them,
# their round-trips through the base model's VAE (src/continual_diffusion/stages/identity_evaluator.py).


rule identity_evaluator:
    input:
        code=code("evaluator"),
        tasks=TASK_DATA,
        base=lambda w: [BASE] if is_synthetic(w.benchmark) else [],   # its VAE's round-trips
    output:
        directory(EVALUATOR),
    params:
        base=lambda w, input: f"--base {input.base}" if input.base else "",
        evaluator=lambda w: evaluator_params(w.benchmark),
        bench=lambda w: bench_params(w.benchmark),
        config=CONFIG_ARGS,
    wildcard_constraints:
        benchmark="|".join(BENCHMARKS),
    benchmark:
        f"{LOGS}/timings/evaluator/{{benchmark}}.tsv"
    log:
        f"{LOGS}/evaluator/{{benchmark}}.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion evaluator --benchmark {wildcards.benchmark} --tasks {input.tasks} "
        "{params.base} --out {output} {params.config} --log {log}"


rule evaluator:
    """Target of the DVC stage of the same name."""
    input:
        expand(EVALUATOR, benchmark=BENCHMARKS),
