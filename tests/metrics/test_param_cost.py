"""Parameter cost per task from the U-Net config (meta device)."""

import pytest

from continual_diffusion import config
from continual_diffusion.errors import PipelineError
from continual_diffusion.metrics.param_cost import method_cost, profile_costs
from continual_diffusion.models.sd_v1 import SD_V1_UNET_CONFIG, build_unet


def test_lora_cost_on_sd_v1_matches_the_fact_sheet():
    cost = method_cost("clora", {"rank": 16}, build_unet(SD_V1_UNET_CONFIG, device="meta"), 768)
    assert cost["unet_trained_per_task"] == 792_576 and round(cost["n_param_percent"], 3) == 0.092
    assert cost["token_params_per_task"] == 768


def test_every_method_has_a_cost_and_sd_v1_matches_the_fact_sheet():
    from continual_diffusion.methods import METHODS

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
        method_cost("no_such_method", {}, None, 1)
    with pytest.raises(PipelineError, match="unet/config.json: base model config missing"):
        profile_costs(config.load(overrides=["profile=smoke"]), tmp_path)
