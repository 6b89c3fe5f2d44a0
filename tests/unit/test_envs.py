"""Every rule runs in a pinned conda env (envs/*.yaml) that provides what its script imports.

Static: each rule's `script:` is parsed with `ast`, following imports of the workflow's own
package (src/sdsqueeze) transitively; every third-party top-level module found (also imports
inside functions, which may run) must come from a distribution listed in the rule's env file(s).
Conda env creation itself needs the channels (unreachable in CI), so it is not run here.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from smk_rules import ROOT, read_rules

SRC = ROOT / "src"
PACKAGE = "sdsqueeze"
# The workflow's own packages and the folder each lives in (the benchmark harness sits outside src/).
FIRST_PARTY = {PACKAGE: SRC, "sdbench": ROOT / "benchmarks"}
# Provided by the workflow engine itself: Snakemake's script preamble puts its own package on
# sys.path in every env (and sdsqueeze.config imports it only for the Snakefile's validation).
ENGINE_MODULES = {"snakemake"}
# conda-forge names whose Python distribution is called otherwise on PyPI.
CONDA_TO_PYPI = {"pytorch": "torch", "pytorch-gpu": "torch", "pytorch-cpu": "torch",
                 "matplotlib-base": "matplotlib"}
RULES = read_rules()
ACTION_RULES = [r for r in RULES if r.action and r.action != "run"]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def module_file(module: str) -> Path | None:
    """The source file of a module of the workflow's package, e.g. sdsqueeze.report.page."""
    base = FIRST_PARTY[module.split(".")[0]].joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@cache
def imports_of(path: Path) -> frozenset[str]:
    """Absolute module names imported anywhere in a file (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    root = next((r for r in FIRST_PARTY.values() if path.is_relative_to(r)), None)
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1]) if root else ""
    found = set()
    optional = _optional_imports(tree)
    for node in ast.walk(tree):
        if node in optional:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            found.add(base)
            # `from sdsqueeze import config` imports the submodule sdsqueeze.config
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(found)


def _optional_imports(tree: ast.AST) -> set[ast.AST]:
    """Imports inside ``try: ... except ImportError`` (or ModuleNotFoundError): optional extras a job
    runs without (e.g. Triton, which only CUDA builds of torch bring), so no env must list them."""
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            optional.update(n for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Import | ast.ImportFrom))
    return optional


def third_party_imports(script: Path) -> set[str]:
    seen_files, todo, third_party = set(), [script], set()
    while todo:
        path = todo.pop()
        if path in seen_files:
            continue
        seen_files.add(path)
        for module in imports_of(path):
            top = module.split(".")[0]
            beside_script = script.parent / f"{top}.py"  # Snakemake puts the script's folder on sys.path
            if beside_script.exists():
                todo.append(beside_script)
            elif top in FIRST_PARTY:
                # the module itself and the packages on its way (their __init__ runs too)
                parts = module.split(".")
                todo.extend(f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i]))))
            elif top not in sys.stdlib_module_names and top not in ENGINE_MODULES and top != "__future__":
                third_party.add(top)
    return third_party


@cache
def _import_names() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def distributions_of(module: str) -> frozenset[str]:
    return frozenset(normalize(d) for d in _import_names().get(module, []))


def env_packages(env_file: Path) -> dict[str, str]:
    """{normalized distribution name: its spec} for conda and pip entries of an env file."""
    env = yaml.safe_load(env_file.read_text())
    packages = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for spec in dep.get("pip", []):
                if not spec.startswith("-"):
                    packages[normalize(re.split(r"[<>=!~\[ ;@]", spec)[0])] = spec
        else:
            name = normalize(re.split(r"[<>= ]", dep)[0])
            packages[CONDA_TO_PYPI.get(name, name)] = dep
    return packages


def rule_envs(rule) -> list[Path]:
    return rule.paths("conda")


def test_rules_found():
    assert {"generate", "materialize_model", "prompts", "metrics_variant", "report"} <= {r.name for r in ACTION_RULES}


@pytest.mark.parametrize("rule", ACTION_RULES, ids=lambda r: r.name)
def test_every_rule_has_an_existing_env(rule):
    envs = rule_envs(rule)
    assert envs, f"rule {rule.name} ({rule.smk.name}) has no `conda:` env"
    for env in envs:
        assert env.exists(), f"rule {rule.name}: {env} does not exist"


@pytest.mark.parametrize("rule", [r for r in ACTION_RULES if r.action == "script"], ids=lambda r: r.name)
def test_env_provides_every_third_party_import(rule):
    (script,) = rule.paths("script")
    needed = third_party_imports(script)
    assert needed, f"found no imports in {script}; is the walk broken?"
    for env in rule_envs(rule):
        listed = set(env_packages(env))
        missing = []
        for module in sorted(needed):
            dists = distributions_of(module)
            assert dists, f"cannot tell which distribution provides `{module}` (not installed here?)"
            if not dists & listed:
                missing.append(f"{module} (from {', '.join(sorted(dists))})")
        assert not missing, f"rule {rule.name}: {env.name} lacks {missing}"


def test_walk_follows_the_package():
    """generate.py imports sdsqueeze.models, which imports diffusers: the walk must see it."""
    assert {"diffusers", "torch", "pandas"} <= third_party_imports(ROOT / "scripts" / "generate.py")


@pytest.mark.parametrize("env_file", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_is_pinned(env_file):
    env = yaml.safe_load(env_file.read_text())
    assert env["channels"][0] == "conda-forge" and "defaults" not in env["channels"]
    for name, spec in env_packages(env_file).items():
        if name == "pip":
            continue
        assert re.search(r"==?\d", spec), f"{env_file.name}: `{spec}` is not pinned to a version"


def test_cpu_and_cuda_torch_come_from_different_builds():
    cpu = (ROOT / "envs" / "cpu.yaml").read_text()
    gpu = (ROOT / "envs" / "gpu.yaml").read_text()
    assert "download.pytorch.org/whl/cpu" in cpu, "cpu.yaml must pull the CPU-only torch build"
    assert "whl/cpu" not in gpu, "gpu.yaml must get the CUDA build of torch"
