"""Post-sequence sample grids: real images first, one block per method, deterministic files."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from continual_diffusion.stages.report.grids import SAMPLES, strip, write_grids
from continual_diffusion.utils.errors import PipelineError

METHODS = ["clora", "lora_sequential"]


def fake_tree(root, n_tasks=3, size=8):
    rng = np.random.default_rng(0)
    for t in range(1, n_tasks + 1):
        folder = root / "data" / "tasks" / "faces" / f"task_{t:02d}"
        (folder / "images").mkdir(parents=True)
        files = []
        for j in range(3):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / "images" / f"{j}.png")
            files.append({"file": f"images/{j}.png"})
        (folder / "manifest.json").write_text(json.dumps({"images": files}))
    for m in METHODS:
        last = root / "results" / "faces" / m / "seed_0" / f"task_{n_tasks:02d}"
        last.mkdir(parents=True)
        save_file({f"concept_{i}": torch.from_numpy(rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8))
                   for i in range(1, n_tasks + 1)}, str(last / SAMPLES))


def test_strip_places_images_side_by_side():
    images = np.zeros((3, 2, 2, 3), dtype=np.uint8)
    out = strip(images, 2, pad=1)
    assert out.shape == (4, 7, 3) and out[1, 1, 0] == 0 and out[0, 0, 0] == 255 and out[1, 6, 0] == 255


def test_grids_are_written_as_png_and_pdf_and_are_deterministic(tmp_path):
    fake_tree(tmp_path)
    args = (tmp_path / "results", tmp_path / "data", ["faces"], METHODS, [0], {"faces": 3}, [1, 3], 2)
    write_grids(*args, tmp_path / "a")
    write_grids(*args, tmp_path / "b")
    for ext in ("png", "pdf"):
        a, b = (tmp_path / d / f"grid_faces_seed_0.{ext}" for d in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), ext
    assert Image.open(tmp_path / "a" / "grid_faces_seed_0.png").size[0] > 100


def test_bad_grid_tasks_and_missing_samples_are_clear_errors(tmp_path):
    fake_tree(tmp_path)
    with pytest.raises(PipelineError, match=r"report.grid_tasks: task 10 outside 1..3"):
        write_grids(tmp_path / "results", tmp_path / "data", ["faces"], METHODS, [0], {"faces": 3}, [1, 10], 2, tmp_path / "o")
    with pytest.raises(PipelineError, match=r"seed_1/task_03/samples.safetensors: samples of the last task missing"):
        write_grids(tmp_path / "results", tmp_path / "data", ["faces"], METHODS, [1], {"faces": 3}, [1], 2, tmp_path / "o")
    assert not (tmp_path / "o").exists()
