"""Acceleration techniques and real low-bit kernels: attention (SDPA backends, fused QKV, K/V
cache), DeepCache feature caching, torchao low-bit kernels, compilation and host-side timesteps,
each a module with a frozen config and an ``apply`` registered in ``sdsqueeze.techniques``."""
