"""Custom Diffusion + EWC: the penalty, its gradient and the accumulated Fisher."""

import torch

from continual_diffusion.core.training import TaskContext, diffusion_loss, prompt_ids, task_generator
from continual_diffusion.methods import make_method
from continual_diffusion.methods.custom_diffusion import kv_linears
from continual_diffusion.methods.ewc import ewc_penalty
from continual_diffusion.models.tokens import add_concept_token
from tests.methods.helpers import train_tasks
from tests.model_fixtures import task_latents, tiny_model

PARAMS = {"lr": 1e-2, "ewc_weight": 100.0, "fisher_samples": 3}


def begin(model, method, task):
    add_concept_token(model.tokenizer, model.text_encoder, f"<v{task}>", torch.Generator().manual_seed(task))
    generator = task_generator(0, task)
    method.begin_task(TaskContext(task=task, generator=generator, latents=task_latents(model, task),
                                  prompt_ids=prompt_ids(model.tokenizer, [f"a photo of <v{task}>"]), batch_size=2,
                                  loss=lambda z, ids: diffusion_loss(model, z, ids, generator)))


def test_penalty_is_zero_at_the_anchor_and_its_gradient_is_lambda_f_delta(tmp_path):
    _, _, states = train_tasks(tmp_path, "custom_diffusion_ewc", PARAMS, tasks=(1,))
    model = tiny_model(tmp_path / "fresh")
    method = make_method("custom_diffusion_ewc", PARAMS)
    method.prepare(model)
    method.restore_task(1, states[1])
    begin(model, method, 2)
    assert float(method.extra_losses()["ewc"].detach()) == 0.0  # at the anchor W = W*_1
    linears = kv_linears(model.unet)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for linear in linears.values():
            linear.weight.add_(0.1 * torch.randn(linear.weight.shape, generator=g))
    penalty = method.extra_losses()["ewc"]
    grads = torch.autograd.grad(penalty, [m.weight for m in linears.values()])
    for (name, linear), grad in zip(linears.items(), grads):
        fisher, anchor = states[1][f"{name}.fisher"], states[1][f"{name}.weight"]
        assert fisher.abs().sum() > 0
        torch.testing.assert_close(grad, PARAMS["ewc_weight"] * fisher * (linear.weight.detach() - anchor))
    by_hand = 0.5 * sum((states[1][f"{n}.fisher"] * (m.weight.detach() - states[1][f"{n}.weight"]) ** 2).sum()
                        for n, m in linears.items())
    torch.testing.assert_close(penalty.detach(), PARAMS["ewc_weight"] * by_hand)


def test_fisher_accumulates_over_tasks_and_is_the_mean_squared_gradient(tmp_path):
    _, _, states = train_tasks(tmp_path, "custom_diffusion_ewc", PARAMS, tasks=(1, 2))
    model = tiny_model(tmp_path / "fresh")
    method = make_method("custom_diffusion_ewc", PARAMS)
    method.prepare(model)
    for task in (1, 2):
        method.restore_task(task, states[task])
    for name in kv_linears(model.unet):
        torch.testing.assert_close(method.fisher[name], states[1][f"{name}.fisher"] + states[2][f"{name}.fisher"])
    # F_t by hand: three single-image losses with the same draws
    model = tiny_model(tmp_path / "again")
    method = make_method("custom_diffusion_ewc", PARAMS)
    method.prepare(model)
    begin(model, method, 1)
    weights = [m.weight for m in method.linears.values()]
    state = method.ctx.generator.get_state()
    fisher = method.task_fisher()
    method.ctx.generator.set_state(state)
    expected = [torch.zeros_like(w) for w in weights]
    for _ in range(3):
        index = torch.randint(method.ctx.latents.shape[0], (1,), generator=method.ctx.generator)
        loss = method.ctx.loss(method.ctx.latents[index], method.ctx.prompt_ids)
        for e, grad in zip(expected, torch.autograd.grad(loss, weights)):
            e += grad ** 2 / 3
    for name, e in zip(method.linears, expected):
        torch.testing.assert_close(fisher[name], e)


def test_ewc_penalty_formula():
    w = {"a": torch.tensor([1.0, 2.0])}
    assert float(ewc_penalty(w, {"a": torch.tensor([0.0, 0.0])}, {"a": torch.tensor([2.0, 0.5])})) == 0.5 * (2 + 2)
