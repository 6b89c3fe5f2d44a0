"""The real DAG, end to end, on the embedded default at its smallest, in a temporary directory."""

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts from a dry run's 'Job stats' table."""
    table = result.stdout.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, test_config, snakemake):
    workdir = tmp_path_factory.mktemp("e2e")
    config = test_config("smallest")  # the run happens outside the repository: captions by absolute path
    config["prompts"]["captions"] = str(REPO / config["prompts"]["captions"])
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_report_is_built_from_the_csvs(run_dir):
    html = (run_dir / "results/report/index.html").read_text()
    timing = pd.read_csv(run_dir / "results/metrics/tiny/timing.csv")
    summary = pd.read_csv(run_dir / "results/metrics/tiny/summary.csv")
    assert set(timing.variant) == {"fp32-classic", "fp32-sdpa", "ddim-3", "ddim-2", "pd-2", "lcm-2", "bk"}
    for row in timing.itertuples():  # every cost shown comes from the CSV (CPU time on a CPU)
        assert f"<td>{row.cpu_seconds_per_image_median:.3f}</td>" in html
    ddim_psnr = summary[(summary.variant == "ddim-3") & (summary.metric == "psnr")].iloc[0]
    assert f"{ddim_psnr['mean']:.2f} [{ddim_psnr.ci_low:.2f}, {ddim_psnr.ci_high:.2f}]" in html
    assert (run_dir / "results/report/figures/image_grid.png").stat().st_size > 0


def test_prompt_adherence_is_a_column_of_every_per_image_csv(run_dir):
    from sdsqueeze.quality.adherence import NOTHING_STATED
    from sdsqueeze.quality.verdicts import ADHERENCE_METRICS, ADHERENCE_STATUS

    summary = pd.read_csv(run_dir / "results/metrics/tiny/summary.csv")
    for path in sorted((run_dir / "results/metrics/tiny/per_image").glob("*.csv")):
        per_image = pd.read_csv(path)
        assert set(ADHERENCE_METRICS) | {ADHERENCE_STATUS} <= set(per_image.columns), path.name
        assert set(per_image[ADHERENCE_STATUS]) <= {"ok", NOTHING_STATED}
        stated = per_image[ADHERENCE_STATUS] == "ok"
        assert per_image.loc[~stated, list(ADHERENCE_METRICS)].isna().all().all()
        assert per_image.loc[stated, "adherence_overall"].isin([0.0, 1.0]).all()
    assert set(ADHERENCE_METRICS) <= set(summary.metric)


def test_students_are_trained_saved_and_shown(run_dir):
    """Each student is a pipeline that loads with from_pretrained; the report has seed 003's table
    with every student variant and the loss curves."""
    from diffusers import DiffusionPipeline

    html = (run_dir / "results/report/index.html").read_text()
    assert "Distillation (seed 003)" in html and "distill_loss.png" in html
    for student, variant in (("pd-2", "pd-2"), ("lcm-2", "lcm-2"), ("bk", "bk")):
        record = json.loads((run_dir / f"resources/models/{student}/student.json").read_text())
        pipe = DiffusionPipeline.from_pretrained(run_dir / record["path"])
        summary = json.loads((run_dir / f"results/distill/tiny/{student}/summary.json").read_text())
        assert summary["parameters"] == sum(p.numel() for p in pipe.unet.parameters())
        assert f"<td>{variant}</td>" in html
    assert json.loads((run_dir / "results/distill/tiny/bk/summary.json").read_text())["parameters"] < \
        0.7 * json.loads((run_dir / "results/distill/tiny/bk/summary.json").read_text())["teacher_parameters"]


def test_report_zip_holds_every_figure_of_the_page(run_dir, snakemake):
    import zipfile

    result = snakemake(run_dir, "--report", "report.zip")
    assert result.returncode == 0, result.stderr[-3000:]
    html = (run_dir / "results/report/index.html").read_text()
    used = set(re.findall(r'src="figures/([^"]+\.png)"', html)) | set(re.findall(r'href="figures/([^"]+\.png)"', html))
    assert {"variants.png", "image_grid.png"} <= used
    names = {Path(n).name for n in zipfile.ZipFile(run_dir / "report.zip").namelist()}
    assert used <= names, used - names


def test_diffc_psnr_rises_with_rate_towards_the_vae_ceiling(run_dir):
    """DiffC's rate-distortion curve on the embedded default: the trained model's reconstructions improve
    with rate, and stay below what the VAE alone reaches. Between neighbouring high-noise rate points the
    gain is within the sampling noise of four images (hundredths of a dB either way at this size), so
    a step may dip by at most 0.1 dB while the curve as a whole rises."""
    rd = pd.read_csv(run_dir / "results/diffc/tiny/rd.csv")
    coded = rd[rd.method == "diffc"].groupby("recon_timestep")[["bpp", "psnr"]].mean().sort_values("bpp")
    assert len(coded) >= 4
    assert coded.bpp.is_monotonic_increasing and coded.psnr.diff().min() > -0.1, coded
    assert coded.psnr.iloc[-1] > coded.psnr.iloc[0] + 2, coded
    assert (rd[rd.method == "diffc"].chunk_kl_excess_bits <= 1e-9).all()  # every chunk within its KL budget
    ceiling = rd[rd.method != "diffc"].psnr.mean()
    assert coded.psnr.iloc[-1] <= ceiling + 0.5
    model = json.loads((run_dir / "resources/models/tiny/model.json").read_text())
    assert model["tiny_weights"] == "trained" and model["weights_sha256"] == model["training"]["weights_sha256"]


def test_every_shard_has_all_images_and_provenance(run_dir):
    for variant in ("fp32-classic", "fp32-sdpa", "ddim-3"):
        shards = sorted((run_dir / "results/images/tiny" / variant).iterdir())
        assert [s.name for s in shards] == ["shard-0", "shard-1"]
        manifests = pd.concat(pd.read_csv(s / "manifest.csv") for s in shards)
        assert len(manifests) == 4
        for shard in shards:
            assert (shard / "provenance.json").exists()


def test_second_run_does_nothing(run_dir, snakemake):
    result = snakemake(run_dir, "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changing_one_variant_reruns_only_its_jobs(run_dir, snakemake_run):
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["variants"]["ddim-3"]["guidance"] = 5.0
    changed = run_dir / "changed"
    changed.mkdir()
    (changed / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake_run("-s", str(REPO / "Snakefile"), "-d", str(run_dir),
                           "--configfile", str(changed / "config.yaml"), "--cores", "2", "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned_jobs(result)
    assert jobs.get("generate") == 2  # the two shards of ddim-3, nothing else
    assert jobs.get("metrics_variant") == 1
    assert "materialize_model" not in jobs and "prompts" not in jobs
