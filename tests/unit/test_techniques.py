"""The technique registry and the package's shape: one config per technique, the schema's variant
keys equal to what the techniques and generation read, no import cycle, argparse only in CLIs."""

import ast
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "sdsqueeze"


def test_schema_variant_keys_are_the_techniques_keys_each_described():
    from sdsqueeze.techniques import variant_keys
    from sdsqueeze.variants import GENERATION_KEYS, MODEL_KEYS

    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    properties = schema["$defs"]["variant_spec"]["properties"]
    assert set(properties) == variant_keys() | set(GENERATION_KEYS) | set(MODEL_KEYS)
    assert not [key for key, entry in properties.items() if not entry.get("description")]


def test_every_technique_config_is_frozen_and_off_by_default():
    from dataclasses import FrozenInstanceError

    from sdsqueeze.techniques import TECHNIQUES

    for technique in TECHNIQUES:
        assert technique.configure({}) is None or technique.keys in (("scheduler",), ("attention", "fuse_qkv", "kv_cache"))
    config = TECHNIQUES[-1].configure({"host_timesteps": True})
    with pytest.raises(FrozenInstanceError):
        config.host_timesteps = False


def test_prepared_refuses_undeclared_state():
    from sdsqueeze.variants import Prepared

    prepared = Prepared(pipe=None, spec={})
    assert {f.name for f in fields(Prepared)} >= {"kv_caches", "deepcache", "host_timesteps"}
    with pytest.raises(AttributeError):
        prepared.undeclared = 1


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports, at any depth (lazy imports included)."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("sdsqueeze")}


def import_cycles() -> list[list[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    for name in graph:  # a package's __init__ is imported with any of its modules: not an edge back
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    done, cycles = set(), []

    def visit(node, stack):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, stack + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return cycles


def test_no_import_cycle_in_the_package():
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_only_cli_entry_points_import_argparse():
    """Command-line parsing stays in entry points (a ``__main__.py`` or a module run with ``python -m``),
    never in the library code that rules and scripts import."""
    users = [p for p in PACKAGE.rglob("*.py") if "argparse" in _stdlib_imports(p)]
    not_entry_points = [p.relative_to(REPO) for p in users
                        if p.name != "__main__.py" and 'if __name__ == "__main__":' not in p.read_text()]
    assert not not_entry_points, not_entry_points


def _stdlib_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module)
    return names


def test_every_import_of_the_package_names_an_existing_module():
    """Lazy imports inside functions included: a moved module leaves no import behind."""
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    files = [*PACKAGE.rglob("*.py"), *(REPO / "scripts").glob("*.py"), *(REPO / "tests").rglob("*.py"),
             *(REPO / "benchmarks").rglob("*.py")]
    dangling = set()
    for path in files:
        names = _imports(path) if path.is_relative_to(PACKAGE) else {
            m for m in _stdlib_imports(path) | {f"{n.module}.{a.name}" for n in ast.walk(ast.parse(path.read_text()))
                                                if isinstance(n, ast.ImportFrom) and n.module and not n.level
                                                for a in n.names}
            if m and m.startswith("sdsqueeze")}
        for name in names:
            # `from pkg import name` names a module or an attribute: one of the two must exist
            if name not in modules and name.rsplit(".", 1)[0] not in modules:
                dangling.add(f"{path.relative_to(REPO)}: {name}")
    assert not dangling, sorted(dangling)
