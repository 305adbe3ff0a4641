"""Builders for small fixture trees and throw-away copies of the workflow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ["Snakefile", "params.yaml", "dvc.yaml", ".dvcignore", ".gitignore", "workflow", "profiles", "src",
                  "pyproject.toml", "embedded", "reports/reported"]


def distinct_image(seed: int, size: int = 40, mode: str = "RGB") -> Image.Image:
    """A random-noise image: distinct for every seed, so no accidental duplicates."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, size=(size, size + 8, 3), dtype=np.uint8), "RGB")
    return image.convert(mode) if mode != "RGB" else image


def build_celeba_hq(root: Path, images_per_identity: dict[str, int], ext: str = ".jpg") -> dict[str, list[int]]:
    """A CelebAMask-HQ-layout tree: identity -> HQ indices. HQ indices interleave identities."""
    (root / "CelebA-HQ-img").mkdir(parents=True)
    mapping_lines = ["idx         orig_idx    orig_file"]
    identity_lines = []
    by_identity: dict[str, list[int]] = {k: [] for k in images_per_identity}
    hq = 0
    remaining = dict(images_per_identity)
    while any(remaining.values()):
        for identity in images_per_identity:
            if remaining[identity]:
                orig = f"{100000 + hq:06d}.jpg"
                mapping_lines.append(f"{hq}           {100000 + hq}      {orig}")
                identity_lines.append(f"{orig} {identity}")
                distinct_image(hq).save(root / "CelebA-HQ-img" / f"{hq}{ext}", quality=95)
                by_identity[identity].append(hq)
                remaining[identity] -= 1
                hq += 1
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping_lines) + "\n")
    (root / "identity_CelebA.txt").write_text("\n".join(identity_lines) + "\n")
    return by_identity


def gldv2_image_path(root: Path, image_id: str) -> Path:
    return root / "train" / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"


def build_gldv2(root: Path, landmarks: dict[str, tuple[str, int]]) -> dict[str, list[str]]:
    """A GLDv2 training-set tree: landmark_id -> (category, image count)."""
    root.mkdir(parents=True)
    train = ["id,url,landmark_id"]
    categories = ["landmark_id,category"]
    ids: dict[str, list[str]] = {}
    seed = 0
    for landmark, (category, count) in landmarks.items():
        categories.append(f"{landmark},http://commons.wikimedia.org/wiki/Category:{category}")
        ids[landmark] = []
        for _ in range(count):
            image_id = f"{seed * 7919 % 65536:04x}{seed:012x}"
            path = gldv2_image_path(root, image_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            distinct_image(10_000 + seed).save(path, quality=95)
            train.append(f"{image_id},http://example.invalid/{image_id}.jpg,{landmark}")
            ids[landmark].append(image_id)
            seed += 1
    (root / "train.csv").write_text("\n".join(train) + "\n")
    (root / "train_label_to_category.csv").write_text("\n".join(categories) + "\n")
    return ids


def edit_params(path: Path, edit) -> None:
    """Load ``path`` (a params.yaml), let ``edit`` change the mapping in place, write it back. A round trip
    through ruamel.yaml (DVC's YAML library): comments, flow style and the scalars' spelling (``1e-4``) stay
    as they are, so Snakemake and DVC read every untouched value exactly as before."""
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip mode
    yaml.preserve_quotes = True
    yaml.width = 4096  # keep long flow-style lines on one line
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    with open(path) as handle:
        data = yaml.load(handle)
    edit(data)
    with open(path, "w") as handle:
        yaml.dump(data, handle)


def workflow_copy(dest: Path, profile: str = "smoke") -> Path:
    """A runnable copy of the workflow (git + DVC repository) with ``profile`` active."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    edit_params(dest / "params.yaml", lambda p: p.update(profile=profile))
    env = env_with_venv()
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True, env=env)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=dest, check=True, env=env)
    subprocess.run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], cwd=dest, check=True, env=env)
    return dest


def env_with_venv() -> dict[str, str]:
    """The environment with this interpreter's bin folder first on PATH (snakemake, dvc)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop("DVC_STAGE", None)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env_with_venv(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def dry_run_job_fields(text: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, {field: value}) of every job a ``snakemake -n`` output lists (input, output, wildcards,
    resources, ...: the indented lines under each ``rule <name>:``)."""
    jobs = []
    for block in re.split(r"\n(?=\[.*\]\n(?:local)?rule )", text):
        match = re.search(r"rule (\w+):\n((?:    .*\n?)*)", block)
        if match:
            jobs.append((match.group(1), dict(re.findall(r"^    (\w+): (.*)$", match.group(2), flags=re.M))))
    return jobs
