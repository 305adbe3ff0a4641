"""Parameter costs from the SD v1.x U-Net config (meta device: no weights, no memory)."""

import pytest

from continual_diffusion.models.sd_v1_architecture import SD_V1_UNET_CONFIG, build_unet, parameter_costs


@pytest.fixture(scope="module")
def sd_costs():
    return parameter_costs(build_unet(SD_V1_UNET_CONFIG, device="meta"), rank=16)


def test_sd_v1_kv_matrices(sd_costs):
    assert sd_costs["kv_matrices"] == 32  # 16 transformer blocks x (to_k, to_v)


def test_custom_diffusion_cost_matches_fact_sheet(sd_costs):
    assert sd_costs["kv_full_params"] == 19_169_280
    assert round(sd_costs["kv_full_percent"], 2) == 2.23


def test_lora_rank16_cost_matches_fact_sheet(sd_costs):
    assert sd_costs["lora_params"] == 792_576
    assert round(sd_costs["lora_percent"], 3) == 0.092


def test_unet_size(sd_costs):
    assert sd_costs["unet_params"] == 859_520_964  # SD v1.x U-Net
