"""Export of a LoRA-type chain: one diffusers LoRA (the summed task adapters) + textual-inversion tokens.

A smoke chain of 2 tasks per method is exported, loaded into a plain ``StableDiffusionPipeline``
(``from_pretrained(base)``, ``load_lora_weights``, ``load_textual_inversion``) and sampled with the
project sampler's seeds; the images must match the project's own sampler. The sampler folds the
products into W_base (dense fp32), diffusers applies B (A x) at run time, so the two agree to float
rounding (tolerance FLOAT_TOL on the float images, 1/255 on the uint8 ones), not bit for bit.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from continual_diffusion.core.chain import build_model, restore_chain
from continual_diffusion.core.sampling import generate, image_seed, sampling_pipeline
from continual_diffusion.methods import make_method
from continual_diffusion.models.tokens import concept_token, prompt_for
from continual_diffusion.stages.export import LORA_FILE, MANIFEST, concatenate, embedding_file, export_chain, read_chain
from continual_diffusion.stages.train import run_task
from continual_diffusion.utils import config
from continual_diffusion.utils.errors import PipelineError
from tests.model_fixtures import smoke_workspace

# chain name -> (method, extra overrides); "clora_s4": alpha 8 at rank 2, so s_t = 4 must be folded into B
CHAINS = {"clora": ("clora", []), "lora_sequential": ("lora_sequential", []),
          "clora_s4": ("clora", ["methods.clora.alpha=8"])}
SEED, PER_CONCEPT, STEPS, GUIDANCE = 0, 2, 3, 3.0
FLOAT_TOL = 1e-5  # max |difference| of the float images in [0, 1] (observed ~5e-7)


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    base = smoke_workspace(root)
    # a high LoRA lr so 4 steps move K/V visibly (the test must see a dropped adapter in the images)
    common = ["profile=smoke", "train.steps.faces=4", "train.checkpoint_every=4", "methods.clora.lr=0.05",
              "methods.lora_sequential.lr=0.05"]
    cfgs = {}
    for name, (method, extra) in CHAINS.items():
        cfgs[name] = cfg = config.load(overrides=common + extra)
        for task in (1, 2):
            run_task(cfg, "faces", method, SEED, task, root / "data", base, root / "runs" / name, root / "ckpt")
        export_chain(cfg, "faces", method, SEED, root / "runs" / name, base, root / "export" / name)
    return cfgs, root, base


def project_model(cfg, base, runs, method):
    model = build_model(base)
    plugin = make_method(method, config.method_params(cfg, "faces", method))
    plugin.prepare(model)
    restore_chain(model, plugin, runs, 2)
    plugin.prepare_inference()
    return model, plugin


def sample(pipe) -> np.ndarray:
    """Float images (N x H x W x 3 in [0, 1]) of concepts 1, 2 with the project sampler's seeds, one batch."""
    jobs = [(c, j) for c in (1, 2) for j in range(PER_CONCEPT)]
    with torch.no_grad():
        return pipe([prompt_for(concept_token(c)) for c, _ in jobs], num_inference_steps=STEPS,
                    guidance_scale=GUIDANCE, output_type="np",
                    generator=[torch.Generator().manual_seed(image_seed(SEED, c, j)) for c, j in jobs]).images


