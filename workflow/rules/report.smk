# Stage report: summaries computed from the evaluation results only (no model is loaded here).


rule continual_summary:
    input:
        code=code("report"),
        results=all_tasks(RESULTS),
    output:
        directory(f"reports/{PROFILE}/identity"),
    params:
        summary=json.dumps({"seeds": CFG["seeds"], "methods": CFG["train"]["methods"]}, sort_keys=True),
        config=CONFIG_ARGS,
        results=lambda w, input: str(Path(input.results[0]).parents[3]),  # results/<profile>
    log:
        f"logs/{PROFILE}/report/continual_summary.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion summary --results {params.results} --out {output} {params.config} --log {log}"


rule report:
    """Target of the DVC stage of the same name."""
    input:
        f"reports/{PROFILE}/identity",
