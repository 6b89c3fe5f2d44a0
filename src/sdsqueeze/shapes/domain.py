"""A synthetic captioned domain whose every attribute a program can check.

Each image holds 1-3 identical flat objects (one shape, one colour, one size) grouped at one of
five positions on a plain achromatic background. Object colours sit far apart in hue and every
background is grey-scale, so a detector separates objects from the background by chroma alone and
names their colour by hue (``detect.py``). Captions come from a small grammar; ``parse_prompt``
reads the attributes back from any caption the grammar writes.

Renders are anti-aliased (drawn at 4x and box-downsampled) and, given a random generator, jittered
in place, size and tint so that no two images of one scene are the same.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
# Hues about 45-75 degrees apart (red 0, yellow 54, green 129, cyan 176, blue 233, purple 288).
COLOURS = {
    "red": (220, 40, 40),
    "yellow": (230, 210, 40),
    "green": (40, 170, 60),
    "cyan": (30, 200, 190),
    "blue": (50, 60, 220),
    "purple": (170, 50, 200),
}
POSITIONS = ("left", "right", "top", "bottom", "centre")
SIZES = ("small", "large")
COUNTS = (1, 2, 3)
BACKGROUNDS = {"white": (240, 240, 240), "grey": (128, 128, 128), "black": (25, 25, 25)}

# Where a group is centred, as (x, y) fractions of the image.
POSITION_ANCHORS = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25),
                    "bottom": (0.5, 0.75), "centre": (0.5, 0.5)}
# Object radius (circle radius; square half-side and triangle circumradius follow) as a fraction of
# the image side.
SIZE_RADIUS = {"small": 0.065, "large": 0.11}
SQUARE_HALF_SIDE = 0.9   # x radius: about the circle's area
TRIANGLE_CIRCUMRADIUS = 1.3  # x radius: a visibly comparable mass without crowding a row of three
SUPERSAMPLE = 4

COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
                    "bottom": "at the bottom", "centre": "in the centre"}
ATTRIBUTES = ("shape", "colour", "count", "position", "size", "background")


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    count: int
    position: str
    size: str
    background: str

    def as_dict(self) -> dict:
        return asdict(self)


def sample_scene(rng: np.random.Generator) -> Scene:
    """Every attribute drawn uniformly and independently."""
    return Scene(
        shape=str(rng.choice(SHAPES)),
        colour=str(rng.choice(list(COLOURS))),
        count=int(rng.choice(COUNTS)),
        position=str(rng.choice(POSITIONS)),
        size=str(rng.choice(SIZES)),
        background=str(rng.choice(list(BACKGROUNDS))),
    )


def object_centres(scene: Scene, radius: float, offset=(0.0, 0.0)) -> list[tuple[float, float]]:
    """Centres (fractions of the side) of the scene's objects: a row across the image for top,
    bottom and centre, a column for left and right, centred on the position's anchor."""
    spacing = 2.6 * radius + 0.03
    ax, ay = POSITION_ANCHORS[scene.position]
    ax, ay = ax + offset[0], ay + offset[1]
    steps = [(k - (scene.count - 1) / 2) * spacing for k in range(scene.count)]
    if scene.position in ("left", "right"):
        return [(ax, ay + s) for s in steps]
    return [(ax + s, ay) for s in steps]


def _outline(shape: str, cx: float, cy: float, r: float) -> tuple[str, list[float]]:
    """(PIL primitive, its coordinates) of one object, in pixels."""
    if shape == "circle":
        return "ellipse", [cx - r, cy - r, cx + r, cy + r]
    if shape == "square":
        h = SQUARE_HALF_SIDE * r
        return "rectangle", [cx - h, cy - h, cx + h, cy + h]
    big = TRIANGLE_CIRCUMRADIUS * r  # upright equilateral triangle around its circumcentre
    return "polygon", [cx, cy - big, cx - big * np.sqrt(3) / 2, cy + big / 2,
                       cx + big * np.sqrt(3) / 2, cy + big / 2]


def _jittered(rgb, rng, spread: int, grey: bool = False) -> tuple[int, ...]:
    """``rgb`` shifted by up to ``spread`` levels per channel (all channels alike when ``grey``, so a
    background stays achromatic)."""
    if rng is None:
        return tuple(rgb)
    shifts = rng.integers(-spread, spread + 1, size=1 if grey else 3)
    return tuple(int(np.clip(c + shifts[k % len(shifts)], 0, 255)) for k, c in enumerate(rgb))


