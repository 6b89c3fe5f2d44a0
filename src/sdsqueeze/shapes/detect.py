"""Prompt adherence without learned weights: find the objects of a shapes-domain image by colour
segmentation, name their shape by geometry and their colour by hue, and check them against what the
prompt asks for (in the spirit of GenEval's object/colour/count/position checks).

Why hand-written: the segmentation and measurements are scikit-image's (label, regionprops); what no
library provides is the domain's own decision rules, which are short and listed here.

- Objects: pixels whose chroma (max - min of R, G, B, lightly smoothed) stands out from the
  background's (backgrounds are grey-scale, object colours saturated) and reaches 30% of the objects'
  own chroma; opened and hole-filled; connected components of at least a quarter of the largest
  one's area (specks from a generator's noise are not objects).
- Shape: the best overlap (IoU) with an upright circle, square and triangle of the component's own
  area and centroid (template matching; blur rounds corners but moves little area); below 0.7 the
  blob is no shape of the domain ("unrecognised").
- Colour: the chroma-weighted circular mean hue of the component's core, named by the nearest hue of
  ``domain.COLOURS``.
- Position: the mean of the objects' centroids, named by the nearest of ``domain.POSITION_ANCHORS``.
- Size (reported, not checked by ``adherence``): the nearest of ``domain.SIZE_RADIUS`` to the
  radius of a circle of the object's area.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import color, measure, morphology

from .domain import COLOURS, POSITION_ANCHORS, SIZE_RADIUS, parse_prompt

ADHERENCE_ATTRIBUTES = ("shape", "colour", "position", "count")
MIN_CHROMA = 25          # levels (of 255): above a grey background's noise
BACKGROUND_MARGIN = 25   # levels above the border's median chroma (a tinted generated background)
OBJECT_CHROMA_SHARE = 0.3  # of the objects' 95th-percentile chroma: where a blurred edge is cut
MIN_AREA_PIXELS = 12
MIN_AREA_OF_LARGEST = 0.25
# A blob overlapping no template this well is no shape of the domain (a generator's smudge); clean
# renders overlap theirs by more than 0.9, blurred ones (sigma 2 px) by more than 0.8.
MIN_TEMPLATE_MATCH = 0.7
UNRECOGNISED = "unrecognised"


@dataclass(frozen=True)
class DetectedObject:
    shape: str
    colour: str
    centre: tuple[float, float]  # (x, y) as fractions of width and height
    radius: float                # radius of the circle of equal area, as a fraction of the width
    match: float                 # overlap (IoU) with the shape's template
    hue: float                   # degrees

    @property
    def size(self) -> str:
        return min(SIZE_RADIUS, key=lambda name: abs(np.log(self.radius / SIZE_RADIUS[name])))


def _hue_degrees(rgb) -> float:
    return 360.0 * colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0]


NAMED_HUES = {name: _hue_degrees(rgb) for name, rgb in COLOURS.items()}


def _hue_distance(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def name_hue(hue: float) -> str:
    return min(NAMED_HUES, key=lambda name: _hue_distance(hue, NAMED_HUES[name]))


def name_position(x: float, y: float) -> str:
    return min(POSITION_ANCHORS, key=lambda p: (POSITION_ANCHORS[p][0] - x) ** 2 + (POSITION_ANCHORS[p][1] - y) ** 2)


def chroma_map(image: np.ndarray) -> np.ndarray:
    pixels = image.astype(np.float32)
    return pixels.max(axis=2) - pixels.min(axis=2)


def object_mask(image: np.ndarray) -> np.ndarray:
    """Pixels of objects: chroma above the background's (its border's median) by a margin, and above
    a fixed share of the objects' own chroma, so that faded colours are cut at the same relative
    level as saturated ones."""
    chroma = ndimage.gaussian_filter(chroma_map(image), sigma=0.7)
    border = np.concatenate([chroma[0], chroma[-1], chroma[:, 0], chroma[:, -1]])
    floor = max(MIN_CHROMA, float(np.median(border)) + BACKGROUND_MARGIN)
    candidate = chroma > floor
    if candidate.any():
        peak = float(np.percentile(chroma[candidate], 95))
        candidate = chroma > max(floor, OBJECT_CHROMA_SHARE * peak)
    mask = ndimage.binary_opening(candidate, morphology.disk(1))
    return ndimage.binary_fill_holes(mask)


def shape_templates(rows: np.ndarray, cols: np.ndarray, area: float) -> dict[str, np.ndarray]:
    """Masks of an upright circle, square and equilateral triangle of the given area, centred (by
    centroid) on the origin, over pixel offsets ``rows`` (down) and ``cols`` (right)."""
    radius = np.sqrt(area / np.pi)
    half_side = np.sqrt(area) / 2
    side = np.sqrt(4 * area / np.sqrt(3))
    circumradius = side / np.sqrt(3)  # apex at -circumradius, base at +circumradius / 2
    depth = (rows + circumradius) / (1.5 * circumradius)
    return {
        "circle": rows**2 + cols**2 <= radius**2,
        "square": (np.abs(rows) <= half_side) & (np.abs(cols) <= half_side),
        "triangle": (rows <= circumradius / 2) & (depth >= 0) & (np.abs(cols) <= depth * side / 2),
    }


def template_match(region) -> tuple[str, float]:
    """The shape whose template of equal area and centroid overlaps the region best, and that
    overlap (intersection over union). Upright templates: the domain draws shapes unrotated."""
    pad = int(np.ceil(np.sqrt(region.area))) + 2
    r0, c0, r1, c1 = region.bbox
    mask = np.pad(region.image, pad)
    rows, cols = np.mgrid[r0 - pad : r1 + pad, c0 - pad : c1 + pad].astype(np.float64)
    cy, cx = region.centroid
    scores = {}
    for shape, template in shape_templates(rows - cy, cols - cx, float(region.area)).items():
        scores[shape] = float((mask & template).sum() / (mask | template).sum())
    best = max(scores, key=scores.get)
    return best, scores[best]


def _mean_hue(image: np.ndarray, region) -> float:
    """Chroma-weighted circular mean hue over the region's core (its edge pixels are blends with the
    background)."""
    core = ndimage.binary_erosion(region.image, morphology.disk(1))
    if core.sum() < 4:
        core = region.image
    r0, c0, _, _ = region.bbox
    rows, cols = np.nonzero(core)
    pixels = image[rows + r0, cols + c0].astype(np.float64) / 255
    weights = pixels.max(axis=1) - pixels.min(axis=1)
    angles = color.rgb2hsv(pixels[None])[0, :, 0] * 2 * np.pi
    mean = np.arctan2((weights * np.sin(angles)).sum(), (weights * np.cos(angles)).sum())
    return float(np.degrees(mean) % 360.0)


def detect(image: np.ndarray) -> list[DetectedObject]:
    """The objects of one uint8 H x W x 3 image, left to right then top to bottom."""
    height, width = image.shape[:2]
    regions = measure.regionprops(measure.label(object_mask(image), connectivity=2))
    if not regions:
        return []
    largest = max(r.area for r in regions)
    kept = [r for r in regions if r.area >= max(MIN_AREA_PIXELS, MIN_AREA_OF_LARGEST * largest)]
    found = []
    for region in kept:
        shape, match = template_match(region)
        shape = shape if match >= MIN_TEMPLATE_MATCH else UNRECOGNISED
        hue = _mean_hue(image, region)
        cy, cx = region.centroid
        found.append(DetectedObject(
            shape=shape, colour=name_hue(hue), centre=((cx + 0.5) / width, (cy + 0.5) / height),
            radius=float(np.sqrt(region.area / np.pi) / width), match=match, hue=hue))
    return sorted(found, key=lambda o: (round(o.centre[0], 2), o.centre[1]))


def group_position(objects: list[DetectedObject]) -> str | None:
    if not objects:
        return None
    return name_position(np.mean([o.centre[0] for o in objects]), np.mean([o.centre[1] for o in objects]))


def judge(objects: list[DetectedObject], stated: dict) -> dict[str, bool]:
    """Each stated attribute right or wrong: every object has the shape and the colour asked for,
    there are as many objects as asked, and the group sits where asked; ``overall`` = all of them.
    No object found: every stated attribute is wrong."""
    checks = {
        "shape": lambda: bool(objects) and all(o.shape == stated["shape"] for o in objects),
        "colour": lambda: bool(objects) and all(o.colour == stated["colour"] for o in objects),
        "position": lambda: group_position(objects) == stated["position"],
        "count": lambda: len(objects) == stated["count"],
    }
    result = {key: checks[key]() for key in ADHERENCE_ATTRIBUTES if key in stated}
    if result:
        result["overall"] = all(result.values())
    return result


def adherence(image: np.ndarray, prompt: str) -> dict[str, bool]:
    """Which of the prompt's stated attributes (shape, colour, position, count) the image shows, plus
    ``overall``; ``{}`` when the prompt states none of them (it is outside the domain)."""
    stated = parse_prompt(prompt)
    if not any(key in stated for key in ADHERENCE_ATTRIBUTES):
        return {}
    return judge(detect(image), stated)
