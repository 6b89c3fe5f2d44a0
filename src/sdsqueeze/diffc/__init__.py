"""DiffC: lossy compression with a pretrained diffusion model (Theis et al. 2022; Vonderfecht & Liu 2024).

``encode(image, pipe, recon_timestep) -> bytes`` and ``decode(bytes, pipe) -> image``; the
reverse-channel coder is in ``rcc``, the file format in ``bitstream``. CLI: ``python -m sdsqueeze.diffc``.
"""

from .bitstream import DiffcFile, DiffcFormatError
from .chunks import StepTooLargeError
from .codec import (
                    DiffcError,
                    DiffcSettings,
                    DiffusionModel,
                    EncodeReport,
                    decode,
                    decode_latent,
                    encode,
                    encode_rate_points,
                    model_fingerprint,
                    vae_roundtrip,
)

__all__ = ["DiffcError", "DiffcFile", "DiffcFormatError", "DiffcSettings", "DiffusionModel",
           "EncodeReport", "StepTooLargeError", "decode", "decode_latent", "encode", "encode_rate_points",
           "model_fingerprint", "vae_roundtrip"]
