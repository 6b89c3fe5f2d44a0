"""A job's output, Python's and native libraries' alike, goes to its log, not to the console."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from sdsqueeze import smk

JOB = textwrap.dedent("""
    import os, sys, types
    from sdsqueeze import smk

    def main(_):
        import torch
        from torch.profiler import ProfilerActivity, profile
        print("python stdout")
        os.write(2, b"native stderr\\n")  # as a C++ library writes
        with profile(activities=[ProfilerActivity.CPU]):  # kineto: gpuGetDeviceCount without a driver
            torch.ones(2) + 1

    job = types.SimpleNamespace(resources=types.SimpleNamespace(gpu=0), log=[sys.argv[1]], threads=1,
                                rule="probe", config={"threads": 1})
    smk.run(job, main)
    print("after the job")
""")


def test_native_output_of_a_job_lands_in_its_log(tmp_path):
    log = tmp_path / "job.log"
    env = dict(os.environ, PYTHONPATH=str(Path(smk.__file__).parents[1]))
    out = subprocess.run([sys.executable, "-c", JOB, str(log)], capture_output=True, check=False, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "" and out.stdout == "after the job\n"  # the console sees nothing of the job
    text = log.read_text()
    assert "python stdout" in text and "native stderr" in text
