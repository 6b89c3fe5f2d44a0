"""Latent-compression sweeps: compress the latent at one denoising step, on shared trajectories.

``operator`` holds the compression operators, ``bits`` measures their real coded size,
``plan`` lays out the grid and its shards, ``runner`` renders a shard on shared trajectories,
``quality`` scores each run against its uncompressed image and ``fit`` fits Compression-Inference's surface.
"""
