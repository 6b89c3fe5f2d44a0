"""Fingerprints of a run and their comparison across machines (sdsqueeze.repro)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from quality_fixtures import smooth_images, write_shard

from sdsqueeze import repro
from sdsqueeze.intermediates import sha256_file
from sdsqueeze.quality import images as metrics

PROMPT_IDS, SEEDS = [1, 2, 3, 4], [11, 12, 13, 14]


def make_run(root, noise: int = 9):
    """A results/ folder (prompts, two variants' shards and per-image CSVs) and resources/models."""
    results = root / "results"
    (results / "prompts").mkdir(parents=True)
    pd.DataFrame({"prompt_id": PROMPT_IDS, "prompt": ["a red circle", "two blue squares", "a green triangle",
                                                      "a small yellow circle"], "seed": SEEDS}).to_csv(
        results / "prompts" / "shapes.csv", index=False)
    weights = root / "resources" / "models" / "tiny" / "pipeline" / "unet"
    weights.mkdir(parents=True)
    (weights / "diffusion_pytorch_model.safetensors").write_bytes(b"weights of the unet")
    reference = smooth_images(4, 32, seed=0)
    noisy = np.clip(reference.astype(int) + np.random.default_rng(1).integers(-noise, noise + 1, reference.shape),
                    0, 255).astype(np.uint8)
    shards = {}
    for variant, pixels in (("ref", reference), ("w4", noisy)):
        shards[variant] = write_shard(results / "images" / "tiny" / variant / "shard-0", variant, pixels,
                                      PROMPT_IDS, SEEDS)
    for variant, shard in shards.items():
        table = metrics.per_image_quality([shard], [shards["ref"]])
        table["adherence_overall"] = [True, True, False, variant == "ref"]
        per_image = results / "metrics" / "tiny" / "per_image"
        per_image.mkdir(parents=True, exist_ok=True)
        table.to_csv(per_image / f"{variant}.csv", index=False)
    return results


def edit_per_image(results, variant: str, column: str, change) -> None:
    path = results / "metrics" / "tiny" / "per_image" / f"{variant}.csv"
    table = pd.read_csv(path)
    table[column] = change(table[column])
    table.to_csv(path, index=False)


def test_fingerprint_holds_inputs_images_and_summaries(tmp_path):
    results = make_run(tmp_path)
    print_ = repro.fingerprint(results)
    assert print_["prompts"] == {"shapes.csv": sha256_file(results / "prompts" / "shapes.csv")}
    assert list(print_["weights"]) == ["tiny/pipeline/unet/diffusion_pytorch_model.safetensors"]
    ref, w4 = print_["variants"]["tiny"]["ref"], print_["variants"]["tiny"]["w4"]
    assert len(ref["images"]) == 4 and ref["images"] != w4["images"]
    assert ref["summary"]["psnr_db"] == repro.PSNR_CAP_DB  # identical images, capped
    assert 20 < w4["summary"]["psnr_db"] < 60
    assert ref["summary"]["adherence_overall_points"] == 75.0 and w4["summary"]["adherence_overall_points"] == 50.0
    assert print_["environment"]["fingerprinted_on"]["cpu"]  # the CPU model, shown when runs differ
    assert json.loads(json.dumps(print_)) == print_  # plain JSON


def test_a_run_copied_elsewhere_is_identical(tmp_path):
    results = make_run(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    table = repro.compare(repro.fingerprint(results), repro.fingerprint(tmp_path / "b" / "results"))
    assert table.within.all() and repro.verdict(table) == repro.IDENTICAL


@pytest.mark.parametrize(("column", "change", "expected"), [
    ("psnr", lambda v: v + 0.05, repro.WITHIN_TOLERANCE),
    ("psnr", lambda v: v - 0.2, repro.DIFFERENT),
    ("adherence_overall", lambda v: v.astype(float) * 0.995, repro.WITHIN_TOLERANCE),  # 50 -> 49.75 points
    ("adherence_overall", lambda v: [False] * len(v), repro.DIFFERENT),  # 50 -> 0 points
])
def test_numbers_are_judged_against_their_tolerance(tmp_path, column, change, expected):
    results = make_run(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    other = tmp_path / "b" / "results"
    # another machine's kernels: one image's bytes differ, and the metric moves
    image = other / "images" / "tiny" / "w4" / "shard-0" / "p00001_s0.png"
    manifest = image.parent / "manifest.csv"
    table = pd.read_csv(manifest)
    table.loc[table.file == image.name, "sha256"] = "0" * 64
    table.to_csv(manifest, index=False)
    edit_per_image(other, "w4", column, change)
    compared = repro.compare(repro.fingerprint(results), repro.fingerprint(other))
    assert repro.verdict(compared) == expected
    images = compared[compared.item == "tiny/w4: images byte-identical"].iloc[0]
    assert images.difference == "3/4 identical" and not images.within
    moved = compared[(compared.kind == repro.NUMBER) & ~compared.within]
    assert (len(moved) == 0) == (expected == repro.WITHIN_TOLERANCE)


def test_different_prompts_or_weights_or_a_missing_variant_are_different(tmp_path):
    a = repro.fingerprint(make_run(tmp_path / "a"))
    for edit in ("prompts", "weights", "variant"):
        b = json.loads(json.dumps(a))
        if edit == "variant":
            del b["variants"]["tiny"]["w4"]
        else:
            key = next(iter(b[edit]))
            b[edit][key] = "f" * 64
        table = repro.compare(a, b)
        assert repro.verdict(table) == repro.DIFFERENT, edit
        assert len(table[~table.within]) == 1


def test_command_line_writes_and_compares(tmp_path, capsys):
    results = make_run(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    edit_per_image(tmp_path / "b" / "results", "w4", "psnr", lambda v: v + 0.5)
    fa, fb = tmp_path / "a.json", tmp_path / "b.json"
    assert repro.main(["fingerprint", str(results), "-o", str(fa)]) == 0
    assert repro.main(["fingerprint", str(tmp_path / "b" / "results"), "-o", str(fb)]) == 0
    capsys.readouterr()
    assert repro.main(["compare", str(fa), str(fa)]) == 0
    assert "identical: 0 of" in capsys.readouterr().out
    assert repro.main(["compare", str(fa), str(fb)]) == 1
    out = capsys.readouterr().out
    assert "tiny/w4: psnr_db" in out and "different: 1 of" in out
    assert repro.main(["compare", str(fa), str(fb), "--psnr-db", "1"]) == 0  # a looser tolerance
