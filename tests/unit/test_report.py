"""The report page: sections in order, verdicts, cost ranking, the glance box, unavailable metrics
in one line, and no nan/None/raw column names anywhere in the HTML."""

import ast
import re
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import default_config, write_report_inputs

from sdsqueeze.report import build_report
from sdsqueeze.report.analysis import cost_rank, efficiency, pareto_front, unavailable_line
from sdsqueeze.report.page import interval, percent

REPORT_PACKAGE = Path(__file__).resolve().parents[2] / "src" / "sdsqueeze" / "report"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    config = default_config()
    inputs = write_report_inputs(root / "in", config)
    out = root / "out" / "index.html"
    figures = build_report(inputs, config, out, commands=["snakemake --cores 2"])
    return out.read_text(), figures, config, inputs


def test_every_section_appears_in_order(page):
    text, figures, _, _ = page
    titles = ["Techniques", "Quality with intervals", "Pareto: cost and memory vs quality", "Quality vs steps",
              "K/V cache check", "Image grid", "Commands and config"]
    positions = [text.index(f">{title}</h2>") for title in titles]
    assert positions == sorted(positions)
    assert {f.name for f in figures} >= {"variants.png", "steps.png", "image_grid.png"}
    assert all(f.is_file() and f.stat().st_size > 1000 for f in figures)
    for figure in figures:  # every figure sits in the folder the report rule declares with report()
        assert figure.parent.name == "figures"
        assert f'src="figures/{figure.name}"' in text or f'href="figures/{figure.name}"' in text


def test_unavailable_metrics_collapse_into_one_line(page):
    text, _, _, _ = page
    assert ("LPIPS, FID vs reference, FID vs COCO, IS: unavailable here — no weights; set "
            "metrics.weights_dir, see docs/metrics.md.") in text
    assert "unavailable [" not in text  # no column or table of "unavailable" cells
    assert ">Distribution metrics: FD-EffNetLite0, FID, Inception Score</h2>" not in text
    assert "<th>LPIPS" not in text


def test_verdicts_equivalent_for_identical_images(page):
    text, _, _, _ = page
    techniques = text[text.index(">Techniques</h2>"):text.index(">Quality with intervals</h2>")]
    row = re.search(r"<td>fp32-sdpa</td>.*?</tr>", techniques, re.S).group(0)
    assert "<td>equivalent</td>" in row
    assert "worse: PSNR, SSIM; inconclusive: CLIP score" in techniques  # the noisy variants


def test_glance_box_states_cost_and_quality_of_one_run(page):
    text, _, _, _ = page
    glance = text[text.index("At a glance"):text.index("</ul>")]
    items = re.findall(r"<li><b>([\w.+-]+)</b>: ([\d.]+)× the reference's CPU time per image; (\w+) Δ (.*?)</li>", glance)
    assert 1 <= len(items) <= 3
    for _, ratio, metric, quality in items:
        assert float(ratio) < 1 and metric == "SSIM"
        assert re.search(r"\[.*, .*\] — (equivalent|worse|inconclusive|better)", quality)
    assert "wall-clock speed-ups are indicative (shared CPU)" in glance


def test_cost_ranking_uses_cpu_time_and_unresolved_speedups_say_so(page):
    text, _, config, inputs = page
    ranking = cost_rank(pd.read_csv(inputs["timing"][0]), config["reference"])
    assert ranking.index("dpm-8") < ranking.index("dpm-20") < ranking.index("fp32-classic")
    row = re.search(r"<td>ddim-10</td>.*?</tr>", text, re.S).group(0)
    assert "not resolved" in row  # its repeats disagree by 40%
    assert "Wall-clock speed-up, indicative (shared CPU)" in text


