"""Teacher data: what every student trains on, computed once from the teacher pipeline and cached.

One safetensors file holds, for each training example (one prompt x one seed):

- ``prompt_embeds``  [N, 77, D]  the text encoder's output for the prompt (diffusers' name)
- ``negative_prompt_embeds`` [1, 77, D]  the empty prompt's, shared by every example (CFG's uncond)
- ``noise``          [N, C, h, w]  the seeded initial noise (drawn on the CPU, sdsqueeze.seeding)
- ``latents``        [N, C, h, w]  the teacher's final latent from that noise with guidance: the
  "data" x0 the students noise and denoise (no training images are needed: the teacher's own
  samples stand in for them, as in data-free step distillation)

The file's metadata records the teacher's sampler, steps, guidance and size, so a student knows
what it imitates. Trainers sample (example, timestep, fresh noise) from these tensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

TENSORS = ("prompt_embeds", "negative_prompt_embeds", "noise", "latents")


@dataclass
class TeacherData:
    """The cached tensors (see the module docstring) and the teacher's sampling settings."""

    prompt_embeds: object
    negative_prompt_embeds: object
    noise: object
    latents: object
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        from ..io import atomic_path

        tensors = {name: getattr(self, name).detach().float().cpu().contiguous() for name in TENSORS}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"settings": json.dumps(self.settings, sort_keys=True)})

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> TeacherData:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device=device) as f:
            tensors = {name: f.get_tensor(name) for name in TENSORS}
            settings = json.loads((f.metadata() or {}).get("settings", "{}"))
        return cls(**tensors, settings=settings)

    def batch(self, indices):
        """(prompt_embeds, latents, noise) of the given examples, for a trainer's step."""
        return self.prompt_embeds[indices], self.latents[indices], self.noise[indices]


def build_teacher_data(pipe, prompts: list[str], seeds: list[int], *, steps: int, guidance: float,
                       height: int, width: int, batch_size: int = 8, progress: bool = True) -> TeacherData:
    """Run the teacher (its own configured scheduler) over every (prompt, seed) once, with CFG at
    ``guidance``, and keep the embeddings, the initial noise and the final latents."""
    import sys

    import torch
    from tqdm import tqdm

    from .. import seeding

    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    shape = seeding.latent_shape(pipe, height, width)
    dtype = pipe.unet.dtype
    noise = seeding.initial_latents(list(seeds), shape)
    embeds, finals = [], []
    with torch.inference_mode():
        negative = pipe.encode_prompt([""], pipe.device, 1, False)[0]
        for start in tqdm(range(0, len(prompts), batch_size), desc="teacher", unit="batch",
                          disable=not progress, file=sys.stderr):
            chunk = prompts[start : start + batch_size]
            cond = pipe.encode_prompt(chunk, pipe.device, 1, False)[0]
            out = pipe(prompt_embeds=cond, negative_prompt_embeds=negative.expand(len(chunk), -1, -1),
                       latents=noise[start : start + len(chunk)].to(pipe.device, dtype),
                       num_inference_steps=steps, guidance_scale=guidance, height=height, width=width,
                       output_type="latent")
            embeds.append(cond.float().cpu())
            finals.append(out.images.float().cpu())
    settings = {"scheduler": type(pipe.scheduler).__name__, "steps": steps, "guidance": guidance,
                "height": height, "width": width, "prompts": list(prompts), "seeds": [int(s) for s in seeds]}
    return TeacherData(prompt_embeds=torch.cat(embeds), negative_prompt_embeds=negative.float().cpu(),
                       noise=noise, latents=torch.cat(finals), settings=settings)


def training_prompts(coco, evaluation, n: int, seed: int, min_words: int = 5,
                     generic: list[str] | None = None) -> list[str]:
    """``n`` captions for training, one per COCO image, from images the evaluation prompt set
    (a DataFrame with ``image_id``) does not use: students never see an evaluation prompt."""
    import random

    from ..prompts import clean_caption, too_few_captions, usable_captions_by_image

    held_out = set(int(i) for i in evaluation["image_id"])
    rng = random.Random(f"distill:{seed}")
    candidates = [rng.choice(usable) for usable in usable_captions_by_image(coco, min_words, generic)
                  if int(usable[0]["image_id"]) not in held_out]
    if len(candidates) < n:
        raise too_few_captions(len(candidates), n, min_words)
    rng.shuffle(candidates)
    return [clean_caption(ann["caption"]) for ann in sorted(candidates[:n], key=lambda a: a["id"])]
