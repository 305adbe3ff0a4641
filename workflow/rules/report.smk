# Stage report: matrices, summaries and figures computed from the evaluation results only (no model
# is loaded here: re-plotting never reruns compute).


EXPORT_METHODS = cd_methods.exporting_methods(CFG["train"]["methods"])  # LoRA-type: the class's exports_diffusers


rule metric_matrices:
    input:
        code=code("report"),
        results=all_tasks(RESULTS),
    output:
        directory(f"{REPORTS}/matrices"),
    params:
        report=report_params(),
        config=CONFIG_ARGS,
        results=lambda w, input: str(Path(input.results[0]).parents[3]),  # results/<profile>
    benchmark:
        f"{LOGS}/timings/report/metric_matrices.tsv",
    log:
        f"{LOGS}/report/metric_matrices.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion matrices --results {params.results} --out {output} {params.config} --log {log}"


rule continual_summary:
    input:
        code=code("report"),
        results=all_tasks(RESULTS),
    output:
        directory(f"{REPORTS}/summary"),
    params:
        report=report_params(),
        config=CONFIG_ARGS,
        results=lambda w, input: str(Path(input.results[0]).parents[3]),  # results/<profile>
    benchmark:
        f"{LOGS}/timings/report/continual_summary.tsv",
    log:
        f"{LOGS}/report/continual_summary.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion summary --results {params.results} --out {output} {params.config} --log {log}"


rule sample_grids:
    input:
        code=code("report"),
        results=all_tasks(RESULTS),
        task_data=expand(TASK_DATA, benchmark=BENCHMARKS),
    output:
        report(directory(f"{REPORTS}/grids"), patterns=["{name}.png"], caption="../report/grids.rst",
               category="Figures", subcategory="Samples after the last task"),
    params:
        report=report_params(),
        grid=json.dumps(CFG["report"], sort_keys=True),
        config=CONFIG_ARGS,
        results=lambda w, input: str(Path(input.results[0]).parents[3]),  # results/<profile>
    benchmark:
        f"{LOGS}/timings/report/sample_grids.tsv",
    log:
        f"{LOGS}/report/sample_grids.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion grids --results {params.results} --out {output} {params.config} --log {log}"


rule parameter_costs:
    input:
        code=code("report"),
        base=BASE,
    output:
        directory(f"{REPORTS}/parameter_cost"),
    params:
        methods=json.dumps({m: CFG["methods"][m] for m in CFG["train"]["methods"]}, sort_keys=True),
        paper=json.dumps(CFG["profiles"].get("paper_faces", {}).get("methods", {}), sort_keys=True),
        config=CONFIG_ARGS,
    benchmark:
        f"{LOGS}/timings/report/parameter_costs.tsv",
    log:
        f"{LOGS}/report/parameter_costs.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion param-cost --base {input.base} --out {output} {params.config} --log {log}"


rule tables:
    input:
        code=code("report"),
        summary=f"{REPORTS}/summary",
        costs=f"{REPORTS}/parameter_cost",
    output:
        report(directory(f"{REPORTS}/tables"), patterns=["{name}.csv"], caption="../report/tables.rst",
               category="Tables"),
    params:
        report=report_params(),
        config=CONFIG_ARGS,
    benchmark:
        f"{LOGS}/timings/report/tables.tsv",
    log:
        f"{LOGS}/report/tables.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion tables --summary {input.summary} --costs {input.costs} --out {output} "
        "{params.config} --log {log}"


rule figures:
    input:
        code=code("report"),
        summary=f"{REPORTS}/summary",
        runs=all_tasks(RUNS),
    output:
        report(directory(f"{REPORTS}/figures"), patterns=["{name}.png"], caption="../report/figures.rst",
               category="Figures", subcategory="Curves, matrices, C-LoRA updates"),
    params:
        report=report_params(),
        config=CONFIG_ARGS,
        runs=lambda w, input: str(Path(input.runs[0]).parents[3]),  # runs/<profile>
    benchmark:
        f"{LOGS}/timings/report/figures.tsv",
    log:
        f"{LOGS}/report/figures.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion figures --summary {input.summary} --runs {params.runs} --out {output} "
        "{params.config} --log {log}"


rule audit:
    input:
        code=code("report"),
        summary=f"{REPORTS}/summary",
        costs=f"{REPORTS}/parameter_cost",
        reported="reports/reported/paper_numbers.yaml",
    output:
        report(directory(f"{REPORTS}/audit"), patterns=["{name}.md"], caption="../report/audit.rst",
               category="Audit"),
    params:
        report=report_params(),
        config=CONFIG_ARGS,
    benchmark:
        f"{LOGS}/timings/report/audit.tsv",
    log:
        f"{LOGS}/report/audit.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion audit --summary {input.summary} --costs {input.costs} "
        "--reported {input.reported} --out {output} {params.config} --log {log}"


rule dvc_outputs:
    """metrics.json and plots/*.csv: the files dvc.yaml's top-level metrics and plots point to."""
    input:
        code=code("report"),
        summary=f"{REPORTS}/summary",
        costs=f"{REPORTS}/parameter_cost",
        runs=all_tasks(RUNS),
    output:
        metrics=f"{REPORTS}/metrics.json",
        plots=directory(f"{REPORTS}/plots"),
    params:
        report=report_params(),
        config=CONFIG_ARGS,
        runs=lambda w, input: str(Path(input.runs[0]).parents[3]),  # runs/<profile>
    benchmark:
        f"{LOGS}/timings/report/dvc_outputs.tsv",
    log:
        f"{LOGS}/report/dvc_outputs.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion dvc-outputs --summary {input.summary} --costs {input.costs} "
        "--runs {params.runs} --metrics {output.metrics} --plots {output.plots} {params.config} --log {log}"


rule export_diffusers:
    """After the sequence: a LoRA-type chain as one LoRA + textual-inversion tokens for stock diffusers."""
    input:
        code=code("report"),
        base=BASE,
        runs=lambda w: [task_folder(RUNS.format(benchmark=w.benchmark, method=w.method, seed=w.seed), t)
                        for t in range(1, CFG["data"][w.benchmark]["n_tasks"] + 1)],
    output:
        directory(f"{REPORTS}/export/{cd_layout.CHAIN_PATTERN}"),
    wildcard_constraints:
        method="|".join(EXPORT_METHODS) or "no-lora-method",
    params:
        config=CONFIG_ARGS,
        runs=lambda w, input: str(Path(input.runs[0]).parent),  # the chain's folder
    benchmark:
        f"{LOGS}/timings/report/export_{{benchmark}}_{{method}}_seed_{{seed}}.tsv",
    log:
        f"{LOGS}/report/export_{{benchmark}}_{{method}}_seed_{{seed}}.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion export --benchmark {wildcards.benchmark} --method {wildcards.method} "
        "--seed {wildcards.seed} --base {input.base} --runs {params.runs} --out {output} {params.config} --log {log}"


rule report:
    """Target of the DVC stage of the same name."""
    input:
        f"{REPORTS}/matrices",
        f"{REPORTS}/summary",
        f"{REPORTS}/grids",
        f"{REPORTS}/parameter_cost",
        f"{REPORTS}/tables",
        f"{REPORTS}/figures",
        f"{REPORTS}/audit",
        f"{REPORTS}/metrics.json",
        expand(f"{REPORTS}/export/{cd_layout.CHAIN_PATTERN}", benchmark=BENCHMARKS,
               method=EXPORT_METHODS, seed=CFG["seeds"]),