def test_html_shows_no_nan_none_or_raw_column_names(page):
    text, _, _, _ = page
    body = re.sub(r"<pre>.*?</pre>", "", text, flags=re.S)  # the config dump is YAML, as written
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", body, re.S)
    assert cells
    for cell in cells:
        assert cell.strip() not in ("nan", "None", "NaN", "-0%", "-0"), cell
    headers = re.findall(r"<th[^>]*>(.*?)</th>", body, re.S)
    assert not [h for h in headers if re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", h.strip())], headers
    assert not re.search(r"\bnan\b|\bNone\b", re.sub(r"<[^>]+>", " ", body))


def test_commands_config_and_escaping(page):
    text, _, _, _ = page
    assert "snakemake --cores 2" in text and "reference: fp32-classic" in text
    assert "prompt &lt;1&gt; &amp; co" in text


def test_image_grid_thumbnails_link_to_full_size(page):
    text, _, _, _ = page
    grid = text[text.index(">Image grid</h2>"):]
    links = re.findall(r'<a href="([^"]+\.png)"><img src="([^"]+)"', grid)
    assert links and all(href == src and "/shard-0/" in href for href, src in links)


def test_report_package_has_no_import_cycle():
    """page.py is a leaf; build.py is the only module that knows every section."""
    graph = {}
    for path in REPORT_PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {
            alias.name if node.module is None else node.module
            for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1
            for alias in node.names}
    graph = {m: {d for d in deps if d in graph} for m, deps in graph.items()}
    assert graph["page"] == set()
    done, visiting = set(), set()

    def visit(module):
        assert module not in visiting, f"import cycle through {module}"
        if module not in done:
            visiting.add(module)
            for dep in graph[module]:
                visit(dep)
            visiting.discard(module)
            done.add(module)

    for module in graph:
        visit(module)


def test_efficiency_ranks_by_cpu_time_and_hides_noisy_speedups():
    timing = pd.DataFrame({"variant": ["ref", "a", "b"], "seconds_per_image_median": [2.0, 1.0, 0.5],
                           "cpu_seconds_per_image_median": [2.0, 0.5, 1.0], "seconds_spread": [0.01, 0.5, 0.02],
                           "peak_memory_mb": [100.0, 50.0, 100.0]})
    eff = efficiency(timing, "ref", on_cpu=True).set_index("variant")
    assert list(eff.index) == ["a", "b", "ref"]
    assert eff.loc["b", "speedup"] == 4.0 and eff.loc["a", "memory_reduction"] == 0.5
    assert eff.loc["b", "speedup_resolved"] and not eff.loc["a", "speedup_resolved"]
    points = pd.DataFrame({"variant": ["ref", "a", "b", "c"], "seconds": [2.0, 1.0, 0.5, 1.5],
                           "value": [0.0, 0.1, 0.3, 0.2]})
    front = pareto_front(points, "seconds", higher=False)  # lower LPIPS is better
    assert list(front.variant) == ["b", "a", "ref"]


def test_formatting_never_shows_nan_or_negative_zero():
    assert interval(-3.7e-08, -5.4e-08, -2.2e-08, 4) == "-3.70e-08 [-5.40e-08, -2.20e-08]"
    assert interval(0.5, 0.25, 0.75, 2) == "0.50 [0.25, 0.75]"
    assert interval(-0.00001, float("nan"), 0.0, 2) == "-1.00e-05 [—, 0.00]"
    assert percent(-0.004) == "0%" and percent(0.123) == "12%" and percent(float("nan")) == "—"
    assert unavailable_line({"lpips": "unavailable: alexnet.pth: metrics.weights_dir not set",
                             "fid_coco": "unavailable: metrics.coco_images not set"}) == (
        "LPIPS: unavailable here — no weights; set metrics.weights_dir, see docs/metrics.md. "
        "FID vs COCO: unavailable here — no COCO photographs; set metrics.coco_images, see docs/metrics.md.")


def test_cost_ranking_on_generated_shards_follows_the_work(tiny_dir, tmp_path, base_spec):
    """The timing protocol on real generation: process CPU time per image, after the warm-up,
    ranks dpm-8 < dpm-20 < fp32-classic (8, 20, 25 steps) however loaded the machine is."""
    from sdsqueeze import generate
    from sdsqueeze.models import load_pipeline
    from sdsqueeze.quality import images as metrics

    prompts = pd.DataFrame({"prompt_id": [1, 2], "prompt": ["a red bus", "two cats"], "seed": [11, 12]})
    variants = {"fp32-classic": {"scheduler": "pndm", "steps": 25}, "dpm-8": {"scheduler": "dpm++", "steps": 8},
                "dpm-20": {"scheduler": "dpm++", "steps": 20}}
    shards = []
    for name, change in variants.items():
        spec = {**base_spec, **change, "name": name, "batch_size": 1}  # two batches: two repeats
        generate.generate_shard(load_pipeline(str(tiny_dir)), spec, prompts, tmp_path / name / "shard-0",
                                device="cpu", progress=False)
        shards.append(tmp_path / name / "shard-0")
    timing = metrics.timing_table(metrics.read_manifests(shards))
    assert (timing.batches == 2).all() and timing.cpu_seconds_per_image_median.gt(0).all()
    assert cost_rank(timing, "fp32-classic", on_cpu=True) == ["dpm-8", "dpm-20", "fp32-classic"]


def test_gpu_section_shows_one_current_table_per_gpu_type(tmp_path):
    from sdsqueeze.report import accel
    from sdsqueeze.report.page import ReportContext

    root = REPORT_PACKAGE.parents[2]
    paths = [str(root / p) for p in accel.committed_gpu_results(root)]
    runs = accel.current_runs(paths)
    assert len(runs) == len(set(runs))  # one run per GPU type
    for path in runs.values():  # never a run without its meta.json
        assert Path(path.replace("_results.csv", "_meta.json")).is_file()
    ctx = ReportContext(inputs={"accel_benchmark": paths}, config=default_config(), out_dir=tmp_path)
    body = accel.benchmark_section(ctx).body_html
    assert body.count("<table") == len(runs)
    assert "None" not in body and "OSError" not in body and "error" not in body.lower()
    assert "docs/benchmarks.md" in body and "baseline" in body and "best build" in body


def test_seeded_weights_get_a_banner_and_the_gpu_is_named(tmp_path):
    import json

    from sdsqueeze.report import sections
    from sdsqueeze.report.page import ReportContext

    shard = tmp_path / "shard-0"
    shard.mkdir()
    (shard / "provenance.json").write_text(json.dumps({
        "device": {"device": "cuda", "gpu": "NVIDIA H200", "gpu_uuid": "GPU-1234", "cuda": "13.0"},
        "packages": {"torch": "2.11.0+cu130"}}))
    seeded = {"model": {"source": "sd15-seeded"}}
    top = sections.where_it_ran(ReportContext(inputs={"shards": [str(shard)]}, config=seeded, out_dir=tmp_path))
    assert "SEEDED WEIGHTS" in top and "meaningless" in top
    assert "NVIDIA H200 (UUID GPU-1234), CUDA 13.0, torch 2.11.0+cu130" in top
    pretrained = {"model": {"source": "stable-diffusion-v1-5/stable-diffusion-v1-5"}}
    assert "SEEDED" not in sections.where_it_ran(ReportContext(inputs={}, config=pretrained, out_dir=tmp_path))


def test_distribution_cell_shows_the_bootstrap_interval_where_there_is_one():
    import pandas as pd

    from sdsqueeze.report.sections import Notes, quality_cell

    rows = pd.DataFrame([
        {"variant": "w4", "metric": "fd_effnetlite0", "value": 12.5, "std": float("nan"), "ci_low": 8.25,
         "ci_high": 30.0, "n_images": 8, "n_compared": 8, "status": "ok"},
        {"variant": "w4", "metric": "inception_score", "value": 3.0, "std": 0.5, "ci_low": float("nan"),
         "ci_high": float("nan"), "n_images": 8, "n_compared": float("nan"), "status": "ok"}])
    fd = quality_cell(None, rows, "w4", "fd_effnetlite0", Notes())
    assert "12.500" in fd and "8.250" in fd and "30.000" in fd
    assert quality_cell(None, rows, "w4", "inception_score", Notes()) == "3.00 ± 0.50"
