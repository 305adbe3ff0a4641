"""Parameter cost per task of every method (the paper's N_param), from the U-Net config alone.

The U-Net is built on the meta device from its config (no weights, no memory), so the same code
gives the miniature's costs and Stable Diffusion v1.x's. Each method states what it trains and stores
per task on a U-Net (its class's ``parameter_cost``, src/continual_diffusion/methods/): e.g. LoRA / C-LoRA
sum_{K/V matrices} r (out + in), the Custom Diffusion variants sum out * in (EWC stores their Fisher too),
DreamBooth every U-Net parameter P_unet, Textual Inversion none. This module is the generic driver:
  every method             + one token embedding row (text hidden size) per concept
  N_param = 100 * (U-Net parameters trained per task) / P_unet                    (token excluded,
            as in the paper's table: SD v1.x LoRA r16 0.092%, Custom Diffusion 2.23%)
The methods come in as the registry (``methods.METHODS``, passed by the caller: metrics do not import
methods); a method with no cost formula makes the report say so instead of guessing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from continual_diffusion.models.base_folder import POINTER
from continual_diffusion.models.sd_v1_architecture import SD_V1_UNET_CONFIG, build_unet, parameter_costs
from continual_diffusion.utils.config import method_params
from continual_diffusion.utils.errors import PipelineError


def unet_from_config(config: dict):
    """A meta-device U-Net of that config (keys diffusers does not take, like ``_class_name``, dropped)."""
    return build_unet({k: v for k, v in config.items() if not k.startswith("_")}, device="meta")


CONFIGS = ("unet/config.json", "text_encoder/config.json")


def base_configs(base: Path) -> tuple[dict, dict]:
    """(U-Net config, text-encoder config) of the base_model stage's folder ``base``, read as JSON only
    (no weights): the miniature's own files, or, for the Stable Diffusion pointer (``stable_diffusion.json``),
    those of the model it names: a local diffusers folder, or a hub id resolved in the local hub cache
    (the pointer's ``revision`` and ``cache_dir``; never downloaded)."""
    pointer = base / POINTER
    if not pointer.is_file():
        paths = [base / name for name in CONFIGS]
        for path in paths:
            if not path.exists():
                raise PipelineError(f"{path}: base model config missing (run the base_model stage)")
        return tuple(json.loads(p.read_text()) for p in paths)
    ref = json.loads(pointer.read_text())
    source, revision, cache_dir = str(ref["model"]), ref.get("revision"), ref.get("cache_dir")
    folder = Path(source)
    if folder.is_dir():
        paths = [folder / name for name in CONFIGS]
        for path in paths:
            if not path.is_file():
                raise PipelineError(f"{path}: config of the Stable Diffusion folder that {pointer} names is missing")
        return tuple(json.loads(p.read_text()) for p in paths)
    if source.startswith((".", "/")) or source.count("/") != 1:  # as models/sd_v1_weights.py decides
        raise PipelineError(f"{source}: Stable Diffusion folder that {pointer} names not found")
    from huggingface_hub import hf_hub_download

    configs = []
    for name in CONFIGS:
        try:
            path = hf_hub_download(source, name, revision=revision, cache_dir=cache_dir, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 (LocalEntryNotFoundError, a bad revision, ...: all "not there")
            where = cache_dir or "the Hugging Face cache (HF_HOME)"
            raise PipelineError(f"{source}@{revision or 'main'}: {name} not found offline in {where} (the model "
                                f"{pointer} names; {type(exc).__name__})") from None
        configs.append(json.loads(Path(path).read_text()))
    return tuple(configs)


def method_cost(method, params: dict, unet, token_dim: int) -> dict:
    """Parameters trained and stored per task by ``method`` (a method class: its ``parameter_cost``) with
    ``params`` on ``unet``."""
    trained, stored = method.parameter_cost(params, unet)
    total = parameter_costs(unet, rank=1)["unet_params"]
    return {
        "unet_params": total,
        "unet_trained_per_task": trained,
        "unet_stored_per_task": stored,
        "token_params_per_task": token_dim,
        "n_param_percent": 100.0 * trained / total,
    }


def _method(methods: Mapping, name: str):
    if name not in methods:
        raise PipelineError(f"methods.{name}: no parameter-cost formula (not a registered method)")
    return methods[name]


def profile_costs(cfg: dict, base: Path, methods: Mapping) -> dict:
    """{"base": {benchmark: {method: cost}}, "sd_v1": {benchmark: {method: cost}}} for every benchmark
    of the run and every method of ``methods`` (those of ``train.methods`` first): the profile's own
    U-Net (``base``/unet/config.json) with the method's parameters for that benchmark (a rank may be
    given per benchmark, ``config.method_params``; the configs of the model a Stable Diffusion pointer
    names, ``base_configs``) and, for comparison with the paper, SD v1.x with the
    paper's parameters (the ``profiles.paper_<benchmark>`` methods over the profile's own). ``methods``: the
    method registry (``methods.METHODS``), name -> class with ``parameter_cost``."""
    unet_config, text_config = base_configs(Path(base))
    unet = unet_from_config(unet_config)
    token_dim = int(text_config["hidden_size"])
    sd_unet = build_unet(SD_V1_UNET_CONFIG, device="meta")
    names = sorted(cfg["methods"], key=lambda m: (m not in cfg["train"]["methods"], m))  # every method
    out: dict = {"base": {}, "sd_v1": {}}
    for b in cfg["benchmarks"]:
        paper_methods = cfg["profiles"].get(f"paper_{b}", {}).get("methods", {})
        paper_cfg = {"data": cfg["data"],
                     "methods": {m: {**cfg["methods"][m], **paper_methods.get(m, {})} for m in names}}
        out["base"][b] = {m: method_cost(_method(methods, m), method_params(cfg, b, m), unet, token_dim) for m in names}
        out["sd_v1"][b] = {m: method_cost(_method(methods, m), method_params(paper_cfg, b, m), sd_unet, 768)
                           for m in names}
    return out


def markdown(costs: dict, profile: str) -> str:
    lines = ["# Parameter cost per task (N_param)", "",
             "| U-Net | benchmark | method | U-Net params trained per task | stored per task | N_param (% of U-Net) "
             "| token params |",
             "|---|---|---|---|---|---|---|"]
    for where, label in (("base", f"{profile} base"), ("sd_v1", "SD v1.x (paper ranks)")):
        for b, per_method in costs[where].items():
            for m, c in per_method.items():
                lines.append(f"| {label} | {b} | {m} | {c['unet_trained_per_task']:,} | {c['unet_stored_per_task']:,} | "
                             f"{c['n_param_percent']:.4g} | {c['token_params_per_task']} |")
    lines += ["", "N_param = 100 * U-Net parameters trained per task / all U-Net parameters. LoRA / C-LoRA: sum over",
              "the cross-attention K/V matrices of r (out + in), with the benchmark's rank; Custom Diffusion",
              "variants and replay: sum of out * in over those matrices (EWC stores their Fisher too: 2x);",
              "DreamBooth: every U-Net parameter; Textual Inversion: none (the token only). Counted on the meta",
              "device from the U-Net config.", ""]
    return "\n".join(lines)
