"""sd-squeeze: measure what compression and acceleration do to Stable Diffusion.

The package holds the logic; Snakemake rules under ``rules/`` call it through thin
entry points under ``scripts/``.
"""

__version__ = "0.1.0"
