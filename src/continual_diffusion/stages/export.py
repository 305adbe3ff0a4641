"""Export a LoRA-type chain (a method whose class says ``exports_diffusers``: ``clora``, ``lora_sequential``)
to files stock diffusers loads.

After task T the project's sampler uses, for every adapted cross-attention matrix (``attn2.to_k`` /
``attn2.to_v``; PEFT's notation, ``lora_A`` in -> r, ``lora_B`` r -> out, ``s_t`` = lora_alpha / r)

    W = W_base + sum_t s_t B_t A_t = W_base + B A,    B = [s_1 B_1 ... s_T B_T] (out x T r),
                                                       A = [A_1; ...; A_T]       (T r x in),

so the T adapters are exactly one LoRA of rank R = T r with scale 1 (``lora_alpha`` = R). The
export folder holds
  pytorch_lora_weights.safetensors  that LoRA, written by diffusers' own saver
                                    (``StableDiffusionPipeline.save_lora_weights``): keys
                                    ``unet.<module>.lora_A.weight`` / ``.lora_B.weight`` and the
                                    PEFT config (r = lora_alpha = R) in the header's metadata
  learned_embeds_v<t>.safetensors   one per concept token <v_t>: {"<v_t>": 1 x hidden}, the format
                                    ``load_textual_inversion`` reads (diffusers' own TI scripts)
  export.json                       method, benchmark, seed, tasks, tokens, ranks, file hashes and
                                    a Python snippet that loads it all into a plain pipeline (for
                                    Stable Diffusion from the pointer's hub cache, on the GPU if any)
Only safetensors are read and written. The folder is written to a temporary sibling and renamed.

Precision: with the default alpha (s = 1) the concatenation is exact; the sampler adds the
products to W_base once (dense fp32), diffusers applies B (A x) at run time (or W + B A after
``pipe.fuse_lora()``), so the two agree to float rounding (~1e-6 relative), not bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from continual_diffusion.core.sampling import SCHEDULER_CLASSES
from continual_diffusion.models.base_folder import POINTER
from continual_diffusion.utils.errors import PipelineError

log = logging.getLogger(__name__)

LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' LORA_WEIGHT_NAME_SAFE
MANIFEST = "export.json"
METHOD_PREFIX = "method."
TOKEN_KEY = "token.row"


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def canonical_safetensors(path: Path) -> None:
    """Rewrite a safetensors header with sorted keys (same tensors, same offsets).

    The safetensors writer keeps ``__metadata__`` in a hash map whose order changes from process to
    process, so two exports of the same chain differed in a few header bytes; sorted, they are
    byte-identical. Format: 8-byte little-endian header length, the JSON header (space-padded to a
    multiple of 8), then the tensor data the header's offsets point into.
    """
    import struct

    raw = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    tmp.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + length:])
    tmp.replace(path)


def embedding_file(token: str) -> str:
    """File name of a token's embedding: ``<v3>`` -> ``learned_embeds_v3.safetensors``."""
    return f"learned_embeds_{re.sub(r'[^A-Za-z0-9_-]', '', token)}.safetensors"


def lora_scale(params: dict, rank: int) -> float:
    """s = lora_alpha / r, as ``models.lora.add_kv_lora`` configures PEFT (alpha null -> rank)."""
    alpha = params.get("alpha")
    return float(alpha if alpha is not None else rank) / rank


def read_chain(runs: Path, upto: int) -> list[dict]:
    """Per task 1..upto: {"file", "adapters": {module: (A, B)}, "token_row", "config"}."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from continual_diffusion.utils.layout import TASK_FILE, task_dir

    tasks = []
    for task in range(1, upto + 1):
        path = task_dir(runs, task) / TASK_FILE
        if not path.is_file():
            raise PipelineError(f"{path}: adapter file of task {task} missing (train task {task} of this chain first)")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise PipelineError(f"{path}: cannot read the task's tensors ({exc})") from None
        if TOKEN_KEY not in tensors:
            raise PipelineError(f"{path}: no {TOKEN_KEY} (not a finished task of a chain)")
        state = {k.removeprefix(METHOD_PREFIX): v for k, v in tensors.items() if k.startswith(METHOD_PREFIX)}
        modules = sorted(k.removesuffix(".lora_A") for k in state if k.endswith(".lora_A"))
        if not modules or any(f"{m}.lora_B" not in state for m in modules):
            raise PipelineError(f"{path}: no lora_A / lora_B pairs (not a LoRA-type method's task)")
        config_path = path.parent / "config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        tasks.append({"file": path, "config": config, "token_row": tensors[TOKEN_KEY],
                      "adapters": {m: (state[f"{m}.lora_A"], state[f"{m}.lora_B"]) for m in modules}})
    return tasks


def concatenate(tasks: list[dict], scale: float) -> dict:
    """One LoRA (PEFT key layout, without the ``unet.`` prefix) equal to the sum of the task adapters."""
    import torch

    modules = sorted(tasks[0]["adapters"])
    state = {}
    for t in tasks:
        if sorted(t["adapters"]) != modules:
            raise PipelineError(f"{t['file']}: adapted modules differ from task 1's")
    for m in modules:
        a = [t["adapters"][m][0].to(torch.float32) for t in tasks]
        b = [t["adapters"][m][1].to(torch.float32) for t in tasks]
        for t, at, bt in zip(tasks, a, b):
            if at.shape[0] != bt.shape[1] or at.shape[1] != a[0].shape[1] or bt.shape[0] != b[0].shape[0]:
                raise PipelineError(f"{t['file']}: {m}: lora_A {tuple(at.shape)} / lora_B {tuple(bt.shape)} do not fit")
        state[f"{m}.lora_A.weight"] = torch.cat(a, dim=0).contiguous()  # R x in
        state[f"{m}.lora_B.weight"] = torch.cat([scale * bt for bt in b], dim=1).contiguous()  # out x R
    return state


def base_reference(base: Path) -> dict:
    """What ``StableDiffusionPipeline.from_pretrained`` needs to load the chain's base model."""
    base = Path(base)
    pointer = base / POINTER  # the paper's model, not a copy
    if pointer.is_file():
        ref = json.loads(pointer.read_text())
        return {"pretrained": ref["model"], "revision": ref.get("revision"), "cache_dir": ref.get("cache_dir"),
                "folder": str(base)}
    if not (base / "model_index.json").is_file():
        raise PipelineError(f"{base / 'model_index.json'}: base model not found (run the base_model stage)")
    manifest = base / "base.json"
    return {"pretrained": str(base), "revision": None, "folder": str(base),
            "base_json_sha256": _sha256(manifest) if manifest.is_file() else None}


