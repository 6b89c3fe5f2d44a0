"""Distillation: students trained from the configured teacher (fewer steps, fewer blocks).

``loop`` is the shared training loop (seeded, resumable, logged); ``progressive`` and
``consistency`` are the step-distillation trainers and their samplers.
"""
