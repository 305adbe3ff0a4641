"""Samplers: every value the schema allows for evaluation.scheduler names a diffusers scheduler, and the
export's load snippet uses the same one (a sampler missing from either was a KeyError in the report stage)."""

import diffusers
import pytest
import yaml

from continual_diffusion.core.sampling import SCHEDULER_CLASSES
from continual_diffusion.stages.export import load_snippet
from tests.helpers import REPO

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/params.schema.yaml").read_text())
ALLOWED = SCHEMA["properties"]["evaluation"]["properties"]["scheduler"]["enum"]


@pytest.mark.parametrize("name", ALLOWED)
def test_every_allowed_scheduler_is_a_diffusers_class_and_exportable(name):
    cls = getattr(diffusers, SCHEDULER_CLASSES[name])
    assert hasattr(cls, "from_config")
    lines = load_snippet(REPO / "out", {"pretrained": "base"}, ["<v1>"],
                         {"scheduler": name, "inference_steps": 10, "guidance_scale": 5.0})
    assert lines[0] == f"from diffusers import {SCHEDULER_CLASSES[name]}, StableDiffusionPipeline"
