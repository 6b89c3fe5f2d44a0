"""Path and dependency helpers of the quantization rules (kept out of the .smk files, which hold
only rules): which variants quantize, which calibration set and stored state each one reads.

A variant that reads a calibration set is calibrated (and reconstructed) once, by rule ptq_state;
its generate jobs (one per prompt shard) load that state instead of calibrating again.
"""

from __future__ import annotations

from .calibration import set_name


def ptq_variants(config: dict) -> list[str]:
    return sorted(v for v, spec in config["variants"].items() if (spec or {}).get("ptq"))


def ptq_calibration(config: dict, variant: str) -> str | None:
    """The calibration kind a variant's ptq uses, or None (no ptq, or ptq without calibration)."""
    kind = ((config["variants"][variant] or {}).get("ptq") or {}).get("calibration", "none")
    return None if kind == "none" else kind


def calibration_file(config: dict, kind: str, model: str) -> str:
    return f"results/calibration/{model}/{set_name(kind, config['calibration'])}.safetensors"


def state_file(model: str, variant: str) -> str:
    return f"results/quant/{model}/state/{variant}.safetensors"


def calibration_set_inputs(config: dict, variant: str, model: str) -> list[str]:
    """Input of rule ptq_state: the variant's calibration set, only when it uses one."""
    kind = ptq_calibration(config, variant)
    return [calibration_file(config, kind, model)] if kind else []


def calibration_inputs(config: dict, variant: str, model: str) -> list[str]:
    """Input of rule generate: the variant's calibrated state, only when it uses a calibration set
    (the W/O baseline's single batch is cheap, so its generate jobs compute it themselves)."""
    return [state_file(model, variant)] if ptq_calibration(config, variant) else []


def all_calibration_files(config: dict, model: str) -> list[str]:
    return sorted({f for v in config["variants"] for f in calibration_set_inputs(config, v, model)})


def with_calibration_set(config: dict, spec: dict, model: str) -> dict:
    """The variant spec with its calibration set, as rule ptq_state computes the state from it."""
    files = calibration_set_inputs(config, spec["name"], model)
    if not files:
        return spec
    return {**spec, "ptq": {**spec["ptq"], "calibration_file": files[0]}}


def with_calibration(config: dict, spec: dict, model: str) -> dict:
    """The variant spec as generate reads it: with its stored state when it has one."""
    files = calibration_inputs(config, spec["name"], model)
    if not files:
        return spec
    return {**spec, "ptq": {**spec["ptq"], "state_file": files[0]}}


def sizes_inputs(config: dict, model: str) -> list[str]:
    """Report input: the sizes table, only when some variant quantizes."""
    return [f"results/quant/{model}/sizes.csv"] if ptq_variants(config) else []
