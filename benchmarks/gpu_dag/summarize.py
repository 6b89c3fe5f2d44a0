"""Tables of a GPU smoke run (benchmarks/gpu_dag/smoke.sh) from its committed log and GPU samples.

    python benchmarks/gpu_dag/summarize.py docs/gpu-run           # print the generated block
    python benchmarks/gpu_dag/summarize.py docs/gpu-run --write   # rewrite it in docs/gpu-run/README.md
    python benchmarks/gpu_dag/summarize.py docs/gpu-run --ingest EVIDENCE   # first copy a run's evidence in

EVIDENCE is pack.py's evidence.tar.gz unpacked. Reads RUN/run1.log (Snakemake's own log: when each job
started, finished or failed), RUN/run2.log (the rerun), RUN/gpu_samples.csv (nvidia-smi, one sample a
second: utilization and memory of the whole GPU), RUN/timing.csv and RUN/generation_batches.csv (the
generation jobs' own CUDA-event timings) and RUN/diffc_rd.csv (DiffC's rate points).
A job's interval is start to finish as Snakemake logged them, to the second; with several jobs
sharing the GPU (SDSQ_JOBS_PER_GPU) intervals overlap, so their sum is GPU-slot time, not GPU time;
the GPU's busy time is the utilization samples' sum.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from sdsqueeze.accel.measure import committed_results  # noqa: E402
from sdsqueeze.prompts import n_shards  # noqa: E402

BEGIN, END = "<!-- gpu-run:begin -->", "<!-- gpu-run:end -->"
PREDICTION = ("<!-- gpu-hours:begin -->", "<!-- gpu-hours:end -->")  # in README.md
DIFFC = ("<!-- gpu-run-diffc:begin -->", "<!-- gpu-run-diffc:end -->")  # in docs/diffc.md
BATCH_COLUMNS = ["variant", "batch_index", "seconds", "unet_ms_step", "unet_calls", "warmup_seconds", "peak_memory_mb"]
RD_COLUMNS = ["image", "method", "recon_timestep", "bytes", "bpp", "psnr", "latent_snr_db", "decode_seconds",
              "redecode_identical", "encode_seconds_all_rate_points"]
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$")


def parse_jobs(log_text: str) -> pd.DataFrame:
    """One row per job: rule, wildcards, start, end, status (finished / failed / unfinished)."""
    jobs: dict[int, dict] = {}
    lines = log_text.splitlines()
    stamp = None
    for i, line in enumerate(lines):
        if match := STAMP.match(line.strip()):
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
            continue
        block = lines[i + 1 : i + 12]
        jobid = next((int(b.split(":")[1]) for b in block if b.strip().startswith("jobid:")), None)
        if match := re.match(r"^localrule (\w+):$", line):
            wildcards = next((b.split(":", 1)[1].strip() for b in block if b.strip().startswith("wildcards:")), "")
            jobs[jobid] = {"jobid": jobid, "rule": match.group(1), "wildcards": wildcards, "start": stamp,
                           "end": None, "status": "unfinished"}
        elif match := re.match(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$", line):
            jobs[int(match.group(1))].update(end=stamp, status="finished")
        elif re.match(r"^Error in rule (\w+):$", line) and jobid in jobs:
            jobs[jobid].update(end=stamp, status="failed")
    frame = pd.DataFrame(jobs.values())
    frame["seconds"] = (frame.end - frame.start).dt.total_seconds()
    frame["variant"] = frame.wildcards.str.extract(r"variant=([^,]+)")[0]
    return frame.sort_values(["start", "jobid"]).reset_index(drop=True)


def read_samples(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, skipinitialspace=True)
    frame.columns = ["timestamp", "name", "uuid", "utilization", "memory_mib"]
    frame["utilization"] = frame.utilization.str.rstrip(" %").astype(float)
    frame["memory_mib"] = frame.memory_mib.str.rstrip(" MiB").astype(float)
    frame["timestamp"] = pd.to_datetime(frame.timestamp, format="%Y/%m/%d %H:%M:%S.%f")
    return frame


def gpu_use_by_rule(jobs: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Per rule: GPU-busy seconds, each one-second sample's utilization split evenly among the jobs
    running at that moment (an attribution, exact only where jobs do not overlap), and the whole
    device's peak memory while any of its jobs ran (shared with whatever overlapped them)."""
    step = samples.timestamp.diff().dt.total_seconds().median()
    busy = dict.fromkeys(jobs.rule, 0.0)
    peak = dict.fromkeys(jobs.rule, 0.0)
    for stamp, utilization, memory in samples[["timestamp", "utilization", "memory_mib"]].itertuples(index=False):
        running = jobs[(jobs.start <= stamp) & (jobs.end >= stamp)]
        for rule in running.rule:
            busy[rule] += utilization / 100 * step / len(running)
            peak[rule] = max(peak[rule], memory / 1024)
    return pd.DataFrame({"rule": list(busy), "gpu_busy_s": list(busy.values()),
                         "device_memory_peak_gib": list(peak.values())})


