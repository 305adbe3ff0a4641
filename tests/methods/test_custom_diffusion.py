"""Custom Diffusion sequential / offline / merge: what trains, where a task starts, the merge constraint."""

import json

import pytest
import torch

from continual_diffusion.core.training import encode_latents, prompt_ids, train_task
from continual_diffusion.data.task_images import load_task_images
from continual_diffusion.methods import MethodEnv, make_method
from continual_diffusion.methods.custom_diffusion import kv_linears, real_concept_set, token_features
from continual_diffusion.models.tokens import add_concept_token, concept_token, prompt_for, set_concept_token
from continual_diffusion.utils.errors import PipelineError
from tests.methods.helpers import CFG, changed, snapshot, train_tasks
from tests.model_fixtures import CAPTIONS, task_latents, tiny_model, write_task

PARAMS = {"lr": 1e-2}


def test_sequential_trains_only_the_kv_weights_and_the_token(tmp_path):
    model = tiny_model(tmp_path)
    unet, text = snapshot(model.unet), snapshot(model.text_encoder)
    model, method, states = train_tasks(tmp_path, "custom_diffusion_seq", PARAMS, tasks=(1,), model=model)
    kv = {f"{n}.weight" for n in kv_linears(model.unet)}
    assert changed(model.unet, unet) == kv and kv  # every K/V matrix moves, nothing else
    assert {n.split(".")[-2] for n in changed(model.text_encoder, text)} == {"token_embedding"}
    assert set(states[1]) == kv


def test_sequential_continues_from_the_previous_task(tmp_path):
    _, _, seq = train_tasks(tmp_path / "a", "custom_diffusion_seq", PARAMS, tasks=(1, 2), token_init_norm=1.0)
    _, _, alone = train_tasks(tmp_path / "b", "custom_diffusion_offline", PARAMS, tasks=(2,), token_init_norm=1.0)
    assert any(not torch.equal(seq[2][k], alone[2][k]) for k in alone[2])


def test_offline_task_does_not_depend_on_the_previous_task(tmp_path):
    _, _, chain = train_tasks(tmp_path / "a", "custom_diffusion_offline", PARAMS, tasks=(1, 2), token_init_norm=1.0)
    _, _, alone = train_tasks(tmp_path / "b", "custom_diffusion_offline", PARAMS, tasks=(2,), token_init_norm=1.0)
    assert chain[2].keys() == alone[2].keys()
    assert all(torch.equal(chain[2][k], alone[2][k]) for k in alone[2])  # bit-identical


def test_offline_samples_each_concept_with_its_own_weights(tmp_path):
    model, method, states = train_tasks(tmp_path, "custom_diffusion_offline", PARAMS, tasks=(1, 2))
    fresh = make_method("custom_diffusion_offline", PARAMS)
    fresh.prepare(model)
    for task in (1, 2):
        fresh.restore_task(task, states[task])
    assert fresh.inference_groups([1, 2]) == [[1], [2]]
    for task in (1, 2):
        fresh.prepare_inference([task])
        for name, linear in kv_linears(model.unet).items():
            assert torch.equal(linear.weight, states[task][f"{name}.weight"])


def merge_env(tmp_path):
    (tmp_path / "pool" / "faces").mkdir(parents=True)
    (tmp_path / "pool" / "faces" / "captions.json").write_text(json.dumps(CAPTIONS))
    return MethodEnv(benchmark="faces", data_root=tmp_path, seed=0)


def restored(tmp_path, trained, states, params, tasks, env):
    """A fresh base model with the trained tokens, and a merge method restored to ``tasks``."""
    model = tiny_model(tmp_path)
    rows = trained.text_encoder.get_input_embeddings().weight.detach()
    for task in tasks:
        token = f"<v{task}>"
        set_concept_token(model.tokenizer, model.text_encoder, token, rows[trained.tokenizer.convert_tokens_to_ids(token)])
    merge = make_method("custom_diffusion_merge", params)
    merge.prepare(model, env)
    for task in tasks:
        merge.restore_task(task, states[task])
    merge.prepare_inference(list(tasks))
    return model


def test_merge_reproduces_each_concept_tokens_kv_outputs(tmp_path):
    env = merge_env(tmp_path)
    params = {**PARAMS, "regularization_prompts": "pool", "ridge": 1e-6}  # 2 test captions: C_reg^T C_reg is singular
    trained, _, states = train_tasks(tmp_path, "custom_diffusion_merge", params, tasks=(1, 2))
    model = restored(tmp_path / "m", trained, states, params, (1, 2), env)
    base = dict(kv_linears(tiny_model(tmp_path / "b").unet))
    for task in (1, 2):
        c = token_features(model, f"<v{task}>").float()
        assert c.shape[0] == 1  # the concept token's row (Custom Diffusion's target word)
        for name, linear in kv_linears(model.unet).items():
            own = states[task][f"{name}.weight"] @ c.T
            torch.testing.assert_close(linear.weight.detach() @ c.T, own, rtol=1e-4, atol=1e-4)
            assert not torch.allclose(linear.weight, states[task][f"{name}.weight"])  # a real merge
            assert not torch.allclose(linear.weight, base[name].weight)
    single = restored(tmp_path / "s", trained, states, params, (1,), env)
    for name, linear in kv_linears(single.unet).items():
        assert torch.equal(linear.weight, states[1][f"{name}.weight"])  # one task: its own weights


