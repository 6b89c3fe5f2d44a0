"""Path and dependency helpers of the quantization rules (kept out of the .smk files, which hold
only rules): which variants quantize, which calibration file each one reads."""

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


def calibration_inputs(config: dict, variant: str, model: str) -> list[str]:
    """Input of rule generate: the variant's calibration set, only when it uses one."""
    kind = ptq_calibration(config, variant)
    return [calibration_file(config, kind, model)] if kind else []


def all_calibration_files(config: dict, model: str) -> list[str]:
    return sorted({f for v in config["variants"] for f in calibration_inputs(config, v, model)})


def with_calibration(config: dict, spec: dict, model: str) -> dict:
    """The variant spec with its calibration file, as the ptq technique reads it."""
    files = calibration_inputs(config, spec["name"], model)
    if not files:
        return spec
    return {**spec, "ptq": {**spec["ptq"], "calibration_file": files[0]}}


def sizes_inputs(config: dict, model: str) -> list[str]:
    """Report input: the sizes table, only when some variant quantizes."""
    return [f"results/quant/{model}/sizes.csv"] if ptq_variants(config) else []