def load_snippet(out: Path, base: dict, tokens: list[str], sampling: dict) -> list[str]:
    """Lines of Python that load the export into a plain pipeline and sample the last concept.

    The miniature's base (a folder): five lines, on the CPU in fp32. Stable Diffusion (``base`` from the
    pointer, which has ``cache_dir``): six, the model from the pointer's revision and hub cache, on the GPU
    in bf16 when there is one (fp32 on the CPU), as ``runtime: auto`` runs the paper profiles' jobs
    (``dtype=``: diffusers >= 0.36's name of ``torch_dtype``); the LoRA and the tokens load in its dtype.
    """
    revision = f", revision={base['revision']!r}" if base.get("revision") else ""
    files = ", ".join(f"f'{{out}}/{embedding_file(t)}'" for t in tokens)
    scheduler = SCHEDULER_CLASSES[sampling["scheduler"]]
    if "cache_dir" in base:  # Stable Diffusion through the pointer (base_reference)
        cache_dir = f", cache_dir={base['cache_dir']!r}" if base.get("cache_dir") else ""
        head = [
            f"import torch; from diffusers import {scheduler}, StableDiffusionPipeline",
            "device = 'cuda' if torch.cuda.is_available() else 'cpu'; "
            "dtype = torch.bfloat16 if device == 'cuda' else torch.float32",
            f"out = {str(out)!r}; pipe = StableDiffusionPipeline.from_pretrained({base['pretrained']!r}{revision}"
            f"{cache_dir}, dtype=dtype, safety_checker=None).to(device)",
        ]
    else:
        head = [
            f"from diffusers import {scheduler}, StableDiffusionPipeline",
            f"out = {str(out)!r}; pipe = StableDiffusionPipeline.from_pretrained({base['pretrained']!r}{revision}, "
            f"safety_checker=None)",
        ]
    return head + [
        f"pipe.scheduler = {scheduler}.from_config(pipe.scheduler.config)",
        f"pipe.load_lora_weights(out, weight_name={LORA_FILE!r}); pipe.load_textual_inversion([{files}], use_safetensors=True)",
        f"image = pipe('a photo of {tokens[-1]}', num_inference_steps={sampling['inference_steps']}, "
        f"guidance_scale={sampling['guidance_scale']}).images[0]",
    ]


def check_request(cfg: dict, benchmark: str, method: str, upto: int | None) -> int:
    """The task to export after (default: the benchmark's last), once the method exports (its class's
    ``exports_diffusers``) and the benchmark and task exist."""
    from continual_diffusion.methods import METHODS, exporting_methods

    if method not in METHODS or not METHODS[method].exports_diffusers:
        raise PipelineError(f"--method {method}: not a LoRA-type method (export supports "
                            f"{', '.join(exporting_methods(sorted(METHODS)))})")
    if benchmark not in cfg["data"]:
        raise PipelineError(f"--benchmark {benchmark}: not in data ({', '.join(sorted(cfg['data']))})")
    n_tasks = int(cfg["data"][benchmark]["n_tasks"])
    upto = n_tasks if upto is None else int(upto)
    if not 1 <= upto <= n_tasks:
        raise PipelineError(f"--task {upto}: outside 1..{n_tasks} (data.{benchmark}.n_tasks)")
    return upto


