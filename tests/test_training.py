"""The shared task loop: what trains, what must not move, and kill-and-resume."""

import pytest
import torch

from continual_diffusion.core.training import TrainConfig, train_task
from continual_diffusion.methods import make_method
from continual_diffusion.models.tokens import add_concept_token, concept_token, prompt_for
from tests.model_fixtures import task_latents, tiny_model

PARAMS = {"rank": 2, "alpha": 2, "lr": 1e-2, "penalty_weight": 1.0, "penalty_reduction": "sum"}
CFG = TrainConfig(steps=6, batch_size=2, token_lr=1e-2, seed=0, checkpoint_every=2)


class Killed(Exception):
    pass


def run_chain(tmp_path, method_name="clora", tasks=(1, 2), kill_at=None, workdir=None):
    """Train ``tasks`` in order on a fresh model; returns (model, method, {task: (state, log)})."""
    model = tiny_model(tmp_path)
    method = make_method(method_name, PARAMS)
    method.prepare(model)
    results = {}
    for task in tasks:
        token = concept_token(task)
        token_id = add_concept_token(model.tokenizer, model.text_encoder, token, torch.Generator().manual_seed(task))
        on_step = None
        if kill_at is not None and task == tasks[-1]:
            def on_step(step, at=kill_at):
                if step == at:
                    raise Killed
        log = train_task(model, method, task, token_id, prompt_for(token), task_latents(model, task), CFG,
                         (workdir or tmp_path) / f"task_{task}", on_step=on_step)
        results[task] = (method.end_task(task), log)
    return model, method, results


def test_only_the_adapter_and_the_new_token_change(tmp_path):
    model = tiny_model(tmp_path)
    method = make_method("clora", PARAMS)
    method.prepare(model)
    token_id = add_concept_token(model.tokenizer, model.text_encoder, "<v1>", torch.Generator().manual_seed(1))
    unet_before = {n: p.detach().clone() for n, p in model.unet.named_parameters()}
    text_before = {n: p.detach().clone() for n, p in model.text_encoder.named_parameters()}
    vae_before = {n: p.detach().clone() for n, p in model.vae.named_parameters()}
    train_task(model, method, 1, token_id, "a photo of <v1>", task_latents(model, 1), CFG, tmp_path / "w")
    for name, param in model.unet.named_parameters():
        if "lora_B" in name:
            assert not torch.equal(param, unet_before[name]), name  # B starts at zero and must learn
        elif "lora_A" in name:
            continue
        else:
            assert torch.equal(param, unet_before[name]), name  # task 1: the accumulator is zero
    for name, param in model.text_encoder.named_parameters():
        if name.endswith("token_embedding.weight"):
            changed = (param != text_before[name]).any(dim=1).nonzero().flatten().tolist()
            assert changed == [token_id]
        else:
            assert torch.equal(param, text_before[name]), name
    assert all(torch.equal(p, vae_before[n]) for n, p in model.vae.named_parameters())


def test_old_tokens_stay_frozen_and_base_kv_is_init_plus_accumulator(tmp_path):
    model, method, results = run_chain(tmp_path, tasks=(1,))
    emb = model.text_encoder.get_input_embeddings().weight
    old_row = emb[model.tokenizer.convert_tokens_to_ids("<v1>")].detach().clone()
    token_id = add_concept_token(model.tokenizer, model.text_encoder, "<v2>", torch.Generator().manual_seed(2))
    train_task(model, method, 2, token_id, "a photo of <v2>", task_latents(model, 2), CFG, tmp_path / "t2")
    assert torch.equal(emb[model.tokenizer.convert_tokens_to_ids("<v1>")], old_row)
    for name, layer in method.layers.items():
        # end_task(2) has not run: acc holds task 1's product only, folded in at begin_task(2)
        expected = (method.past.w_init[name] + method.past.acc[name]).to(layer.base_layer.weight.dtype)
        assert torch.equal(layer.base_layer.weight.detach(), expected)


def test_penalty_is_zero_on_task_1_and_positive_on_task_2(tmp_path):
    _, _, results = run_chain(tmp_path)
    assert all(entry["forget_raw"] == 0.0 and entry["forget"] == 0.0 for entry in results[1][1])
    assert all(entry["forget_raw"] > 0.0 for entry in results[2][1][1:])  # B_2 = 0 at the very first step
    for entry in results[2][1]:
        assert entry["loss"] == pytest.approx(entry["diffusion"] + entry["forget"], rel=1e-5)


def test_lora_sequential_has_no_penalty(tmp_path):
    _, _, results = run_chain(tmp_path, method_name="lora_sequential")
    assert all(set(entry) == {"step", "loss", "diffusion"} for _, log in results.values() for entry in log)


def test_kill_and_resume_is_bit_identical(tmp_path):
    _, _, reference = run_chain(tmp_path / "reference")
    with pytest.raises(Killed):
        run_chain(tmp_path / "killed", kill_at=5, workdir=tmp_path / "work")  # checkpoint at step 4
    assert (tmp_path / "work" / "task_2" / "checkpoint" / "progress.json").exists()
    _, _, resumed = run_chain(tmp_path / "resumed", workdir=tmp_path / "work")
    state_ref, log_ref = reference[2]
    state_res, log_res = resumed[2]
    assert log_res == log_ref
    assert state_ref.keys() == state_res.keys()
    assert all(torch.equal(state_ref[k], state_res[k]) for k in state_ref)


def test_restored_chain_rebuilds_the_accumulator(tmp_path):
    _, method, results = run_chain(tmp_path / "a")
    model = tiny_model(tmp_path / "b")
    fresh = make_method("clora", PARAMS)
    fresh.prepare(model)
    for task in (1, 2):
        fresh.restore_task(task, results[task][0])
    for name in method.past.acc:
        assert torch.equal(fresh.past.acc[name], method.past.acc[name])


def test_a_prompt_that_cuts_the_concept_token_is_refused(tmp_path):
    from continual_diffusion.utils.errors import PipelineError

    model = tiny_model(tmp_path)
    method = make_method("lora_sequential", PARAMS)
    method.prepare(model)
    token_id = add_concept_token(model.tokenizer, model.text_encoder, "<v1>", torch.Generator().manual_seed(1))
    long_prompt = "a photo of a person with blond short hair and a waterfall " + "<v1>"
    with pytest.raises(PipelineError, match="concept token was cut"):
        train_task(model, method, 1, token_id, long_prompt, task_latents(model, 1), CFG, tmp_path / "w")


def test_a_learned_token_is_restored_on_a_fresh_model(tmp_path):
    from continual_diffusion.models.tokens import set_concept_token

    model, _, _ = run_chain(tmp_path / "a", tasks=(1,))
    row = model.text_encoder.get_input_embeddings().weight[model.tokenizer.convert_tokens_to_ids("<v1>")].detach().clone()
    fresh = tiny_model(tmp_path / "b")
    set_concept_token(fresh.tokenizer, fresh.text_encoder, "<v1>", row)
    ids = model.tokenizer("a photo of <v1>", return_tensors="pt").input_ids
    assert torch.equal(fresh.tokenizer("a photo of <v1>", return_tensors="pt").input_ids, ids)
    with torch.no_grad():
        assert torch.equal(fresh.text_encoder(ids)[0], model.text_encoder(ids)[0])
