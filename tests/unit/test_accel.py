"""Acceleration techniques: attention processors vs the classic one, the K/V cache, DeepCache,
low-bit refusals, and the benchmark tables. Tiny model, 64 px, few steps: CPU seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

from sdbench import tables as bench_targets
from sdsqueeze.accel import attention, deepcache, lowbit
from sdsqueeze.accel import measure as benchtables
from sdsqueeze.generate import run_batch
from sdsqueeze.models import TinySpec, build_tiny_pipeline
from sdsqueeze.seeding import initial_latents, latent_shape
from sdsqueeze.variants import prepare

SPEC = dict(dtype="float32", attention="sdpa", scheduler="pndm", steps=4, guidance=7.5,
            height=64, width=64, batch_size=2, name="test")


def attention_inputs(seed: int, cross: bool):
    torch.manual_seed(seed)
    attn = Attention(query_dim=32, cross_attention_dim=24 if cross else None, heads=4, dim_head=8)
    hidden = torch.randn(2, 16, 32)
    context = torch.randn(2, 7, 24) if cross else None
    return attn, hidden, context


def relative_error(out, ref):
    return ((out - ref).norm() / ref.norm()).item()


PROCESSORS = {
    "sdpa": lambda: AttnProcessor2_0(),
    "math": lambda: attention.PinnedBackend(AttnProcessor2_0(), "math"),
    "flash": lambda: attention.PinnedBackend(AttnProcessor2_0(), "flash"),
    "kv_cache": lambda: attention.CrossAttentionKVCache(),
}


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_processor_matches_classic(name, cross):
    for seed in (1, 2):  # fresh random inputs each time
        attn, hidden, context = attention_inputs(seed, cross)
        with torch.no_grad():
            attn.set_processor(AttnProcessor())
            reference = attn(hidden, encoder_hidden_states=context)
            attn.set_processor(PROCESSORS[name]())
            out = attn(hidden, encoder_hidden_states=context)
        assert torch.isfinite(out).all()
        assert relative_error(out, reference) < 1e-5


@pytest.mark.parametrize("cross", [False, True])
def test_fused_qkv_processor_matches_classic(cross):
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    attn, hidden, context = attention_inputs(5, cross)
    with torch.no_grad():
        attn.set_processor(AttnProcessor())
        reference = attn(hidden, encoder_hidden_states=context)
        attn.fuse_projections()
        attn.set_processor(FusedAttnProcessor2_0())
        out = attn(hidden, encoder_hidden_states=context)
    assert relative_error(out, reference) < 1e-5


def test_pinned_backend_unavailable_stops():
    attn, hidden, context = attention_inputs(0, True)
    attn.set_processor(attention.PinnedBackend(AttnProcessor2_0(), "efficient"))
    with pytest.raises(RuntimeError), torch.no_grad():  # no memory-efficient kernel on the CPU
        attn(hidden, encoder_hidden_states=context)


def test_kv_cache_reuses_and_invalidates_on_new_prompt():
    attn, hidden, context = attention_inputs(3, True)
    cache = attention.CrossAttentionKVCache()
    attn.set_processor(cache)
    with torch.no_grad():
        first = attn(hidden, encoder_hidden_states=context)
        again = attn(hidden, encoder_hidden_states=context)
        assert (cache.misses, cache.hits) == (1, 1)
        assert torch.equal(first, again)
        other_prompt = torch.randn_like(context)
        changed = attn(hidden, encoder_hidden_states=other_prompt)
        assert (cache.misses, cache.hits) == (2, 1)
        attn.set_processor(AttnProcessor())
        expected = attn(hidden, encoder_hidden_states=other_prompt)
    assert relative_error(changed, expected) < 1e-5
    # an in-place edit of the same tensor (outside inference mode) also invalidates
    attn.set_processor(cache)
    with torch.no_grad():
        attn(hidden, encoder_hidden_states=other_prompt)  # same tensor, unchanged: a hit
        other_prompt.mul_(2)
        attn(hidden, encoder_hidden_states=other_prompt)  # edited in place: recomputed
    assert (cache.misses, cache.hits) == (3, 2)


_TINY = {}


def fresh_pipeline():
    """A private copy of one tiny pipeline (techniques mutate what they are given)."""
    import copy

    if not _TINY:
        _TINY["pipe"] = build_tiny_pipeline(TinySpec(image_size=64))
        _TINY["pipe"].set_progress_bar_config(disable=True)
    return copy.deepcopy(_TINY["pipe"])


def generate(prompts=("a red bus", "a bowl of fruit"), **overrides):
    pipe = fresh_pipeline()
    prepared = prepare(pipe, {**SPEC, **overrides})
    latents = initial_latents([11, 12], latent_shape(pipe, 64, 64))
    with torch.inference_mode():
        _, finals = run_batch(prepared, list(prompts), latents)
    return prepared, finals


@pytest.fixture(scope="module")
def uncached():
    return generate()


def test_kv_cache_images_match_uncached(uncached):
    prepared, finals = generate(kv_cache=True)
    caches = prepared.kv_caches.values()
    assert sum(c.hits for c in caches) > 0  # really reused across steps
    assert relative_error(finals, uncached[1]) < 1e-5
    assert prepared.notes["sdpa_backends_ran"]  # the backend that ran is recorded


def test_kv_cache_pipeline_new_prompt_recomputes(uncached):
    prepared, _ = generate(kv_cache=True)
    misses = sum(c.misses for c in prepared.kv_caches.values())
    latents = initial_latents([11, 12], latent_shape(prepared.pipe, 64, 64))
    with torch.inference_mode():
        _, finals = run_batch(prepared, ["a lighthouse", "a horse"], latents)
    assert sum(c.misses for c in prepared.kv_caches.values()) > misses
    assert relative_error(finals, uncached[1]) > 1e-3  # a different prompt, a different image


def test_deepcache_skips_deep_modules_only(uncached):
    prepared, finals = generate(deepcache=2)
    state = prepared.deepcache
    assert state.full_steps > 0 and state.cached_steps > 0
    assert state.step == 0  # reset at the end of the generation
    assert "mid_block" in prepared.notes["deepcache"]["skipped"]
    assert "down_blocks.0" not in prepared.notes["deepcache"]["skipped"]
    assert not torch.equal(finals, uncached[1])  # cached steps change the result ...
    assert relative_error(finals, uncached[1]) < 0.5  # ... but stay near it


def test_deepcache_first_step_is_exact():
    """With one step, DeepCache only ever runs the full UNet: identical to uncached."""
    _, plain = generate(steps=1)
    _, cached = generate(steps=1, deepcache=3)
    assert torch.equal(plain, cached)


def test_deepcache_refuses_cuda_graphs():
    with pytest.raises(ValueError, match="CUDA-graph"):
        generate(deepcache=2, compile="reduce-overhead")


def test_lowbit_stops_without_cuda():
    with pytest.raises(lowbit.LowBitUnavailable, match="CUDA"):
        generate(lowbit="int8-dynamic")


def test_lowbit_filter_skips_time_embedding():
    unet = fresh_pipeline().unet
    take = lowbit.make_filter("int8-dynamic")
    taken = [n for n, m in unet.named_modules() if take(m, n)]
    assert taken and not any("time_emb" in n for n in taken)
    assert all(isinstance(unet.get_submodule(n), torch.nn.Linear) for n in taken)


def test_deep_modules_listing():
    unet = fresh_pipeline().unet
    names = deepcache.deep_modules(unet)
    assert f"up_blocks.{len(unet.up_blocks) - 1}" not in names
    assert len(names) == (len(unet.down_blocks) - 1) + 1 + (len(unet.up_blocks) - 1)


def test_benchtables_ratios(tmp_path):
    import json

    import pandas as pd

    rows = pd.DataFrame([
        {"variant": "fp16-classic", "batch": 1, "status": "ok", "s_per_image": 2.0,
         "unet_ms_step_median": 40.0, "peak_memory_mb": 100.0, "unet_bytes_memory": 2**20, "deepcache": None},
        {"variant": "fp16-sdpa", "batch": 1, "status": "ok", "s_per_image": 1.0,
         "unet_ms_step_median": 20.0, "peak_memory_mb": 80.0, "unet_bytes_memory": 2**20, "deepcache": None},
        {"variant": "fast", "batch": 1, "status": "ok", "s_per_image": 0.25,
         "unet_ms_step_median": 5.0, "peak_memory_mb": 40.0, "unet_bytes_memory": 2**19, "deepcache": None},
    ])
    (tmp_path / "gpu_runA").mkdir()
    rows.to_csv(tmp_path / "gpu_runA" / "results.csv", index=False)
    meta = {"bf16_matmul_tflops": 100.0, "flops": [{"batch": 1, "unet_step_flops": 1e12}]}
    (tmp_path / "gpu_runA" / "meta.json").write_text(json.dumps(meta))
    loaded, flops = benchtables.load([str(tmp_path / "gpu_runA" / "results.csv")])
    table = benchtables.derived(loaded, flops).set_index("variant")
    assert table.loc["fast", "speedup vs fp16 classic"] == pytest.approx(8.0)
    assert table.loc["fast", "speedup vs fp16 SDPA eager"] == pytest.approx(4.0)
    assert table.loc["fast", "memory reduction vs fp16 SDPA eager"] == pytest.approx(0.5)
    assert table.loc["fast", "share of bf16 matmul rate"] == pytest.approx(2.0)  # 1 TFLOP in 5 ms
    assert "8.00x" in benchtables.markdown(table.reset_index())


def test_inductor_tuning_spells_out_the_mode_and_records_it():
    previous = torch.backends.cudnn.benchmark
    try:
        prepared = prepare(fresh_pipeline(), {**SPEC, "compile": "reduce-overhead",
                                              "inductor_tuning": True, "cudnn_benchmark": True})
        options = prepared.notes["compile"]["inductor_options"]
        assert options["triton.cudagraphs"] is True  # what mode="reduce-overhead" means
        assert options["conv_1x1_as_mm"] is True and options["epilogue_fusion"] is False
        assert torch.backends.cudnn.benchmark and prepared.notes["cudnn_benchmark"]
        assert prepared.notes["compile"]["dynamic"] is False  # one static graph per batch size
    finally:
        torch.backends.cudnn.benchmark = previous


def test_inductor_tuning_needs_a_compile_mode():
    with pytest.raises(ValueError, match="set compile"):
        prepare(fresh_pipeline(), {**SPEC, "inductor_tuning": True})


def test_conv_1x1_as_mm_alone_sets_only_that_inductor_option():
    prepared = prepare(fresh_pipeline(), {**SPEC, "compile": "reduce-overhead", "conv_1x1_as_mm": True})
    options = prepared.notes["compile"]["inductor_options"]
    assert options["conv_1x1_as_mm"] is True and options["triton.cudagraphs"] is True
    assert "coordinate_descent_tuning" not in options  # the guide's slow tuning stays off
    with pytest.raises(ValueError, match="set compile"):
        prepare(fresh_pipeline(), {**SPEC, "conv_1x1_as_mm": True})


def test_targets_are_judged_inside_each_run(tmp_path):
    """A fast build in one run never counts against another run's baseline; each run's matmul
    rate comes from its own meta.json."""
    import json

    import pandas as pd

    def row(variant, batch, s_per_image, step_ms, steps=50):
        return {"variant": variant, "batch": batch, "status": "ok", "s_per_image": s_per_image,
                "unet_ms_step_median": step_ms, "peak_memory_mb": 1.0, "unet_bytes_memory": 1.0,
                "deepcache": None, "steps": steps}

    for run in ("gpu_runA", "gpu_runB"):
        (tmp_path / run).mkdir()
    pd.DataFrame([row("fp16-sdpa", 1, 2.0, 40.0), row("fp16-classic", 1, 2.0, 40.0)]).to_csv(
        tmp_path / "gpu_runA" / "results.csv", index=False)
    (tmp_path / "gpu_runA" / "meta.json").write_text(json.dumps(
        {"bf16_matmul_tflops": 100.0, "flops": [{"batch": 1, "unet_step_flops": 1e12},
                                                {"batch": 4, "unet_step_flops": 4e12}]}))
    pd.DataFrame([row("fp16-sdpa", 1, 1.0, 20.0), row("fast", 1, 0.3, 5.0),
                  row("fast", 4, 0.2, 80.0), row("dpm8", 4, 0.01, 70.0, steps=8)]).to_csv(
        tmp_path / "gpu_runB" / "results.csv", index=False)
    (tmp_path / "gpu_runB" / "meta.json").write_text(json.dumps(
        {"versions": {"gpu": "Test GPU"}, "bf16_matmul_tflops": 125.0}))
    targets = bench_targets.targets_by_run(sorted(str(p) for p in tmp_path.glob("*/results.csv")))
    run_b = targets.set_index("run").loc["gpu_runB"]
    assert run_b["device"] == "Test GPU" and run_b["matmul TFLOP/s"] == 125.0
    assert run_b["b1 best full-work"] == "fast"
    assert run_b["b1 vs SDPA eager"] == pytest.approx(1.0 / 0.3)  # its own baseline, not run A's 2.0 s
    assert run_b["b4 best share"] == "fast"  # dpm8 skips steps: not a full-work row
    assert run_b["b4 share"] == pytest.approx(4e12 / 0.080 / 1e12 / 125.0)


def test_runs_of_different_machines_are_never_merged(tmp_path):
    import json

    for run, machine in (("gpu_runA", "H200 lease 1"), ("gpu_runB", "H100 lease 2"), ("gpu_runC", "H200 lease 1")):
        (tmp_path / run).mkdir()
        (tmp_path / run / "results.csv").write_text("variant,batch,status\n")
        (tmp_path / run / "meta.json").write_text(json.dumps({"machine": machine, "versions": {"gpu": "X"}}))
    groups = benchtables.by_machine([str(p) for p in tmp_path.glob("*/results.csv")])
    assert {k: [Path(p).parent.name for p in v] for k, v in groups.items()} == {
        "H200 lease 1": ["gpu_runA", "gpu_runC"], "H100 lease 2": ["gpu_runB"]}


def test_host_timesteps_stay_on_the_host_and_the_unet_gets_device_copies():
    from diffusers import DDIMScheduler

    from sdsqueeze.accel.hoststeps import HostTimesteps

    state, scheduler = HostTimesteps(), DDIMScheduler()
    state.wrap_scheduler(scheduler)
    scheduler.set_timesteps(5, device="meta")  # "meta" stands in for a GPU: any non-host device
    assert scheduler.timesteps.device.type == "cpu"
    sample = torch.zeros(1, 4, 8, 8, device="meta")
    args, _ = state.unet_pre_hook(None, (sample, scheduler.timesteps[2]), {})
    assert args[1].device.type == "meta" and args[1] is state.on_device[float(scheduler.timesteps[2])]
    host_sample = torch.zeros(1, 4, 8, 8)
    args, _ = state.unet_pre_hook(None, (host_sample, scheduler.timesteps[2]), {})
    assert args[1].device.type == "cpu"  # a host UNet keeps the host timestep


@pytest.mark.parametrize("scheduler", ["pndm", "dpm++"])
def test_host_timesteps_give_the_same_images(scheduler):
    _, plain = generate(scheduler=scheduler)
    prepared, host = generate(scheduler=scheduler, host_timesteps=True)
    assert "host_timesteps" in prepared.notes
    assert torch.equal(plain, host)


def test_benchmark_groups_match_the_schema():
    import yaml

    from sdbench.run import GROUPS, SWEEPS

    schema = yaml.safe_load(Path("schemas/config.schema.yaml").read_text())
    enum = schema["properties"]["accel_benchmark"]["properties"]["groups"]["items"]["enum"]
    assert sorted(enum) == sorted([*GROUPS, *SWEEPS])


def test_one_name_per_build_in_config_accel_and_the_benchmark():
    """Every benchmark group names variants of config/accel.yaml, and no two names there share a build."""
    import yaml

    from sdbench.run import DEFAULTS, GROUPS, SWEEPS

    builds = yaml.safe_load(Path("config/accel.yaml").read_text())["variants"]
    named = {name for group in GROUPS.values() for name in group} | {build for build, _, _ in SWEEPS.values()}
    assert named <= set(builds)
    resolved = [tuple(sorted({**DEFAULTS, **(spec or {})}.items())) for spec in builds.values()]
    assert len(set(resolved)) == len(resolved)


def test_a_variant_name_means_one_build_in_every_config():
    """config/sd15.yaml and config/accel.yaml are layered: a name shared by both is one build, and no
    build goes by two names."""
    import yaml

    builds: dict[str, tuple] = {}
    for path in ("config/sd15.yaml", "config/accel.yaml"):  # the layered pair
        config = yaml.safe_load(Path(path).read_text())
        defaults = config.get("generation", yaml.safe_load(Path("config/sd15.yaml").read_text())["generation"])
        for name, keys in config.get("variants", {}).items():
            build = tuple(sorted((k, repr(v)) for k, v in {**defaults, **(keys or {})}.items()))
            assert builds.setdefault(name, build) == build, f"{name} ({path}) names two builds"
    names_of = {}
    for name, build in builds.items():
        names_of.setdefault(build, []).append(name)
    assert [names for names in names_of.values() if len(names) > 1] == []


def test_scheduler_sweep_swaps_only_the_scheduler(tmp_path):
    """One prepared build, several schedules: each row ran its own scheduler and step count."""
    from sdbench import harness
    from sdbench.run import BenchRun
    from sdsqueeze.models import write_clip_tokenizer

    args = BenchRun(shape="tiny", device="cpu", size=64, steps=4, batches=(1,), warmup=0, repeats=1, seed=0,
                    groups=(), extra=(), variants=None, tokenizer=str(tmp_path / "tok"), out=tmp_path)
    write_clip_tokenizer(Path(args.tokenizer))
    rows = harness.run_scheduler_sweep("fp32-host", {"dtype": "float32", "host_timesteps": True},
                                     [("ddim", 2), ("dpm++", 3)], args, log=lambda message: None)
    assert [r["variant"] for r in rows] == ["fp32-host-ddim2", "fp32-host-dpm3"]
    assert all(r["status"] == "ok" for r in rows), rows
    assert [r["unet_calls_per_image_call"] for r in rows] == [2, 3]
    assert [r["scheduler"] for r in rows] == ["ddim", "dpm++"] and all(r["host_timesteps"] for r in rows)
    assert '"DPMSolverMultistepScheduler"' in rows[1]["notes"]


def test_runs_are_ordered_by_number():
    assert benchtables.in_run_order(["d/gpu_run10/results.csv", "d/gpu_run2/results.csv", "d/gpu_run1/results.csv"]) \
        == ["d/gpu_run1/results.csv", "d/gpu_run2/results.csv", "d/gpu_run10/results.csv"]


def test_benchmark_records_variants_skipped_by_its_time_budget(tmp_path):
    import pandas as pd

    from sdbench import run as benchrun

    benchrun.main(["--shape", "tiny", "--device", "cpu", "--size", "64", "--steps", "2", "--batches", "1",
                   "--groups", "cpu", "--no-flops", "--time-budget", "1e-9", "--out", str(tmp_path)])
    rows = pd.read_csv(tmp_path / "results.csv")
    assert set(rows.status) == {"skipped: time budget"}
    assert len(rows) == len(benchrun.GROUPS["cpu"])


def test_cache_warmer_runs_each_job_as_one_benchmark_process(tmp_path):
    """Two jobs, two processes, each timing only its own variants (warm-up and one repeat)."""
    import pandas as pd

    from sdbench import warmcache

    code = warmcache.main(["--jobs", "cpu:fp32-sdpa", "cpu:fp32-sdpa-kvcache,cpu:fp32-classic", "--shape", "tiny",
                           "--device", "cpu", "--size", "64", "--steps", "2", "--batches", "1",
                           "--out", str(tmp_path)])
    assert code == 0
    first, second = (pd.read_csv(tmp_path / f"job{i}" / "results.csv") for i in (0, 1))
    assert list(first.variant) == ["fp32-sdpa"] and list(second.variant) == ["fp32-sdpa-kvcache", "fp32-classic"]
    assert set(first.status) | set(second.status) == {"ok"}


def test_cache_warmer_reports_a_failed_job(tmp_path):
    from sdbench import warmcache

    code = warmcache.main(["--jobs", "cpu:no-such-variant", "--shape", "tiny", "--device", "cpu",
                           "--out", str(tmp_path)])
    assert code == 1
    assert "KeyError" in (tmp_path / "job0.log").read_text()


def test_channels_last_groupnorm_swaps_every_groupnorm_and_keeps_the_images():
    from sdsqueeze.accel.groupnorm import ChannelsLastGroupNorm

    baseline = prepare(fresh_pipeline(), {**SPEC, "channels_last": True})
    prepared = prepare(fresh_pipeline(), {**SPEC, "channels_last": True, "channels_last_groupnorm": True})
    norms = [m for m in (*prepared.pipe.unet.modules(), *prepared.pipe.vae.modules()) if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(isinstance(m, ChannelsLastGroupNorm) for m in norms)
    assert prepared.notes["channels_last_groupnorm"] == f"{len(norms)} GroupNorm modules"
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)).to(memory_format=torch.channels_last)
    text = torch.randn(1, 77, baseline.pipe.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = baseline.pipe.unet(latent, 10, encoder_hidden_states=text).sample
        got = prepared.pipe.unet(latent, 10, encoder_hidden_states=text).sample
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_channels_last_groupnorm_needs_channels_last():
    with pytest.raises(ValueError, match="set channels_last too"):
        prepare(fresh_pipeline(), {**SPEC, "channels_last_groupnorm": True})


def test_fused_geglu_swaps_the_unet_gates_and_keeps_the_images_off_cuda():
    from diffusers.models.activations import GEGLU

    baseline = prepare(fresh_pipeline(), SPEC)
    prepared = prepare(fresh_pipeline(), {**SPEC, "fused_geglu": True})
    gates = [m for m in prepared.pipe.unet.modules() if isinstance(m, GEGLU)]
    assert gates and all(type(m) is not GEGLU for m in gates)
    assert prepared.notes["fused_geglu"] == f"{len(gates)} GEGLU modules"
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 77, baseline.pipe.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = baseline.pipe.unet(latent, 10, encoder_hidden_states=text).sample
        got = prepared.pipe.unet(latent, 10, encoder_hidden_states=text).sample
    assert torch.equal(got, expected)  # the stock forward off CUDA
