"""Quantization of the denoiser: calibration sets and simulated post-training quantization.

``ptq.PTQSpec`` is the technique's config (variant key ``ptq``) and ``ptq.apply_ptq`` its apply,
registered in ``sdsqueeze.techniques``; nothing here imports torch, so reading the config
(Snakefile parsing) stays light.
"""
