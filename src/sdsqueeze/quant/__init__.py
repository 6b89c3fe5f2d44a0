"""Quantization of the denoiser: calibration sets and simulated post-training quantization.

``apply_ptq`` is the variant technique (key ``ptq``); it imports torch only when a variant uses it,
so reading the config (Snakefile parsing) stays light.
"""


def apply_ptq(prepared) -> None:
    if not prepared.spec.get("ptq"):
        return
    from .ptq import apply_ptq as quantize

    quantize(prepared)
