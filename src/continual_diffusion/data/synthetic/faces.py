"""Procedural synthetic faces: the offline stand-in for CelebA-HQ identities.

Identity (fixed per concept, drawn from the concept seed):
  discrete  face_shape, skin, hair_style, hair_colour, eye_colour, eyebrows, facial_hair, eyewear,
            headwear, lip_colour  (see ``FACE_ATTRIBUTES``)
  continuous face width/height, eye spacing/height/size, nose length, mouth width/height, and small
            skin/hair colour shifts (``shape``)
Nuisance (fresh per image, drawn from the image seed):
  yaw (feature shift), roll (rotation, degrees), scale, translation, lighting (brightness, light
  gradient strength and direction), background (colour and pattern), shirt colour, smile amount.
Rendering: PIL vector drawing on a ``supersample`` x larger canvas, then Lanczos down-sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from continual_diffusion.data.synthetic.common import Concept, apply_lighting, choice, finish, scale_rgb

KIND = "face"
CLASS_WORD = "person"

SKIN = {
    "porcelain": (250, 218, 196),
    "fair": (241, 194, 158),
    "light tan": (224, 172, 120),
    "olive": (198, 150, 96),
    "tan": (176, 118, 74),
    "brown": (140, 90, 56),
    "dark brown": (100, 64, 40),
    "deep": (72, 46, 32),
}
HAIR_COLOUR = {
    "black": (28, 24, 24),
    "dark brown": (78, 52, 36),
    "auburn": (135, 62, 36),
    "blond": (228, 196, 120),
    "red": (196, 72, 30),
    "grey": (150, 150, 152),
    "white": (236, 236, 230),
    "blue": (52, 92, 204),
    "pink": (232, 120, 172),
}
EYE_COLOUR = {
    "brown": (96, 58, 30),
    "blue": (58, 122, 214),
    "green": (56, 150, 78),
    "grey": (128, 138, 150),
    "amber": (204, 142, 40),
    "violet": (142, 80, 184),
}
LIP_COLOUR = {"pale": (214, 150, 140), "pink": (222, 110, 130), "red": (190, 30, 40), "dark": (110, 50, 50)}
HEADWEAR_COLOUR = (200, 40, 40), (40, 70, 170)

FACE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "face_shape": ("oval", "round", "square", "long", "heart"),
    "skin": tuple(SKIN),
    "hair_style": ("bald", "buzz", "short", "long", "bob", "bun", "mohawk", "curly"),
    "hair_colour": tuple(HAIR_COLOUR),
    "eye_colour": tuple(EYE_COLOUR),
    "eyebrows": ("thin", "thick", "arched"),
    "facial_hair": ("none", "moustache", "beard", "goatee"),
    "eyewear": ("none", "round glasses", "square glasses", "sunglasses"),
    "headwear": ("none", "red cap", "blue headband"),
    "lip_colour": tuple(LIP_COLOUR),
}

BACKGROUNDS = ((200, 205, 215), (170, 190, 170), (215, 200, 180), (150, 160, 190), (230, 230, 230), (90, 95, 110),
               (190, 160, 160), (120, 150, 140))


def draw_face_concept(rng: np.random.Generator, index: int) -> Concept:
    """Draw one identity: every discrete attribute uniformly, shape parameters uniformly in range."""
    attributes = {name: choice(rng, options) for name, options in FACE_ATTRIBUTES.items()}
    # A cap or headband would hide a mohawk or a bun: those styles go bare-headed.
    if attributes["headwear"] != "none" and attributes["hair_style"] in ("mohawk", "bun"):
        attributes["headwear"] = "none"
    shape = {
        "face_w": rng.uniform(0.9, 1.1),
        "face_h": rng.uniform(0.92, 1.1),
        "eye_dx": rng.uniform(0.34, 0.46),
        "eye_y": rng.uniform(-0.16, -0.04),
        "eye_size": rng.uniform(0.11, 0.16),
        "nose_len": rng.uniform(0.16, 0.3),
        "mouth_w": rng.uniform(0.26, 0.44),
        "mouth_y": rng.uniform(0.42, 0.56),
        "skin_shift": rng.uniform(-10, 10),
        "hair_shift": rng.uniform(-14, 14),
    }
    return Concept(kind=KIND, index=index, attributes=attributes, shape=shape)


def face_caption(concept: Concept) -> str:
    """A generic description (used only for the pre-training pool; task concepts use V* tokens)."""
    a = concept.attributes
    if a["hair_style"] == "bald":
        text = f"a photo of a bald {CLASS_WORD} with {a['skin']} skin"
    else:
        text = f"a photo of a {CLASS_WORD} with {a['hair_colour']} {a['hair_style']} hair and {a['skin']} skin"
    if a["facial_hair"] != "none":
        text += f", with a {a['facial_hair']}"
    worn = [a["eyewear"]] if a["eyewear"] != "none" else []
    worn += [f"a {a['headwear']}"] if a["headwear"] != "none" else []
    if worn:
        text += ", wearing " + " and ".join(worn)
    return text


def draw_face_nuisance(rng: np.random.Generator) -> dict:
    """Per-image nuisance parameters (independent of identity)."""
    return {
        "yaw": rng.uniform(-0.22, 0.22),
        "roll": rng.uniform(-12.0, 12.0),
        "scale": rng.uniform(0.86, 1.12),
        "tx": rng.uniform(-0.07, 0.07),
        "ty": rng.uniform(-0.05, 0.06),
        "brightness": rng.uniform(0.8, 1.15),
        "gradient": rng.uniform(0.0, 0.3),
        "light_angle": rng.uniform(0.0, 2 * math.pi),
        "background": int(rng.integers(len(BACKGROUNDS))),
        "background_jitter": rng.uniform(-25, 25, size=3).tolist(),
        "pattern": int(rng.integers(3)),
        "shirt": rng.integers(30, 226, size=3).tolist(),
        "smile": rng.uniform(0.0, 1.0),
    }


@dataclass(frozen=True)
class _Frame:
    """Face-local coordinates (units of ``u``, y down, centred on ``cx``, ``cy``) to canvas pixels;
    features shift with ``yaw`` by their depth."""

    cx: float
    cy: float
    u: float
    yaw: float

    def P(self, x: float, y: float, depth: float = 1.0) -> tuple[float, float]:
        return (self.cx + (x + self.yaw * depth) * self.u, self.cy + y * self.u)

    def box(self, x0: float, y0: float, x1: float, y1: float, depth: float = 1.0) -> list[float]:
        p0, p1 = self.P(x0, y0, depth), self.P(x1, y1, depth)
        return [min(p0[0], p1[0]), min(p0[1], p1[1]), max(p0[0], p1[0]), max(p0[1], p1[1])]


def _background(n: dict, S: int) -> Image.Image:
    """The RGB canvas: a jittered background colour, plain, two-tone or banded."""
    bg = tuple(int(v) for v in np.clip(np.add(BACKGROUNDS[n["background"]], n["background_jitter"]), 0, 255))
    canvas = Image.new("RGB", (S, S), bg)
    bgd = ImageDraw.Draw(canvas)
    if n["pattern"] == 1:  # two-tone split
        bgd.rectangle([0, 0, S // 2, S], fill=scale_rgb(bg, 0.85))
    elif n["pattern"] == 2:  # horizontal bands
        for k in range(0, S, max(S // 8, 1) * 2):
            bgd.rectangle([0, k, S, k + max(S // 8, 1)], fill=scale_rgb(bg, 1.1))
    return canvas


def _draw_head(d: ImageDraw.ImageDraw, f: _Frame, a: dict, s: dict, n: dict, skin, hair, shadow) -> None:
    """Shoulders and neck, long hair behind the head, ears, the face's outline."""
    P, box, u = f.P, f.box, f.u
    fw, fh = s["face_w"], s["face_h"]
    # shoulders and neck
    d.ellipse(box(-2.3, 1.55, 2.3, 3.9, 0.2), fill=tuple(n["shirt"]))
    d.rectangle(box(-0.38, 0.7, 0.38, 1.9, 0.3), fill=shadow)
    # long hair behind the head
    if a["hair_style"] in ("long", "curly"):
        d.rounded_rectangle(box(-1.22 * fw, -1.15 * fh, 1.22 * fw, 1.55, 0.2), radius=0.6 * u, fill=hair)
    elif a["hair_style"] == "bob":
        d.rounded_rectangle(box(-1.18 * fw, -1.15 * fh, 1.18 * fw, 0.55, 0.2), radius=0.5 * u, fill=hair)
    # ears
    for side in (-1, 1):
        d.ellipse(box(side * 1.02 * fw - 0.16, -0.2, side * 1.02 * fw + 0.16, 0.25, 0.4), fill=shadow)
    # face
    shape = a["face_shape"]
    if shape == "oval":
        d.ellipse(box(-fw, -1.2 * fh, fw, 1.05 * fh, 0.5), fill=skin)
    elif shape == "round":
        d.ellipse(box(-1.08 * fw, -1.1 * fh, 1.08 * fw, 1.0 * fh, 0.5), fill=skin)
    elif shape == "square":
        d.rounded_rectangle(box(-fw, -1.15 * fh, fw, 1.0 * fh, 0.5), radius=0.35 * u, fill=skin)
    elif shape == "long":
        d.ellipse(box(-0.84 * fw, -1.3 * fh, 0.84 * fw, 1.2 * fh, 0.5), fill=skin)
    else:  # heart: wide forehead, pointed chin
        d.ellipse(box(-1.05 * fw, -1.2 * fh, 1.05 * fw, 0.45 * fh, 0.5), fill=skin)
        d.polygon([P(-0.98 * fw, 0.05, 0.5), P(0.98 * fw, 0.05, 0.5), P(0, 1.1 * fh, 0.5)], fill=skin)


