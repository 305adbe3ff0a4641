"""A method is one module: its label, parameters and defaults, cost rule and export flag are facts of its
class, and the labels, the cost table, the export list and the config check all come from the registry."""

import json
import time

import pytest
import yaml

from continual_diffusion.methods import METHODS, ContinualMethod, check_config, exporting_methods, make_method, method_label
from continual_diffusion.methods.base import register
from continual_diffusion.metrics.param_cost import method_cost, profile_costs
from continual_diffusion.models.sd_v1_architecture import SD_V1_UNET_CONFIG, build_unet
from continual_diffusion.stages.report import method_name
from continual_diffusion.utils import config
from continual_diffusion.utils.errors import PipelineError
from tests.helpers import REPO, run, workflow_copy

PAPER_LABELS = {  # the paper's row names (tables, figures, audit)
    "clora": "C-LoRA",
    "lora_sequential": "LoRA (sequential)",
    "textual_inversion": "Textual Inversion",
    "dreambooth": "DreamBooth",
    "custom_diffusion_seq": "Custom Diffusion (sequential)",
    "custom_diffusion_merge": "Custom Diffusion (merge)",
    "custom_diffusion_ewc": "Custom Diffusion + EWC",
    "generative_replay": "Deep generative replay",
    "custom_diffusion_offline": "Custom Diffusion offline (upper bound)",
}


def test_the_labels_come_from_the_method_classes():
    assert set(PAPER_LABELS) <= set(METHODS)
    assert {m: method_name(m) for m in PAPER_LABELS} == PAPER_LABELS
    assert method_name("not_a_method") == "not_a_method"


def test_the_export_list_is_the_lora_type_methods():
    every = sorted(METHODS)
    assert exporting_methods(every) == ["clora", "lora_sequential"]
    assert exporting_methods(["lora_sequential", "dreambooth", "clora"]) == ["lora_sequential", "clora"]  # their order


def test_the_cost_table_comes_from_the_classes():
    sd = build_unet(SD_V1_UNET_CONFIG, device="meta")
    trained = {m: method_cost(METHODS[m], {"rank": 16}, sd, 768)["unet_trained_per_task"] for m in PAPER_LABELS}
    assert trained["clora"] == trained["lora_sequential"] == 792_576
    assert trained["textual_inversion"] == 0
    assert trained["custom_diffusion_ewc"] == trained["custom_diffusion_seq"] == 19_169_280


def test_every_method_declares_its_parameters_once():
    for name, cls in METHODS.items():
        assert "token_lr" in cls.known_params(), name
        assert not set(cls.required_params()) & set(cls.param_defaults()), name
    assert METHODS["clora"].param_defaults() == {"alpha": None, "penalty_weight": 0.0, "penalty_reduction": "sum"}
    assert "penalty_weight" not in METHODS["lora_sequential"].known_params()
    assert METHODS["custom_diffusion_ewc"].required_params() == ("lr", "ewc_weight")  # lr from KVFineTuning
    assert make_method("custom_diffusion_merge", {"lr": 1e-4}).params == {
        "lr": 1e-4, "weight_decay": 0.0, "regularization_prompts": "pool", "regularization_count": 200, "ridge": 1e-6}


@pytest.fixture
def toy_method():
    """A Textual-Inversion-like method with one parameter, registered for the test only."""

    class ToyToken(ContinualMethod):
        name = "toy_token"
        label = "Toy token"
        defaults = {"scale": 0.5}

        @classmethod
        def parameter_cost(cls, params, unet):
            return 0, 0

        def restore_task(self, task, state):
            pass

        def begin_task(self, ctx):
            pass

        def parameter_groups(self):
            return []

        def end_task(self, task):
            return {}

    register(ToyToken)
    yield ToyToken
    del METHODS["toy_token"]


def test_a_registered_method_has_its_label_defaults_and_cost(toy_method, tmp_path):
    assert method_name("toy_token") == method_label("toy_token") == "Toy token"
    assert make_method("toy_token", {}).params == {"scale": 0.5}
    assert make_method("toy_token", {"scale": 2.0}).params == {"scale": 2.0}
    assert exporting_methods(["toy_token"]) == []
    cfg = config.load([REPO / "params.yaml"], ["profile=smoke", "methods.toy_token={scale: 0.25}",
                                              "train.methods=[toy_token, clora]"])
    check_config(cfg)
    assert config.method_params(cfg, "faces", "toy_token") == {"scale": 0.25}
    from tests.metrics.test_param_cost import _toy_base

    costs = profile_costs(cfg, _toy_base(tmp_path / "base"), METHODS)
    assert costs["base"]["faces"]["toy_token"]["unet_trained_per_task"] == 0
    with pytest.raises(PipelineError, match=r"^methods\.toy_token\.scael: unknown parameter of method toy_token "
                                            r"\(known: scale, token_lr\)$"):
        check_config(config.load([REPO / "params.yaml"], ["methods.toy_token={scael: 1}"]))


