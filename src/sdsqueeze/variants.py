"""A variant is data: one function turns a variant's spec into a configured pipeline.

``resolve_variant`` merges the config's ``generation`` defaults with one variant's overrides;
``prepare`` walks the technique registry (``sdsqueeze.techniques.TECHNIQUES``): each entry reads
its frozen config from the spec and, when the variant turns it on, applies it. Techniques mutate
only the pipeline they are given, which is always a fresh load, so the cached model on disk is
never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .schedulers import SCHEDULERS, set_scheduler  # noqa: F401 - re-exported: callers swap schedulers

GENERATION_KEYS = (
    "dtype", "attention", "scheduler", "steps", "guidance", "eta", "height", "width", "batch_size",
)

# Variant keys that choose the model rather than change the pipeline (the generate rule reads them).
MODEL_KEYS = ("student",)


@dataclass(slots=True)  # slots: a technique cannot hang undeclared state on it
class Prepared:
    """A pipeline ready to generate, plus what the techniques add to each call and record."""

    pipe: Any
    spec: dict
    call_kwargs: dict = field(default_factory=dict)
    step_callbacks: list[Callable] = field(default_factory=list)
    notes: dict = field(default_factory=dict)
    # State a technique keeps for later readers (tests, the report, the benchmark); None = not used.
    kv_caches: dict | None = None  # attention: CrossAttentionKVCache per UNet attention module
    deepcache: Any = None  # deepcache: its DeepCacheState (full and cached step counts)
    host_timesteps: Any = None  # hoststeps: its HostTimesteps (re-wrapped when the scheduler changes)


def resolve_variant(config: dict, name: str) -> dict:
    """The full spec of one variant: generation defaults overridden by the variant's keys."""
    if name not in config["variants"]:
        raise KeyError(f"unknown variant '{name}'; configured: {sorted(config['variants'])}")
    spec = {**config["generation"], **(config["variants"][name] or {})}
    spec["name"] = name
    return spec


def prepare(pipe, spec: dict) -> Prepared:
    """Apply every technique the spec turns on, in the registry's order."""
    from .techniques import TECHNIQUES  # imports torch: only when a variant is prepared, not at DAG parse

    prepared = Prepared(pipe=pipe, spec=spec)
    for technique in TECHNIQUES:
        config = technique.configure(spec)
        if config is not None:
            technique.apply(prepared, config)
    return prepared
