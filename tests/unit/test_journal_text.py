"""Code, config and the README are reference, not a journal: no dates, no "issue N", no numbered
runs or sessions. The history of how results were made belongs to CHANGELOG.md and
docs/benchmarks/history.md."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECKED = ["src", "rules", "config", "scripts", "benchmarks/sdbench", "Snakefile", "README.md", "config.yaml"]
SUFFIXES = {".py", ".smk", ".yaml", ".yml", ".md", ""}
JOURNAL = {
    # a date, except inside a file name (pt_inception-2015-12-05-6726825d.pth is a real weight file)
    "date": re.compile(r"(?<![\w-])20\d\d-\d\d-\d\d(?![\w-])"),
    "issue number": re.compile(r"\bissues? #?\d+", re.IGNORECASE),
    "numbered run or session": re.compile(r"\b(runs?|sessions?) \d+(?![\d.])(?!\s*(?:s|ms|steps?|jobs?|times)\b)",
                                          re.IGNORECASE),
    "run log file": re.compile(r"gpu_run\d+"),
}


def checked_files():
    for entry in CHECKED:
        path = REPO / entry
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        yield from (f for f in files if f.suffix in SUFFIXES and "__pycache__" not in f.parts)


def journal_lines(text: str) -> list[str]:
    return [f"{kind}: {line.strip()[:120]}" for line in text.splitlines()
            for kind, pattern in JOURNAL.items() if pattern.search(line)]


def test_patterns_catch_journal_text():
    caught = journal_lines("Seen on an H200 (2026-11-22)\n# issue 4's targets\nIn run 14 it took\nsession 3 tables")
    assert [c.split(":")[0] for c in caught] == ["date", "issue number", "numbered run or session",
                                                  "numbered run or session"]
    assert journal_lines("weights pt_inception-2015-12-05-6726825d.pth; 3 runs; runs 25 steps") == []


def test_no_journal_text_in_code_config_or_readme():
    found = [f"{path.relative_to(REPO)}: {hit}" for path in checked_files()
             for hit in journal_lines(path.read_text(errors="replace"))]
    assert not found, "journal text (move it to CHANGELOG.md or docs/benchmarks/history.md):\n" + "\n".join(found)
