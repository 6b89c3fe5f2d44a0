"""Prompt adherence of each generated image, as per-image metric columns.

The shapes domain's detector (sdsqueeze.shapes.detect, no learned weights) checks an image against the
attributes its prompt states: ``adherence_<attribute>`` is 1 (right), 0 (wrong) or NaN (not stated).
A prompt stating none of them (a COCO caption) leaves every column NaN with ``adherence_status``
saying why, logged once per job rather than once per image.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..shapes.detect import ADHERENCE_ATTRIBUTES, adherence
from .images import load_rgb
from .verdicts import ADHERENCE_METRICS, ADHERENCE_STATUS, OK

log = logging.getLogger(__name__)
NOTHING_STATED = "unavailable: prompt states no attributes"
COLUMNS = [*ADHERENCE_METRICS, ADHERENCE_STATUS]
assert {m.removeprefix("adherence_") for m in ADHERENCE_METRICS} == {*ADHERENCE_ATTRIBUTES, "overall"}


def adherence_row(image: np.ndarray, prompt: str) -> dict:
    judged = adherence(image, prompt)
    row = {metric: float(judged[metric.removeprefix("adherence_")])
           if metric.removeprefix("adherence_") in judged else np.nan for metric in ADHERENCE_METRICS}
    row[ADHERENCE_STATUS] = OK if judged else NOTHING_STATED
    return row


def adherence_table(paths, prompts, index=None) -> pd.DataFrame:
    """One row per (image path, its prompt text)."""
    rows = [adherence_row(load_rgb(path), prompt) for path, prompt in zip(paths, prompts)]
    table = pd.DataFrame(rows, columns=COLUMNS, index=index)
    outside = int((table[ADHERENCE_STATUS] != OK).sum())
    if outside:
        log.warning("prompt adherence %s for %d of %d images (the shapes domain's attributes, "
                    "docs/shapes.md)", NOTHING_STATED, outside, len(table))
    return table
