"""The sweep on a flow-matching pipeline (SD3's architecture, tiny and seeded): the operator
through the step-end callback and the shared path work unchanged, pixel for pixel."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from sdsqueeze.models import write_clip_tokenizer
from sdsqueeze.sweep import plan, runner
from sdsqueeze.sweep.operator import make_operator
from sdsqueeze.variants import prepare


def tiny_sd3_pipeline():
    """SD3's pipeline with tiny seeded parts; no T5 (the pipeline supports its absence)."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32,
        pooled_projection_dim=64, out_channels=4)
    clip = CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                          num_hidden_layers=2, vocab_size=49408, projection_dim=32,
                          max_position_embeddings=77, hidden_act="gelu")
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                        latent_channels=4, norm_num_groups=1, sample_size=32, use_quant_conv=False,
                        use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    with tempfile.TemporaryDirectory() as tok_dir:
        write_clip_tokenizer(Path(tok_dir))
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
        text_encoder=CLIPTextModelWithProjection(clip), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(clip), tokenizer_2=tokenizer,
        text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_flow_matching_shared_path_equals_naive(tmp_path):
    torch.set_num_threads(1)
    pipe = tiny_sd3_pipeline()
    spec = dict(name="sd3", dtype="float32", attention="default", scheduler="default", steps=6,
                guidance=5.0, height=32, width=32, batch_size=1)
    grid = plan.Grid(make_operator("ci-round"), (1, 3), (1.0, 0.5), (42,), 1, 1, 1, 6)
    prompts = pd.DataFrame({"prompt_id": [3], "prompt": ["a lighthouse at dusk"]})
    runs = runner.render_shard(pipe, spec, grid, 0, prompts, tmp_path / "shard-0", "cpu",
                               progress=False)
    assert len(runs) == 4
    prepared = prepare(pipe, spec)
    for step, level in [(1, 1.0), (3, 0.5)]:
        image, _ = runner.naive_run(prepared, grid, "a lighthouse at dusk", 42, step, level)
        name = plan.compressed_name(grid.operator, step, level, 42)
        shared = np.asarray(Image.open(tmp_path / "shard-0" / "p00003" / name))
        assert np.array_equal(np.asarray(image), shared)
    evals = json.loads((tmp_path / "shard-0" / "evaluations.json").read_text())
    assert evals["evaluations_per_full_run"] == 6  # flow matching: one call per step
    assert evals["shared"] == plan.evaluations_per_item(grid, 6)["shared"] == 6 + 2 * (4 + 2)
