"""Parameter cost per task from the U-Net config (meta device)."""

import pytest

from continual_diffusion.methods import METHODS
from continual_diffusion.metrics import param_cost
from continual_diffusion.models.sd_v1_architecture import SD_V1_UNET_CONFIG, build_unet
from continual_diffusion.utils import config
from continual_diffusion.utils.errors import PipelineError


def method_cost(method, params, unet, token_dim):
    """The cost rule of a registered method (its class's parameter_cost) through the generic driver."""
    return param_cost.method_cost(METHODS[method], params, unet, token_dim)


def profile_costs(cfg, base):
    return param_cost.profile_costs(cfg, base, METHODS)


def test_lora_cost_on_sd_v1_matches_the_fact_sheet():
    cost = method_cost("clora", {"rank": 16}, build_unet(SD_V1_UNET_CONFIG, device="meta"), 768)
    assert cost["unet_trained_per_task"] == 792_576 and round(cost["n_param_percent"], 3) == 0.092
    assert cost["token_params_per_task"] == 768


def test_every_method_has_a_cost_and_sd_v1_matches_the_fact_sheet():
    sd = build_unet(SD_V1_UNET_CONFIG, device="meta")
    costs = {m: method_cost(m, {"rank": 16}, sd, 768) for m in METHODS}  # every registered method
    total = costs["dreambooth"]["unet_params"]
    for m in ("custom_diffusion_seq", "custom_diffusion_merge", "custom_diffusion_offline", "generative_replay",
              "custom_diffusion_ewc"):
        assert costs[m]["unet_trained_per_task"] == 19_169_280 and round(costs[m]["n_param_percent"], 2) == 2.23
    assert costs["custom_diffusion_ewc"]["unet_stored_per_task"] == 2 * 19_169_280  # weights + Fisher
    assert costs["custom_diffusion_seq"]["unet_stored_per_task"] == 19_169_280
    assert costs["dreambooth"]["unet_trained_per_task"] == total and costs["dreambooth"]["n_param_percent"] == 100.0
    assert costs["textual_inversion"]["unet_trained_per_task"] == 0
    assert costs["textual_inversion"]["token_params_per_task"] == 768


SMOKE_UNET = {"sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": [16, 32],
              "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
              "layers_per_block": 1, "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 8,
              "_class_name": "UNet2DConditionModel"}


def _toy_base(folder):
    import json

    for name, spec in (("unet", SMOKE_UNET), ("text_encoder", {"hidden_size": 32})):
        (folder / name).mkdir(parents=True)
        (folder / name / "config.json").write_text(json.dumps(spec))
    return folder


def test_profile_costs_read_the_base_configs(tmp_path):
    import json

    cfg = config.load(overrides=["profile=smoke"])
    spec = {"sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": [16, 32],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "layers_per_block": 1, "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 8,
            "_class_name": "UNet2DConditionModel"}
    (tmp_path / "unet").mkdir()
    (tmp_path / "text_encoder").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps(spec))
    (tmp_path / "text_encoder" / "config.json").write_text(json.dumps({"hidden_size": 32}))
    costs = profile_costs(cfg, tmp_path)
    base = costs["base"]["faces"]["clora"]
    # 4 transformer blocks at 32 channels (down 1, mid 1, up 2 = layers_per_block + 1), K and V each
    # 32 x 32 (cross_attention_dim 32), rank 2 (smoke): 4 * 2 * 2 * (32 + 32)
    assert base["unet_trained_per_task"] == 4 * 2 * 2 * (32 + 32)
    assert costs["sd_v1"]["faces"]["lora_sequential"]["unet_trained_per_task"] == 792_576  # paper rank 16
    # a rank given per benchmark is counted with each benchmark's own value
    cfg = config.load(overrides=["profile=smoke", "methods.clora.rank={faces: 2, landmarks: 8}"])
    costs = profile_costs(cfg, tmp_path)
    assert costs["base"]["faces"]["clora"]["unet_trained_per_task"] == 4 * 2 * 2 * (32 + 32)
    assert costs["base"]["landmarks"]["clora"]["unet_trained_per_task"] == 4 * 2 * 8 * (32 + 32)
    assert costs["sd_v1"]["landmarks"]["clora"]["unet_trained_per_task"] == 792_576  # the paper's rank wins


def test_unknown_method_and_missing_config_are_clear_errors(tmp_path):
    with pytest.raises(PipelineError, match="methods.no_such_method: no parameter-cost formula"):
        param_cost.profile_costs({"methods": {"no_such_method": {}}, "train": {"methods": []}, "benchmarks": ["faces"],
                                  "profiles": {}, "data": {"faces": {}}}, _toy_base(tmp_path / "toy"), METHODS)
    with pytest.raises(PipelineError, match="unet/config.json: base model config missing"):
        profile_costs(config.load(overrides=["profile=smoke"]), tmp_path)


