"""CelebA-HQ identities from a local folder in the CelebAMask-HQ layout.

Expected files (names configurable under ``celeba_hq`` in params.yaml, relative to ``root``):
  CelebA-HQ-img/<idx>.jpg                 the 30,000 HQ images, named by HQ index
  CelebA-HQ-to-CelebA-mapping.txt         columns ``idx orig_idx orig_file`` (header line first)
  identity_CelebA.txt                     CelebA's ``<orig_file> <identity>`` per line
An identity's images are the HQ images whose original CelebA file carries that identity.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from continual_diffusion.data.images import load_rgb
from continual_diffusion.data.sources import ConceptRecord, ImageItem, LoadedImage
from continual_diffusion.utils.errors import PipelineError


def _require(path: Path, what: str, key: str) -> Path:
    if not path.exists():
        raise PipelineError(f"{path}: {what} not found (set sources.{key} in params.yaml)")
    return path


def read_mapping(path: Path) -> dict[int, str]:
    """HQ index -> original CelebA file name."""
    mapping: dict[int, str] = {}
    lines = path.read_text().splitlines()
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or (lineno == 1 and not fields[0].isdigit()):
            continue  # blank line or header
        if len(fields) != 3 or not fields[0].isdigit():
            raise PipelineError(f"{path}:{lineno}: expected 'idx orig_idx orig_file', got {line.strip()!r}")
        mapping[int(fields[0])] = fields[2]
    if not mapping:
        raise PipelineError(f"{path}: no mapping rows found")
    return mapping


def read_identities(path: Path) -> dict[str, str]:
    """Original CelebA file name -> identity id."""
    identities: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise PipelineError(f"{path}:{lineno}: expected '<file> <identity>', got {line.strip()!r}")
        identities[fields[0]] = fields[1]
    if not identities:
        raise PipelineError(f"{path}: no identity rows found")
    return identities


def celeba_hq_records(params: dict, non_rgb: str) -> list[ConceptRecord]:
    """One record per CelebA identity present in CelebA-HQ, images ordered by HQ index."""
    root = _require(Path(params["root"]), "CelebA-HQ root folder", "celeba_hq.root")
    images_dir = _require(root / params["images_dir"], "CelebA-HQ image folder", "celeba_hq.images_dir")
    mapping = read_mapping(_require(root / params["mapping_file"], "CelebA-HQ-to-CelebA mapping file", "celeba_hq.mapping_file"))
    identities = read_identities(_require(root / params["identity_file"], "CelebA identity file", "celeba_hq.identity_file"))
    by_identity: dict[str, list[int]] = defaultdict(list)
    for hq_index, orig_file in sorted(mapping.items()):
        identity = identities.get(orig_file)
        if identity is None:
            raise PipelineError(f"{root / params['identity_file']}: no identity for {orig_file} (HQ image {hq_index})")
        by_identity[identity].append(hq_index)
    extension = params["image_extension"]
    records = []
    for identity in sorted(by_identity, key=lambda x: (len(x), x)):
        items = []
        for hq_index in by_identity[identity]:
            path = images_dir / f"{hq_index}{extension}"
            items.append(ImageItem(
                source_id=f"{hq_index}{extension}",
                origin=str(path),
                loader=lambda p=path: LoadedImage(*load_rgb(p, non_rgb)),
            ))
        records.append(ConceptRecord(concept_id=f"celeba_{identity}", items=items, metadata={"celeba_identity": identity}))
    return records
