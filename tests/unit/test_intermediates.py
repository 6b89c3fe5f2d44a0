"""Fault suite for damaged intermediates: each damage stops the reader with one line naming the file.

Shards are built in the generator's layout (PNGs, manifest with sha256, latents, provenance
checksums) from synthetic images, so every case runs in well under a second.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from quality_fixtures import smooth_images
from safetensors.torch import save_file

from sdsqueeze import generate, intermediates, io
from sdsqueeze.intermediates import DamagedIntermediate
from sdsqueeze.quality import images as metrics

PROMPT_IDS = [11, 12, 13, 14]


def make_shard(shard: Path, variant: str = "ref", prompt_ids=PROMPT_IDS) -> Path:
    """A shard as generate.generate_shard leaves it."""
    shard.mkdir(parents=True)
    rows, latents = [], {}
    for image, prompt_id in zip(smooth_images(len(prompt_ids), 32, seed=5), prompt_ids):
        name = generate.image_name(prompt_id, 0)
        Image.fromarray(image).save(shard / name)
        latents[name] = torch.full((4, 4, 4), float(prompt_id))
        rows.append({"prompt_id": prompt_id, "sample": 0, "seed": 100 + prompt_id, "variant": variant,
                     "file": name, "seconds": 0.1, "peak_memory_mb": 1.0, "memory_kind": "cpu",
                     "sha256": intermediates.sha256_file(shard / name)})
    pd.DataFrame(rows, columns=generate.MANIFEST_COLUMNS).to_csv(shard / "manifest.csv", index=False)
    save_file(latents, str(shard / "latents.safetensors"))
    checksums = {n: intermediates.sha256_file(shard / n) for n in ("manifest.csv", "latents.safetensors")}
    io.write_json(shard / "provenance.json", {"checksums": checksums})
    return shard


@pytest.fixture
def shard(tmp_path):
    return make_shard(tmp_path / "ref" / "shard-0")


@pytest.fixture
def prompts():
    return pd.DataFrame({"prompt_id": PROMPT_IDS, "prompt": [f"p{i}" for i in PROMPT_IDS]})


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def drop_provenance_checksum(shard: Path, name: str) -> None:
    """Simulate damage the provenance record cannot see, to reach the manifest's own checks."""
    record = json.loads((shard / "provenance.json").read_text())
    del record["checksums"][name]
    (shard / "provenance.json").write_text(json.dumps(record))


def test_intact_shard_reads_with_paths(shard, prompts):
    manifest = metrics.read_manifests([shard], prompts)
    assert manifest.file.tolist() == [generate.image_name(p, 0) for p in PROMPT_IDS]
    assert len(intermediates.load_latents(shard)) == len(PROMPT_IDS)


def test_truncated_png_is_named(shard):
    image = shard / generate.image_name(12, 0)
    image.write_bytes(image.read_bytes()[:60])
    with pytest.raises(DamagedIntermediate) as err:
        metrics.read_manifests([shard])
    assert one_line(err).startswith(f"{image}: changed after its manifest was written")


def test_corrupted_png_is_named_even_without_a_manifest(tmp_path):
    """Readers of PNGs outside generation shards (sweep, DiffC) decode through the same check."""
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    data = bytearray(image.read_bytes())
    image.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(DamagedIntermediate) as err:
        metrics.load_rgb(image)
    assert one_line(err).startswith(f"{image}: damaged image")
    image.write_bytes(b"not a png at all")
    with pytest.raises(DamagedIntermediate, match=f"^{image}: damaged image"):
        metrics.load_rgb(image)


def test_png_changed_after_the_manifest_is_named(shard):
    image = shard / generate.image_name(13, 0)
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(image)  # a valid PNG, other pixels
    with pytest.raises(DamagedIntermediate) as err:
        metrics.read_manifests([shard])
    assert one_line(err).startswith(f"{image}: changed after its manifest was written")


def test_deleted_manifest_row_never_shrinks_n(shard, prompts):
    manifest = shard / "manifest.csv"
    pd.read_csv(manifest).iloc[:-1].to_csv(manifest, index=False)
    with pytest.raises(DamagedIntermediate, match=f"^{manifest}: changed after the shard was written"):
        metrics.read_manifests([shard])
    drop_provenance_checksum(shard, "manifest.csv")
    with pytest.raises(DamagedIntermediate) as err:
        metrics.read_manifests([shard])
    assert one_line(err).startswith(f"{shard / generate.image_name(14, 0)}: on disk but not in {manifest}")


