"""Config validation with messages a researcher can act on.

``check`` runs the JSON schema and turns the most relevant violation into one sentence naming
the key and what is allowed; ``snakemake.utils.validate`` then fills the schema's defaults.
Cross-key rules the schema cannot express (the reference must be a variant, the DiffC rate points
and the sweep's grid must fit their schedules) follow: the workflow's one semantic check.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message says which key and what is allowed."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _key_path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def _resolve(schema: dict, sub: dict) -> dict:
    ref = sub.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        return {**schema["$defs"][ref.split("/")[-1]], **{k: v for k, v in sub.items() if k != "$ref"}}
    return sub


def _describe(error, schema: dict) -> str:
    where = _key_path(error)
    sub = _resolve(schema, error.schema) if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        unexpected = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {}))) or "none"
        return f"unknown key '{'.'.join(filter(None, [where if where != '(top level)' else '', unexpected[0]]))}'; allowed here: {allowed}"
    if error.validator == "enum":
        return f"'{where}' is {error.instance!r}; allowed: {', '.join(map(str, error.validator_value))}"
    if error.validator == "type":
        return f"'{where}' is {error.instance!r} ({type(error.instance).__name__}); expected {error.validator_value}"
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        bounds = {k: sub[k] for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf") if k in sub}
        return f"'{where}' is {error.instance!r}; allowed: {bounds}"
    if error.validator == "required":
        return f"'{where}' misses {error.message.split(' is a required')[0]}; it is required"
    if error.validator == "pattern" and isinstance(error.instance, str) and list(error.schema_path)[-2:-1] == ["propertyNames"]:
        return f"'{where}' has a key {error.instance!r} that must match {error.validator_value}"
    if error.validator == "pattern":
        return f"'{where}' is {error.instance!r}; it must match {error.validator_value}"
    return f"'{where}': {error.message}"


def _non_finite(node, where: str = ""):
    """Key paths of NaN/infinite numbers: JSON schema's bounds never reject NaN (every comparison
    with it is false), so YAML's ``.nan`` would pass ``minimum``/``maximum`` unnoticed."""
    if isinstance(node, float) and not math.isfinite(node):
        yield where or "(top level)", node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _non_finite(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _non_finite(value, f"{where}[{i}]")


def check(config: dict, schema: dict | None = None) -> None:
    """Raise ConfigError with one actionable message for the first schema violation."""
    import jsonschema

    for where, value in _non_finite(config):
        raise ConfigError(f"invalid config: '{where}' is {value!r}; a finite number is required")
    schema = schema or load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        message = _describe(error, schema)
        # A cross-key rule (if/then) says in its description why the key is needed.
        if "then" in error.absolute_schema_path and isinstance(error.schema, dict) and "description" in error.schema:
            message += f" ({error.schema['description']})"
        raise ConfigError(f"invalid config: {message}")


def check_semantics(config: dict) -> None:
    """Rules across keys, checked after defaults are filled."""
    if config["reference"] not in config["variants"]:
        raise ConfigError(
            f"invalid config: 'reference' is {config['reference']!r}, which is not a variant; "
            f"allowed: {', '.join(sorted(config['variants']))}"
        )
    check_model_source(config["model"]["source"])
    if model_kind(config) == UNCONDITIONAL:
        check_unconditional_run(config)
    else:
        check_captions(config["prompts"])
    check_diffc(config)
    check_sweep(config)
    check_lowbit(config)
    check_groupnorm(config)
    check_distill(config)

    from .accel.onnx_plan import config_problem

    problem = config_problem(config)
    if problem:
        raise ConfigError(problem)


def check_captions(prompts: dict) -> None:
    if "captions" not in prompts:
        raise ConfigError("invalid config: 'prompts' misses 'captions'; a text-to-image model needs a COCO "
                          "captions JSON (an unconditional model: set model.kind: unconditional)")
    captions = Path(prompts["captions"])
    if not captions.exists() and not prompts.get("download_url"):
        raise ConfigError(
            f"invalid config: 'prompts.captions' file {captions} does not exist and "
            "'prompts.download_url' is not set; give the path to a COCO captions JSON"
        )


# --- unconditional models (docs/unconditional.md) ------------------------------------------------

TEXT_TO_IMAGE, UNCONDITIONAL = "text-to-image", "unconditional"
# = sdsqueeze.models.UNCONDITIONAL_PIPELINES (tested), copied for the reason BUILT_SOURCES is.
UNCONDITIONAL_PIPELINES = ("LDMPipeline", "DDPMPipeline", "DDIMPipeline")
# What a variant of an unconditional model may set: sampling, size, dtype, attention and PTQ.
UNCONDITIONAL_VARIANT_KEYS = ("dtype", "attention", "scheduler", "steps", "eta", "height", "width", "batch_size",
                              "ptq")
# Settings that need a prompt: refused with the reason, not ignored.
PROMPT_ONLY_VARIANT_KEYS = {
    "guidance": "classifier-free guidance mixes a prompt's prediction with the empty prompt's",
    "kv_cache": "the K/V cache holds the text's cross-attention keys and values",
    "student": "the distilled students are text-to-image models",
}
# Text-to-image-only techniques, with the reason the message gives.
TEXT_TO_IMAGE_ONLY_KEYS = {
    "runtime": "the ONNX export takes a text-conditioned UNet (UNet2DConditionModel)",
    "deepcache": "DeepCache caches UNet2DConditionModel's up blocks",
}
PROMPT_ONLY_PROMPT_KEYS = ("captions", "download_url", "min_words", "generic_phrases", "prefix", "suffix")
TEXT_STAGES = {"sweep": "the latent sweep renders prompts", "diffc": "DiffC codes images with a text-to-image model",
               "distill": "the students are text-to-image models"}


def cached_pipeline_class(source: str) -> str | None:
    """The pipeline class named by a local folder's or a cached hub model's model_index.json; None
    when neither is at hand (offline, not yet downloaded): no network is used here."""
    import json

    index = Path(source).expanduser() / "model_index.json"
    if not index.is_file() and "/" in source and not source.startswith((".", "/", "~")):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, "model_index.json")
        except Exception:  # an id the hub library refuses: the model check says why at the first job
            cached = None
        index = Path(cached) if isinstance(cached, str) else index
    if not index.is_file():
        return None
    return json.loads(index.read_text()).get("_class_name")


