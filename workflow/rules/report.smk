# Stage report: matrices, summaries and figures computed from the evaluation results only (no model
# is loaded here: re-plotting never reruns compute).


rule metric_matrices:
    input:
        code=code("report"),
        results=all_tasks(RESULTS),
    output:
        directory(f"reports/{PROFILE}/matrices"),
    params:
        report=report_params(),
        config=CONFIG_ARGS,
        results=lambda w, input: str(Path(input.results[0]).parents[3]),  # results/<profile>
    log:
        f"logs/{PROFILE}/report/metric_matrices.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion matrices --results {params.results} --out {output} {params.config} --log {log}"


rule continual_summary:
    input:
        code=code("report"),
        results=all_tasks(RESULTS),
    output:
        directory(f"reports/{PROFILE}/summary"),
    params:
        report=report_params(),
        config=CONFIG_ARGS,
        results=lambda w, input: str(Path(input.results[0]).parents[3]),  # results/<profile>
    log:
        f"logs/{PROFILE}/report/continual_summary.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion summary --results {params.results} --out {output} {params.config} --log {log}"


rule sample_grids:
    input:
        code=code("report"),
        results=all_tasks(RESULTS),
        task_data=expand(f"data/{PROFILE}/tasks/{{benchmark}}", benchmark=BENCHMARKS),
    output:
        directory(f"reports/{PROFILE}/grids"),
    params:
        report=report_params(),
        grid=json.dumps(CFG["report"], sort_keys=True),
        config=CONFIG_ARGS,
        results=lambda w, input: str(Path(input.results[0]).parents[3]),  # results/<profile>
    log:
        f"logs/{PROFILE}/report/sample_grids.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion grids --results {params.results} --out {output} {params.config} --log {log}"


rule parameter_costs:
    input:
        code=code("report"),
        base=f"models/{PROFILE}/base",
    output:
        directory(f"reports/{PROFILE}/parameter_cost"),
    params:
        methods=json.dumps({m: CFG["methods"][m] for m in CFG["train"]["methods"]}, sort_keys=True),
        paper=json.dumps(CFG["profiles"].get("paper_faces", {}).get("methods", {}), sort_keys=True),
        config=CONFIG_ARGS,
    log:
        f"logs/{PROFILE}/report/parameter_costs.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion param-cost --base {input.base} --out {output} {params.config} --log {log}"


rule report:
    """Target of the DVC stage of the same name."""
    input:
        f"reports/{PROFILE}/matrices",
        f"reports/{PROFILE}/summary",
        f"reports/{PROFILE}/grids",
        f"reports/{PROFILE}/parameter_cost",