def render(scene: Scene, size: int = 128, rng: np.random.Generator | None = None) -> np.ndarray:
    """The scene as an anti-aliased uint8 (size, size, 3) image. With ``rng``: the group moves by up
    to 3% of the side, objects scale by 0.92-1.08 and colours shift by a few levels."""
    radius = SIZE_RADIUS[scene.size]
    offset = (0.0, 0.0)
    if rng is not None:
        radius *= float(rng.uniform(0.92, 1.08))
        offset = tuple(float(v) for v in rng.uniform(-0.03, 0.03, size=2))
    big = size * SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), _jittered(BACKGROUNDS[scene.background], rng, 10, grey=True))
    draw = ImageDraw.Draw(canvas)
    fill = _jittered(COLOURS[scene.colour], rng, 12)
    for cx, cy in object_centres(scene, radius, offset):
        kind, coords = _outline(scene.shape, cx * big, cy * big, radius * big)
        getattr(draw, kind)(coords, fill=fill)
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def _noun(scene: Scene) -> str:
    return scene.shape if scene.count == 1 else scene.shape + "s"


def _counted(scene: Scene, *adjectives: str) -> str:
    quantity = "a" if scene.count == 1 else COUNT_WORDS[scene.count]
    return " ".join([quantity, *adjectives, _noun(scene)])


def phrasings(scene: Scene) -> list[str]:
    """Several captions of one scene. Every caption states shape, colour, count and position;
    some also state size and background. All have at least five words (the prompt stage's filter)."""
    where = POSITION_PHRASES[scene.position]
    background = f"{scene.background} background"
    return [
        f"{_counted(scene, scene.size, scene.colour)} {where}, {background}",
        f"{_counted(scene, scene.colour)} {where}",
        f"{_counted(scene, scene.colour)} {where} on a {background}",
        f"{background} with {_counted(scene, scene.size, scene.colour)} {where}",
        f"{COUNT_WORDS[scene.count]} {scene.size} {_noun(scene)} coloured {scene.colour}, {where}",
    ]


_WORD_COUNTS = {"a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "pair": 2, "three": 3}
_POSITION_WORDS = {"left": "left", "right": "right", "top": "top", "bottom": "bottom",
                   "centre": "centre", "center": "centre", "middle": "centre"}
_SIZE_WORDS = {"small": "small", "tiny": "small", "large": "large", "big": "large"}
_BACKGROUND_WORDS = {"white": "white", "grey": "grey", "gray": "grey", "black": "black"}


def _shape_of(word: str) -> tuple[str, bool] | None:
    """(shape, plural) when the word names a shape."""
    for shape in SHAPES:
        if word == shape:
            return shape, False
        if word == shape + "s":
            return shape, True
    return None


def parse_prompt(text: str) -> dict:
    """The attributes a prompt asks for, as a Scene's field names; attributes it leaves unstated are
    absent. A prompt that names no shape is outside the domain and gives ``{}`` (a COCO caption's
    "red bus on the left" asks nothing a shape detector can check)."""
    words = re.findall(r"[a-z]+", text.lower())
    shapes = [(i, _shape_of(w)) for i, w in enumerate(words) if _shape_of(w)]
    if not shapes:
        return {}
    noun_at, (shape, plural) = shapes[0]
    found: dict = {"shape": shape}
    for i, word in enumerate(words):
        before_background = i + 1 < len(words) and words[i + 1] == "background"
        if word in COLOURS and not before_background:
            found.setdefault("colour", word)
        elif word in _BACKGROUND_WORDS and before_background:
            found.setdefault("background", _BACKGROUND_WORDS[word])
        elif word in _SIZE_WORDS:
            found.setdefault("size", _SIZE_WORDS[word])
        elif word in _POSITION_WORDS:
            found.setdefault("position", _POSITION_WORDS[word])
        elif word in _WORD_COUNTS and i < noun_at:
            found["count"] = _WORD_COUNTS[word]  # the count word nearest the noun wins
    if "count" not in found and not plural:
        found["count"] = 1  # "red circle on the left": one circle
    return {key: found[key] for key in ATTRIBUTES if key in found}
