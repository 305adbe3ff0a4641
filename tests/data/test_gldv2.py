"""Google Landmarks v2 reader and sampler on a small fixture tree."""

import json

import pytest
from PIL import Image

from continual_diffusion.stages.prepare_data import prepare_tasks
from continual_diffusion.utils import config
from continual_diffusion.utils.errors import PipelineError
from tests.helpers import REPO, build_gldv2, gldv2_image_path


def bench_for(root, **data):
    cfg = config.load([REPO / "params.yaml"], ["profile=paper_landmarks", f"sources.gldv2.root={root}"])
    bench = config.benchmark_config(cfg, "landmarks")
    bench["data"].update({"n_tasks": 2, "min_images": 3, "max_images": 4, "resolution": 20, **data})
    return bench


@pytest.fixture
def gldv2(tmp_path):
    root = tmp_path / "gldv2"
    ids = build_gldv2(root, {
        "11": ("Niagara_Falls", 6),
        "22": ("Eiffel_Tower", 9),          # not a waterfall
        "33": ("Waterfalls_of_Iceland", 3),
        "44": ("Angel_Falls", 2),           # a waterfall with too few images
    })
    return root, ids


def test_category_filter_and_image_count(tmp_path, gldv2):
    root, ids = gldv2
    out = tmp_path / "out"
    prepare_tasks(bench_for(root), "landmarks", out)
    summary = json.loads((out / "tasks.json").read_text())
    assert {t["concept_id"] for t in summary["tasks"]} == {"gldv2_11", "gldv2_33"}
    assert summary["sampling"]["concepts_in_source"] == 3  # 22 filtered out by category
    for entry in summary["tasks"]:
        manifest = json.loads((out / entry["dir"] / "manifest.json").read_text())
        landmark = entry["concept_id"].removeprefix("gldv2_")
        chosen = [i["source_id"] for i in manifest["images"]]
        assert len(chosen) == min(4, len(ids[landmark])) and set(chosen) <= set(ids[landmark])
        assert manifest["concept"]["category"].endswith(("Niagara_Falls", "Waterfalls_of_Iceland"))
        assert Image.open(out / entry["dir"] / manifest["images"][0]["file"]).size == (20, 20)  # centre crop


def test_other_category_filter(tmp_path, gldv2):
    root, _ = gldv2
    bench = bench_for(root, n_tasks=1)
    bench["source"]["category_filter"] = "eiffel"
    prepare_tasks(bench, "landmarks", tmp_path / "out")
    assert json.loads((tmp_path / "out" / "tasks.json").read_text())["tasks"][0]["concept_id"] == "gldv2_22"


def test_bad_filter_regex(tmp_path, gldv2):
    root, _ = gldv2
    bench = bench_for(root)
    bench["source"]["category_filter"] = "(unclosed"
    with pytest.raises(PipelineError, match="gldv2.category_filter: invalid regular expression"):
        prepare_tasks(bench, "landmarks", tmp_path / "out")


def test_missing_csv(tmp_path, gldv2):
    root, _ = gldv2
    (root / "train.csv").unlink()
    with pytest.raises(PipelineError, match=rf"{root / 'train.csv'}: file not found \(set sources.gldv2.train_file"):
        prepare_tasks(bench_for(root), "landmarks", tmp_path / "out")


def test_missing_column(tmp_path, gldv2):
    root, _ = gldv2
    (root / "train_label_to_category.csv").write_text("landmark_id,name\n11,x\n")
    with pytest.raises(PipelineError, match="missing column"):
        prepare_tasks(bench_for(root), "landmarks", tmp_path / "out")


def test_missing_image_file_is_named(tmp_path, gldv2):
    root, ids = gldv2
    victim = gldv2_image_path(root, ids["33"][1])
    victim.unlink()
    with pytest.raises(PipelineError, match=rf"{victim}: image file not found"):
        prepare_tasks(bench_for(root), "landmarks", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_rgba_is_composited_on_white(tmp_path, gldv2):
    root, ids = gldv2
    victim = gldv2_image_path(root, ids["33"][0])
    Image.new("RGBA", (30, 30), (255, 0, 0, 0)).save(victim, format="PNG")  # fully transparent red
    out = tmp_path / "out"
    prepare_tasks(bench_for(root), "landmarks", out)
    for manifest_path in out.glob("task_*/manifest.json"):
        for entry in json.loads(manifest_path.read_text())["images"]:
            if entry["source_id"] == ids["33"][0]:
                assert entry["converted_from"] == "RGBA"
                assert Image.open(manifest_path.parent / entry["file"]).getpixel((10, 10)) == (255, 255, 255)
                return
    pytest.fail("the converted image was not sampled")
