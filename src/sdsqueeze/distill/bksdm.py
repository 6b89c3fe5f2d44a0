"""BK-SDM: a block-removed UNet initialised from the teacher's weights and trained by distillation.

Kim et al., "BK-SDM: A Lightweight, Fast, and Cheap Version of Stable Diffusion" (2023). Removals,
each a diffusers config change, so the student is a plain ``UNet2DConditionModel`` that loads back
with ``from_pretrained``:

- ``mid_block``: the mid-stage goes (``mid_block_type: None``); BK-SDM-Small removes it.
- ``pair.<k>``: one residual/attention pair of stage k, in its down block and in the mirrored up
  block (diffusers ties them: ``layers_per_block[k]`` down, one more up). BK-SDM keeps the first
  pair of a down block and the first and last pairs of an up block (the last one owns the skip
  connection's channels); BK-SDM-Base removes one pair in every stage.
- ``innermost_stage``: the deepest down stage and its up stage (BK-SDM-Tiny's further cut).

The loss is BK-SDM's sum: the task loss (the student's noise prediction against the true noise),
output-level KD (against the teacher's prediction) and feature-level KD (each kept stage's output
against the teacher's same stage, where their shapes agree), on the cached teacher data
(sdsqueeze.distill.teacher). With 10% of the prompts replaced by the empty prompt, as in SD's own
training, so the student keeps an unconditional branch for classifier-free guidance.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

REMOVALS = ("mid_block", "pair.<k>", "innermost_stage")
PAIR = re.compile(r"^pair\.(\d+)$")


class RemovalError(ValueError):
    """A removal the teacher's UNet cannot undergo (a block it does not have)."""


@dataclass(frozen=True)
class BKSDMSettings:
    remove: tuple[str, ...] = ("mid_block", "innermost_stage")
    iterations: int = 100
    batch_size: int = 8
    learning_rate: float = 5e-5
    checkpoint_every: int = 25
    output_kd_weight: float = 1.0
    feature_kd_weight: float = 1.0
    uncond_probability: float = 0.1
    mixed_precision: str = "no"  # or bf16 (autocast on the GPU)
    gradient_checkpointing: bool = False
    seed: int = 0

    @classmethod
    def from_config(cls, student: dict, seed: int) -> BKSDMSettings:
        keys = {f for f in cls.__dataclass_fields__ if f in student and f != "seed"}
        values = {k: student[k] for k in keys}
        if "remove" in values:
            values["remove"] = tuple(values["remove"])
        return cls(**values, seed=seed)


def _layers(config) -> list[int]:
    layers = config["layers_per_block"]
    stages = len(config["block_out_channels"])
    return list(layers) if isinstance(layers, (list, tuple)) else [int(layers)] * stages


def student_config(teacher_config, remove) -> dict:
    """The student UNet's config: the teacher's with the removals applied. Raises RemovalError
    naming a removal the teacher does not allow (a missing stage, pair or mid-block)."""
    config = {k: v for k, v in dict(teacher_config).items() if not k.startswith("_")}
    layers = _layers(config)
    stages = len(layers)
    for item in remove:
        pair = PAIR.match(item)
        if item == "mid_block":
            if config.get("mid_block_type") is None:
                raise RemovalError("remove 'mid_block': the teacher's UNet has no mid-block")
            config["mid_block_type"] = None
        elif pair:
            k = int(pair.group(1))
            if k >= stages:
                raise RemovalError(f"remove {item!r}: the teacher's UNet has stages 0 to {stages - 1}")
            if layers[k] < 2:
                raise RemovalError(
                    f"remove {item!r}: stage {k} has {layers[k]} residual/attention pair(s) in its down "
                    "block; at least one must stay")
            layers[k] -= 1
        elif item != "innermost_stage":
            raise RemovalError(f"remove {item!r}: unknown removal; allowed: {', '.join(REMOVALS)}")
    if "innermost_stage" in remove:
        if stages < 2:
            raise RemovalError("remove 'innermost_stage': the teacher's UNet has a single stage")
        config["block_out_channels"] = list(config["block_out_channels"])[:-1]
        config["down_block_types"] = list(config["down_block_types"])[:-1]
        config["up_block_types"] = list(config["up_block_types"])[1:]
        layers = layers[:-1]
        for key in ("attention_head_dim", "num_attention_heads", "transformer_layers_per_block"):
            if isinstance(config.get(key), (list, tuple)):
                config[key] = list(config[key])[:-1]
    config["layers_per_block"] = layers if len(set(layers)) > 1 else layers[0]
    return config


