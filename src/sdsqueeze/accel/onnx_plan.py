"""What the DAG and the config check need of the ONNX Runtime variants, without onnx or torch:
the export folders' names and paths, which rule inputs a variant needs, and the config check
(sdsqueeze.accel.onnxrt does the export, the int8 copies and the running)."""

from __future__ import annotations

RUNTIMES = ("torch", "onnxruntime")
INT8_MODES = ("none", "dynamic", "static")
MODEL_FILE = "unet.onnx"
RECORD_FILE = "export.json"
INPUTS = ("sample", "timestep", "encoder_hidden_states")
# Variant keys that change the PyTorch UNet in ways the exported graph would not carry.
TORCH_ONLY_KEYS = ("ptq", "compile", "deepcache", "lowbit", "kv_cache", "fuse_qkv", "channels_last")


# --- names and paths (read by the DAG) -----------------------------------------------------------

def uses_onnx(spec: dict) -> bool:
    return spec.get("runtime", "torch") == "onnxruntime"


def export_name(spec: dict, calibration_config: dict) -> str:
    """Folder name of the ONNX UNet a variant runs: its latent size and its int8 mode."""
    from ..quant.calibration import set_name

    base = f"unet-{int(spec['height'])}x{int(spec['width'])}"
    mode = spec.get("onnx_int8", "none")
    if mode == "none":
        return f"{base}-fp32"
    if mode == "dynamic":
        return f"{base}-int8-dynamic"
    return f"{base}-int8-static-{set_name(spec.get('onnx_calibration', 'timestep_aware'), calibration_config)}"


def parse_name(name: str) -> dict:
    """The inverse of export_name: size, int8 mode and calibration set name."""
    _, size, precision, *rest = name.split("-", 3)
    height, width = (int(v) for v in size.split("x"))
    if precision == "fp32":
        return {"height": height, "width": width, "int8": "none", "calibration_set": None}
    mode, *calib = rest[0].split("-", 1)
    return {"height": height, "width": width, "int8": mode, "calibration_set": calib[0] if calib else None}


def export_dir(model: str, name: str) -> str:
    return f"resources/onnx/{model}/{name}"


def fp32_name(name: str) -> str:
    parsed = parse_name(name)
    return f"unet-{parsed['height']}x{parsed['width']}-fp32"


def export_inputs(name: str, model: str) -> dict:
    """Inputs of rule onnx_unet besides the model: the fp32 export (int8 copies) and the
    calibration set (static int8)."""
    parsed = parse_name(name)
    inputs = {}
    if parsed["int8"] != "none":
        inputs["fp32"] = export_dir(model, fp32_name(name))
    if parsed["calibration_set"]:
        inputs["calibration"] = f"results/calibration/{model}/{parsed['calibration_set']}.safetensors"
    return inputs


def generate_inputs(config: dict, spec: dict, model: str) -> list[str]:
    return [export_dir(model, export_name(spec, config["calibration"]))] if uses_onnx(spec) else []


def with_onnx_model(config: dict, spec: dict, model: str) -> dict:
    """The variant spec as generate reads it: with the folder of its ONNX UNet when it runs one."""
    if not uses_onnx(spec):
        return spec
    return {**spec, "onnx_model": export_dir(model, export_name(spec, config["calibration"]))}


def _spec(config: dict, name: str) -> dict:
    """A variant's keys over the generation defaults (variants.resolve_variant, which this module
    cannot import: variants -> techniques -> onnxrt -> here)."""
    return {**config["generation"], **(config["variants"][name] or {})}


def all_exports(config: dict, model: str) -> list[str]:
    return sorted({d for v in config["variants"] for d in generate_inputs(config, _spec(config, v), model)})


# --- config check ----------------------------------------------------------------------------------

def config_problem(config: dict) -> str | None:
    """The one message for a variant that cannot run on onnxruntime (the packages are missing, or it
    asks for a PyTorch-only technique or a non-fp32 dtype alongside); None when all can.
    sdsqueeze.config.check_semantics raises it as a ConfigError."""
    import importlib.util

    onnx_variants = [v for v in sorted(config["variants"]) if uses_onnx(_spec(config, v))]
    if not onnx_variants:
        return None
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"invalid config: variants {', '.join(onnx_variants)} set runtime: onnxruntime, but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; "
            "`pip install onnx onnxruntime onnxscript` (or onnxruntime-gpu), or drop those variants")
    for name in onnx_variants:
        spec = _spec(config, name)
        clashing = [k for k in TORCH_ONLY_KEYS if spec.get(k) not in (None, False, 0, "none")]
        if clashing:
            return (
                f"invalid config: variant '{name}' runs its UNet on onnxruntime, which cannot apply "
                f"{', '.join(clashing)} (PyTorch-only techniques); use onnx_int8 for int8, or runtime: torch")
        if spec["dtype"] != "float32":
            return (
                f"invalid config: variant '{name}' runs on onnxruntime, which runs the fp32 export; "
                f"set dtype: float32 (it is {spec['dtype']}) and onnx_int8 for int8")
    return None
