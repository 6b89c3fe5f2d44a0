"""Which code produced a result: the package's source path, git commit and content hashes.

Two uses. Provenance records where ``sdsqueeze`` was imported from, the checkout's commit and a
hash of the whole package's source, so a result names the code behind it. The workflow gives
every `script:` rule a ``code`` param: a hash of the script and of the ``sdsqueeze`` modules it
imports (directly or through other package modules). Snakemake reruns a job whose params
changed, so editing a module reruns exactly the rules that import it, and their dependants
(whose inputs then change).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import subprocess
from pathlib import Path

PACKAGE = "sdsqueeze"
PACKAGE_DIR = Path(__file__).resolve().parent


def _sha256(paths: list[Path], root: Path) -> str:
    """Hash of the files' paths (relative to ``root``) and contents, in a fixed order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def package_source_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over every .py file of the package (paths and contents)."""
    return _sha256(list(package_dir.rglob("*.py")), package_dir)


def git_commit(path: Path = PACKAGE_DIR) -> str:
    """The commit checked out at ``path``, or "not a git checkout"."""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return out.stdout.strip()


def source_description() -> dict[str, str]:
    """For provenance: where the package was imported from and which code that was."""
    return {
        "path": str(PACKAGE_DIR),
        "git_commit": git_commit(),
        "package_sha256": package_source_hash(),
    }


def _module_file(module: str, package_dir: Path) -> Path | None:
    """The file of ``sdsqueeze.a.b`` under ``package_dir`` (module or package), else None."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _imported_names(source: Path, package_dir: Path) -> set[str]:
    """Dotted names a file imports, relative imports resolved against its place in the package."""
    tree = ast.parse(source.read_text(), filename=str(source))
    here = None  # the package the file belongs to, for relative imports
    if source.is_relative_to(package_dir):
        here = [PACKAGE, *source.relative_to(package_dir).parts[:-1]]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level and here is not None:
                base = here[: len(here) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            # `from sdsqueeze import generate` imports the submodule sdsqueeze.generate
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def imported_sources(entry: Path, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """``entry`` and every file of the package it imports, transitively.

    Hand-written over the stdlib's ``ast`` because modulefinder would also walk torch and every
    other dependency (seconds per rule at each DAG build); only this package's files matter here.
    Imports inside functions count too: they run when the job does.
    """
    seen: set[Path] = set()
    todo = [Path(entry).resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_names(path, package_dir):
            parts = name.split(".")
            # a module's parent packages run their __init__ first
            for depth in range(1, len(parts) + 1):
                found = _module_file(".".join(parts[:depth]), package_dir)
                if found is not None and found not in seen:
                    todo.append(found)
    return sorted(seen)


@functools.cache
def code_hash(entry: str | Path, package_dir: Path = PACKAGE_DIR) -> str:
    """Short hash of a script and the package modules it imports: the rule's code."""
    files = imported_sources(Path(entry), package_dir)
    root = Path(package_dir).resolve().parents[1]
    digest = hashlib.sha256()
    for path in files:
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
