"""The dataset-sampling stage: one benchmark's task folders (and, for synthetic data, its generic pool)."""

from __future__ import annotations

import logging
from pathlib import Path

from continual_diffusion.data.celeba_hq import celeba_hq_records
from continual_diffusion.data.gldv2 import gldv2_records
from continual_diffusion.data.pool import write_pool
from continual_diffusion.data.sources import ConceptRecord
from continual_diffusion.data.synthetic import GENERATORS, SyntheticSource
from continual_diffusion.data.tasks import sample_tasks, write_tasks
from continual_diffusion.utils.errors import PipelineError

log = logging.getLogger(__name__)

CLASS_WORDS = {"celeba_hq": "person", "gldv2": "waterfall"}


def is_synthetic(source: str) -> bool:
    return source in GENERATORS


def synthetic_source(bench: dict) -> SyntheticSource:
    return SyntheticSource(dict(bench["source"], generator=bench["data"]["source"]), bench["data"]["resolution"])


def concept_records(bench: dict) -> tuple[list[ConceptRecord], str, dict]:
    """(records, class word, the source's parameters to record in the manifests)."""
    name, data, params = bench["data"]["source"], bench["data"], bench["source"]
    if is_synthetic(name):
        source = synthetic_source(bench)
        return source.records(), source.generator.class_word, params
    if name == "celeba_hq":
        return celeba_hq_records(params, data["non_rgb"]), CLASS_WORDS[name], params
    if name == "gldv2":
        return gldv2_records(params, data["non_rgb"]), CLASS_WORDS[name], params
    raise PipelineError(f"data.<benchmark>.source: unknown source {name!r}")


def prepare_tasks(bench: dict, benchmark: str, out: Path) -> None:
    data = bench["data"]
    key = f"data.{benchmark}"
    records, class_word, source_params = concept_records(bench)
    tasks, n_eligible = sample_tasks(records, data["n_tasks"], data["min_images"], data["max_images"], bench["seed"], key)
    sampling = {
        "seed": bench["seed"],
        "filter": {"min_images": data["min_images"], "max_images": data["max_images"]},
        "concepts_in_source": len(records),
        "eligible_concepts": n_eligible,
        "source_params": source_params,
    }
    write_tasks(out, tasks, benchmark=benchmark, source=data["source"], class_word=class_word,
                resolution=data["resolution"], sampling=sampling)
    log.info("%s: %d tasks written to %s (%d of %d concepts eligible)", benchmark, len(tasks), out, n_eligible, len(records))


def prepare_pool(bench: dict, benchmark: str, out: Path) -> None:
    name = bench["data"]["source"]
    if not is_synthetic(name):
        raise PipelineError(f"data.{benchmark}.source: {name} has no generic pool (only synthetic sources have one)")
    write_pool(out, synthetic_source(bench), benchmark)
    log.info("%s: generic pool written to %s", benchmark, out)


def run_prepare_data(cfg: dict, benchmark: str, out: Path) -> None:
    """``cdiff prepare-data``: the task folders of ``benchmark`` (one of the run's benchmarks)."""
    from continual_diffusion.utils.config import benchmark_config

    prepare_tasks(benchmark_config(cfg, benchmark), benchmark, out)


def run_generic_pool(cfg: dict, benchmark: str, out: Path) -> None:
    """``cdiff generic-pool``: the generic pre-training pool of a synthetic ``benchmark``."""
    from continual_diffusion.utils.config import benchmark_config

    prepare_pool(benchmark_config(cfg, benchmark), benchmark, out)