def check_chain(tasks: list[dict], asked: dict, params: dict) -> int:
    """The chain's rank per task, once every task's config.json agrees with what the export was asked for
    (``asked``: method, benchmark, seed) and was trained with the configuration's rank and alpha."""
    method = asked["method"]
    for t, info in enumerate(tasks, start=1):
        job = info["config"]
        for key, value in {**asked, "task": t}.items():
            if key in job and job[key] != value:
                raise PipelineError(f"{info['file'].parent / 'config.json'}: {key} is {job[key]!r}, export asked for {value!r}")
        trained = job.get("method_params", {})
        for key in ("rank", "alpha"):  # what fixes s_t: the sampler uses the configuration's values
            if key in trained and trained[key] != params.get(key):
                raise PipelineError(f"{info['file'].parent / 'config.json'}: trained with {key} {trained[key]!r}, "
                                    f"methods.{method}.{key} is now {params.get(key)!r} (retrain or restore it)")
    rank = int(next(iter(tasks[0]["adapters"].values()))[0].shape[0])
    if int(params["rank"]) != rank:
        raise PipelineError(f"{tasks[0]['file']}: adapter rank {rank}, but methods.{method}.rank is {params['rank']}")
    return rank


def write_files(tmp: Path, state: dict, total_rank: int, modules: list[str], tokens: list[str], tasks: list[dict]) -> None:
    """The LoRA (diffusers' own saver) and one embedding file per token into ``tmp``, headers canonical."""
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    # scale 1 stated explicitly (diffusers would infer lora_alpha = r from the shapes without it)
    metadata = {"r": total_rank, "lora_alpha": total_rank, "target_modules": modules,
                "lora_dropout": 0.0, "bias": "none"}
    StableDiffusionPipeline.save_lora_weights(tmp, unet_lora_layers=state, weight_name=LORA_FILE,
                                              safe_serialization=True, unet_lora_adapter_metadata=metadata)
    if not (tmp / LORA_FILE).is_file():
        raise PipelineError(f"{tmp / LORA_FILE}: diffusers did not write the LoRA file")
    for token, info in zip(tokens, tasks):
        row = info["token_row"].to(torch.float32).reshape(1, -1).contiguous()
        save_file({token: row}, str(tmp / embedding_file(token)), metadata={"format": "pt"})
    for path in sorted(tmp.glob("*.safetensors")):
        canonical_safetensors(path)


def export_chain(cfg: dict, benchmark: str, method: str, seed: int, runs: Path, base: Path, out: Path,
                 upto: int | None = None) -> dict:
    """Write the export of ``method``'s chain after task ``upto`` (default: the benchmark's last task).

    ``runs`` is the chain's folder (``runs/<profile>/<benchmark>/<method>/seed_<s>``, holding
    ``task_XX/task.safetensors``), ``base`` the base_model stage's folder. Returns the manifest.
    """
    from continual_diffusion.models.tokens import concept_token, prompt_for
    from continual_diffusion.utils.config import method_params
    from continual_diffusion.utils.io import atomic_directory, json_text

    upto = check_request(cfg, benchmark, method, upto)
    params = method_params(cfg, benchmark, method)
    runs, out = Path(runs), Path(out)
    base_ref = base_reference(base)

    tasks = read_chain(runs, upto)
    rank = check_chain(tasks, {"method": method, "benchmark": benchmark, "seed": seed}, params)
    scale = lora_scale(params, rank)
    state = concatenate(tasks, scale)
    total_rank = rank * len(tasks)
    modules = sorted(tasks[0]["adapters"])
    tokens = [concept_token(t) for t in range(1, upto + 1)]
    ev = cfg["evaluation"]
    sampling = {"scheduler": ev["scheduler"], "inference_steps": ev["inference_steps"],
                "guidance_scale": ev["guidance_scale"]}

    with atomic_directory(out) as tmp:
        write_files(tmp, state, total_rank, modules, tokens, tasks)
        manifest = {
            "method": method, "benchmark": benchmark, "seed": seed, "tasks": list(range(1, upto + 1)),
            "profile": cfg.get("profile"), "runs": str(runs),
            "tokens": tokens, "prompt": prompt_for("<token>"),
            "rank_per_task": rank, "rank": total_rank, "task_scale": scale, "lora_scale": 1.0,
            "adapted_modules": len(modules),
            "formula": "W = W_base + sum_t s_t B_t A_t = W_base + B A, B = [s_1 B_1 ... s_T B_T], A = [A_1; ...; A_T]",
            "base": base_ref,
            "sources": {str(i["file"]): _sha256(i["file"]) for i in tasks},
            "files": {"lora": LORA_FILE, "embeddings": {t: embedding_file(t) for t in tokens}},
            "sha256": {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()},
            "sampling": sampling,
            "load": load_snippet(out, base_ref, tokens, sampling),
        }
        (tmp / MANIFEST).write_text(json_text(manifest))
    log.info("exported %s/%s/seed_%d after task %d to %s (LoRA rank %d = %d tasks x %d)", benchmark, method, seed,
             upto, out, total_rank, len(tasks), rank)
    return manifest


def export_main(args, cfg: dict) -> dict:
    """CLI entry: ``args`` has benchmark, method, seed, task (None = last), base, runs, out."""
    return export_chain(cfg, args.benchmark, args.method, args.seed, args.runs, args.base, args.out,
                        upto=getattr(args, "task", None))
