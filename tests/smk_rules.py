"""A small static reader of rules/*.smk for tests: each rule's directives as source text.

Generic on purpose: it walks every rules/*.smk, so rules added later are checked too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULE_START = re.compile(r"^(\s*)(?:rule|checkpoint)\s+(\w+)\s*:")
DIRECTIVE = re.compile(r"^(\s+)(\w+)\s*:(.*)$")
ACTIONS = ("script", "shell", "notebook", "wrapper", "run")
# rules/common.smk's torch_env() picks one of these by the config's device
TORCH_ENVS = ("../envs/gpu.yaml", "../envs/cpu.yaml")


@dataclass
class Rule:
    name: str
    smk: Path
    directives: dict[str, str] = field(default_factory=dict)

    def strings(self, directive: str) -> list[str]:
        """String literals in a directive (``torch_env()`` gives both envs it may pick)."""
        text = self.directives.get(directive, "")
        return re.findall(r"""["']([^"']+)["']""", text) + (list(TORCH_ENVS) if "torch_env()" in text else [])

    def paths(self, directive: str) -> list[Path]:
        return [(self.smk.parent / s).resolve() for s in self.strings(directive)]

    @property
    def action(self) -> str | None:
        return next((a for a in ACTIONS if a in self.directives), None)


def read_rules(rules_dir: Path = ROOT / "rules") -> list[Rule]:
    rules = []
    for smk in sorted(rules_dir.glob("*.smk")):
        rule, rule_indent, dir_indent, current = None, 0, None, None
        for line in smk.read_text().splitlines():
            start = RULE_START.match(line)
            if start:
                rule = Rule(start.group(2), smk)
                rules.append(rule)
                rule_indent, dir_indent, current = len(start.group(1)), None, None
                continue
            if rule is None or not line.strip() or line.lstrip().startswith("#"):
                continue
            indent = len(line) - len(line.lstrip())
            if indent <= rule_indent:
                rule = None
                continue
            directive = DIRECTIVE.match(line)
            if directive and (dir_indent is None or indent == dir_indent):
                dir_indent = indent
                current = directive.group(2)
                rule.directives[current] = directive.group(3).strip()
            elif current:
                rule.directives[current] += "\n" + line.strip()
    return rules