def model_kind(config: dict) -> str:
    """text-to-image or unconditional: model.kind, else read from the source."""
    model = config["model"]
    kind = model.get("kind", "auto")
    if kind != "auto":
        return kind
    if model["source"] == "tiny-uncond":
        return UNCONDITIONAL
    if model["source"] in BUILT_SOURCES:
        return TEXT_TO_IMAGE
    return UNCONDITIONAL if cached_pipeline_class(model["source"]) in UNCONDITIONAL_PIPELINES else TEXT_TO_IMAGE


def check_unconditional_settings(raw: dict) -> None:
    """Prompts-only settings given to an unconditional model, read from the config as written
    (before the schema's defaults, which fill guidance for every variant): one message each."""
    model = raw.get("model") or {}
    if "source" not in model or model_kind({"model": model}) != UNCONDITIONAL:
        return
    what = f"model.source '{model['source']}' is an unconditional model"
    given = [k for k in PROMPT_ONLY_PROMPT_KEYS if k in (raw.get("prompts") or {})]
    if given:
        raise ConfigError(f"invalid config: {what}; 'prompts.{given[0]}' belongs to a prompt file, which it does "
                          "not read (its prompts section is the seeded sample list: name, n, samples_per_prompt, "
                          "shard_size)")
    sections = [("generation", raw.get("generation") or {})] + [
        (f"variants.{name}", spec or {}) for name, spec in (raw.get("variants") or {}).items()]
    for where, spec in sections:
        for key in spec:
            if key in PROMPT_ONLY_VARIANT_KEYS:
                raise ConfigError(f"invalid config: {what}; '{where}.{key}' needs a prompt "
                                  f"({PROMPT_ONLY_VARIANT_KEYS[key]}): remove it")
            if key not in UNCONDITIONAL_VARIANT_KEYS and spec[key] not in (None, False, 0, "none", "default", "pytorch"):
                reason = f" ({TEXT_TO_IMAGE_ONLY_KEYS[key]})" if key in TEXT_TO_IMAGE_ONLY_KEYS else ""
                raise ConfigError(f"invalid config: {what}; '{where}.{key}' is not supported for unconditional "
                                  f"pipelines{reason}; allowed: {', '.join(UNCONDITIONAL_VARIANT_KEYS)}")


