"""The runtime setting: resolution on this machine, the CPU path unchanged, and bf16 mixed precision.

bf16 autocast also runs on the CPU, so the mixed-precision code path (autocast forward passes, fp32
weights and optimizer state, the VAE decoding outside autocast) is exercised here without a GPU; the
device moves themselves are covered by the GPU twin of the paper-path test (tests/test_e2e_paper.py).
"""

import dataclasses

import numpy as np
import pytest
import torch

from continual_diffusion.core.sampling import generate
from continual_diffusion.core.training import TrainConfig, diffusion_loss, prompt_ids, task_generator, train_task
from continual_diffusion.methods import make_method
from continual_diffusion.models.tokens import add_concept_token, concept_token, prompt_for
from continual_diffusion.utils import config
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.runtime import CPU_FP32, Runtime, resolve
from tests.model_fixtures import task_latents, tiny_model

CPU_BF16 = Runtime(torch.device("cpu"), "bf16")  # not reachable through params (resolve refuses it): tests only
NO_GPU = not torch.cuda.is_available()


def test_the_default_profiles_run_on_the_cpu_in_fp32_and_the_paper_profiles_pick_the_gpu():
    assert resolve(config.load()["runtime"]) == CPU_FP32
    assert resolve(config.load(overrides=["profile=smoke"])["runtime"]) == CPU_FP32
    paper = config.load(overrides=["profile=paper_faces"])["runtime"]
    assert paper == {"device": "auto", "dtype": "auto"}
    expected = Runtime(torch.device("cuda"), "bf16") if not NO_GPU else CPU_FP32
    assert resolve(paper) == expected
    assert resolve(None) == CPU_FP32


@pytest.mark.parametrize("settings, key", [
    ({"device": "tpu"}, "runtime.device"),
    ({"dtype": "fp16"}, "runtime.dtype"),
    ({"device": "cpu", "dtype": "bf16"}, "runtime.dtype"),
])
def test_a_bad_runtime_value_fails_with_its_key(settings, key):
    with pytest.raises(PipelineError, match=key):
        resolve(settings)


@pytest.mark.skipif(not NO_GPU, reason="a GPU is visible")
def test_cuda_without_a_gpu_fails_fast_naming_the_setting():
    with pytest.raises(PipelineError, match="runtime.device: cuda, but torch sees no CUDA device"):
        resolve({"device": "cuda"})


def test_the_cpu_in_fp32_records_nothing_and_other_runtimes_record_themselves():
    assert CPU_FP32.record() is None
    assert CPU_BF16.record() == {"device": "cpu", "dtype": "bf16", "gpu": None}


def test_the_schema_rejects_an_unknown_runtime_key():
    with pytest.raises(PipelineError, match="runtime"):
        config.load(overrides=["runtime.device=gpu"])


def _loss(model, z0, seed=0):
    ids = prompt_ids(model.tokenizer, ["a photo of a person"]).expand(z0.shape[0], -1)
    with torch.no_grad():
        return diffusion_loss(model, z0, ids, task_generator(seed, 1))


def test_bf16_autocast_changes_the_forward_pass_but_not_the_random_draws(tmp_path):
    model = tiny_model(tmp_path)
    z0 = task_latents(model, 1)[:2]
    fp32 = _loss(model, z0)
    assert torch.equal(fp32, _loss(model, z0))  # the CPU path is deterministic
    bf16 = _loss(dataclasses.replace(model, runtime=CPU_BF16), z0)
    assert bf16.dtype == torch.float32  # the loss itself in fp32
    assert not torch.equal(fp32, bf16)  # autocast really ran the networks in bf16
    assert abs(float(fp32) - float(bf16)) < 0.05 * float(fp32)  # ... on the same noise and timesteps


@pytest.mark.parametrize("method_name, params", [
    ("clora", {"rank": 2, "alpha": 2, "lr": 1e-2, "penalty_weight": 1.0, "penalty_reduction": "sum"}),
    ("custom_diffusion_seq", {"lr": 1e-3}),
])
def test_under_bf16_every_trained_tensor_and_optimizer_state_stays_fp32_and_learns(tmp_path, method_name, params):
    model = dataclasses.replace(tiny_model(tmp_path), runtime=CPU_BF16)
    method = make_method(method_name, params)
    method.prepare(model)
    before = {n: p.detach().clone() for n, p in model.unet.named_parameters()}
    for task in (1, 2):  # task 2: C-LoRA folds task 1 into the base K/V weights and applies its penalty
        token_id = add_concept_token(model.tokenizer, model.text_encoder, concept_token(task),
                                     torch.Generator().manual_seed(task))
        log = train_task(model, method, task, token_id, prompt_for(concept_token(task)), task_latents(model, task),
                         TrainConfig(steps=4, batch_size=2, token_lr=1e-2, seed=0, checkpoint_every=2),
                         tmp_path / f"w{task}")
        state = method.end_task(task)
        assert all(np.isfinite(e["loss"]) for e in log)
        assert all(v.dtype == torch.float32 for v in state.values())
    assert all(p.dtype == torch.float32 for p in model.unet.parameters())
    assert all(p.dtype == torch.float32 for p in model.text_encoder.parameters())
    moved = [n for n, p in model.unet.named_parameters() if not torch.equal(p, before.get(n, p))]
    assert moved and all("attn2.to_k" in n or "attn2.to_v" in n for n in moved)


def test_bf16_sampling_decodes_in_fp32_to_valid_images(tmp_path):
    model = tiny_model(tmp_path)
    add_concept_token(model.tokenizer, model.text_encoder, concept_token(1), torch.Generator().manual_seed(1))
    kwargs = dict(concepts=[1], per_concept=2, seed=0, steps=2, guidance=3.0, batch_size=2)
    fp32 = generate(model, **kwargs)[1]
    bf16 = generate(dataclasses.replace(model, runtime=CPU_BF16), **kwargs)[1]
    assert fp32.shape == bf16.shape == (2, 16, 16, 3) and bf16.dtype == np.uint8
    assert np.array_equal(fp32, generate(model, **kwargs)[1])  # fp32: as before, deterministic
    assert not np.array_equal(fp32, bf16)
    assert np.abs(fp32.astype(int) - bf16.astype(int)).mean() < 16  # the same images up to bf16 rounding


def test_a_job_records_a_runtime_other_than_the_cpu_in_fp32_in_its_config(tmp_path, monkeypatch):
    from continual_diffusion.stages import train as chain
    from tests.model_fixtures import saved_base

    base = saved_base(tmp_path / "base")
    cfg = config.load(overrides=["profile=smoke"])
    assert "runtime" not in chain.job_config(cfg, "faces", "clora", 0, 1, base)  # the miniature's config.json as before
    monkeypatch.setattr(chain, "resolve", lambda settings: CPU_BF16)
    assert chain.job_config(cfg, "faces", "clora", 0, 1, base)["runtime"] == {"device": "cpu", "dtype": "bf16", "gpu": None}
