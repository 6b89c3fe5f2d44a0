"""One shape for every technique: a frozen config read from a variant's keys, and an ``apply``.

Modelled on torchao's ``quantize_(model, Config)`` (a config dataclass per method, a handler
registered for it) and diffusers' ``FirstBlockCacheConfig`` + ``apply_first_block_cache``. A
technique's config fields are the variant keys it owns (schemas/config.schema.yaml lists the same
keys: tests/unit/test_techniques.py checks it); ``from_spec`` returns None when the variant leaves
the technique off, so ``variants.prepare`` skips it. The registry itself is
``sdsqueeze.techniques.TECHNIQUES``. This module stays free of torch: the DAG imports it at parse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any


class TechniqueConfig:
    """Base of a technique's frozen config dataclass: its fields are the variant keys it reads."""

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_spec(cls, spec: dict) -> TechniqueConfig | None:
        """The config a variant's spec asks for; None when the technique is off for it."""
        config = cls(**{k: spec[k] for k in cls.keys() if spec.get(k) is not None})
        return config if config.enabled else None

    @property
    def enabled(self) -> bool:
        return True


@dataclass(frozen=True)
class Technique:
    """One registry entry: the variant keys it owns, how a spec becomes its config, and ``apply``."""

    keys: tuple[str, ...]
    configure: Callable[[dict], Any]
    apply: Callable[[Any, Any], None]  # (prepared, config) -> None; mutates the fresh pipeline

    @classmethod
    def of(cls, config: type[TechniqueConfig], apply: Callable[[Any, Any], None]) -> Technique:
        return cls(config.keys(), config.from_spec, apply)