def plain_pipeline(base, export, lora_dir=None):
    """Stock diffusers only: the base folder, the exported LoRA and the exported tokens."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(base, safety_checker=None)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(lora_dir or export, weight_name=LORA_FILE)
    pipe.load_textual_inversion([str(export / embedding_file(concept_token(t))) for t in (1, 2)],
                                use_safetensors=True)
    return pipe


def test_export_folder_holds_a_diffusers_lora_tokens_and_manifest(chains):
    _, root, _ = chains
    out = root / "export" / "clora"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [LORA_FILE, MANIFEST, "learned_embeds_v1.safetensors", "learned_embeds_v2.safetensors"])
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["tasks"] == [1, 2] and manifest["tokens"] == ["<v1>", "<v2>"]
    assert manifest["rank_per_task"] == 2 and manifest["rank"] == 4 and manifest["lora_scale"] == 1.0
    assert len(manifest["load"]) == 5 and "load_lora_weights" in manifest["load"][3]
    with safe_open(str(out / LORA_FILE), framework="pt") as f:
        keys = list(f.keys())
        lora_config = json.loads(f.metadata()["lora_adapter_metadata"])
    assert keys and all(k.startswith("unet.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)
    assert lora_config["unet.r"] == lora_config["unet.lora_alpha"] == 4
    row = load_file(str(out / "learned_embeds_v2.safetensors"))
    assert list(row) == ["<v2>"] and row["<v2>"].shape[0] == 1
    assert not list(root.glob("export/.*.tmp"))  # no temporary folder left


@pytest.mark.parametrize("chain", CHAINS)
def test_exported_product_is_the_sum_of_the_task_products(chains, chain):
    cfgs, root, base = chains
    lora = load_file(str(root / "export" / chain / LORA_FILE))
    tasks = read_chain(root / "runs" / chain, 2)
    model, plugin = project_model(cfgs[chain], base, root / "runs" / chain, CHAINS[chain][0])
    assert next(iter(plugin.layers.values())).scaling["current"] == (4.0 if chain == "clora_s4" else 1.0)
    for name, layer in plugin.layers.items():
        a, b = lora[f"unet.{name}.lora_A.weight"], lora[f"unet.{name}.lora_B.weight"]
        expected = sum(layer.scaling["current"] * (t["adapters"][name][1] @ t["adapters"][name][0]) for t in tasks)
        assert torch.allclose(b @ a, expected, rtol=0, atol=1e-6)
        # ... and exactly what the sampler adds to W_base after the last task
        assert torch.allclose(b @ a, layer.base_layer.weight - plugin.past.w_init[name], rtol=0, atol=1e-6)
    assert len(lora) == 2 * len(plugin.layers)


@pytest.mark.parametrize("chain", CHAINS)
def test_plain_diffusers_pipeline_reproduces_the_project_sampler(chains, chain):
    cfgs, root, base = chains
    model, _ = project_model(cfgs[chain], base, root / "runs" / chain, CHAINS[chain][0])
    pipe = plain_pipeline(base, root / "export" / chain)
    lora_layers = [m for m in pipe.unet.modules() if getattr(m, "scaling", None)]
    assert lora_layers and all(m.scaling == {"default_0": 1.0} and m.r == {"default_0": 4} for m in lora_layers)
    for c in (1, 2):  # same token ids, same embedding rows
        prompt = prompt_for(concept_token(c))
        assert pipe.tokenizer(prompt).input_ids == model.tokenizer(prompt).input_ids
    ids = [model.tokenizer.convert_tokens_to_ids(concept_token(c)) for c in (1, 2)]
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[ids],
                       model.text_encoder.get_input_embeddings().weight[ids])
    ours, theirs = sample(sampling_pipeline(model)), sample(pipe)
    assert np.abs(ours - theirs).max() <= FLOAT_TOL
    # the sampler's uint8 images (evaluation stage): equal up to one rounding step
    project = generate(model, [1, 2], PER_CONCEPT, seed=SEED, steps=STEPS, guidance=GUIDANCE, batch_size=8)
    plain = (np.clip(theirs, 0, 1) * 255).round().astype(np.uint8)
    assert np.abs(np.concatenate([project[1], project[2]]).astype(int) - plain.astype(int)).max() <= 1


@pytest.mark.parametrize("chain, wrong", [("clora", "task 2 dropped"), ("clora_s4", "s_t not folded")])
def test_a_wrong_lora_changes_the_images(chains, tmp_path, chain, wrong):
    """The comparison can fail: an export without task 2's adapter (tokens kept), or with B_t unscaled, is far off."""
    from diffusers import StableDiffusionPipeline

    cfgs, root, base = chains
    model, _ = project_model(cfgs[chain], base, root / "runs" / chain, "clora")
    ours = sample(sampling_pipeline(model))
    tasks = read_chain(root / "runs" / chain, 2)
    state = concatenate(tasks[:1], 1.0) if wrong == "task 2 dropped" else concatenate(tasks, 1.0)
    StableDiffusionPipeline.save_lora_weights(tmp_path, unet_lora_layers=state, weight_name=LORA_FILE)
    off = np.abs(ours - sample(plain_pipeline(base, root / "export" / chain, lora_dir=tmp_path))).max()
    assert off > 100 * FLOAT_TOL, off