def stage_table(jobs: pd.DataFrame, samples: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per rule: jobs and their outcome, when the first started and the last ended (seconds after the
    run's first job started), the intervals' sum and the longest; with GPU samples, the rule's GPU
    use (``gpu_use_by_rule``)."""
    began = jobs.start.min()
    jobs = jobs.assign(start_s=(jobs.start - began).dt.total_seconds(), end_s=(jobs.end - began).dt.total_seconds())
    table = jobs.groupby("rule", sort=False).agg(
        jobs=("jobid", "size"), finished=("status", lambda s: int((s == "finished").sum())),
        failed=("status", lambda s: int((s == "failed").sum())), first_start_s=("start_s", "min"),
        last_end_s=("end_s", "max"), slot_seconds=("seconds", "sum"), longest_job_s=("seconds", "max")).reset_index()
    return table if samples is None else table.merge(gpu_use_by_rule(jobs, samples), on="rule")


def prediction_line(run_dir: Path) -> str:
    return predict_full_run(run_dir)[1]


def block(run_dir: Path) -> str:
    jobs = parse_jobs((run_dir / "run1.log").read_text())
    samples = read_samples(run_dir / "gpu_samples.csv")
    planned = int(re.search(r"^total\s+(\d+)$", (run_dir / "run1.log").read_text(), re.M).group(1))
    wall = (jobs.end.max() - jobs.start.min()).total_seconds()
    busy = samples.utilization.sum() / 100 * samples.timestamp.diff().dt.total_seconds().median()
    generation = jobs[jobs.rule == "generate"][["variant", "status", "seconds"]].rename(
        columns={"seconds": "job_seconds"})
    lines = [
        f"Device: {samples.name.iloc[0]} ({samples.uuid.iloc[0]}). Jobs planned {planned}; started "
        f"{len(jobs)}, finished {int((jobs.status == 'finished').sum())}, failed {int((jobs.status == 'failed').sum())}. "
        f"First job start to last job end: {wall:.0f} s. GPU busy (sum of nvidia-smi utilization x 1 s "
        f"samples): {busy:.0f} s; peak GPU memory in use (whole device): {samples.memory_mib.max() / 1024:.1f} GiB.",
        "",
        "Per stage (slot seconds: each job's start-to-end interval, summed; jobs overlapped, up to 4 on the GPU; "
        "GPU-busy seconds: each one-second utilization sample split evenly among the jobs running then; "
        "device memory peak: the whole GPU's while the stage's jobs ran, shared with overlapping jobs):",
        "",
        stage_table(jobs, samples).to_markdown(index=False, floatfmt=".0f"),
        "",
        "Generation jobs (16 prompts, batch 4, one job per variant; the interval includes start-up, model "
        "load, warm-up and waiting for the GPU):",
        "",
        generation.to_markdown(index=False, floatfmt=".0f"),
        "",
    ]
    rerun = (run_dir / "run2.log").read_text()
    lines += [
        "The rerun of the same command: " + ("\"Nothing to be done\"." if "Nothing to be done" in rerun
                                            else "it planned jobs (see run2.log)."),
        "",
        "The generation jobs' own timings (CUDA events after a warm-up that runs every timed batch shape; "
        "20 steps, batch 4 with classifier-free guidance, so one UNet call is a batch of 8; s_per_image_spread = "
        "(max - min) / median of s/image over batches; up to 4 jobs shared the GPU, each batch timed while "
        "holding it alone):",
        "",
        generation_timing(run_dir).to_markdown(index=False, floatfmt=".3f"),
        "",
        "A generation job against the benchmark harness (`benchmarks/gpu_benchmark.py`, the committed H200 runs) "
        "for the same build, UNet ms per call at batch 4:",
        "",
        benchmark_ratio(run_dir).to_markdown(index=False, floatfmt=".3f"),
        "",
    ]
    table, summary = predict_full_run(run_dir)
    lines += [summary, "", table.to_markdown(index=False, floatfmt=".3f")]
    return "\n".join(lines)


def benchmark_seconds_per_image(gpu: str = "H200", batch: int = 4) -> pd.DataFrame:
    """s/image and the UNet's ms per call (CFG batch) of every build the committed benchmark runs of
    this GPU type timed (512 px, batch 4); a build timed by several runs keeps the newest."""
    rows = []
    for results in committed_results(REPO):
        folder = Path(results).parent
        if gpu not in json.loads((folder / "meta.json").read_text())["versions"]["gpu"]:
            continue
        frame = pd.read_csv(results)
        ok = frame[(frame.batch == batch) & (frame.status == "ok")]
        rows += [{"build": r.variant, "scheduler": r.scheduler, "steps": int(r.steps), "s_per_image": r.s_per_image,
                  "unet_ms": r.unet_ms_step_median,
                  "compile_s": r.warmup_s if r.compile not in ("none", None) and r.compile == r.compile else 0.0,
                  "run": folder.name} for r in ok.itertuples()]
    return pd.DataFrame(rows).drop_duplicates("build", keep="last")


def predict_full_run(run_dir: Path, config_path: Path = REPO / "config" / "sd15.yaml",
                     smoke_path: Path = REPO / "config" / "sd15-gpu-smoke.yaml") -> tuple[pd.DataFrame, str]:
    """GPU-hours of config/sd15.yaml's generation stage: per variant, its prompts x the benchmark's
    s/image of the same build (scaled by steps when the benchmark timed that build's scheduler at
    another step count), plus each job's fixed cost as measured here (the median interval of this
    run's finished generation jobs, which also holds their 20 small image passes: an upper bound)
    and, for a compiled build, the benchmark's warm-up (its compilation) once per job. A variant the
    benchmark never timed (the float32 builds) takes this run's own generation-job s/image, scaled
    from the smoke config's steps to the full config's."""
    config = yaml.safe_load(config_path.read_text())
    smoke_steps = yaml.safe_load(smoke_path.read_text())["generation"]["steps"]
    bench = benchmark_seconds_per_image()
    jobs = parse_jobs((run_dir / "run1.log").read_text())
    measured = generation_timing(run_dir).set_index("variant")
    fixed = float(jobs[(jobs.rule == "generate") & (jobs.status == "finished")].seconds.median())
    prompts, shards = config["prompts"]["n"], n_shards(config["prompts"]["n"], config["prompts"]["shard_size"])
    rows = []
    for name, keys in config["variants"].items():
        spec = {**config["generation"], **(keys or {})}
        same = bench[bench.build == name]
        sibling = bench[(bench.scheduler == spec["scheduler"]) & bench.build.str.startswith("fp16-sdpa")
                        & ~bench.build.str.contains("kvcache|deepcache|channels|fused")] if spec["dtype"] == "float16" \
            and spec.get("attention") == "sdpa" and set(keys or {}) <= {"scheduler", "steps"} else bench.iloc[0:0]
        source = same if len(same) else sibling
        if len(source):
            ref = source.iloc[0]
            per_image, compile_s = ref.s_per_image * spec["steps"] / ref.steps, ref.compile_s
            basis = f"benchmark {ref.build} ({ref.run}, {ref.steps} steps)"
        elif name in measured.index:
            ran_steps = (keys or {}).get("steps", smoke_steps)
            per_image, compile_s = measured.loc[name, "s_per_image"] * spec["steps"] / ran_steps, 0.0
            basis = f"this run's generation job ({ran_steps} steps)"
        else:
            per_image, compile_s, basis = float("nan"), float("nan"), "not timed"
        rows.append({"variant": name, "steps": spec["steps"], "s_per_image": per_image,
                     "compile_s_per_job": compile_s, "basis": basis,
                     "gpu_hours": (prompts * per_image + shards * (fixed + compile_s)) / 3600})
    table = pd.DataFrame(rows)
    timed = table[table.s_per_image.notna()]
    untimed = table[table.s_per_image.isna()].variant.tolist()
    summary = (f"Predicted generation GPU-hours of config/sd15.yaml ({prompts:,} prompts, {shards} jobs per variant, "
               f"one job per GPU) on an H200: {timed.gpu_hours.sum():.2f} h for its {len(timed)} variants (image time "
               f"{(timed.s_per_image * prompts).sum() / 3600:.2f} h + job fixed cost "
               f"{len(timed) * shards * fixed / 3600:.2f} h at {fixed:.0f} s a job + compilation "
               f"{(timed.compile_s_per_job * shards).sum() / 3600:.2f} h at the benchmark's warm-up per compiled job)"
               + (f"; not timed: {', '.join(untimed)}." if untimed else "."))
    return table, summary


def ingest(evidence: Path, run_dir: Path, model: str = "sd15-seeded") -> None:
    """Copy what the tables read from an unpacked evidence.tar.gz: the run's logs and GPU samples, the
    timing summary, one row per timed batch from every generation manifest, DiffC's rate points and
    one shard's provenance (the device record)."""
    import shutil

    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("command.txt", "run1.log", "run2.log", "gpu_samples.csv"):
        shutil.copy(evidence / "run" / name, run_dir / name)
    shutil.copy(evidence / "results" / "metrics" / model / "timing.csv", run_dir / "timing.csv")
    manifests = sorted((evidence / "results" / "images" / model).glob("*/shard-*/manifest.csv"))
    batches = pd.concat([pd.read_csv(m) for m in manifests])[BATCH_COLUMNS].drop_duplicates(["variant", "batch_index"])
    batches.sort_values(["variant", "batch_index"]).to_csv(run_dir / "generation_batches.csv", index=False)
    rd = pd.read_csv(evidence / "results" / "diffc" / model / "rd.csv")
    rd[RD_COLUMNS].to_csv(run_dir / "diffc_rd.csv", index=False)
    shutil.copy(evidence / "results" / "images" / model / "fp16-sdpa" / "shard-0" / "provenance.json",
                run_dir / "provenance-fp16-sdpa.json")


def generation_timing(run_dir: Path) -> pd.DataFrame:
    """The generation jobs' own timings (CUDA events, warm-up excluded): s/image and the UNet's ms per
    call, median and range over the timed batches."""
    batches = pd.read_csv(run_dir / "generation_batches.csv")
    timing = pd.read_csv(run_dir / "timing.csv").set_index("variant")
    table = batches.groupby("variant").agg(batches=("batch_index", "size"), s_per_image=("seconds", "median"),
                                           unet_ms_median=("unet_ms_step", "median"),
                                           unet_ms_min=("unet_ms_step", "min"), unet_ms_max=("unet_ms_step", "max"))
    table["s_per_image_spread"] = timing.seconds_spread
    table["warmup_s"] = timing.warmup_seconds
    table["peak_gib"] = timing.peak_memory_mb / 1024
    return table.sort_values("unet_ms_median").reset_index()


def benchmark_ratio(run_dir: Path, builds: tuple[str, ...] = ("fp16-compiled-graphs", "fp16-sdpa")) -> pd.DataFrame:
    """A generation job's UNet ms per call against the benchmark harness's for the same build."""
    timing = generation_timing(run_dir).set_index("variant")
    bench = benchmark_seconds_per_image().set_index("build")
    rows = []
    for build in builds:
        if build in timing.index and build in bench.index:
            ms, run = bench.loc[build, ["unet_ms", "run"]]
            job = timing.loc[build]
            rows.append({"build": build, "job_unet_ms_median": job.unet_ms_median, "job_unet_ms_min": job.unet_ms_min,
                         "job_s_per_image_spread": job.s_per_image_spread, "benchmark_unet_ms": ms, "benchmark_run": run,
                         "ratio_median": job.unet_ms_median / ms, "ratio_min": job.unet_ms_min / ms})
    return pd.DataFrame(rows)


def diffc_block(run_dir: Path) -> str:
    """DiffC at 512 px on CUDA: encode and decode seconds per image, bytes, the round trip's checks."""
    rd = pd.read_csv(run_dir / "diffc_rd.csv")
    coded = rd[rd.method == "diffc"]
    per_image = coded.groupby("image").agg(rate_points=("recon_timestep", "size"),
                                           encode_s_all_rate_points=("encode_seconds_all_rate_points", "first"),
                                           decode_s_per_file=("decode_seconds", "mean"), bytes=("bytes", "sum")).astype({"bytes": int})
    device = json.loads((run_dir / "provenance-fp16-sdpa.json").read_text())["device"]
    rechecked = coded.redecode_identical.dropna()
    return "\n".join([
        f"SD 1.5's architecture with seeded weights at 512 px on {device['gpu']} (`config/sd15-gpu-smoke.yaml`, "
        f"rate points t = {'/'.join(str(int(t)) for t in sorted(coded.recon_timestep.unique(), reverse=True))}; "
        f"generated from docs/gpu-run/diffc_rd.csv by `python benchmarks/gpu_dag/summarize.py docs/gpu-run --write`). "
        f"The encode job decodes every file before writing it and fails unless the receiver's final latent equals "
        f"the sender's: all {len(coded)} files passed; decoded twice by the decode job, identical pixels: "
        f"{int(rechecked.astype(bool).sum())} of {len(rechecked)} re-decoded files.",
        "",
        per_image.reset_index().to_markdown(index=False, floatfmt=".2f"),
    ])


def replace_block(text: str, new: str, markers: tuple[str, str] = (BEGIN, END)) -> str:
    start, end = text.index(markers[0]) + len(markers[0]), text.index(markers[1])
    return text[:start] + "\n" + new + "\n" + text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--write", action="store_true",
                        help="rewrite the blocks in RUN_DIR/README.md, the prediction in README.md and the "
                             "DiffC timings in docs/diffc.md")
    parser.add_argument("--ingest", type=Path, metavar="EVIDENCE",
                        help="first copy an unpacked evidence.tar.gz's files into RUN_DIR")
    args = parser.parse_args()
    if args.ingest:
        ingest(args.ingest, args.run_dir)
    text = block(args.run_dir)
    if args.write:
        readme = args.run_dir / "README.md"
        readme.write_text(replace_block(readme.read_text(), text))
        top = REPO / "README.md"
        top.write_text(replace_block(top.read_text(), prediction_line(args.run_dir), PREDICTION))
        diffc = REPO / "docs" / "diffc.md"
        diffc.write_text(replace_block(diffc.read_text(), diffc_block(args.run_dir), DIFFC))
    else:
        print(text)


if __name__ == "__main__":
    main()