def weight_map(teacher_config, remove) -> dict[str, str]:
    """Student module prefix -> teacher module prefix for every block the student keeps."""
    t_layers = _layers(teacher_config)
    s_config = student_config(teacher_config, remove)
    s_layers = _layers(s_config)
    dropped = 1 if "innermost_stage" in remove else 0
    mapping = {}
    for i, n in enumerate(s_layers):
        for j in range(n):  # down blocks keep their first pairs
            for part in ("resnets", "attentions"):
                mapping[f"down_blocks.{i}.{part}.{j}."] = f"down_blocks.{i}.{part}.{j}."
        mapping[f"down_blocks.{i}.downsamplers."] = f"down_blocks.{i}.downsamplers."
    stages = len(s_layers)
    for j in range(stages):  # up block j serves stage (stages - 1 - j)
        stage = stages - 1 - j
        teacher_j = j + dropped
        kept = [*range(s_layers[stage]), t_layers[stage]]  # the first pairs and the last
        for s_index, t_index in enumerate(kept):
            for part in ("resnets", "attentions"):
                mapping[f"up_blocks.{j}.{part}.{s_index}."] = f"up_blocks.{teacher_j}.{part}.{t_index}."
        mapping[f"up_blocks.{j}.upsamplers."] = f"up_blocks.{teacher_j}.upsamplers."
    return mapping


def _teacher_name(name: str, mapping: dict[str, str]) -> str:
    for student_prefix, teacher_prefix in mapping.items():
        if name.startswith(student_prefix):
            return teacher_prefix + name[len(student_prefix):]
    return name  # conv_in, time embedding, mid-block, conv_out: same place in both


def init_student(teacher_unet, remove):
    """The student UNet with every weight copied from the teacher's block it stands for (BK-SDM's
    initialisation); fails if any student tensor has no teacher counterpart of the same shape."""
    from diffusers import UNet2DConditionModel

    config = student_config(teacher_unet.config, remove)
    student = UNet2DConditionModel.from_config(config).to(teacher_unet.device, teacher_unet.dtype)
    mapping = weight_map(teacher_unet.config, remove)
    teacher_state = teacher_unet.state_dict()
    state = {}
    for name, tensor in student.state_dict().items():
        source = _teacher_name(name, mapping)
        if source not in teacher_state or teacher_state[source].shape != tensor.shape:
            raise RemovalError(f"student weight {name} has no teacher weight of its shape (looked for {source})")
        state[name] = teacher_state[source].clone()
    student.load_state_dict(state)
    return student


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


class StageFeatures:
    """The output of every down and up block of a UNet, captured by forward hooks for the
    feature-level loss (diffusers has no option to return intermediate features)."""

    def __init__(self, unet):
        self.features: dict[str, object] = {}
        self.handles = []
        for kind in ("down_blocks", "up_blocks"):
            for index, block in enumerate(getattr(unet, kind)):
                self.handles.append(block.register_forward_hook(self._keep(f"{kind}.{index}")))

    def _keep(self, name):
        def hook(module, args, output):
            self.features[name] = output[0] if isinstance(output, tuple) else output
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def feature_pairs(teacher_config, remove) -> list[tuple[str, str]]:
    """(student stage, teacher stage) pairs compared by the feature loss: the same down stage, and
    the up block serving the same stage."""
    stages = len(_layers(student_config(teacher_config, remove)))
    dropped = 1 if "innermost_stage" in remove else 0
    pairs = [(f"down_blocks.{i}", f"down_blocks.{i}") for i in range(stages)]
    pairs += [(f"up_blocks.{j}", f"up_blocks.{j + dropped}") for j in range(stages)]
    return pairs


