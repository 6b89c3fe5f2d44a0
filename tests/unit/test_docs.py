from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    """The shell lines of the README's first code block: commands (a) and (b)."""
    block = (REPO / "README.md").read_text().split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = readme_commands()
    assert len(commands) == 2
    run_main, run_tests = commands
    assert "snakemake --cores all" in run_main and "pytest" in run_tests
    assert run_tests in (REPO / ".ci" / "run").read_text()
    for command in commands:
        assert "torch==2.14.1 torchvision==0.29.1" in command


def test_onnx_doc_table_is_generated_from_the_committed_cpu_run():
    """docs/onnx.md's benchmark block is exactly what `python benchmarks/onnx_cpu.py --table` prints
    from benchmarks/results/onnx_cpu/, and the run holds every runtime at both sizes."""
    import subprocess
    import sys

    import pandas as pd

    doc = (REPO / "docs" / "onnx.md").read_text()
    begin = "<!-- BEGIN generated: python benchmarks/onnx_cpu.py --table -->\n"
    block = doc.split(begin, 1)[1].split("<!-- END generated -->", 1)[0]
    rendered = subprocess.run([sys.executable, "benchmarks/onnx_cpu.py", "--table"], capture_output=True,
                              text=True, check=True, cwd=REPO).stdout
    assert block.strip() == rendered.strip(), "rerun: python benchmarks/onnx_cpu.py --table, paste between the markers"
    rows = pd.read_csv(REPO / "benchmarks" / "results" / "onnx_cpu" / "results.csv")
    assert set(rows[rows.model == "embedded"].runtime) == {"pytorch-fp32", "ort-fp32", "ort-int8-dynamic",
                                                           "ort-int8-static"}
    assert set(rows[rows.model == "sd15-arch"].runtime) >= {"pytorch-fp32", "ort-fp32", "ort-int8-dynamic"}
    assert (rows.repeats >= 3).all() and (rows.min_ms <= rows.median_ms).all() and (rows.median_ms <= rows.max_ms).all()


def generated_block(doc: str, *flags: str) -> str:
    """The doc's block between `python benchmarks/render_tables.py FLAGS`'s markers, checked to be exactly
    what that command prints now, in a doc that stays reference (<= 15 KB)."""
    import subprocess
    import sys

    text = Path(doc).read_text()
    assert len(text.encode()) <= 15 * 1024
    command = " ".join(["python benchmarks/render_tables.py", *flags])
    block = text.split(f"<!-- BEGIN generated: {command} -->\n", 1)[1].split("<!-- END generated -->", 1)[0]
    rendered = subprocess.run([sys.executable, "benchmarks/render_tables.py", *flags], capture_output=True,
                              text=True, check=True).stdout
    assert block.strip() == rendered.strip(), f"rerun: {command}, paste between the markers"
    return block


def test_benchmarks_doc_is_short_and_its_tables_are_generated():
    """docs/benchmarks.md's current-results block is exactly what `python benchmarks/render_tables.py`
    prints from benchmarks/results/."""
    block = generated_block("docs/benchmarks.md")
    assert "| `fp16-sdpa` |" in block  # the baseline of every speedup is in the table


def test_metrics_doc_fd_cost_table_is_generated():
    """docs/metrics.md's FD-EffNetLite0 cost block is what `python -m sdsqueeze.quality.fdcost render`
    prints from the committed CSV."""
    import pandas as pd

    from sdsqueeze.quality import fdcost

    doc = (REPO / "docs" / "metrics.md").read_text()
    begin = "<!-- BEGIN generated: python -m sdsqueeze.quality.fdcost render docs/metrics/fd_effnetlite0_cost.csv -->\n"
    block = doc.split(begin, 1)[1].split("<!-- END generated -->", 1)[0]
    rendered = fdcost.render(pd.read_csv(REPO / "docs" / "metrics" / "fd_effnetlite0_cost.csv"))
    assert block.strip() == rendered.strip(), "rerun the command named in the marker and paste its output"
    assert "| 8 |" in block and "| 64 |" in block


def test_lowbit_doc_is_short_and_its_tables_are_generated():
    """docs/lowbit.md's results block is exactly `python benchmarks/render_tables.py --lowbit`."""
    block = generated_block("docs/lowbit.md", "--lowbit")
    assert "| fp16-compiled-host |" in block and "share of that precision's peak" in block
    assert "| fp16-compiled-host-gn |" in block and "| fp8static |" in block  # GPU builds, embedded-model verdicts


