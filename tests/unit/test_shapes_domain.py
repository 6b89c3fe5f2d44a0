import json

import numpy as np
import pytest

from sdsqueeze import prompts
from sdsqueeze.shapes import dataset, domain
from sdsqueeze.shapes.domain import Scene


def scenes(n=200, seed=11):
    rng = np.random.default_rng(seed)
    return [domain.sample_scene(rng) for _ in range(n)]


def test_vocabularies_keep_backgrounds_apart_from_object_colours():
    assert not set(domain.BACKGROUNDS) & set(domain.COLOURS)
    assert 6 <= len(domain.COLOURS) <= 8
    for rgb in domain.BACKGROUNDS.values():
        assert max(rgb) - min(rgb) == 0  # achromatic: objects separate by chroma
    for rgb in domain.COLOURS.values():
        assert max(rgb) - min(rgb) >= 120


def test_sampling_covers_every_value():
    drawn = scenes(400)
    for field, values in [("shape", domain.SHAPES), ("colour", domain.COLOURS), ("count", domain.COUNTS),
                          ("position", domain.POSITIONS), ("size", domain.SIZES),
                          ("background", domain.BACKGROUNDS)]:
        assert {getattr(s, field) for s in drawn} == set(values)


def test_render_is_seeded_and_jittered():
    scene = Scene("triangle", "blue", 2, "left", "large", "white")
    clean = domain.render(scene, size=64)
    assert clean.shape == (64, 64, 3) and clean.dtype == np.uint8
    assert np.array_equal(clean, domain.render(scene, size=64))
    a = domain.render(scene, rng=np.random.default_rng(1))
    b = domain.render(scene, rng=np.random.default_rng(1))
    c = domain.render(scene, rng=np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # anti-aliased: edge pixels lie between the background and the object colour
    greys = {tuple(p) for p in clean.reshape(-1, 3)}
    assert len(greys) > 2


def test_objects_stay_inside_the_image_and_apart():
    for size in domain.SIZES:
        for position in domain.POSITIONS:
            scene = Scene("triangle", "red", 3, position, size, "black")
            radius = domain.SIZE_RADIUS[size] * 1.08
            centres = domain.object_centres(scene, radius, offset=(0.03, 0.03))
            extent = domain.TRIANGLE_CIRCUMRADIUS * radius
            for x, y in centres:
                assert extent <= x <= 1 - extent + 0.04 and extent <= y <= 1 - extent + 0.04
            gaps = np.diff(sorted(c[0] + c[1] for c in centres))
            assert (gaps > 2 * extent * np.sqrt(3) / 2).all()


def test_every_phrasing_parses_back_to_its_scene():
    for scene in scenes():
        for caption in domain.phrasings(scene):
            stated = domain.parse_prompt(caption)
            for key in ("shape", "colour", "count", "position"):
                assert stated[key] == getattr(scene, key), caption
            for key, value in stated.items():
                assert value == getattr(scene, key), caption
            assert len(caption.split()) >= 5


@pytest.mark.parametrize("text, expected", [
    ("two small blue squares", {"shape": "square", "colour": "blue", "count": 2, "size": "small"}),
    ("A red circle in the center.", {"shape": "circle", "colour": "red", "count": 1, "position": "centre"}),
    ("on a white background, three triangles", {"shape": "triangle", "count": 3, "background": "white"}),
    ("purple squares at the bottom", {"shape": "square", "colour": "purple", "position": "bottom"}),
    ("A man riding a red bicycle on the left side of the road", {}),
])
def test_parse_prompt_reads_only_what_is_stated(text, expected):
    assert domain.parse_prompt(text) == expected


def test_dataset_is_seeded_and_prefix_stable():
    images, scenes_, captions = dataset.make_dataset(6, seed=5, size=32)
    again, _, _ = dataset.make_dataset(6, seed=5, size=32)
    longer, longer_scenes, _ = dataset.make_dataset(8, seed=5, size=32)
    other, _, _ = dataset.make_dataset(6, seed=6, size=32)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and np.array_equal(images, longer[:6])
    assert scenes_ == longer_scenes[:6]
    assert not np.array_equal(images, other)
    assert captions[0] == domain.phrasings(scenes_[0])


def test_coco_captions_feed_the_prompt_stage(tmp_path):
    path = dataset.write_coco_captions(tmp_path / "shapes.json", n=12, seed=3)
    coco = prompts.load_coco_captions(path)
    chosen = prompts.select_prompts(coco, n=8, seed=42)
    truth = {image["id"]: Scene(**image["scene"]) for image in json.loads(path.read_text())["images"]}
    for row in chosen.itertuples():
        stated = domain.parse_prompt(row.prompt)
        assert all(value == getattr(truth[row.image_id], key) for key, value in stated.items())
        assert {"shape", "colour", "count", "position"} <= set(stated)


def test_committed_evaluation_captions_regenerate_byte_for_byte(repo):
    committed = (repo / "data" / "shapes_captions.json").read_text()
    assert committed == dataset.captions_json(dataset.EVALUATION_IMAGES, dataset.EVALUATION_SEED)


def test_evaluation_split_differs_from_other_seeds():
    evaluation = [dataset.scene_at(dataset.EVALUATION_SEED, i) for i in range(16)]
    training = [dataset.scene_at(1, i) for i in range(16)]
    assert evaluation != training


def test_docs_picture_is_the_evaluation_splits_first_images(repo):
    from PIL import Image

    committed = np.asarray(Image.open(repo / "docs" / "shapes-examples.png").convert("RGB"))
    assert np.array_equal(committed, dataset.contact_sheet(12, dataset.EVALUATION_SEED))