def train_bksdm(pipe, teacher_data, settings: BKSDMSettings, ckpt_dir: str | Path, progress: bool = True):
    """Train the block-removed student of ``pipe.unet`` on ``teacher_data``; returns (student UNet,
    the scheduler config it samples with: the teacher's, a report) like the step-distillation
    trainers. Checkpoints and the loss log live in ``ckpt_dir``; a rerun resumes from there."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    from . import loop

    log_path = Path(ckpt_dir) / "loss.csv"
    device = pipe.unet.device
    teacher = pipe.unet.eval().requires_grad_(False)
    student = init_student(teacher, settings.remove).float()
    student.requires_grad_(True)
    noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    alphas = noise_schedule.alphas_cumprod.to(device)
    n_timesteps = noise_schedule.config.num_train_timesteps
    pairs = feature_pairs(teacher.config, settings.remove)
    student_hooks, teacher_hooks = StageFeatures(student), StageFeatures(teacher)
    data = {k: getattr(teacher_data, k).to(device) for k in ("prompt_embeds", "latents")}
    uncond = teacher_data.negative_prompt_embeds.to(device)
    compared: set[str] = set()

    def step(iteration: int, generator):
        index = torch.randint(0, len(teacher_data), (settings.batch_size,), generator=generator)
        x0 = data["latents"][index]
        text = data["prompt_embeds"][index].clone()
        drop = torch.rand(settings.batch_size, generator=generator) < settings.uncond_probability
        text[drop.to(device)] = uncond[0]
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(0, n_timesteps, (settings.batch_size,), generator=generator).to(device)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise  # DDPMScheduler.add_noise's formula, batched
        with torch.no_grad():
            target = teacher(noisy.to(teacher.dtype), t, encoder_hidden_states=text.to(teacher.dtype)).sample
        prediction = student(noisy, t, encoder_hidden_states=text).sample
        loss = F.mse_loss(prediction.float(), noise.float())
        loss = loss + settings.output_kd_weight * F.mse_loss(prediction.float(), target.float())
        feature_terms = []
        for s_name, t_name in pairs:
            s_feat, t_feat = student_hooks.features[s_name], teacher_hooks.features[t_name]
            if s_feat.shape == t_feat.shape:
                feature_terms.append(F.mse_loss(s_feat.float(), t_feat.float()))
                compared.add(s_name)
        if feature_terms:
            loss = loss + settings.feature_kd_weight * torch.stack(feature_terms).sum()
        return loss

    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.learning_rate)
    try:
        result = loop.train(
            step, {"student": student}, optimizer, settings.iterations, ckpt_dir, settings.checkpoint_every,
            settings.seed, log_path, autocast_dtype=torch.bfloat16 if settings.mixed_precision == "bf16" else None,
            gradient_checkpointing=settings.gradient_checkpointing, max_grad_norm=1.0, progress=progress,
            desc="bk-sdm")
    finally:
        student_hooks.remove()
        teacher_hooks.remove()
    student.requires_grad_(False)
    losses = [row["loss"] for row in loop.read_log(log_path)]
    window = max(1, min(10, len(losses) // 4))
    report = {
        "method": "BK-SDM block removal with output- and feature-level distillation",
        "settings": asdict(settings), "removed": list(settings.remove),
        "teacher_parameters": parameter_count(teacher), "student_parameters": parameter_count(student),
        "compared_features": sorted(compared),
        "phases": [{"phase": "kd", "iterations": settings.iterations, "log": str(log_path),
                    "loss_start": sum(losses[:window]) / window, "loss_end": sum(losses[-window:]) / window,
                    "iterations_per_second": result.iterations_per_second, "seconds": result.seconds,
                    "peak_memory_bytes": result.peak_memory_bytes, "resumed_from": result.resumed_from}],
    }
    return student, dict(pipe.scheduler.config), report


def student_pipeline(pipe, student_unet):
    """The teacher's pipeline with the student's UNet (text encoder, VAE and scheduler shared)."""
    return type(pipe)(**{**pipe.components, "unet": student_unet})
