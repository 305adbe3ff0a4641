# Stage base_model: the frozen model every method starts from (rule evaluator.smk: the identity evaluator).


rule base_model:
    input:
        code=code("base_model"),
        data=base_inputs,
    output:
        directory(BASE),
    params:
        model=json.dumps({**CFG["model"], "cpu_isa": CFG["cpu_isa"]}, sort_keys=True),
        config=CONFIG_ARGS,
    threads: CFG["model"]["pretrain"]["threads"]
    benchmark:
        f"{LOGS}/timings/base_model.tsv"
    log:
        f"{LOGS}/base_model.log",
    conda:
        ENV
    shell:
        "python -m continual_diffusion base-model --out {output} {params.config} --log {log}"


rule rebuild_embedded_base:
    """On demand (`snakemake rebuild_embedded_base`): pre-train the miniature again with the current
    code and params and fail unless every file is bit-identical to the committed copy (model.embedded).
    To replace the committed copy instead: `cdiff pretrain-base --out embedded/tiny_base`.
    The committed copy was pre-trained with the CPU's native kernels (before params' cpu_isa existed), so
    the rebuild runs without the ISA caps: bit-identical on a CPU of the kind it was built on."""
    input:
        code=code("base_model"),
        pools=expand(POOL, benchmark=[b for b in BENCHMARKS if is_synthetic(b)]),
    output:
        directory(str(cd_layout.rebuilt_base_dir(PROFILE))),
    params:
        config=CONFIG_ARGS,
        embedded=CFG["model"]["embedded"],
    threads: CFG["model"]["pretrain"]["threads"]
    log:
        f"{LOGS}/rebuild_embedded_base.log",
    conda:
        ENV
    shell:
        UNCAPPED + "python -m continual_diffusion pretrain-base --out {output} --compare {params.embedded} "
        "{params.config} --log {log}"