def _draw_eyes_and_nose(d: ImageDraw.ImageDraw, f: _Frame, a: dict, s: dict, hair, shadow) -> None:
    """Eyes (white, iris, pupil), eyebrows, nose."""
    P, box, u = f.P, f.box, f.u
    er = s["eye_size"]
    eye_rgb = EYE_COLOUR[a["eye_colour"]]
    for side in (-1, 1):
        ex, ey = side * s["eye_dx"], s["eye_y"]
        d.ellipse(box(ex - 1.5 * er, ey - er, ex + 1.5 * er, ey + er), fill=(245, 245, 245))
        d.ellipse(box(ex - 0.85 * er, ey - 0.85 * er, ex + 0.85 * er, ey + 0.85 * er), fill=eye_rgb)
        d.ellipse(box(ex - 0.35 * er, ey - 0.35 * er, ex + 0.35 * er, ey + 0.35 * er), fill=(15, 15, 15))
        # eyebrows
        brow = scale_rgb(hair if a["hair_style"] != "bald" else (60, 50, 45), 0.8)
        by = ey - er - 0.12
        width = {"thin": 0.035, "thick": 0.09, "arched": 0.05}[a["eyebrows"]] * u
        mid_lift = 0.1 if a["eyebrows"] == "arched" else 0.0
        d.line([P(ex - 1.8 * er, by + 0.02), P(ex, by - mid_lift), P(ex + 1.8 * er, by + 0.02)], fill=brow,
               width=max(int(width), 1))
    # nose
    nl = s["nose_len"]
    d.polygon([P(0, -0.02, 1.2), P(-0.09, nl + 0.05, 1.2), P(0.09, nl + 0.05, 1.2)], fill=shadow)


