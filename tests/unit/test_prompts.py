import json

import pytest

from sdsqueeze import prompts


def coco(captions_per_image, n_images=3):
    images = [{"id": i, "file_name": f"{i:012d}.jpg"} for i in range(1, n_images + 1)]
    anns, next_id = [], 1
    for image in images:
        for text in captions_per_image:
            anns.append({"id": next_id, "image_id": image["id"], "caption": text})
            next_id += 1
    return {"images": images, "annotations": anns}


def write(tmp_path, data, name="captions.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_project_captions_select_deterministically(repo):
    coco_index = prompts.load_coco_captions(repo / "data" / "coco_tiny_captions.json")
    a = prompts.select_prompts(coco_index, n=8, seed=42)
    b = prompts.select_prompts(coco_index, n=8, seed=42)
    c = prompts.select_prompts(coco_index, n=8, seed=7)
    assert a.equals(b)
    assert not a.equals(c)
    assert list(a.columns) == prompts.PROMPT_COLUMNS
    assert a.image_id.is_unique  # one caption per image
    assert (a.prompt.str.split().str.len() >= 5).all()


def test_filters_and_enhancement(tmp_path):
    data = coco(["A dog.", "A picture of a dog on grass.", "A brown dog runs across the green park."])
    index = prompts.load_coco_captions(write(tmp_path, data))
    chosen = prompts.select_prompts(index, n=3, seed=1, min_words=5,
                                    prefix="professional photograph", suffix="sharp focus")
    assert (chosen.caption == "A brown dog runs across the green park.").all()
    assert chosen.prompt.iloc[0] == ("professional photograph, A brown dog runs across the green park, "
                                     "sharp focus")


def test_too_few_prompts_says_what_to_change(tmp_path):
    index = prompts.load_coco_captions(write(tmp_path, coco(["Long enough caption for the filter here."])))
    with pytest.raises(prompts.CaptionsError, match="prompts.n"):
        prompts.select_prompts(index, n=10, seed=1)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "{not json", "not valid JSON"),
    (lambda d: {"images": d["images"]}, "annotations: missing or not a list"),
    (lambda d: {**d, "annotations": [{**d["annotations"][0], "caption": 12}]}, r"annotations\[0\]: 'caption' is not text"),
    (lambda d: {**d, "annotations": [{**d["annotations"][0], "image_id": 999}]}, "dangling"),
    (lambda d: {**d, "images": [{"file_name": "x.jpg"}]}, r"images\[0\]: needs an integer 'id'"),
    (lambda d: [1, 2], "top level"),
])
def test_malformed_captions_file_is_rejected_with_location(tmp_path, mutate, message):
    path = write(tmp_path, mutate(coco(["A brown dog runs across the green park."])))
    with pytest.raises(prompts.CaptionsError, match=message) as err:
        prompts.load_coco_captions(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(prompts.CaptionsError, match="does not exist"):
        prompts.load_coco_captions(tmp_path / "nope.json")


def test_shards_cover_every_prompt_once():
    import pandas as pd

    frame = pd.DataFrame({"prompt_id": range(10)})
    shards = [prompts.shard_of(frame, s, 4) for s in range(prompts.n_shards(10, 4))]
    assert [len(s) for s in shards] == [4, 4, 2]
    assert pd.concat(shards).prompt_id.tolist() == list(range(10))


def test_long_captions_are_counted_flagged_and_warned_once(tmp_path, caplog):
    long_caption = "A dog runs across the green park " + "and a cat sits on the old red bench " * 12
    data = {"images": [{"id": 1}, {"id": 2}, {"id": 3}],
            "annotations": [{"id": 1, "image_id": 1, "caption": "a photo of a cat on a mat"},
                            {"id": 2, "image_id": 2, "caption": long_caption},
                            {"id": 3, "image_id": 3, "caption": long_caption + " again"}]}
    index = prompts.load_coco_captions(write(tmp_path, data))
    with caplog.at_level("WARNING"):
        chosen = prompts.select_prompts(index, n=3, seed=1, min_words=3).set_index("prompt_id")
    assert chosen.loc[1, "tokens"] == 10  # start + 8 words + end
    assert chosen.loc[2, "tokens"] > prompts.CLIP_MAX_TOKENS
    assert chosen.truncated.tolist() == [False, True, True]
    warnings = [r.getMessage() for r in caplog.records if "longer than CLIP" in r.getMessage()]
    assert warnings == ["2 of 3 prompts are longer than CLIP's 77 tokens; the text encoder sees only "
                        "their first 77 (column 'truncated' of the prompts CSV)"]


def test_token_count_is_the_pipeline_tokenizers():
    """The count the pipeline's own tokenizer gives (the embedded model's, built the same way)."""
    import tempfile
    from pathlib import Path

    from transformers import CLIPTokenizer

    from sdsqueeze.models import write_clip_tokenizer

    text = "An astronaut, riding a horse on the moon; professional photograph, sharp focus"
    with tempfile.TemporaryDirectory() as folder:
        write_clip_tokenizer(Path(folder))
        ids = CLIPTokenizer.from_pretrained(folder)(text, padding="max_length", max_length=77).input_ids
    assert prompts.clip_token_counts([text]) == [ids.index(49407) + 1]  # through the end token
