"""The per-task chain as the train stage runs it: task folders, restoring earlier tasks, sampling."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from continual_diffusion.core.chain import build_model, restore_chain
from continual_diffusion.core.sampling import generate
from continual_diffusion.methods import make_method
from continual_diffusion.stages.train import run_task
from continual_diffusion.utils import config
from continual_diffusion.utils.errors import PipelineError
from tests.model_fixtures import smoke_workspace, write_task


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    base = smoke_workspace(root)
    cfg = config.load(overrides=["profile=smoke", "train.steps.faces=4", "train.checkpoint_every=2"])
    for task in (1, 2):
        run_task(cfg, "faces", "clora", 0, task, root / "data", base, root / "runs", root / "ckpt")
    return cfg, root, base


def test_task_folders_hold_adapters_token_config_and_log(chain):
    cfg, root, _ = chain
    folder = root / "runs" / "task_02"
    tensors = load_file(str(folder / "task.safetensors"))
    assert "token.row" in tensors and any(k.endswith(".lora_A") for k in tensors)
    assert all(k.startswith(("method.", "token.")) for k in tensors)
    log = json.loads((folder / "log.json").read_text())
    assert len(log) == 4 and {"loss", "diffusion", "forget", "forget_raw"} <= set(log[0])
    job = json.loads((folder / "config.json").read_text())
    assert job["method"] == "clora" and job["task"] == 2 and job["prompt"] == "a photo of <v2>"
    assert not (root / "ckpt" / "task_02").exists()  # the checkpoint goes once the task is written


def test_restoring_the_chain_reproduces_the_trained_weights(chain):
    cfg, root, base = chain
    model = build_model(base)
    method = make_method("clora", config.method_params(cfg, "faces", "clora"))
    method.prepare(model)
    token_ids = restore_chain(model, method, root / "runs", 2)
    method.prepare_inference()
    saved = [load_file(str(root / "runs" / f"task_{t:02d}" / "task.safetensors")) for t in (1, 2)]
    emb = model.text_encoder.get_input_embeddings().weight
    for token_id, tensors in zip(token_ids, saved):
        assert torch.equal(emb[token_id], tensors["token.row"])
    for name, layer in method.layers.items():
        expected = method.past.w_init[name].clone()
        for tensors in saved:
            a, b = tensors[f"method.{name}.lora_A"], tensors[f"method.{name}.lora_B"]
            expected += layer.scaling["current"] * (b @ a)
        assert torch.allclose(layer.base_layer.weight, expected, atol=1e-6)
        assert not torch.any(layer.lora_B["current"].weight)


def test_a_missing_earlier_task_is_a_clear_error(chain, tmp_path):
    cfg, root, base = chain
    write_task(tmp_path / "data" / "tasks" / "faces" / "task_02", seed=2)
    with pytest.raises(PipelineError, match="task_01/task.safetensors: earlier task missing"):
        run_task(cfg, "faces", "clora", 0, 2, tmp_path / "data", base, tmp_path / "runs", tmp_path / "ckpt")


def test_each_sample_depends_only_on_its_own_seed(chain):
    cfg, root, base = chain
    model = build_model(base)
    method = make_method("clora", config.method_params(cfg, "faces", "clora"))
    method.prepare(model)
    restore_chain(model, method, root / "runs", 2)
    method.prepare_inference()
    together = generate(model, [1, 2], 2, seed=0, steps=2, guidance=3.0, batch_size=4)
    alone = generate(model, [2], 2, seed=0, steps=2, guidance=3.0, batch_size=1)
    assert together[2].shape == (2, 16, 16, 3) and together[2].dtype == np.uint8
    # batched vs one by one: same noise per image, equal up to float summation order
    assert np.abs(together[2].astype(int) - alone[2].astype(int)).max() <= 2
    again = generate(model, [1, 2], 2, seed=0, steps=2, guidance=3.0, batch_size=4)
    assert all(np.array_equal(together[c], again[c]) for c in (1, 2))


def killed_at(train_task, at: int):
    """``train_task`` that raises KeyboardInterrupt after step ``at`` (a killed job)."""
    def run(*args, **kwargs):
        def on_step(step):
            if step == at:
                raise KeyboardInterrupt

        return train_task(*args, **kwargs, on_step=on_step)

    return run


def test_a_killed_task_job_resumes_to_identical_bytes(chain, tmp_path, monkeypatch):
    import continual_diffusion.stages.train as chain_module

    cfg, root, base = chain
    write_task(tmp_path / "data" / "tasks" / "faces" / "task_01", seed=1)
    real = chain_module.train_task
    killed_at_step_3 = killed_at(real, 3)

    monkeypatch.setattr(chain_module, "train_task", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_task(cfg, "faces", "clora", 0, 1, tmp_path / "data", base, tmp_path / "runs", tmp_path / "ckpt")
    assert not (tmp_path / "runs" / "task_01").exists()  # nothing half-written
    assert (tmp_path / "ckpt" / "task_01" / "checkpoint" / "progress.json").exists()  # step 2 checkpoint
    monkeypatch.setattr(chain_module, "train_task", real)
    run_task(cfg, "faces", "clora", 0, 1, tmp_path / "data", base, tmp_path / "runs", tmp_path / "ckpt")
    for name in ("task.safetensors", "log.json", "metrics.json"):
        assert (tmp_path / "runs" / "task_01" / name).read_bytes() == (root / "runs" / "task_01" / name).read_bytes(), name


def test_a_checkpoint_of_other_settings_is_discarded_not_resumed(chain, tmp_path, monkeypatch):
    import copy

    import continual_diffusion.stages.train as chain_module

    cfg, root, base = chain
    write_task(tmp_path / "data" / "tasks" / "faces" / "task_01", seed=1)
    real = chain_module.train_task
    killed_at_step_3 = killed_at(real, 3)

    edited = copy.deepcopy(cfg)
    edited["methods"]["clora"]["lr"] = cfg["methods"]["clora"]["lr"] * 10  # params edited after the kill
    monkeypatch.setattr(chain_module, "train_task", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_task(cfg, "faces", "clora", 0, 1, tmp_path / "data", base, tmp_path / "runs", tmp_path / "ckpt")
    monkeypatch.setattr(chain_module, "train_task", real)
    run_task(edited, "faces", "clora", 0, 1, tmp_path / "data", base, tmp_path / "runs", tmp_path / "ckpt")
    run_task(edited, "faces", "clora", 0, 1, tmp_path / "data", base, tmp_path / "fresh", tmp_path / "ckpt2")
    for name in ("task.safetensors", "log.json"):
        assert (tmp_path / "runs" / "task_01" / name).read_bytes() == (tmp_path / "fresh" / "task_01" / name).read_bytes(), name
    job = json.loads((tmp_path / "runs" / "task_01" / "config.json").read_text())
    assert job["method_params"]["lr"] == edited["methods"]["clora"]["lr"]
