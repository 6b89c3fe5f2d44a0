"""docs/gpu-run/README.md's and README.md's generated blocks match the committed GPU run they are made
from (benchmarks/gpu_dag/summarize.py), and the log parser reads Snakemake's job lines."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "docs" / "gpu-run"


def summarize():
    spec = importlib.util.spec_from_file_location("gpu_dag_summarize", REPO / "benchmarks" / "gpu_dag" / "summarize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def block_of(text: str, begin: str, end: str) -> str:
    return text[text.index(begin) + len(begin) : text.index(end)].strip()


def test_gpu_run_blocks_are_in_step_with_the_committed_run():
    tool = summarize()
    assert block_of((RUN / "README.md").read_text(), tool.BEGIN, tool.END) == tool.block(RUN).strip()
    assert block_of((REPO / "README.md").read_text(), *tool.PREDICTION) == tool.prediction_line(RUN)
    assert block_of((REPO / "docs" / "diffc.md").read_text(), *tool.DIFFC) == tool.diffc_block(RUN).strip()


def test_the_committed_run_is_complete_and_its_rerun_a_no_op():
    tool = summarize()
    jobs = tool.parse_jobs((RUN / "run1.log").read_text())
    assert (jobs.status == "finished").all() and len(jobs) == int(
        tool.re.search(r"^total\s+(\d+)$", (RUN / "run1.log").read_text(), tool.re.M).group(1))
    assert "Nothing to be done" in (RUN / "run2.log").read_text()
    assert (RUN / "report" / "index.html").is_file() and (RUN / "report-screenshot.png").is_file()


def test_jobs_are_read_from_snakemakes_log():
    log = """Job stats:
total 2

[Wed Dec  2 01:03:40 2026]
localrule generate:
    output: results/images/m/a/shard-0
    jobid: 5
    wildcards: model=m, variant=a, shard=0

[Wed Dec  2 01:03:41 2026]
localrule report:
    jobid: 6

[Wed Dec  2 01:04:13 2026]
Finished jobid: 5 (Rule: generate)
[Wed Dec  2 01:04:20 2026]
Error in rule report:
    message: None
    jobid: 6
"""
    jobs = summarize().parse_jobs(log).set_index("jobid")
    assert jobs.loc[5, ["rule", "variant", "status", "seconds"]].tolist() == ["generate", "a", "finished", 33.0]
    assert jobs.loc[6, ["rule", "status", "seconds"]].tolist() == ["report", "failed", 39.0]
