"""Loading, validating and normalising images from real datasets."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from continual_diffusion.utils.errors import PipelineError

# Modes that have an unambiguous RGB rendering; anything else is rejected.
CONVERTIBLE_MODES = {"L", "LA", "P", "PA", "RGBA", "CMYK", "YCbCr", "I;16", "1"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_rgb(path: Path, non_rgb: str = "convert") -> tuple[Image.Image, str, str | None]:
    """Read ``path`` fully and return (RGB image, sha256 of the file bytes, original mode if converted).

    Raises a one-line PipelineError naming the file when it is missing, empty, not an image, truncated
    or corrupt, or not RGB while ``non_rgb == "reject"``. With ``non_rgb == "convert"``, greyscale,
    palette, CMYK and alpha images are converted (alpha composited on white) and the original mode is
    returned so the manifest can say so.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PipelineError(f"{path}: image file not found") from None
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read image file ({exc.strerror})") from None
    if not data:
        raise PipelineError(f"{path}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:  # PIL's message names the in-memory buffer, not the file
        raise PipelineError(f"{path}: corrupt or truncated image (not in a format PIL recognises)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PipelineError(f"{path}: corrupt or truncated image ({exc})") from None
    converted_from = None
    if image.mode != "RGB":
        if non_rgb == "reject" or image.mode not in CONVERTIBLE_MODES:
            raise PipelineError(f"{path}: image mode {image.mode} is not RGB (data.<benchmark>.non_rgb={non_rgb})")
        converted_from = image.mode
        if "A" in image.mode or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba).convert("RGB")
        else:
            image = image.convert("RGB")
    return image, sha256_bytes(data), converted_from


def square_resize(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to ``size`` x ``size`` (Lanczos)."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    if (w, h) != (side, side):
        image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


def png_bytes(image: Image.Image) -> bytes:
    """Deterministic PNG encoding (no timestamps or text chunks)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()
