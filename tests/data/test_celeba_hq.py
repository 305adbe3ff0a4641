"""CelebA-HQ reader and sampler on a small fixture tree in the CelebAMask-HQ layout."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from continual_diffusion.stages.prepare_data import prepare_tasks
from continual_diffusion.utils import config
from continual_diffusion.utils.errors import PipelineError
from tests.helpers import REPO, build_celeba_hq, distinct_image, tree_bytes


def bench_for(root, **data):
    cfg = config.load([REPO / "params.yaml"], ["profile=paper_faces", f"sources.celeba_hq.root={root}"])
    bench = config.benchmark_config(cfg, "faces")
    bench["data"].update({"n_tasks": 3, "min_images": 4, "max_images": None, "resolution": 24, **data})
    return bench


@pytest.fixture
def celeba(tmp_path):
    root = tmp_path / "CelebAMask-HQ"
    ids = build_celeba_hq(root, {"101": 5, "202": 3, "303": 4, "404": 6, "505": 2})
    return root, ids


def test_samples_identities_with_enough_images(tmp_path, celeba):
    root, ids = celeba
    out = tmp_path / "out"
    prepare_tasks(bench_for(root), "faces", out)
    summary = json.loads((out / "tasks.json").read_text())
    chosen = {t["concept_id"] for t in summary["tasks"]}
    assert chosen == {"celeba_101", "celeba_303", "celeba_404"}  # 202 and 505 have < 4 images
    assert summary["sampling"]["eligible_concepts"] == 3 and summary["sampling"]["concepts_in_source"] == 5
    for entry in summary["tasks"]:
        manifest = json.loads((out / entry["dir"] / "manifest.json").read_text())
        identity = entry["concept_id"].removeprefix("celeba_")
        assert [i["source_id"] for i in manifest["images"]] == [f"{k}.jpg" for k in ids[identity]]
        assert manifest["class_word"] == "person"
        for image in manifest["images"]:
            assert Image.open(out / entry["dir"] / image["file"]).size == (24, 24)


def test_rerun_is_byte_identical(tmp_path, celeba):
    root, _ = celeba
    prepare_tasks(bench_for(root), "faces", tmp_path / "a")
    prepare_tasks(bench_for(root), "faces", tmp_path / "b")
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")


def test_too_few_identities(tmp_path, celeba):
    root, _ = celeba
    with pytest.raises(PipelineError, match=r"only 3 of 5 concepts have >= 4 images"):
        prepare_tasks(bench_for(root, n_tasks=4), "faces", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing,key", [
    ("", "celeba_hq.root"),
    ("CelebA-HQ-to-CelebA-mapping.txt", "celeba_hq.mapping_file"),
    ("identity_CelebA.txt", "celeba_hq.identity_file"),
    ("CelebA-HQ-img", "celeba_hq.images_dir"),
])
def test_missing_files_name_file_and_key(tmp_path, celeba, missing, key):
    import shutil

    root, _ = celeba
    target = root / missing if missing else root
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(PipelineError) as err:
        prepare_tasks(bench_for(root), "faces", tmp_path / "out")
    assert str(target) in str(err.value) and key in str(err.value)
    assert not (tmp_path / "out").exists()


def test_truncated_image_names_the_file(tmp_path, celeba):
    root, ids = celeba
    victim = root / "CelebA-HQ-img" / f"{ids['404'][2]}.jpg"
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 2])
    with pytest.raises(PipelineError, match=rf"{victim}: corrupt or truncated image"):
        prepare_tasks(bench_for(root), "faces", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CelebAMask-HQ"]


def test_not_an_image(tmp_path, celeba):
    root, ids = celeba
    victim = root / "CelebA-HQ-img" / f"{ids['101'][0]}.jpg"
    victim.write_text("not a jpeg")
    with pytest.raises(PipelineError, match=rf"{victim}: corrupt or truncated image"):
        prepare_tasks(bench_for(root), "faces", tmp_path / "out")


def test_greyscale_is_converted_and_recorded(tmp_path, celeba):
    root, ids = celeba
    victim = root / "CelebA-HQ-img" / f"{ids['303'][1]}.jpg"
    distinct_image(999, mode="L").save(victim)
    out = tmp_path / "out"
    prepare_tasks(bench_for(root), "faces", out)
    manifests = [json.loads(p.read_text()) for p in out.glob("task_*/manifest.json")]
    converted = [i for m in manifests for i in m["images"] if "converted_from" in i]
    assert [(i["source_id"], i["converted_from"]) for i in converted] == [(victim.name, "L")]
    assert all(Image.open(p).mode == "RGB" for p in out.glob("task_*/images/*.png"))


def test_greyscale_is_rejected_when_asked(tmp_path, celeba):
    root, ids = celeba
    victim = root / "CelebA-HQ-img" / f"{ids['303'][1]}.jpg"
    distinct_image(999, mode="L").save(victim)
    with pytest.raises(PipelineError, match=rf"{victim}: image mode L is not RGB"):
        prepare_tasks(bench_for(root, non_rgb="reject"), "faces", tmp_path / "out")


def test_duplicate_image_names_both_files(tmp_path, celeba):
    root, ids = celeba
    first = root / "CelebA-HQ-img" / f"{ids['101'][0]}.jpg"
    copy = root / "CelebA-HQ-img" / f"{ids['404'][3]}.jpg"
    copy.write_bytes(first.read_bytes())
    with pytest.raises(PipelineError, match="duplicate image") as err:
        prepare_tasks(bench_for(root), "faces", tmp_path / "out")
    assert first.name in str(err.value) and copy.name in str(err.value)
    assert not (tmp_path / "out").exists()


def test_malformed_mapping_line(tmp_path, celeba):
    root, _ = celeba
    mapping = root / "CelebA-HQ-to-CelebA-mapping.txt"
    mapping.write_text(mapping.read_text() + "7 oops\n")
    with pytest.raises(PipelineError, match=r"CelebA-HQ-to-CelebA-mapping.txt:\d+: expected"):
        prepare_tasks(bench_for(root), "faces", tmp_path / "out")


def prepare_data_cli(root, out):
    """`cdiff prepare-data` in a subprocess (stderr is a pipe, as in a Snakemake job's log)."""
    return subprocess.run(
        [sys.executable, "-m", "continual_diffusion", "prepare-data", "--benchmark", "faces", "--out", str(out),
         "--params", str(REPO / "params.yaml"), "--set", "profile=paper_faces",
         "--set", f"sources.celeba_hq.root={root}", "--set", "data.faces.n_tasks=3", "--set", "data.faces.min_images=4",
         "--set", "data.faces.max_images=null", "--set", "data.faces.resolution=24"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def error_lines(stderr: str) -> list[str]:
    """Lines as grep sees them (split at newlines only: a progress bar's carriage return is inside a line)."""
    return [line for line in stderr.split("\n") if line.startswith("cdiff: error:")]


@pytest.mark.parametrize("damage,message", [
    (lambda data: data[: len(data) // 2], "corrupt or truncated image"),
    (lambda data: b"", "empty file"),
], ids=["truncated", "empty"])
def test_cli_error_starts_its_own_line_after_the_progress_bar(tmp_path, celeba, damage, message):
    root, ids = celeba
    victim = root / "CelebA-HQ-img" / f"{ids['404'][2]}.jpg"  # read after the bar has started
    victim.write_bytes(damage(victim.read_bytes()))
    out = tmp_path / "out"
    result = prepare_data_cli(root, out)
    assert result.returncode == 1
    assert "prepare-data faces" in result.stderr and "<_io." not in result.stderr  # the bar was on stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"cdiff: error: {victim}: {message}"), result.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["CelebAMask-HQ"]


def test_empty_image_file(tmp_path, celeba):
    root, ids = celeba
    victim = root / "CelebA-HQ-img" / f"{ids['101'][0]}.jpg"
    victim.write_bytes(b"")
    with pytest.raises(PipelineError, match=rf"^{victim}: empty file$"):
        prepare_tasks(bench_for(root), "faces", tmp_path / "out")