# The Stable Diffusion pointer base (models/<profile>/base/stable_diffusion.json): the configs come from the
# model it names, a local diffusers folder or the hub cache, configs only (no weights read).
# The stand-in (tests/paper_fixtures.py) has SD v1's 16 cross-attention transformer blocks (down 3 x 2 at
# 32, 32, 64 channels, mid 1 at 64, up 3 x 3 at 64, 32, 32), K and V each channels x 32:
SD_STAND_IN_KV = 2 * (2 * 32 + 2 * 32 + 2 * 64 + 64 + 3 * 64 + 3 * 32 + 3 * 32) * 32  # sum of out * in = 45,056
SD_STAND_IN_LORA16 = 2 * 16 * (2 * (32 + 32) + 2 * (32 + 32) + 2 * (64 + 32) + (64 + 32) + 3 * (64 + 32)
                               + 3 * (32 + 32) + 3 * (32 + 32))  # sum of r (out + in), r = 16: 38,912


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    from tests.paper_fixtures import sd_v1_folder

    return sd_v1_folder(tmp_path_factory.mktemp("sd") / "sd-v1")


def _pointer(base, model, revision="main", cache_dir=None):
    import json

    from continual_diffusion.stages.base_model import MANIFEST, POINTER

    base.mkdir(parents=True)
    (base / POINTER).write_text(json.dumps({"model": str(model), "revision": revision, "cache_dir": cache_dir}))
    (base / MANIFEST).write_text("{}")
    return base


def _check_stand_in_costs(costs):
    base = costs["base"]["faces"]
    assert base["custom_diffusion_seq"]["unet_trained_per_task"] == SD_STAND_IN_KV == 45_056
    assert base["clora"]["unet_trained_per_task"] == SD_STAND_IN_LORA16 == 38_912  # the paper's rank 16
    assert base["clora"]["token_params_per_task"] == 32  # the stand-in's text hidden size
    assert base["dreambooth"]["unet_trained_per_task"] == base["dreambooth"]["unet_params"]
    assert round(costs["sd_v1"]["faces"]["clora"]["n_param_percent"], 3) == 0.092


def test_profile_costs_of_the_stable_diffusion_pointer_read_the_folder_it_names(sd_folder, tmp_path):
    import json

    from continual_diffusion.metrics.param_cost import unet_from_config
    from continual_diffusion.models.sd_v1_architecture import parameter_costs
    from continual_diffusion.stages.base_model import build_base

    cfg = config.load(overrides=["profile=paper_faces", f"model.stable_diffusion.path={sd_folder}"])
    build_base(cfg, tmp_path, tmp_path / "base")  # the base_model stage: a pointer, no copy
    assert not (tmp_path / "base" / "unet").exists()
    costs = profile_costs(cfg, tmp_path / "base")
    _check_stand_in_costs(costs)
    unet = unet_from_config(json.loads((sd_folder / "unet" / "config.json").read_text()))
    assert costs["base"]["faces"]["dreambooth"]["unet_params"] == parameter_costs(unet, 1)["unet_params"]


def test_profile_costs_of_a_hub_id_read_the_configs_from_the_cache_only(sd_folder, tmp_path):
    """A hub cache holding only the two config files (no weights) is enough; revision and cache_dir are the
    pointer's."""
    import shutil

    cfg = config.load(overrides=["profile=paper_faces"])
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--sd-v1-stand-in"
    for name in ("unet", "text_encoder"):
        (repo / "snapshots" / commit / name).mkdir(parents=True)
        shutil.copyfile(sd_folder / name / "config.json", repo / "snapshots" / commit / name / "config.json")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for revision in ("main", commit):
        base = _pointer(tmp_path / f"base_{revision[:4]}", "someone/sd-v1-stand-in", revision, str(tmp_path / "hub"))
        _check_stand_in_costs(profile_costs(cfg, base))


def test_a_stable_diffusion_pointer_without_its_model_is_a_one_line_error(sd_folder, tmp_path):
    cfg = config.load(overrides=["profile=paper_faces"])
    base = _pointer(tmp_path / "hub_base", "CompVis/stable-diffusion-v1-4", "main", str(tmp_path / "empty_hub"))
    with pytest.raises(PipelineError, match=r"CompVis/stable-diffusion-v1-4@main: unet/config.json not found "
                                            r"offline in .*empty_hub") as err:
        profile_costs(cfg, base)
    assert "\n" not in str(err.value)
    with pytest.raises(PipelineError, match="no-such-folder: Stable Diffusion folder that .* names not found"):
        profile_costs(cfg, _pointer(tmp_path / "gone", tmp_path / "no-such-folder"))
    partial = tmp_path / "partial"
    (partial / "unet").mkdir(parents=True)
    (partial / "unet" / "config.json").write_text((sd_folder / "unet" / "config.json").read_text())
    with pytest.raises(PipelineError, match=r"partial/text_encoder/config.json: config of the Stable Diffusion folder"):
        profile_costs(cfg, _pointer(tmp_path / "partial_base", partial))
