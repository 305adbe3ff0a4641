"""Procedural synthetic waterfalls: the offline stand-in for Google Landmarks v2 waterfall landmarks.

Landmark identity (fixed per concept, drawn from the concept seed):
  discrete  cliff_shape, rock, streams, water_width, vegetation, feature, water_tint, ground
            (see ``LANDMARK_ATTRIBUTES``)
  continuous cliff top/bottom heights, position of the falls, tier offset, stream spacing (``shape``)
Nuisance (fresh per image, drawn from the image seed):
  sky (time of day) and clouds, camera zoom and pan, lighting (brightness, gradient strength and
  direction), mist over the pool, streaks in the falling water.
Rendering: PIL vector drawing on a ``supersample`` x larger canvas, then Lanczos down-sampling.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from continual_diffusion.data.synthetic.common import Concept, apply_lighting, choice, finish, scale_rgb

KIND = "landmark"
CLASS_WORD = "waterfall"

ROCK = {
    "grey": (120, 120, 125),
    "red sandstone": (172, 86, 58),
    "dark basalt": (52, 50, 58),
    "ochre": (196, 150, 70),
    "white limestone": (214, 210, 196),
    "mossy green": (76, 110, 62),
}
WATER = {"white": (236, 244, 250), "turquoise": (110, 214, 214), "brown": (168, 140, 100)}
GROUND = {"grass": (70, 140, 60), "sand": (214, 194, 140), "snow": (240, 242, 248)}
SKIES = {
    "day": ((110, 170, 235), (190, 220, 245)),
    "dusk": ((70, 60, 120), (240, 150, 90)),
    "overcast": ((150, 155, 165), (200, 202, 206)),
    "dawn": ((170, 150, 200), (250, 210, 170)),
}

LANDMARK_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "cliff_shape": ("flat", "tiered", "horseshoe", "pointed", "twin peaks"),
    "rock": tuple(ROCK),
    "streams": ("one", "two", "three"),
    "water_width": ("thin", "medium", "wide"),
    "vegetation": ("none", "pines", "palms", "bushes"),
    "feature": ("none", "bridge", "cabin", "rainbow", "boulder"),
    "water_tint": tuple(WATER),
    "ground": tuple(GROUND),
}


def draw_landmark_concept(rng: np.random.Generator, index: int) -> Concept:
    attributes = {name: choice(rng, options) for name, options in LANDMARK_ATTRIBUTES.items()}
    shape = {
        "cliff_top": rng.uniform(0.24, 0.38),
        "cliff_bottom": rng.uniform(0.64, 0.72),
        "fall_x": rng.uniform(0.4, 0.6),
        "tier": rng.uniform(0.08, 0.14),
        "spacing": rng.uniform(0.1, 0.16),
        "rock_shift": rng.uniform(-12, 12),
    }
    return Concept(kind=KIND, index=index, attributes=attributes, shape=shape)


def landmark_caption(concept: Concept) -> str:
    a = concept.attributes
    count = {"one": "a single", "two": "two", "three": "three"}[a["streams"]]
    plural = "" if a["streams"] == "one" else "s"
    text = (
        f"a photo of a {CLASS_WORD} with {a['rock']} {a['cliff_shape']} cliffs and {count} "
        f"{a['water_width']} {a['water_tint']} stream{plural}"
    )
    if a["vegetation"] != "none":
        text += f", surrounded by {a['vegetation']}"
    if a["feature"] != "none":
        text += f", with a {a['feature']}"
    return text


def draw_landmark_nuisance(rng: np.random.Generator) -> dict:
    return {
        "sky": choice(rng, tuple(SKIES)),
        "clouds": rng.uniform(0, 1, size=(int(rng.integers(0, 5)), 3)).tolist(),
        "zoom": rng.uniform(0.9, 1.15),
        "tx": rng.uniform(-0.08, 0.08),
        "ty": rng.uniform(-0.05, 0.05),
        "brightness": rng.uniform(0.8, 1.15),
        "gradient": rng.uniform(0.0, 0.3),
        "light_angle": rng.uniform(0.0, 2 * math.pi),
        "mist": rng.uniform(0.0, 1.0),
        "streaks": rng.uniform(0, 1, size=(12, 2)).tolist(),
    }


def render_landmark(concept: Concept, nuisance: dict, size: int, supersample: int = 4) -> Image.Image:
    """Render ``concept`` under ``nuisance`` to an RGB ``size`` x ``size`` image."""
    a, s, n = concept.attributes, concept.shape, nuisance
    S = size * supersample
    top_sky, low_sky = SKIES[n["sky"]]
    canvas = Image.new("RGB", (S, S))
    d = ImageDraw.Draw(canvas)
    for row in range(0, S, supersample):  # vertical sky gradient
        t = row / S
        colour = tuple(int(top_sky[c] * (1 - t) + low_sky[c] * t) for c in range(3))
        d.rectangle([0, row, S, row + supersample], fill=colour)
    zoom = n["zoom"]

    def P(x: float, y: float) -> tuple[float, float]:
        """Scene coordinates (0..1, y down) to canvas through the camera's zoom and pan."""
        return (S / 2 + (x - 0.5) * S * zoom + n["tx"] * S, S / 2 + (y - 0.5) * S * zoom + n["ty"] * S)

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        p0, p1 = P(x0, y0), P(x1, y1)
        return [min(p0[0], p1[0]), min(p0[1], p1[1]), max(p0[0], p1[0]), max(p0[1], p1[1])]

    for cx, cy, r in n["clouds"]:
        d.ellipse(box(cx - 0.12 - 0.08 * r, 0.05 + 0.15 * cy, cx + 0.12 + 0.08 * r, 0.12 + 0.15 * cy), fill=(245, 245, 248))

    rock = scale_rgb(ROCK[a["rock"]], 1 + s["rock_shift"] / 255)
    rock_dark = scale_rgb(rock, 0.75)
    top, bottom, fx = s["cliff_top"], s["cliff_bottom"], s["fall_x"]
    shape = a["cliff_shape"]
    if shape == "flat":
        outline = [(-0.2, top), (1.2, top)]
    elif shape == "tiered":
        outline = [(-0.2, top + s["tier"]), (fx - 0.22, top + s["tier"]), (fx - 0.22, top), (fx + 0.22, top),
                   (fx + 0.22, top + s["tier"]), (1.2, top + s["tier"])]
    elif shape == "horseshoe":
        outline = [(-0.2, top - 0.08), (fx - 0.3, top - 0.04), (fx, top + 0.05), (fx + 0.3, top - 0.04), (1.2, top - 0.08)]
    elif shape == "pointed":
        outline = [(-0.2, top + 0.12), (fx, top - 0.1), (1.2, top + 0.12)]
    else:  # twin peaks
        outline = [(-0.2, top + 0.1), (fx - 0.25, top - 0.1), (fx, top + 0.04), (fx + 0.25, top - 0.1), (1.2, top + 0.1)]
    d.polygon([P(x, y) for x, y in outline] + [P(1.2, bottom + 0.05), P(-0.2, bottom + 0.05)], fill=rock)
    for k in range(4):  # rock strata
        y = top + (bottom - top) * (0.25 + 0.2 * k)
        d.line([P(-0.2, y), P(1.2, y + 0.02 * (-1) ** k)], fill=rock_dark, width=max(S // 96, 1))

    def cliff_top_at(x: float) -> float:
        xs, ys = zip(*outline)
        return float(np.interp(x, xs, ys))

    water = WATER[a["water_tint"]]
    half_width = {"thin": 0.025, "medium": 0.05, "wide": 0.09}[a["water_width"]]
    count = {"one": 1, "two": 2, "three": 3}[a["streams"]]
    centres = [fx + (k - (count - 1) / 2) * (2 * half_width + s["spacing"]) for k in range(count)]
    for x in centres:
        d.rectangle(box(x - half_width, cliff_top_at(x) - 0.01, x + half_width, bottom + 0.03), fill=water)
        for sx, sy in n["streaks"]:  # per-image streaks in the water
            xx = x - half_width + 2 * half_width * sx
            y0 = cliff_top_at(x) + (bottom - cliff_top_at(x)) * sy * 0.7
            d.line([P(xx, y0), P(xx, y0 + 0.1)], fill=scale_rgb(water, 0.86), width=max(S // 128, 1))

    ground = GROUND[a["ground"]]
    d.rectangle(box(-0.2, bottom + 0.02, 1.2, 1.3), fill=ground)
    d.ellipse(box(fx - 0.33, bottom - 0.02, fx + 0.33, bottom + 0.16), fill=scale_rgb(water, 0.8))
    if n["mist"] > 0.4:
        d.ellipse(box(fx - 0.25, bottom - 0.05, fx + 0.25, bottom + 0.06), fill=scale_rgb(water, 0.95 + 0.05 * n["mist"]))

    veg = a["vegetation"]
    for k, x in enumerate((0.08, 0.2, 0.8, 0.92)):
        base = bottom + 0.12 + 0.02 * (k % 2)
        if veg == "pines":
            d.polygon([P(x, base - 0.24), P(x - 0.06, base), P(x + 0.06, base)], fill=(24, 80, 40))
        elif veg == "palms":
            d.line([P(x, base), P(x + 0.02, base - 0.2)], fill=(110, 80, 40), width=max(S // 64, 1))
            for ang in (-2.6, -2.0, -1.1, -0.5):
                d.line([P(x + 0.02, base - 0.2), P(x + 0.02 + 0.09 * math.cos(ang), base - 0.2 + 0.06 * math.sin(ang) + 0.05)],
                       fill=(40, 130, 50), width=max(S // 80, 1))
        elif veg == "bushes":
            d.ellipse(box(x - 0.06, base - 0.07, x + 0.06, base + 0.01), fill=(60, 120, 50))

    feature = a["feature"]
    if feature == "bridge":
        d.arc(box(fx - 0.3, bottom - 0.16, fx + 0.3, bottom + 0.1), 180, 360, fill=(110, 70, 40), width=max(S // 40, 1))
    elif feature == "cabin":
        x = 0.12 if fx > 0.5 else 0.82
        d.rectangle(box(x - 0.06, bottom - 0.02, x + 0.06, bottom + 0.08), fill=(140, 90, 50))
        d.polygon([P(x - 0.08, bottom - 0.02), P(x, bottom - 0.1), P(x + 0.08, bottom - 0.02)], fill=(150, 40, 30))
    elif feature == "rainbow":
        for k, colour in enumerate(((230, 60, 60), (240, 200, 60), (80, 190, 80), (70, 110, 230))):
            r = 0.3 - 0.025 * k
            d.arc(box(fx - r, bottom - r - 0.05, fx + r, bottom + r - 0.05), 200, 340, fill=colour, width=max(S // 100, 1))
    elif feature == "boulder":
        d.ellipse(box(fx + 0.05, bottom + 0.02, fx + 0.2, bottom + 0.12), fill=(90, 88, 86))

    return apply_lighting(finish(canvas, size), n["brightness"], n["gradient"], n["light_angle"])