def test_merge_without_regularization_prompts_is_a_clear_error(tmp_path):
    model = tiny_model(tmp_path)
    merge = make_method("custom_diffusion_merge", {**PARAMS, "regularization_prompts": "pool"})
    merge.prepare(model, MethodEnv(benchmark="faces", data_root=tmp_path / "nowhere", seed=0))
    merge.restore_task(1, {f"{n}.weight": w for n, w in merge.w_base.items()})
    merge.restore_task(2, {f"{n}.weight": w for n, w in merge.w_base.items()})
    with pytest.raises(PipelineError, match="captions.json: no generic captions"):
        merge.prepare_inference([1, 2])


JOINT = {**PARAMS, "mode": "joint"}


def joint_data(tmp_path, tasks=(1, 2)):
    for task in tasks:
        write_task(tmp_path / "tasks" / "faces" / f"task_{task:02d}", seed=task, n=3)


def test_joint_offline_trains_task_t_from_the_base_on_the_real_images_of_concepts_1_to_t(tmp_path):
    joint_data(tmp_path / "a")
    model, method, joint = train_tasks(tmp_path / "a", "custom_diffusion_offline", JOINT, tasks=(1, 2), token_init_norm=1.0)
    past = real_concept_set(model, method.env, [1])  # what task 2 mixed in: concept 1's real images only
    assert torch.equal(past.latents, encode_latents(model.vae, load_task_images(tmp_path / "a" / "tasks" / "faces" / "task_01")))
    assert torch.equal(past.ids, prompt_ids(model.tokenizer, [prompt_for("<v1>")] * 3)) and past.groups.tolist() == [1] * 3
    _, _, separate = train_tasks(tmp_path / "b", "custom_diffusion_offline", PARAMS, tasks=(1, 2), token_init_norm=1.0)
    assert all(torch.equal(joint[1][k], separate[1][k]) for k in joint[1])  # task 1: nothing to mix in
    assert any(not torch.equal(joint[2][k], separate[2][k]) for k in joint[2])  # task 2: the joint term acts
    # task 2 starts from the base: task 1's K/V weights (unlike its token) do not reach it
    joint_data(tmp_path / "c")
    model_c, method_c, _ = train_tasks(tmp_path / "c", "custom_diffusion_offline", JOINT, tasks=(1,), token_init_norm=1.0)
    method_c.restore_task(1, {k: torch.randn_like(v) for k, v in joint[1].items()})
    with torch.no_grad():  # the model left in any state: task 2 resets the K/V weights to the base
        for linear in kv_linears(model_c.unet).values():
            linear.weight.copy_(torch.randn_like(linear.weight))
    token_id = add_concept_token(model_c.tokenizer, model_c.text_encoder, concept_token(2), torch.Generator().manual_seed(2),
                                 init_norm=1.0)
    log = train_task(model_c, method_c, 2, token_id, prompt_for("<v2>"), task_latents(model_c, 2), CFG, tmp_path / "c" / "w2")
    assert all("joint" in entry for entry in log)  # the term of concepts < t, every step
    again = method_c.end_task(2)
    assert all(torch.equal(again[k], joint[2][k]) for k in joint[2])


def test_joint_offline_samples_every_concept_with_the_model_after_the_last_task(tmp_path):
    joint_data(tmp_path)
    model, method, states = train_tasks(tmp_path, "custom_diffusion_offline", JOINT, tasks=(1, 2))
    fresh = make_method("custom_diffusion_offline", JOINT)
    fresh.prepare(model, method.env)
    for task in (1, 2):
        fresh.restore_task(task, states[task])
    assert fresh.inference_groups([1, 2]) == [[1, 2]]
    fresh.prepare_inference([1, 2])
    for name, linear in kv_linears(model.unet).items():
        assert torch.equal(linear.weight, states[2][f"{name}.weight"])


def test_offline_mode_is_checked(tmp_path):
    with pytest.raises(PipelineError, match="methods.custom_diffusion_offline.mode: one of separate, joint, got 'both'"):
        make_method("custom_diffusion_offline", {**PARAMS, "mode": "both"}).prepare(tiny_model(tmp_path))
