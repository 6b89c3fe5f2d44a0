import copy
from pathlib import Path

import pytest
import yaml

from sdsqueeze import config as sq_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def default_config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_config_is_valid_and_defaults_are_filled(default_config):
    cfg = sq_config.validate(copy.deepcopy(default_config))
    assert cfg["metrics"]["confidence"] == 0.95
    assert cfg["prompts"]["samples_per_prompt"] == 1


@pytest.mark.parametrize("config_file", sorted((REPO / "config").glob("*.yaml")))
def test_shipped_configs_are_valid(config_file, default_config):
    text = config_file.read_text()
    layered = yaml.safe_load(text)
    if "model" not in layered or "variants" not in layered:  # an overlay: on the config its header names
        from snakemake.utils import update_config

        sd15 = "overlay on config/sd15.yaml" in text
        base = yaml.safe_load((REPO / "config" / "sd15.yaml").read_text()) if sd15 else copy.deepcopy(default_config)
        update_config(base, layered)
        layered = base
    layered.setdefault("prompts", {})
    layered["prompts"].setdefault("download_url", "http://example.invalid")  # files need not exist
    sq_config.check(layered)


BAD_CONFIGS = [
    (lambda c: c.update(colour="red"), r"unknown key 'colour'; allowed here: .*device"),
    (lambda c: c["generation"].update(stepz=3), r"unknown key 'generation.stepz'; allowed here: .*steps"),
    (lambda c: c["generation"].update(steps=0), r"'generation.steps' is 0; allowed: .*minimum': 1"),
    (lambda c: c["generation"].update(dtype="int3"), r"'generation.dtype' is 'int3'; allowed: float32, float16, bfloat16"),
    (lambda c: c.update(reference="nope"), r"'reference' is 'nope', which is not a variant; allowed: .*fp32-classic"),
    (lambda c: c["variants"].update({"bad/name": {}}), r"'variants' has a key 'bad/name' that must match"),
    (lambda c: c["variants"]["fp32-sdpa"].update(attention=3), r"'variants.fp32-sdpa.attention' is 3 \(int\); expected string"),
    (lambda c: c.update(device="tpu"), r"'device' is 'tpu'; it must match"),
    (lambda c: c["prompts"].update(n="8"), r"'prompts.n' is '8' \(str\); expected integer"),
    (lambda c: c["prompts"].update(captions="missing.json"), r"'prompts.captions' file missing.json does not exist"),
    # NaN passes every JSON-schema bound (all comparisons are false); inf and huge seeds must not reach jobs.
    (lambda c: c["generation"].update(guidance=float("nan")), r"'generation.guidance' is nan; a finite number is required"),
    (lambda c: c["variants"]["fp32-sdpa"].update(guidance=float("inf")), r"'variants.fp32-sdpa.guidance' is inf; a finite"),
    (lambda c: c.setdefault("metrics", {}).update(confidence=float("nan")), r"'metrics.confidence' is nan; a finite"),
    (lambda c: c.update(seed=2**64), r"'seed' is 18446744073709551616; allowed: .*maximum': 4294967295"),
    (lambda c: c["model"].update(tiny_seed=2**32), r"'model.tiny_seed' is 4294967296; allowed"),
    (lambda c: c["sweep"].update(seeds=[42, 2**70]), r"'sweep.seeds.1' is 1180591620717411303424; allowed"),
    (lambda c: c.update(threads=10**30), r"'threads' is 10{30}; allowed: .*maximum"),
]


def test_yaml_nan_guidance_is_refused(default_config, tmp_path, monkeypatch):
    """The literal YAML spelling a user would write, not only Python's float('nan')."""
    monkeypatch.chdir(REPO)
    default_config["generation"].update(yaml.safe_load("guidance: .nan"))
    with pytest.raises(sq_config.ConfigError, match="'generation.guidance' is nan"):
        sq_config.validate(default_config)


def test_every_numeric_key_of_the_schema_is_bounded():
    """NaN is caught by the finite check; huge values only by a maximum on every number."""
    unbounded = []

    def walk(node, where):
        if isinstance(node, dict):
            types = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
            numeric = {"integer", "number"} & set(types)
            if numeric and not {"maximum", "exclusiveMaximum", "enum"} & set(node):
                unbounded.append(where)
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(sq_config.load_schema(), "schema")
    assert unbounded == []


@pytest.mark.parametrize("mutate, message", BAD_CONFIGS)
def test_bad_config_is_rejected_with_its_own_message(default_config, mutate, message, monkeypatch):
    monkeypatch.chdir(REPO)
    mutate(default_config)
    with pytest.raises(sq_config.ConfigError, match=message):
        sq_config.validate(default_config)


def test_bad_config_stops_snakemake_before_any_job(tmp_path, default_config, snakemake_run):
    default_config["generation"]["stepz"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(default_config))
    result = snakemake_run("--cores", "1", "--configfile", str(bad), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path))
    assert result.returncode != 0
    assert "unknown key 'generation.stepz'" in result.stderr + result.stdout
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_cuda_requested_without_gpu_is_a_clear_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(sq_config.ConfigError, match="set device: cpu"):
        sq_config.resolve_device("cuda")
    assert sq_config.resolve_device("auto") == "cpu"


def test_smoothquant_without_a_static_fp8_scheme_is_refused(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["variants"]["sq-alone"] = {"lowbit_smoothquant": 0.8}
    with pytest.raises(sq_config.ConfigError, match="variant 'sq-alone' sets lowbit_smoothquant"):
        sq_config.validate(cfg)
    cfg["variants"]["sq-alone"] = {"lowbit": "fp8-static", "lowbit_smoothquant": 0.8}
    assert sq_config.validate(cfg)["variants"]["sq-alone"]["lowbit_smoothquant"] == 0.8


def test_channels_last_groupnorm_without_channels_last_is_refused(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["variants"]["gn"] = {"channels_last_groupnorm": True}
    with pytest.raises(sq_config.ConfigError, match="variant 'gn' sets channels_last_groupnorm.*channels_last: true"):
        sq_config.validate(cfg)
    cfg["variants"]["gn"] = {"channels_last_groupnorm": True, "channels_last": True}
    assert sq_config.validate(cfg)["variants"]["gn"]["channels_last_groupnorm"] is True
