import os

import pytest

# Tests never touch a network hub and never send analytics.
for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "DVC_NO_ANALYTICS": "1"}.items():
    os.environ.setdefault(key, value)


@pytest.fixture
def smoke_cfg():
    from continual_diffusion.utils import config

    return config.load(overrides=["profile=smoke"])
