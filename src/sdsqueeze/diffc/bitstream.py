"""The .diffc file: a small versioned header, the entropy-coded indices, a CRC-32 of it all.

Layout (version 2; integers are LEB128 varints unless a size is given):
    b"DFC"  version:u8  model_fingerprint:8 bytes  flags:u8 (dtype, device kind)
    latent channels, height, width   seed   step_stride   recon_timestep   denoise_steps
    max_chunk_bits   margin_bits   block_rows_log2   cpu_threads   regime   n_steps
    kl_codes:n_steps bytes   latent_digest:4 bytes
    payload_length   payload (constriction range-coder words, uint32 little-endian)
    crc32:u32 (little-endian) of every byte before it
Every byte counts towards the rate reported: bits per pixel is the file's size.
Version 2 added the numeric regime, the final latent's digest, and per-chunk budget classes and
per-step split levels inside the payload (``chunks``).

Reading checks the layout, the checksum and that every field lies in the range this format
allows (``LIMITS``), so a damaged or crafted header is refused before anything is allocated; the
decoder then checks the fields against the loaded model (``codec.check_header``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

MAGIC = b"DFC"
VERSION = 2
DIGEST_BYTES = 4  # a receiver off by any bit misses it with probability 2^-32; every byte is rate
# Ranges the format allows (the config schema's, or wider); anything else is a damaged file.
LIMITS = {"latent_channels": (1, 64), "latent_side": (1, 1024), "step_stride": (1, 10_000),
          "recon_timestep": (1, 10_000), "denoise_steps": (1, 1000), "max_chunk_bits": (1, 20),
          "margin_bits": (0, 10), "block_rows_log2": (0, 20), "cpu_threads": (0, 1024),
          "regime": (1, 1), "n_steps": (1, 10_000), "seed": (0, 2**64 - 1)}
DTYPE_CODES = {"float32": 0, "float16": 1, "bfloat16": 2}
DEVICE_CODES = {"cpu": 0, "cuda": 1}


class DiffcFormatError(ValueError):
    """The bytes are not a readable .diffc file of this version (truncated, corrupted, foreign)."""


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DiffcFormatError("file is truncated (it ends inside the header or payload)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise DiffcFormatError("malformed header (overlong integer)")


@dataclass
class DiffcFile:
    fingerprint: bytes
    dtype: str
    device_kind: str
    latent_shape: tuple[int, int, int]
    seed: int
    step_stride: int
    recon_timestep: int
    denoise_steps: int
    max_chunk_bits: int
    margin_bits: int
    block_rows_log2: int
    cpu_threads: int  # torch's CPU results depend on the thread count: the decoder uses the same (0: CUDA)
    regime: int = 1  # the numeric settings both sides run under (codec.numeric_regime)
    kl_codes: list[int] = field(default_factory=list)
    latent_digest: bytes = bytes(DIGEST_BYTES)  # of the sender's final clean latent (codec.latent_digest)
    payload: bytes = b""

    def to_bytes(self) -> bytes:
        flags = DTYPE_CODES[self.dtype] | (DEVICE_CODES[self.device_kind] << 2)
        body = bytearray(MAGIC + bytes([VERSION]) + self.fingerprint + bytes([flags]))
        for value in (*self.latent_shape, self.seed, self.step_stride, self.recon_timestep,
                      self.denoise_steps, self.max_chunk_bits, self.margin_bits,
                      self.block_rows_log2, self.cpu_threads, self.regime, len(self.kl_codes)):
            body += _varint(int(value))
        body += bytes(self.kl_codes) + self.latent_digest
        body += _varint(len(self.payload)) + self.payload
        return bytes(body) + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> DiffcFile:
        if len(data) < len(MAGIC) + 1 or data[:len(MAGIC)] != MAGIC:
            raise DiffcFormatError("not a .diffc file (bad magic bytes)")
        if data[len(MAGIC)] != VERSION:
            raise DiffcFormatError(
                f".diffc format version {data[len(MAGIC)]} is not supported (this reader: {VERSION})")
        if len(data) < len(MAGIC) + 1 + 8 + 1 + 4:
            raise DiffcFormatError("file is truncated (shorter than a header)")
        (stored_crc,) = struct.unpack("<I", data[-4:])
        if zlib.crc32(data[:-4]) != stored_crc:  # first: no field of an unverified file is believed
            raise DiffcFormatError("checksum mismatch: the .diffc file is truncated or corrupted")
        reader = _Reader(data[:-4])
        reader.take(len(MAGIC) + 1)
        fingerprint = reader.take(8)
        flags = reader.take(1)[0]
        dtypes = {v: k for k, v in DTYPE_CODES.items()}
        devices = {v: k for k, v in DEVICE_CODES.items()}
        if flags & 3 not in dtypes or flags >> 2 not in devices:
            raise DiffcFormatError("corrupted header (unknown dtype/device flags)")
        shape = (reader.varint(), reader.varint(), reader.varint())
        seed, stride, recon_t, denoise, max_chunk, margin, rows_log2, threads, regime, n_steps = (
            reader.varint() for _ in range(10))
        _check_limits(latent_channels=shape[0], latent_side=max(shape[1:]), seed=seed, step_stride=stride,
                      recon_timestep=recon_t, denoise_steps=denoise, max_chunk_bits=max_chunk,
                      margin_bits=margin, block_rows_log2=rows_log2, cpu_threads=threads, regime=regime,
                      n_steps=n_steps)
        if min(shape[1:]) < 1:
            raise DiffcFormatError("corrupted header: latent height or width is 0")
        kl_codes = list(reader.take(n_steps))
        digest = reader.take(DIGEST_BYTES)
        payload_length = reader.varint()
        payload = reader.take(payload_length)
        if reader.pos != len(data) - 4:
            raise DiffcFormatError(
                f"file length does not match its header ({len(data)} bytes, header implies "
                f"{reader.pos + 4}): truncated or corrupted")
        return cls(fingerprint, dtypes[flags & 3], devices[flags >> 2], shape, seed, stride,
                   recon_t, denoise, max_chunk, margin, rows_log2, threads, regime, kl_codes, digest, payload)


def _check_limits(**fields: int) -> None:
    for name, value in fields.items():
        low, high = LIMITS[name]
        if not low <= value <= high:
            raise DiffcFormatError(f"corrupted or foreign header: {name} = {value} is outside [{low}, {high}]")