def _draw_mouth(d: ImageDraw.ImageDraw, f: _Frame, a: dict, s: dict, n: dict, hair) -> None:
    """The mouth (an arc that bends more with the smile) and facial hair."""
    P, u = f.P, f.u
    fw, fh = s["face_w"], s["face_h"]
    mw, my = s["mouth_w"], s["mouth_y"]
    lips = LIP_COLOUR[a["lip_colour"]]
    bend = 0.04 + 0.14 * n["smile"]
    d.line([P(-mw / 2, my), P(-mw / 4, my + bend * 0.8), P(mw / 4, my + bend * 0.8), P(mw / 2, my)], fill=lips,
           width=max(int(0.07 * u), 1), joint="curve")
    # facial hair
    fhc = hair if a["hair_style"] != "bald" else (60, 50, 45)
    if a["facial_hair"] == "moustache":
        d.polygon([P(-mw / 2 - 0.05, my - 0.05), P(0, my - 0.2), P(mw / 2 + 0.05, my - 0.05), P(0, my - 0.1)],
                  fill=fhc)
    elif a["facial_hair"] == "beard":
        d.polygon(
            [P(-0.95 * fw, 0.2, 0.5), P(-0.6 * fw, my + 0.05), P(0.6 * fw, my + 0.05), P(0.95 * fw, 0.2, 0.5),
             P(0.7 * fw, 0.9 * fh, 0.5), P(0, 1.15 * fh, 0.5), P(-0.7 * fw, 0.9 * fh, 0.5)],
            fill=fhc,
        )
        d.line([P(-mw / 2, my), P(mw / 2, my)], fill=lips, width=max(int(0.06 * u), 1))
    elif a["facial_hair"] == "goatee":
        d.polygon([P(-0.16, my + 0.1), P(0.16, my + 0.1), P(0, my + 0.45)], fill=fhc)