def test_deleted_row_and_image_are_caught_by_the_prompt_set(shard, prompts):
    manifest = shard / "manifest.csv"
    pd.read_csv(manifest).iloc[:-1].to_csv(manifest, index=False)
    (shard / generate.image_name(14, 0)).unlink()
    drop_provenance_checksum(shard, "manifest.csv")
    assert len(metrics.read_manifests([shard])) == 3  # consistent on its own ...
    with pytest.raises(DamagedIntermediate) as err:
        metrics.read_manifests([shard], prompts)  # ... but not against the prompt set
    assert "variant ref has no image of prompt_id 14" in one_line(err)
    assert str(shard) in str(err.value)


def test_images_of_another_prompt_set_are_refused(tmp_path, prompts):
    stale = make_shard(tmp_path / "ref" / "shard-0", prompt_ids=PROMPT_IDS + [99])
    with pytest.raises(DamagedIntermediate, match="prompt_id 99, which the prompt set does not hold"):
        metrics.read_manifests([stale], prompts)


@pytest.mark.parametrize("content", [
    b"\x00\xff\xfe garbage \x00" * 20,  # binary
    b"",  # empty
    b"hello,world\n1,2\n",  # a CSV, but not a manifest
    b"prompt_id,sample,seed,variant,file,sha256\n1,0,3,ref,../../etc/passwd,abc\n",
])
def test_garbage_manifest_is_named(shard, content):
    manifest = shard / "manifest.csv"
    manifest.write_bytes(content)
    drop_provenance_checksum(shard, "manifest.csv")
    with pytest.raises(DamagedIntermediate) as err:
        metrics.read_manifests([shard])
    assert one_line(err).startswith(f"{manifest}: ")


def test_missing_manifest_is_named(shard):
    (shard / "manifest.csv").unlink()
    with pytest.raises(DamagedIntermediate, match=f"^{shard / 'manifest.csv'}: missing"):
        metrics.read_manifests([shard])


def test_manifest_without_checksums_asks_for_regeneration(shard):
    manifest = shard / "manifest.csv"
    pd.read_csv(manifest).drop(columns=["sha256"]).to_csv(manifest, index=False)
    drop_provenance_checksum(shard, "manifest.csv")
    with pytest.raises(DamagedIntermediate, match=f"^{manifest}: not a shard manifest .*no column sha256"):
        metrics.read_manifests([shard])


def test_truncated_latents_are_named(shard):
    latents = shard / "latents.safetensors"
    latents.write_bytes(latents.read_bytes()[:50])
    with pytest.raises(DamagedIntermediate, match=f"^{latents}: changed after the shard was written"):
        intermediates.load_latents(shard)
    drop_provenance_checksum(shard, "latents.safetensors")
    with pytest.raises(DamagedIntermediate) as err:
        intermediates.load_latents(shard)
    assert one_line(err).startswith(f"{latents}: unreadable")


def test_latents_not_matching_the_manifest_are_named(shard):
    latents = shard / "latents.safetensors"
    save_file({"p00011_s0.png": torch.zeros(4, 4, 4)}, str(latents))
    drop_provenance_checksum(shard, "latents.safetensors")
    with pytest.raises(DamagedIntermediate, match=f"^{latents}: holds 1 latents, the manifest 4 images"):
        intermediates.load_latents(shard)


def test_sweep_reader_names_a_damaged_png(tmp_path):
    from sdsqueeze.sweep import quality

    image = tmp_path / "run.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DamagedIntermediate, match=f"^{image}: damaged image"):
        quality.load_gray(image)
    with pytest.raises(DamagedIntermediate, match=f"^{tmp_path / 'runs.csv'}: missing"):
        quality.score_shard(tmp_path, lpips_scorer=lambda a, b: 0.0)



def test_diffc_readers_name_a_damaged_manifest_or_original(tmp_path):
    from sdsqueeze.diffc import runs as diffc_runs

    encoded, decoded = tmp_path / "encoded", tmp_path / "decoded"
    encoded.mkdir(), decoded.mkdir()
    (encoded / "manifest.csv").write_bytes(b"\x00\xff garbage")
    with pytest.raises(DamagedIntermediate, match=f"^{encoded / 'manifest.csv'}: not a readable table"):
        diffc_runs.rate_distortion("tiny", [encoded], [decoded], download=False)
    pd.DataFrame({"image": ["cat"], "recon_timestep": [700], "file": ["cat/t0700.diffc"], "bytes": [3]}).to_csv(
        encoded / "manifest.csv", index=False)
    pd.DataFrame({"image": ["cat"], "recon_timestep": [700], "method": ["diffc"], "png": ["cat/t0700.png"],
                  "file": ["cat/t0700.diffc"]}).to_csv(decoded / "manifest.csv", index=False)
    (encoded / "cat").mkdir()
    (encoded / "cat" / "original.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    with pytest.raises(DamagedIntermediate, match=f"^{encoded / 'cat' / 'original.png'}: damaged image"):
        diffc_runs.rate_distortion("tiny", [encoded], [decoded], download=False)
