"""Task sampling and writing: the filter, the manifest, atomicity, duplicates, byte-identical reruns."""

import hashlib
import json

import pytest
from PIL import Image

from continual_diffusion.data.sources import ConceptRecord, ImageItem, LoadedImage
from continual_diffusion.data.tasks import sample_tasks, write_tasks
from continual_diffusion.stages.prepare_data import prepare_pool, prepare_tasks
from continual_diffusion.utils.config import benchmark_config
from continual_diffusion.utils.errors import PipelineError
from tests.helpers import distinct_image, tree_bytes


def records(counts, duplicate_at=None, broken_at=None):
    """Concepts c0, c1, ... with counts[i] noise images each."""
    out = []
    seed = 0
    for i, n in enumerate(counts):
        items = []
        for j in range(n):
            s = seed
            if duplicate_at == (i, j):
                s = 0  # same pixels as the very first image
            def loader(s=s, broken=(broken_at == (i, j)), name=f"c{i}/{j}"):
                if broken:
                    raise PipelineError(f"{name}: corrupt or truncated image (test)")
                image = distinct_image(s)
                return LoadedImage(image, hashlib.sha256(image.tobytes()).hexdigest())
            items.append(ImageItem(source_id=f"c{i}/{j}", origin=f"c{i}/{j}", loader=loader))
            seed += 1
        out.append(ConceptRecord(concept_id=f"c{i}", items=items))
    return out


def test_filter_keeps_only_concepts_with_enough_images():
    tasks, eligible = sample_tasks(records([3, 5, 8, 2, 6]), 3, 5, None, seed=0, key="data.x")
    assert eligible == 3
    assert sorted(t.record.concept_id for t in tasks) == ["c1", "c2", "c4"]
    assert [t.task for t in tasks] == [1, 2, 3]


def test_too_few_eligible_concepts_is_a_one_line_error_naming_the_keys():
    with pytest.raises(PipelineError) as err:
        sample_tasks(records([3, 5, 8]), 3, 5, None, seed=0, key="data.faces")
    message = str(err.value)
    assert "only 2 of 3 concepts have >= 5 images" in message
    assert "data.faces.min_images" in message and "data.faces.n_tasks" in message and "\n" not in message


def test_sampling_depends_on_the_seed_only():
    a, _ = sample_tasks(records([6] * 12), 4, 5, 5, seed=3, key="k")
    b, _ = sample_tasks(records([6] * 12), 4, 5, 5, seed=3, key="k")
    c, _ = sample_tasks(records([6] * 12), 4, 5, 5, seed=4, key="k")
    def ids(ts):
        return [(t.record.concept_id, [i.source_id for i in t.items]) for t in ts]

    assert ids(a) == ids(b) and ids(a) != ids(c)


def test_max_images_subsamples_in_source_order():
    tasks, _ = sample_tasks(records([10, 10]), 2, 5, 4, seed=0, key="k")
    for t in tasks:
        positions = [int(i.source_id.split("/")[1]) for i in t.items]
        assert len(positions) == 4 and positions == sorted(positions)


def write(tmp_path, recs, n_tasks=2, resolution=16):
    tasks, eligible = sample_tasks(recs, n_tasks, 3, None, seed=0, key="data.x")
    out = tmp_path / "out"
    write_tasks(out, tasks, benchmark="x", source="test", class_word="thing", resolution=resolution,
                sampling={"seed": 0, "eligible_concepts": eligible})
    return out


def test_manifest_lists_every_image_with_its_hash(tmp_path):
    out = write(tmp_path, records([4, 3]))
    summary = json.loads((out / "tasks.json").read_text())
    assert [t["dir"] for t in summary["tasks"]] == ["task_01", "task_02"]
    for entry in summary["tasks"]:
        manifest = json.loads((out / entry["dir"] / "manifest.json").read_text())
        assert manifest["task"] == entry["task"] and manifest["concept_id"] == entry["concept_id"]
        assert manifest["n_images"] == len(manifest["images"]) == entry["n_images"]
        assert manifest["sampling"]["seed"] == 0
        for image in manifest["images"]:
            path = out / entry["dir"] / image["file"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == image["sha256"]
            assert Image.open(path).size == (16, 16) and Image.open(path).mode == "RGB"
            assert image["source_id"].startswith(entry["concept_id"] + "/")
    assert (out / "overview.png").exists()


@pytest.mark.parametrize("problem", ["duplicate", "broken"])
def test_bad_image_leaves_no_output(tmp_path, problem):
    recs = records([4, 4], duplicate_at=(1, 2)) if problem == "duplicate" else records([4, 4], broken_at=(1, 3))
    with pytest.raises(PipelineError, match="duplicate image" if problem == "duplicate" else "corrupt"):
        write(tmp_path, recs)
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary folder


def test_rewrite_replaces_previous_output(tmp_path):
    out = write(tmp_path, records([4, 3]))
    (out / "stale.txt").write_text("old")
    write(tmp_path, records([4, 3]))
    assert not (out / "stale.txt").exists()


@pytest.mark.parametrize("benchmark", ["faces", "landmarks"])
def test_synthetic_benchmark_is_byte_identical_on_rerun(tmp_path, smoke_cfg, benchmark):
    bench = benchmark_config(smoke_cfg, benchmark)
    prepare_tasks(bench, benchmark, tmp_path / "a")
    prepare_tasks(bench, benchmark, tmp_path / "b")
    first, second = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert first == second
    summary = json.loads(first["tasks.json"])
    assert summary["n_tasks"] == smoke_cfg["data"][benchmark]["n_tasks"]
    assert summary["sampling"]["eligible_concepts"] < summary["sampling"]["concepts_in_source"]  # filter bit
    prepare_pool(bench, benchmark, tmp_path / "pool_a")
    prepare_pool(bench, benchmark, tmp_path / "pool_b")
    assert tree_bytes(tmp_path / "pool_a") == tree_bytes(tmp_path / "pool_b")


def test_pool_holds_generic_images_with_captions(tmp_path, smoke_cfg):
    from safetensors.numpy import load_file

    bench = benchmark_config(smoke_cfg, "faces")
    prepare_pool(bench, "faces", tmp_path / "pool")
    arrays = load_file(str(tmp_path / "pool" / "images.safetensors"))
    captions = json.loads((tmp_path / "pool" / "captions.json").read_text())
    manifest = json.loads((tmp_path / "pool" / "manifest.json").read_text())
    n = bench["source"]["pool_concepts"] * bench["source"]["pool_images_per_concept"]
    assert arrays["images"].shape == (n, 32, 32, 3) and arrays["images"].dtype.name == "uint8"
    assert len(captions) == n and all("person" in c for c in captions)
    images = (tmp_path / "pool" / "images.safetensors").read_bytes()
    assert manifest["images_sha256"] == hashlib.sha256(images).hexdigest()
    task_concepts = {c["concept_id"] for c in manifest["concepts"]}
    assert len(task_concepts) == bench["source"]["pool_concepts"]


def test_pool_of_a_real_source_is_refused(tmp_path):
    from continual_diffusion.utils import config

    cfg = config.load(overrides=["profile=paper_faces"])
    with pytest.raises(PipelineError, match="no generic pool"):
        prepare_pool(benchmark_config(cfg, "faces"), "faces", tmp_path / "pool")
