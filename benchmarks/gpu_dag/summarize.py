"""Tables of a GPU smoke run (benchmarks/gpu_dag/smoke.sh) from its committed log and GPU samples.

    python benchmarks/gpu_dag/summarize.py docs/gpu-run           # print the generated block
    python benchmarks/gpu_dag/summarize.py docs/gpu-run --write   # rewrite it in docs/gpu-run/README.md

Reads RUN/run1.log (Snakemake's own log: when each job started, finished or failed) and
RUN/gpu_samples.csv (nvidia-smi, one sample a second: utilization and memory of the whole GPU).
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


def stage_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: jobs and their outcome, when the first started and the last ended (seconds after the
    run's first job started), the intervals' sum and the longest."""
    began = jobs.start.min()
    jobs = jobs.assign(start_s=(jobs.start - began).dt.total_seconds(), end_s=(jobs.end - began).dt.total_seconds())
    return jobs.groupby("rule", sort=False).agg(
        jobs=("jobid", "size"), finished=("status", lambda s: int((s == "finished").sum())),
        failed=("status", lambda s: int((s == "failed").sum())), first_start_s=("start_s", "min"),
        last_end_s=("end_s", "max"), slot_seconds=("seconds", "sum"), longest_job_s=("seconds", "max")).reset_index()


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
        "Per stage (slot seconds: each job's start-to-end interval, summed; jobs overlapped, up to 4 on the GPU):",
        "",
        stage_table(jobs).to_markdown(index=False, floatfmt=".0f"),
        "",
        "Generation jobs (16 prompts, batch 4, one job per variant; the interval includes start-up, model "
        "load, warm-up and waiting for the GPU):",
        "",
        generation.to_markdown(index=False, floatfmt=".0f"),
        "",
    ]
    table, summary = predict_full_run(run_dir)
    lines += [summary, "", table.to_markdown(index=False, floatfmt=".3f")]
    return "\n".join(lines)


def benchmark_seconds_per_image(gpu: str = "H200", batch: int = 4) -> pd.DataFrame:
    """s/image of every build the committed benchmark runs of this GPU type timed (512 px, batch 4)."""
    rows = []
    for results in committed_results(REPO):
        folder = Path(results).parent
        if gpu not in json.loads((folder / "meta.json").read_text())["versions"]["gpu"]:
            continue
        frame = pd.read_csv(results)
        ok = frame[(frame.batch == batch) & (frame.status == "ok")]
        rows += [{"build": r.variant, "scheduler": r.scheduler, "steps": int(r.steps), "s_per_image": r.s_per_image,
                  "compile_s": r.warmup_s if r.compile not in ("none", None) and r.compile == r.compile else 0.0,
                  "run": folder.name} for r in ok.itertuples()]
    return pd.DataFrame(rows).drop_duplicates("build", keep="last")


def predict_full_run(run_dir: Path, config_path: Path = REPO / "config" / "sd15.yaml") -> tuple[pd.DataFrame, str]:
    """GPU-hours of config/sd15.yaml's generation stage: per variant, its prompts x the benchmark's
    s/image of the same build (scaled by steps when the benchmark timed that build's scheduler at
    another step count), plus each job's fixed cost as measured here (the median interval of this
    run's finished generation jobs, which also holds their 20 small image passes: an upper bound)
    and, for a compiled build, the benchmark's warm-up (its compilation) once per job.
    Variants the benchmark never timed (float32 builds) are listed, not guessed."""
    config = yaml.safe_load(config_path.read_text())
    bench = benchmark_seconds_per_image()
    jobs = parse_jobs((run_dir / "run1.log").read_text())
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
            basis = f"{ref.build} ({ref.run}, {ref.steps} steps)"
        else:
            per_image, compile_s, basis = float("nan"), float("nan"), "not timed by the benchmark"
        rows.append({"variant": name, "steps": spec["steps"], "s_per_image": per_image,
                     "compile_s_per_job": compile_s, "basis": basis,
                     "gpu_hours": (prompts * per_image + shards * (fixed + compile_s)) / 3600})
    table = pd.DataFrame(rows)
    timed = table[table.s_per_image.notna()]
    summary = (f"Predicted generation GPU-hours of config/sd15.yaml ({prompts:,} prompts, {shards} jobs per variant, "
               f"one job per GPU) on an H200: {timed.gpu_hours.sum():.2f} h for the {len(timed)} variants the benchmark timed "
               f"(image time {(timed.s_per_image * prompts).sum() / 3600:.2f} h + job fixed cost "
               f"{len(timed) * shards * fixed / 3600:.2f} h at {fixed:.0f} s a job + compilation "
               f"{(timed.compile_s_per_job * shards).sum() / 3600:.2f} h at the benchmark's warm-up per compiled job); "
               f"{len(table) - len(timed)} float32 variants ({', '.join(table[table.s_per_image.isna()].variant)}) "
               "were never timed on a GPU and are not included.")
    return table, summary


def replace_block(text: str, new: str, markers: tuple[str, str] = (BEGIN, END)) -> str:
    start, end = text.index(markers[0]) + len(markers[0]), text.index(markers[1])
    return text[:start] + "\n" + new + "\n" + text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--write", action="store_true",
                        help="rewrite the blocks in RUN_DIR/README.md and the prediction in README.md")
    args = parser.parse_args()
    text = block(args.run_dir)
    if args.write:
        readme = args.run_dir / "README.md"
        readme.write_text(replace_block(readme.read_text(), text))
        top = REPO / "README.md"
        top.write_text(replace_block(top.read_text(), prediction_line(args.run_dir), PREDICTION))
    else:
        print(text)


if __name__ == "__main__":
    main()