def check_unconditional_run(config: dict) -> None:
    """Stages that need a prompt are off for an unconditional model."""
    for stage, reason in TEXT_STAGES.items():
        if config[stage].get("enabled"):
            raise ConfigError(f"invalid config: model '{config['model']['source']}' is unconditional, but "
                              f"{stage}.enabled is true ({reason}); set {stage}.enabled: false")
    if config["model"]["source"] == "tiny-uncond":
        size = config["model"]["tiny_image_size"]
        for name in config["variants"]:
            spec = {**config["generation"], **config["variants"][name]}
            if (spec["height"], spec["width"]) != (size, size):
                raise ConfigError(f"invalid config: variant '{name}' asks for {spec['height']}x{spec['width']} px; "
                                  f"tiny-uncond samples at its own {size}x{size} px (model.tiny_image_size): "
                                  f"set generation.height and generation.width to {size}")


def check_lowbit(config: dict) -> None:
    """SmoothQuant folds into the static 8-bit schemes' input scaling; other schemes have none."""
    for name, overrides in config["variants"].items():
        spec = {**config["generation"], **(overrides or {})}
        if spec.get("lowbit_smoothquant") and "-static" not in str(spec.get("lowbit", "none")):
            raise ConfigError(
                f"invalid config: variant '{name}' sets lowbit_smoothquant, which applies to the static "
                f"8-bit schemes (fp8-static*, int8-static*), not lowbit '{spec.get('lowbit', 'none')}'"
            )


def check_groupnorm(config: dict) -> None:
    """The channels-last GroupNorm reads channels_last activations: refused before any job without them."""
    for name, overrides in config["variants"].items():
        spec = {**config["generation"], **(overrides or {})}
        if spec.get("channels_last_groupnorm") and not spec.get("channels_last"):
            raise ConfigError(f"invalid config: variant '{name}' sets channels_last_groupnorm, which reads "
                              "channels_last activations: set channels_last: true in that variant too")


# = sdsqueeze.models.BUILT_SOURCES (tested): not imported, so that an edit of the model builder does
# not rerun every rule that validates a config.
BUILT_SOURCES = ("tiny", "sd15-seeded", "tiny-uncond")


def check_model_source(source: str) -> None:
    """A source is a model built here (tiny, sd15-seeded), a hub id (owner/name) or a folder: a bare
    word that is none of these is a misspelt built model, refused before any job runs."""
    if source in BUILT_SOURCES or "/" in source or Path(source).expanduser().is_dir():
        return
    raise ConfigError(
        f"invalid config: model.source {source!r} is not a model built here ({', '.join(BUILT_SOURCES)}), "
        "a hub id (owner/name) or an existing folder"
    )


def check_diffc(config: dict) -> None:
    diffc = config["diffc"]
    off_grid = [t for t in diffc["recon_timesteps"] if t % diffc["step_stride"]]
    if diffc["enabled"] and off_grid:
        raise ConfigError(
            f"invalid config: diffc.recon_timesteps {off_grid} are not multiples of diffc.step_stride "
            f"({diffc['step_stride']}); coding stops only on the grid of coded timesteps"
        )
    if diffc["enabled"]:
        from .diffc.images import check_image_names

        try:
            check_image_names(diffc["images"])  # relative to the working directory, as the jobs read them
        except ValueError as err:
            raise ConfigError(str(err)) from None


def check_sweep(config: dict) -> None:
    """The sweep's grid must fit its variant's steps (sdsqueeze.sweep.plan states each rule)."""
    if not config["sweep"]["enabled"]:
        return
    from .sweep.plan import grid_from_config

    try:
        grid_from_config(config)
    except ValueError as err:
        raise ConfigError(f"invalid config: {err}") from None


def check_distill(config: dict) -> None:
    """Students, their teachers and the variants that use them (sdsqueeze.distill.plan)."""
    from .distill.plan import DistillConfigError
    from .distill.plan import check_distill as check

    try:
        check(config)
    except DistillConfigError as err:
        raise ConfigError(f"invalid config: {err}") from None


def validate(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Friendly schema check, then Snakemake's validate (fills defaults), then cross-key rules."""
    from snakemake.utils import validate as snakemake_validate

    check(config, load_schema(schema_path))
    check_unconditional_settings(config)  # before the defaults, which would look like settings given
    snakemake_validate(config, str(schema_path), set_default=True)
    for name in list(config["variants"]):
        config["variants"][name] = config["variants"][name] or {}
    check_semantics(config)
    return config


def resolve_device(requested: str) -> str:
    """Turn the config's device into a torch device string, failing clearly without CUDA."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device '{requested}' was asked for, but this torch ({torch.__version__}) sees no CUDA GPU "
            "on this machine; run on a GPU node or set device: cpu (or auto)"
        )
    return requested