def _load(*overrides):
    return config.load([REPO / "params.yaml"], list(overrides))


@pytest.mark.parametrize("overrides, message", [
    (["methods.clora.rnak=2"], r"^methods\.clora\.rnak: unknown parameter of method clora \(known: alpha, lr, "
                               r"penalty_reduction, penalty_weight, rank, token_lr\)$"),
    (["methods.lora_sequential.penalty_weight=1.0"], r"^methods\.lora_sequential\.penalty_weight: unknown parameter"),
    (["methods.nope={lr: 1.0}"], r"^methods\.nope: unknown method \(known: clora, "),
    (["train.methods=[clora, nope]"], r"^train\.methods: 'nope' is not a method \(known: "),
    (["resources.train_task.methods={nope: {mem_mb: 1}}"], r"^resources\.train_task\.methods: 'nope' is not a method"),
])
def test_a_wrong_method_name_or_parameter_key_is_a_one_line_error_naming_it(overrides, message):
    with pytest.raises(PipelineError, match=message) as err:
        check_config(_load(*overrides))
    assert "\n" not in str(err.value)


def test_a_missing_required_parameter_and_a_typo_in_another_profile_are_caught(tmp_path):
    cfg = _load()
    del cfg["methods"]["custom_diffusion_ewc"]["ewc_weight"]
    with pytest.raises(PipelineError, match=r"^methods\.custom_diffusion_ewc\.ewc_weight: required parameter"):
        check_config(cfg)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profiles"]["paper_faces"]["methods"]["clora"]["rnak"] = 16
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(PipelineError, match=r"^profiles\.paper_faces\.methods\.clora\.rnak: unknown parameter"):
        check_config(config.load([path]))


def test_every_profile_passes_the_check():
    for profile in ("tiny", "smoke", "paper_faces", "paper_landmarks"):
        check_config(_load(f"profile={profile}"))


TOY_MODULE = '''\
"""A toy method for the registry's end-to-end test: Textual Inversion whose token gets one parameter."""

from __future__ import annotations

import torch

from continual_diffusion.methods.base import ContinualMethod, TaskContext, register


@register
class ToyToken(ContinualMethod):
    name = "toy_token"
    label = "Toy token"
    defaults = {"noise": 0.0}  # unused by the toy: its default only has to reach self.params

    @classmethod
    def parameter_cost(cls, params: dict, unet) -> tuple[int, int]:
        return 0, 0  # the token only

    def prepare(self, model, env=None) -> None:
        super().prepare(model, env)
        model.unet.requires_grad_(False)
        assert self.params["noise"] == 0.25, self.params

    def restore_task(self, task: int, state: dict[str, torch.Tensor]) -> None:
        pass

    def begin_task(self, ctx: TaskContext) -> None:
        pass

    def parameter_groups(self) -> list[dict]:
        return []

    def end_task(self, task: int) -> dict[str, torch.Tensor]:
        return {}
'''


@pytest.mark.slow
def test_a_new_method_is_one_module_and_its_params_entry(tmp_path):
    """Drop a method module into a copy of the workflow, give it a params.yaml entry (YAML in, YAML out), run the
    smoke profile through the report: its chain trains, is scored, and its rows appear in the tables with its label."""
    started = time.monotonic()
    workdir = workflow_copy(tmp_path / "wf")
    (workdir / "src" / "continual_diffusion" / "methods" / "toy_token.py").write_text(TOY_MODULE)
    params = workdir / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    raw["methods"]["toy_token"] = {"noise": 0.25}
    raw["profiles"]["smoke"]["benchmarks"] = ["faces"]
    raw["profiles"]["smoke"]["train"]["methods"] = ["toy_token"]
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    run(["snakemake", "--cores", "2", "report"], workdir, timeout=900)  # the report stage's target
    chain = workdir / "runs" / "smoke" / "faces" / "toy_token" / "seed_0"
    assert json.loads((chain / "task_02" / "config.json").read_text())["method_params"] == {"noise": 0.25}
    tables = workdir / "reports" / "smoke" / "tables"
    text = "\n".join(p.read_text() for p in sorted(tables.iterdir()) if p.suffix in (".csv", ".md"))
    assert "Toy token" in text and "toy_token" in text
    costs = json.loads((workdir / "reports" / "smoke" / "parameter_cost" / "parameter_cost.json").read_text())
    assert costs["base"]["faces"]["toy_token"]["unet_trained_per_task"] == 0
    print(f"toy method end to end: {time.monotonic() - started:.0f} s")
    # a typo in its parameters is a one-line error naming the key, before any job runs
    raw["methods"]["toy_token"] = {"nosie": 0.25}
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = run(["snakemake", "-n", "--cores", "1"], workdir, check=False)
    assert result.returncode != 0
    assert "methods.toy_token.nosie: unknown parameter of method toy_token (known: noise, token_lr)" in (
        result.stdout + result.stderr)