def test_export_after_an_earlier_task(chains, tmp_path):
    cfgs, root, base = chains
    cfg = cfgs["clora"]
    manifest = export_chain(cfg, "faces", "clora", SEED, root / "runs" / "clora", base, tmp_path / "t1", upto=1)
    assert manifest["tasks"] == [1] and manifest["rank"] == 2 and manifest["tokens"] == ["<v1>"]
    assert not (tmp_path / "t1" / "learned_embeds_v2.safetensors").exists()


def test_a_missing_adapter_file_is_a_one_line_error(chains, tmp_path):
    cfgs, root, base = chains
    cfg = cfgs["clora"]
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs" / "clora", runs)
    (runs / "task_02" / "task.safetensors").unlink()
    with pytest.raises(PipelineError, match=r"task_02/task\.safetensors: adapter file of task 2 missing") as err:
        export_chain(cfg, "faces", "clora", SEED, runs, base, tmp_path / "out")
    assert "\n" not in str(err.value)
    shutil.rmtree(runs / "task_01")  # a missing task folder names the file it needed
    with pytest.raises(PipelineError, match=r"task_01/task\.safetensors: adapter file of task 1 missing"):
        export_chain(cfg, "faces", "clora", SEED, runs, base, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    with pytest.raises(PipelineError, match="not a LoRA-type method"):
        export_chain(cfg, "faces", "textual_inversion", SEED, root / "runs" / "clora", base, tmp_path / "out")
    with pytest.raises(PipelineError, match="seed is 0, export asked for 1"):
        export_chain(cfg, "faces", "clora", 1, root / "runs" / "clora", base, tmp_path / "out")
    with pytest.raises(PipelineError, match="trained with alpha None, methods.clora.alpha is now 8"):
        export_chain(cfgs["clora_s4"], "faces", "clora", SEED, root / "runs" / "clora", base, tmp_path / "out")


def test_canonical_safetensors_sorts_the_header_and_keeps_the_tensors(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from continual_diffusion.stages.export import canonical_safetensors

    path = tmp_path / "x.safetensors"
    tensors = {"b.weight": torch.arange(6.0).reshape(2, 3), "a.weight": torch.ones(3)}
    save_file(tensors, str(path), metadata={"zeta": "1", "format": "pt", "alpha": "2"})
    canonical_safetensors(path)
    raw = path.read_bytes()
    header = raw[8:8 + int.from_bytes(raw[:8], "little")]
    assert len(header) % 8 == 0
    assert header.index(b'"alpha"') < header.index(b'"format"') < header.index(b'"zeta"')
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"zeta": "1", "format": "pt", "alpha": "2"}
        for key, value in tensors.items():
            assert torch.equal(f.get_tensor(key), value)
    once = path.read_bytes()
    canonical_safetensors(path)
    assert path.read_bytes() == once


# ----- the Stable Diffusion pointer base (paper profiles): models/<profile>/base/ holds stable_diffusion.json
# naming the model (a local folder or a hub id in the hub cache), not the model itself.
SD_RANK = 16  # the paper profiles' LoRA rank


def fake_chain(runs, unet, tasks=2, rank=SD_RANK, hidden=32):
    """Task files as a LoRA-type chain writes them (method.<module>.lora_A / lora_B, token.row), random."""
    from safetensors.torch import save_file

    from continual_diffusion.models.sd_v1_architecture import kv_shapes
    from continual_diffusion.stages.export import METHOD_PREFIX, TOKEN_KEY

    g = torch.Generator().manual_seed(0)
    for t in range(1, tasks + 1):
        state = {TOKEN_KEY: torch.randn(hidden, generator=g)}
        for name, (out, inp) in kv_shapes(unet).items():
            state[f"{METHOD_PREFIX}{name}.lora_A"] = torch.randn(rank, inp, generator=g) / inp ** 0.5
            state[f"{METHOD_PREFIX}{name}.lora_B"] = torch.randn(out, rank, generator=g) / rank
        (runs / f"task_{t:02d}").mkdir(parents=True)
        save_file(state, str(runs / f"task_{t:02d}" / "task.safetensors"))
    return runs


@pytest.fixture(scope="module")
def sd_chain(tmp_path_factory):
    """The SD v1 stand-in as a local folder and as a hub cache entry (a full snapshot), a random 2-task
    C-LoRA chain on it, and the paper_faces configuration shrunk to 2 tasks and 2 sampling steps."""
    from diffusers import UNet2DConditionModel

    from tests.paper_fixtures import sd_v1_folder

    root = tmp_path_factory.mktemp("sd_export")
    sd = sd_v1_folder(root / "sd-v1")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / "hub" / "models--someone--sd-v1-stand-in"
    shutil.copytree(sd, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    runs = fake_chain(root / "runs", UNet2DConditionModel.from_pretrained(sd, subfolder="unet"))
    cfg = config.load(overrides=["profile=paper_faces", "data.faces.n_tasks=2", "evaluation.inference_steps=2"])
    return cfg, root, sd, runs


def sd_pointer(base, model, cache_dir=None):
    from continual_diffusion.stages.base_model import MANIFEST, POINTER

    base.mkdir(parents=True)
    (base / POINTER).write_text(json.dumps({"model": str(model), "revision": "main", "cache_dir": cache_dir}))
    (base / MANIFEST).write_text("{}")
    return base


@pytest.mark.parametrize("where", ["folder", "hub"])
def test_export_on_the_stable_diffusion_pointer_loads_with_its_snippet(sd_chain, tmp_path, where):
    """The snippet of export.json, run as it stands, loads the pointed-to model (from the pointer's hub cache:
    nothing else has it) on this machine's device and applies the LoRA and the tokens."""
    from continual_diffusion.models.sd_v1_architecture import kv_shapes

    cfg, root, sd, runs = sd_chain
    if where == "folder":
        base = sd_pointer(tmp_path / "base", sd)
    else:
        base = sd_pointer(tmp_path / "base", "someone/sd-v1-stand-in", cache_dir=str(root / "hub"))
    manifest = export_chain(cfg, "faces", "clora", SEED, runs, base, tmp_path / "export")
    assert manifest["base"]["pretrained"] == (str(sd) if where == "folder" else "someone/sd-v1-stand-in")
    assert manifest["rank"] == 2 * SD_RANK and manifest["tokens"] == ["<v1>", "<v2>"]
    snippet = manifest["load"]
    assert "dtype=dtype" in snippet[2] and snippet[2].endswith(".to(device)") and "revision='main'" in snippet[2]
    assert ("cache_dir=" in snippet[2]) == (where == "hub")
    namespace: dict = {}
    exec("\n".join(snippet), namespace)  # noqa: S102 (the exported snippet itself)
    pipe = namespace["pipe"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert pipe.device.type == device and pipe.unet.dtype == (torch.bfloat16 if device == "cuda" else torch.float32)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and namespace["image"].size == (64, 64)
    tasks = read_chain(runs, 2)
    adapted = {name: m for name, m in pipe.unet.named_modules() if getattr(m, "r", None)}
    assert set(adapted) == set(kv_shapes(pipe.unet)) and len(adapted) == 32  # SD v1's 32 K/V matrices
    for name, layer in adapted.items():
        assert layer.r == {"default_0": 2 * SD_RANK} and layer.scaling == {"default_0": 1.0}
        a, b = layer.lora_A["default_0"].weight.float().cpu(), layer.lora_B["default_0"].weight.float().cpu()
        expected = sum(t["adapters"][name][1] @ t["adapters"][name][0] for t in tasks)
        assert torch.allclose(b @ a, expected, atol=1e-5 if device == "cpu" else 1e-2)
    ids = pipe.tokenizer.convert_tokens_to_ids(["<v1>", "<v2>"])
    rows = pipe.text_encoder.get_input_embeddings().weight[ids].float().cpu()
    assert torch.allclose(rows, torch.stack([t["token_row"] for t in tasks]), atol=1e-6 if device == "cpu" else 1e-2)


def test_the_miniature_snippet_stays_the_five_cpu_lines(chains):
    _, root, base = chains
    manifest = json.loads((root / "export" / "clora" / MANIFEST).read_text())
    assert manifest["base"] == {"pretrained": str(base), "revision": None, "folder": str(base),
                                "base_json_sha256": manifest["base"]["base_json_sha256"]}
    assert len(manifest["load"]) == 5 and "cuda" not in "".join(manifest["load"])
