import numpy as np
import pytest

from sdsqueeze.shapes import detect, domain, robustness
from sdsqueeze.shapes.domain import Scene


@pytest.fixture(scope="module")
def accuracy_table():
    return robustness.accuracy_table()


def test_clean_renders_are_read_right_at_least_98_percent(accuracy_table):
    clean = accuracy_table.set_index("degradation").loc["clean"]
    assert robustness.SCENES >= 300
    for key in ("shape", "colour", "position", "count", "size"):
        assert clean[key] >= 0.98, key


def test_blur_noise_and_colour_cast_of_a_small_generator_are_tolerated(accuracy_table):
    table = accuracy_table.set_index("degradation")
    for level in ("mild", "moderate", "strong", "faded"):
        for key in ("shape", "colour", "position", "count"):
            assert table.loc[level, key] >= 0.97, (level, key)


def test_doc_table_is_in_step(repo, accuracy_table):
    text = (repo / "docs" / "shapes.md").read_text()
    assert robustness.doc_block(text) == robustness.render_block(accuracy_table)


def test_degradation_is_seeded_and_changes_the_image():
    image = domain.render(Scene("circle", "red", 1, "centre", "large", "white"))
    level = robustness.LEVELS[2]
    a = robustness.degrade(image, level, np.random.default_rng(0))
    b = robustness.degrade(image, level, np.random.default_rng(0))
    assert np.array_equal(a, b) and not np.array_equal(a, image)


def test_detected_objects_describe_the_scene():
    scene = Scene("triangle", "cyan", 3, "top", "small", "black")
    objects = detect.detect(domain.render(scene))
    assert [o.shape for o in objects] == ["triangle"] * 3
    assert {o.colour for o in objects} == {"cyan"}
    assert [o.centre[0] for o in objects] == sorted(o.centre[0] for o in objects)
    assert all(o.centre[1] < 0.4 and o.size == "small" and o.match > 0.9 for o in objects)


def test_adherence_checks_what_the_prompt_states():
    image = domain.render(Scene("square", "red", 2, "left", "large", "grey"))
    assert detect.adherence(image, "two red squares on the left") == {
        "shape": True, "colour": True, "position": True, "count": True, "overall": True}
    wrong = detect.adherence(image, "three blue squares on the left")
    assert wrong == {"shape": True, "colour": False, "position": True, "count": False, "overall": False}
    assert detect.adherence(image, "red squares") == {"shape": True, "colour": True, "overall": True}
    assert detect.adherence(image, "A man riding a bicycle down a busy city street") == {}


def test_prompts_differing_only_in_colour_give_differing_detected_colours():
    colours = set()
    for colour in domain.COLOURS:
        objects = detect.detect(domain.render(Scene("circle", colour, 1, "centre", "small", "white")))
        colours |= {o.colour for o in objects}
    assert colours == set(domain.COLOURS)


def test_an_empty_or_grey_image_fails_every_stated_attribute():
    for image in (np.full((128, 128, 3), 240, np.uint8),
                  np.random.default_rng(0).integers(100, 140, (128, 128, 1)).repeat(3, axis=2).astype(np.uint8)):
        assert detect.detect(image) == []
        result = detect.adherence(image, "a green circle in the centre")
        assert result == {"shape": False, "colour": False, "position": False, "count": False, "overall": False}


def test_specks_are_not_counted():
    image = domain.render(Scene("circle", "blue", 1, "right", "large", "white")).copy()
    image[10:12, 10:12] = domain.COLOURS["red"]  # a 4-pixel speck
    assert len(detect.detect(image)) == 1


def test_a_blob_like_no_template_is_no_shape_of_the_domain():
    image = np.full((128, 128, 3), 240, np.uint8)
    image[60:68, 44:84] = domain.COLOURS["red"]  # a bar five times as long as wide
    (bar,) = detect.detect(image)
    assert bar.shape == detect.UNRECOGNISED and bar.match < detect.MIN_TEMPLATE_MATCH
    assert detect.adherence(image, "a red square in the centre") == {
        "shape": False, "colour": True, "position": True, "count": True, "overall": False}
