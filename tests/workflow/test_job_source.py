"""Jobs import the workflow's own src/, and provenance says which code that was.

A real Snakemake job in a scratch workflow (this checkout's scripts/_srcpath.py and src/), run
with a decoy `sdsqueeze` ahead on the path, as an editable install of another checkout would be.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

from smk_rules import ROOT

from sdsqueeze import codehash

PROBE = '''
import _srcpath  # noqa: F401
import json
import sdsqueeze
from sdsqueeze import io
with open(snakemake.output[0], "w") as out:
    json.dump({"file": sdsqueeze.__file__, "source": io.provenance({}, "cpu")["source"]}, out)
'''
SNAKEFILE = '''
import os, sys
sys.path.insert(0, os.path.join(workflow.basedir, "src"))  # as rules/common.smk does

rule probe:
    output: "probe.json"
    script: "scripts/probe.py"
'''


def scratch_workflow(tmp_path: Path) -> Path:
    wf = tmp_path / "wf"
    (wf / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "_srcpath.py", wf / "scripts")
    (wf / "scripts" / "probe.py").write_text(PROBE)
    (wf / "Snakefile").write_text(textwrap.dedent(SNAKEFILE))
    shutil.copytree(ROOT / "src" / "sdsqueeze", wf / "src" / "sdsqueeze",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return wf


def test_job_imports_the_workflows_own_src_before_another_checkout(snakemake_run, tmp_path):
    wf = scratch_workflow(tmp_path)
    decoy = tmp_path / "other-checkout" / "src"
    (decoy / "sdsqueeze").mkdir(parents=True)
    (decoy / "sdsqueeze" / "__init__.py").write_text("raise ImportError('the other checkout was imported')\n")
    out = snakemake_run("--cores", "1", "probe.json", cwd=wf, timeout=300,
                        env={"PYTHONPATH": str(decoy), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    probe = json.loads((wf / "probe.json").read_text())
    assert Path(probe["file"]).resolve().is_relative_to((wf / "src").resolve())
    assert Path(probe["source"]["path"]).resolve() == (wf / "src" / "sdsqueeze").resolve()
    assert probe["source"]["git_commit"] == "not a git checkout"
    assert probe["source"]["package_sha256"] == codehash.package_source_hash(wf / "src" / "sdsqueeze")


def test_provenance_names_the_commit_and_source_hash_of_this_checkout():
    source = codehash.source_description()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, check=False, text=True)
    assert source["path"] == str(ROOT / "src" / "sdsqueeze")
    assert source["git_commit"] == head.stdout.strip()
    assert len(source["package_sha256"]) == 64


def test_code_hash_follows_the_modules_a_script_imports(tmp_path):
    src = tmp_path / "src" / "sdsqueeze"
    shutil.copytree(ROOT / "src" / "sdsqueeze", src, ignore=shutil.ignore_patterns("__pycache__"))
    script = tmp_path / "make_prompts.py"
    shutil.copy(ROOT / "scripts" / "make_prompts.py", script)
    files = {p.relative_to(src).as_posix() for p in codehash.imported_sources(script, src) if p.is_relative_to(src)}
    assert {"prompts.py", "seeding.py", "smk.py"} <= files  # seeding only through prompts' relative import
    assert "generate.py" not in files
    before = codehash.code_hash(script, src)
    (src / "generate.py").write_text((src / "generate.py").read_text() + "\n# unrelated edit\n")
    assert codehash.code_hash.__wrapped__(script, src) == before
    (src / "seeding.py").write_text((src / "seeding.py").read_text() + "\nEDITED = 1\n")
    codehash._imported_names.cache_clear()
    assert codehash.code_hash.__wrapped__(script, src) != before
