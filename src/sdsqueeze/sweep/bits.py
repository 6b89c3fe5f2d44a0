"""Measured size of a compressed latent: real coded bytes, in bits per latent element.

Two coders, both producing actual bytes (and checked to decode back to the codes in tests):
- ``zlib``: DEFLATE over the codes as little-endian int16/int32 (a general-purpose baseline);
- ``ans``: constriction's ANS coder with a quantized Gaussian per channel whose parameters
  (mean, std as float32; min, max code as int32) are counted in the size.
``entropy`` is the zero-order empirical entropy of the codes: a bound for context, not a size.
"""

from __future__ import annotations

import zlib

import numpy as np

PARAM_BITS_PER_CHANNEL = 2 * 32 + 2 * 32  # mean, std (float32) + min, max code (int32)
MIN_STD = 0.1  # a channel of (nearly) constant codes still needs a proper distribution


def _as_array(codes) -> np.ndarray:
    array = codes.cpu().numpy() if hasattr(codes, "cpu") else np.asarray(codes)
    return array.astype(np.int64)


def zlib_bytes(codes) -> bytes:
    array = _as_array(codes)
    narrow = np.int16 if array.min() >= -(2**15) and array.max() < 2**15 else np.int32
    return zlib.compress(array.astype(np.dtype(narrow).newbyteorder("<")).tobytes(), 9)


def channel_gaussians(array: np.ndarray):
    """Per channel (axis 0): (low, high, mean, std) with the float32 values a decoder would read."""
    flat = array.reshape(array.shape[0], -1)
    for channel in flat:
        low, high = int(channel.min()), int(channel.max())
        mean = float(np.float32(channel.mean()))
        std = float(np.float32(max(channel.std(), MIN_STD)))
        yield channel, low, high, mean, std


def ans_words(codes) -> list[np.ndarray]:
    """ANS-coded words (uint32) per channel; a constant channel needs none (its range says it)."""
    import constriction

    words = []
    for channel, low, high, mean, std in channel_gaussians(_as_array(codes)):
        if low == high:
            words.append(np.zeros(0, dtype=np.uint32))
            continue
        model = constriction.stream.model.QuantizedGaussian(low, high, mean, std)
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(channel.astype(np.int32), model)
        words.append(coder.get_compressed())
    return words


def ans_decode(words: list[np.ndarray], params: list[tuple[int, int, float, float]], size: int):
    """Inverse of ``ans_words`` (tests use it to show the bytes are real)."""
    import constriction

    channels = []
    for channel_words, (low, high, mean, std) in zip(words, params):
        if low == high:
            channels.append(np.full(size, low, dtype=np.int64))
            continue
        model = constriction.stream.model.QuantizedGaussian(low, high, mean, std)
        channels.append(constriction.stream.stack.AnsCoder(channel_words).decode(model, size))
    return np.stack(channels).astype(np.int64)


def empirical_entropy(codes) -> float:
    _, counts = np.unique(_as_array(codes), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def measure(codes, side_bits: int = 0) -> dict[str, float]:
    """Bits per latent element of one compressed latent (C, H, W), side information included."""
    array = _as_array(codes)
    n = array.size
    ans_bits = sum(32 * w.size for w in ans_words(array)) + PARAM_BITS_PER_CHANNEL * array.shape[0]
    return {
        "bits_ans": (ans_bits + side_bits) / n,
        "bits_zlib": (8 * len(zlib_bytes(array)) + side_bits) / n,
        "entropy_bits": empirical_entropy(array),
        "distinct_codes": int(np.unique(array).size),
    }