def test_kernel_limits_doc_is_short_and_its_tables_are_generated():
    """docs/kernel-limits.md's results block is exactly `python benchmarks/render_tables.py --kernels`."""
    block = generated_block("docs/kernel-limits.md", "--kernels")
    assert "cudnn fp16 TFLOP/s" in block and "int8 kernel TOPS" in block


def test_kernel_limits_routes_block_is_generated():
    """docs/kernel-limits.md's routes block is exactly `python benchmarks/render_tables.py --routes`."""
    block = generated_block("docs/kernel-limits.md", "--routes")
    assert "route vs current" in block and "cuDNN SDPA" in block


def test_unconditional_doc_table_is_generated_from_the_committed_run():
    """docs/unconditional.md's LSUN-layout table is exactly what `python -m sdsqueeze.report.uncond
    render` makes of the committed CSVs (the report's own table function)."""
    from sdsqueeze.report import uncond

    doc = (REPO / uncond.DOC).read_text()
    block = doc[doc.index(uncond.BEGIN) : doc.index(uncond.END) + len(uncond.END)]
    assert block == uncond.render_block(str(REPO / uncond.DATA_DIR)), \
        "rerun: python -m sdsqueeze.report.uncond render"
    for label in ("| Baseline", "| W/O", "| W (noise)", "| W (raw data)", "W4A8", "W8A8"):
        assert label in block


def test_attention_floor_is_the_slower_of_its_exponentials_and_its_products():
    import pandas as pd
    import render_tables  # benchmarks/, on the path through tests/conftest.py

    shapes = pd.DataFrame({"heads": [8, 8], "queries": [4096, 256], "keys": [4096, 256], "head_dim": [40, 160]})
    meta = {"exp2_tera_per_s": 4.0, "bf16_matmul_tflops": 800.0}
    floor = render_tables.attention_floor_us(shapes, meta)
    scores = 8 * 8 * 4096 * 4096
    assert floor[0] == pytest.approx(max(scores / 4e12, 4 * scores * 40 / 800e12) * 1e6)  # exp2-bound at head dim 40
    scores = 8 * 8 * 256 * 256
    assert floor[1] == pytest.approx(4 * scores * 160 / 800e12 * 1e6)  # product-bound at head dim 160


def test_floor_bounds_show_each_class_then_the_written_kernels_together_then_all():
    """Bounds subtract each class's excess over its floor from the run's best 16-bit step: alone,
    all but attention (GroupNorm and GEGLU, the kernels this project writes), and everything."""
    import json

    import render_tables  # benchmarks/, on the path through tests/conftest.py

    run = REPO / "benchmarks/results/gpu_run24"
    meta = json.loads((run / "meta.json").read_text())
    savings = {"SDPA": 1000.0, "GroupNorm + SiLU": 400.0, "GEGLU's gate": 600.0}
    line = render_tables._floor_bounds(savings, meta, str(run / "results.csv"))
    step_ms = 17.21  # gpu_run24's fp16-compiled-host-gn, its only 16-bit build
    flops = meta["flops"][0]["unet_step_flops"]

    def case(what: str, saved_us: float) -> str:
        ms = step_ms - saved_us / 1e3
        return f"{what}: a {ms:.2f} ms step, {flops / (ms / 1e3) / 1e12 / meta['bf16_matmul_tflops']:.1%}"

    assert "(GEGLU's gate: at no cost)" in line
    expected = [case("SDPA", 1000), case("GroupNorm + SiLU", 400), case("GEGLU's gate", 600),
                case("GroupNorm + SiLU and GEGLU's gate", 1000), case("SDPA and GroupNorm + SiLU and GEGLU's gate", 2000)]
    assert line.endswith("floors (GEGLU's gate: at no cost): " + "; ".join(expected) + ".")
    two = render_tables._floor_bounds({"SDPA": 1000.0, "GroupNorm + SiLU": 400.0}, meta, str(run / "results.csv"))
    assert "at no cost" not in two and two.endswith(case("SDPA and GroupNorm + SiLU", 1400) + ".")
