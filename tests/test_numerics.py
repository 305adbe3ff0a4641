"""cpu_isa: portable: every square root a job takes is correctly rounded, none reaches MKL's vector math."""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from continual_diffusion.utils import config
from continual_diffusion.utils.numerics import ExactSqrtMode, exact_sqrt, exact_sqrt_of, job_numerics, portable


class AtenRoots(TorchDispatchMode):
    """Counts the aten ops that would take a float square root through MKL (what sqrt_census.py flags)."""

    def __init__(self):
        super().__init__()
        self.roots = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._overloadpacket.__name__
        if name in ("sqrt", "sqrt_", "_foreach_sqrt", "_foreach_sqrt_") or (
                name in ("pow", "pow_") and len(args) > 1 and args[1] == 0.5):
            self.roots.append(name)
        return func(*args, **(kwargs or {}))


def correctly_rounded_sqrt(x: np.ndarray) -> np.ndarray:
    """The reference: float32 roots through float64 (exact for float32 inputs: 53 >= 2 * 24 + 2 bits)."""
    return np.sqrt(x.astype(np.float64)).astype(np.float32)


@pytest.fixture
def positive():
    g = torch.Generator().manual_seed(0)
    return torch.rand(64, 64, generator=g) * 10 + 1e-3


def test_every_root_form_is_correctly_rounded_inside_the_mode(positive):
    expected = correctly_rounded_sqrt(positive.numpy())
    with exact_sqrt():
        outs = {"torch.sqrt": torch.sqrt(positive), "Tensor.sqrt": positive.sqrt(), "** 0.5": positive ** 0.5,
                "torch.pow": torch.pow(positive, 0.5), "Tensor.pow": positive.pow(0.5),
                "sqrt_": positive.clone().sqrt_(), "pow_": positive.clone().pow_(0.5),
                "_foreach_sqrt": torch._foreach_sqrt([positive])[0]}
        inplace = [positive.clone()]
        torch._foreach_sqrt_(inplace)
        outs["_foreach_sqrt_"] = inplace[0]
        scalar = torch.tensor(2.0) ** 0.5
    for form, out in outs.items():
        assert out.dtype == torch.float32 and out.shape == positive.shape, form
        assert np.array_equal(out.numpy(), expected), form
    assert scalar.dim() == 0 and scalar.item() == np.float32(np.sqrt(2.0))


def test_no_root_reaches_the_kernels_inside_the_mode_and_some_do_outside(positive):
    """The test can fail: the same calls outside the mode dispatch aten sqrt / pow."""
    def calls():
        torch.sqrt(positive), positive ** 0.5, torch._foreach_sqrt([positive, positive.double()])
        for foreach in (True, False):  # torch's default on CPU, and the form it takes under a dispatch mode
            p = positive.clone().requires_grad_(True)
            optimizer = torch.optim.AdamW([p], lr=1e-3, foreach=foreach)
            p.square().sum().backward()
            optimizer.step()

    with AtenRoots() as outside:
        calls()
    with ExactSqrtMode(), AtenRoots() as inside:
        calls()
    assert outside.roots and inside.roots == []


def test_the_schedulers_take_no_vendor_dependent_root():
    """What a train job (DDPM add_noise) and an evaluate job (DPM-Solver++ sampling) call."""
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    def calls():
        ddpm = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
        z0, noise = torch.ones(2, 4, 2, 2), torch.zeros(2, 4, 2, 2)
        noisy = ddpm.add_noise(z0, noise, torch.tensor([10, 500]))
        dpm = DPMSolverMultistepScheduler.from_config(ddpm.config)
        dpm.set_timesteps(3)
        sample = torch.ones(1, 4, 2, 2)
        for t in dpm.timesteps:
            sample = dpm.step(torch.zeros_like(sample), t, sample).prev_sample
        return noisy, sample

    with AtenRoots() as outside:
        calls()
    with ExactSqrtMode(), AtenRoots() as inside:
        noisy, sample = calls()
    assert outside.roots and inside.roots == []
    abar = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").alphas_cumprod
    assert noisy[1, 0, 0, 0].item() == correctly_rounded_sqrt(abar[500:501].numpy())[0]
    assert torch.isfinite(sample).all()


def test_gradients_through_an_exact_root_follow_torchs_formula(positive):
    x = positive[:4, :4].clone().requires_grad_(True)
    with exact_sqrt():
        y = torch.sqrt(x)
    y.sum().backward()
    assert torch.allclose(x.grad, 0.5 / torch.sqrt(x.detach()), rtol=1e-6)


def test_other_dtypes_and_calls_pass_through_unchanged():
    ints = torch.arange(4)
    with exact_sqrt():
        assert torch.equal(ints ** 2, torch.tensor([0, 1, 4, 9]))
        assert (torch.full((3,), 4.0) ** 2).tolist() == [16.0, 16.0, 16.0]
        assert torch.sqrt(torch.tensor([4.0], dtype=torch.float16)).item() == 2.0
    assert exact_sqrt_of(torch.tensor([9.0], dtype=torch.bfloat16)).item() == 3.0


def _mode_active() -> bool:
    return any(isinstance(m, ExactSqrtMode) for m in torch.overrides._get_current_function_mode_stack())


def test_a_job_runs_under_the_mode_only_when_portable():
    for cpu_isa, expected in (("portable", True), ("avx2", False), ("avx2_mkl_compatible", False), ("native", False)):
        cfg = config.load(overrides=["profile=smoke", f"cpu_isa={cpu_isa}"])
        with job_numerics(cfg):
            assert _mode_active() is expected and portable(cpu_isa) is expected
        assert not _mode_active()


@pytest.mark.parametrize("command", ["train-task", "evaluate-task", "evaluator", "base-model", "pretrain-base"])
def test_each_computing_subcommand_runs_its_stage_under_the_jobs_numerics(command, monkeypatch):
    """cli.py enters job_numerics around the stage function of every subcommand that computes."""
    from continual_diffusion import cli
    from continual_diffusion.stages import base_model, evaluate
    from continual_diffusion.stages import identity_evaluator as evaluator
    from continual_diffusion.stages import train as chain

    seen = []
    stage = {"train-task": (chain, "run_task"), "evaluate-task": (evaluate, "evaluate_task"),
             "evaluator": (evaluator, "train_evaluator"), "base-model": (base_model, "build_base"),
             "pretrain-base": (base_model, "pretrain_base")}[command]
    monkeypatch.setattr(*stage, lambda *a, **k: seen.append(_mode_active()) or {"unet_loss_first50": 0.0,
                                                                                   "unet_loss_last50": 0.0})
    chain_args = ["--benchmark", "faces", "--method", "clora", "--seed", "0", "--task", "1", "--base", "b",
                  "--runs", "r"]
    argv = {"train-task": ["train-task", *chain_args, "--checkpoints", "c"],
            "evaluate-task": ["evaluate-task", *chain_args, "--evaluator", "e", "--out", "o"],
            "evaluator": ["evaluator", "--benchmark", "faces", "--tasks", "t", "--base", "b", "--out", "o"],
            "base-model": ["base-model", "--out", "o"], "pretrain-base": ["pretrain-base", "--out", "o"]}[command]
    for cpu_isa in ("portable", "avx2"):
        assert cli.main([*argv, "--set", "profile=smoke", "--set", f"cpu_isa={cpu_isa}"]) == 0
    assert seen == [True, False]
