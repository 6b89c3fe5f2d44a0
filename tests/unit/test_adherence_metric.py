"""Prompt adherence as a metric: per-image columns, summary intervals, paired verdicts."""

import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from quality_fixtures import make_variants, write_shard

from sdsqueeze.quality import adherence, evaluate, stats
from sdsqueeze.quality.verdicts import ADHERENCE_METRICS, ADHERENCE_STATUS
from sdsqueeze.shapes import dataset, domain

N_PROMPTS = 12


@pytest.fixture(scope="module")
def shapes_variants(tmp_path_factory):
    """A reference rendering each prompt's scene, a copy, a variant drawing every object in another
    colour, and a variant drawing one object too many; prompts state all four attributes."""
    root = tmp_path_factory.mktemp("shapes")
    scenes = [dataset.scene_at(9, i) for i in range(N_PROMPTS)]
    colours = list(domain.COLOURS)
    recoloured = [replace(s, colour=colours[(colours.index(s.colour) + 3) % len(colours)]) for s in scenes]
    extra = [replace(s, count=s.count % 3 + 1) for s in scenes]
    prompt_ids = list(range(1, N_PROMPTS + 1))
    seeds = [100 + p for p in prompt_ids]
    dirs = {}
    for name, drawn in (("ref", scenes), ("copy", scenes), ("recoloured", recoloured), ("miscounted", extra)):
        images = np.stack([domain.render(s, rng=np.random.default_rng(p)) for s, p in zip(drawn, prompt_ids)])
        dirs[name] = [write_shard(root / name / "shard-0", name, images, prompt_ids, seeds)]
    prompts = pd.DataFrame({"prompt_id": prompt_ids, "image_id": prompt_ids, "seed": seeds,
                            "prompt": [domain.phrasings(s)[1] for s in scenes]})
    settings = evaluate.Settings(weights_dir=str(root / "no-weights"), download=False)
    per_image = pd.concat([evaluate.per_image_quality(d, dirs["ref"], prompts, settings) for d in dirs.values()],
                          ignore_index=True)
    return per_image


def test_per_image_columns_score_each_stated_attribute(shapes_variants):
    table = shapes_variants.set_index("variant")
    assert set(ADHERENCE_METRICS) | {ADHERENCE_STATUS} <= set(shapes_variants.columns)
    assert (table[ADHERENCE_STATUS] == "ok").all()
    assert (table.loc["ref", list(ADHERENCE_METRICS)] == 1).all().all()
    recoloured = table.loc["recoloured"]
    assert (recoloured.adherence_colour == 0).all() and (recoloured.adherence_overall == 0).all()
    assert (recoloured.adherence_shape == 1).all() and (recoloured.adherence_position == 1).all()
    assert (table.loc["miscounted"].adherence_count == 0).all()


def test_summary_and_verdicts_report_the_loss(shapes_variants):
    metrics = list(ADHERENCE_METRICS)
    summary = stats.summarize(shapes_variants, metrics, 0.95, 500, 0).set_index(["variant", "metric"])
    assert summary.loc[("ref", "adherence_overall"), "mean"] == 1.0
    assert summary.loc[("recoloured", "adherence_colour"), "mean"] == 0.0
    assert summary.loc[("ref", "adherence_overall"), "n_prompts"] == N_PROMPTS
    diffs = stats.paired_differences(shapes_variants, "ref", metrics, 0.95, 500, 0).set_index(["variant", "metric"])
    assert diffs.loc[("copy", "adherence_overall"), "verdict"] == "equivalent"
    assert diffs.loc[("recoloured", "adherence_colour"), "verdict"] == "worse"
    assert diffs.loc[("recoloured", "adherence_colour"), "difference"] == -1.0
    assert diffs.loc[("recoloured", "adherence_shape"), "verdict"] == "equivalent"
    assert diffs.loc[("miscounted", "adherence_count"), "verdict"] == "worse"
    assert (diffs.xs("adherence_overall", level="metric").bound == 0.05).all()


def test_unstated_attributes_drop_out_of_the_accuracy():
    rows = []
    for variant in ("ref", "v"):
        for p in range(8):
            position = np.nan if p < 4 else float(variant == "ref" or p % 2 == 0)
            rows.append({"variant": variant, "prompt_id": p, "sample": 0, "seed": p, "adherence_position": position,
                         ADHERENCE_STATUS: "ok"})
    frame = pd.DataFrame(rows)
    summary = stats.summarize(frame, ["adherence_position"], 0.95, 200, 0).set_index("variant")
    assert summary.loc["v", "mean"] == 0.5 and summary.loc["v", "n_prompts"] == 4
    diffs = stats.paired_differences(frame, "ref", ["adherence_position"], 0.95, 200, 0)
    assert diffs.n_prompts.iloc[0] == 4 and diffs.difference.iloc[0] == -0.5


def test_prompts_outside_the_domain_are_unavailable_and_logged_once(tmp_path, caplog):
    dirs, prompts = make_variants(tmp_path)
    settings = evaluate.Settings(weights_dir=str(tmp_path / "none"), download=False)
    with caplog.at_level(logging.WARNING, logger=adherence.__name__):
        per_image = evaluate.per_image_quality(dirs["noisy"], dirs["ref"], prompts, settings)
    assert per_image[list(ADHERENCE_METRICS)].isna().all().all()
    assert (per_image[ADHERENCE_STATUS] == adherence.NOTHING_STATED).all()
    assert len([r for r in caplog.records if adherence.NOTHING_STATED in r.getMessage()]) == 1
    summary = stats.summarize(per_image, list(ADHERENCE_METRICS), 0.95, 100, 0)
    assert (summary.status == adherence.NOTHING_STATED).all() and summary["mean"].isna().all()
