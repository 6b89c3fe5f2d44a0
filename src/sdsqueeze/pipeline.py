"""One call of a prepared variant's pipeline, shared by generation, the sweep and the benchmark.

The variant's step callbacks (DeepCache's step counter, CUDA-graph step marks) run first, then the
caller's; diffusers' ``MultiPipelineCallbacks`` chains them and hands the pipeline the tensors
they read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .variants import Prepared

StepEnd = Callable[[Any, int, Any, dict], "dict | None"]  # diffusers' callback_on_step_end signature


def step_callbacks(functions: list[StepEnd]):
    """``functions`` as diffusers' MultiPipelineCallbacks (one PipelineCallback each)."""
    from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

    class StepFunction(PipelineCallback):
        """A plain step-end function as a PipelineCallback; returning None keeps the tensors as they were."""

        tensor_inputs = ["latents"]

        def __init__(self, function: StepEnd):
            super().__init__()
            self.function = function

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            return self.function(pipeline, step_index, timestep, callback_kwargs) or callback_kwargs

    return MultiPipelineCallbacks([StepFunction(f) for f in functions])


def run_pipeline(prepared: Prepared, prompts: list[str], latents=None, on_step_end: StepEnd | None = None,
                 **overrides):
    """One pipeline call at the variant's steps, guidance and size (``overrides`` replace any call
    argument, e.g. ``output_type`` or ``generator``); returns the pipeline's output."""
    spec = prepared.spec
    functions = [*prepared.step_callbacks, *([on_step_end] if on_step_end else [])]
    arguments = {
        "prompt": prompts, "latents": latents, "num_inference_steps": int(spec["steps"]),
        "guidance_scale": float(spec["guidance"]), "height": int(spec["height"]),
        "width": int(spec["width"]), "output_type": "pil",
        "callback_on_step_end": step_callbacks(functions),
        **({"eta": float(spec["eta"])} if "eta" in spec else {}), **prepared.call_kwargs, **overrides,
    }
    return prepared.pipe(**arguments)