def _draw_hair_on_top(d: ImageDraw.ImageDraw, f: _Frame, a: dict, s: dict, hair) -> None:
    P, box = f.P, f.box
    fw, fh = s["face_w"], s["face_h"]
    style = a["hair_style"]
    if style == "buzz":
        d.chord(box(-1.0 * fw, -1.25 * fh, 1.0 * fw, -0.2, 0.5), 180, 360, fill=scale_rgb(hair, 0.9))
    elif style in ("short", "long", "bob", "curly", "bun"):
        d.chord(box(-1.08 * fw, -1.35 * fh, 1.08 * fw, -0.25, 0.5), 180, 360, fill=hair)
        if style == "short":
            d.polygon([P(-1.0 * fw, -0.75, 0.5), P(-0.2, -0.82, 0.5), P(-0.9 * fw, -0.35, 0.5)], fill=hair)
        if style == "bun":
            d.ellipse(box(-0.35, -1.75 * fh, 0.35, -1.1 * fh, 0.5), fill=hair)
        if style == "curly":
            for k in range(9):
                ang = math.pi * (1 + k / 8)
                x, y = 1.08 * fw * math.cos(ang), -0.75 + 0.62 * fh * math.sin(ang)
                d.ellipse(box(x - 0.22, y - 0.22, x + 0.22, y + 0.22, 0.5), fill=hair)
    elif style == "mohawk":
        d.rectangle(box(-0.17, -1.55 * fh, 0.17, -0.55, 0.5), fill=hair)


def _draw_eyewear_and_headwear(d: ImageDraw.ImageDraw, f: _Frame, a: dict, s: dict) -> None:
    P, box, u = f.P, f.box, f.u
    fw, fh = s["face_w"], s["face_h"]
    # eyewear
    frame = (25, 25, 25)
    fwid = max(int(0.05 * u), 1)
    for side in (-1, 1):
        ex, ey = side * s["eye_dx"], s["eye_y"]
        if a["eyewear"] == "round glasses":
            d.ellipse(box(ex - 0.24, ey - 0.22, ex + 0.24, ey + 0.22), outline=frame, width=fwid)
        elif a["eyewear"] == "square glasses":
            d.rectangle(box(ex - 0.26, ey - 0.19, ex + 0.26, ey + 0.19), outline=frame, width=fwid)
        elif a["eyewear"] == "sunglasses":
            d.rounded_rectangle(box(ex - 0.27, ey - 0.19, ex + 0.27, ey + 0.2), radius=0.08 * u, fill=(20, 20, 28))
    if a["eyewear"] != "none":
        d.line([P(-s["eye_dx"] + 0.24, s["eye_y"]), P(s["eye_dx"] - 0.24, s["eye_y"])], fill=frame, width=fwid)
    # headwear
    if a["headwear"] == "red cap":
        d.chord(box(-1.12 * fw, -1.45 * fh, 1.12 * fw, -0.3, 0.5), 180, 360, fill=HEADWEAR_COLOUR[0])
        d.rectangle(box(-0.2, -0.9, 1.55 * fw, -0.72, 0.7), fill=scale_rgb(HEADWEAR_COLOUR[0], 0.75))
    elif a["headwear"] == "blue headband":
        d.rectangle(box(-1.04 * fw, -0.98 * fh, 1.04 * fw, -0.8 * fh, 0.5), fill=HEADWEAR_COLOUR[1])


def render_face(concept: Concept, nuisance: dict, size: int, supersample: int = 4) -> Image.Image:
    """Render ``concept`` under ``nuisance`` to an RGB ``size`` x ``size`` image: the background, then the
    person drawn back to front on a transparent layer that is rotated by the roll and pasted on it."""
    a, s, n = concept.attributes, concept.shape, nuisance
    S = size * supersample
    canvas = _background(n, S)

    layer = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    cx, cy = S / 2 + n["tx"] * S, S * 0.46 + n["ty"] * S
    f = _Frame(cx=cx, cy=cy, u=0.2 * S * n["scale"], yaw=n["yaw"])
    skin = scale_rgb(SKIN[a["skin"]], 1 + s["skin_shift"] / 255)
    hair = scale_rgb(HAIR_COLOUR[a["hair_colour"]], 1 + s["hair_shift"] / 255)
    shadow = scale_rgb(skin, 0.8)
    _draw_head(d, f, a, s, n, skin, hair, shadow)
    _draw_eyes_and_nose(d, f, a, s, hair, shadow)
    _draw_mouth(d, f, a, s, n, hair)
    _draw_hair_on_top(d, f, a, s, hair)
    _draw_eyewear_and_headwear(d, f, a, s)

    layer = layer.rotate(n["roll"], resample=Image.Resampling.BILINEAR, center=(cx, cy))
    canvas.paste(layer, (0, 0), layer)
    return apply_lighting(finish(canvas, size), n["brightness"], n["gradient"], n["light_angle"])
