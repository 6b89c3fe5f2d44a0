"""The acceleration benchmark's harness: variant groups, the timed runs, the per-run tables.

Outside the package on purpose (as diffusers and torchao keep theirs): the library keeps only the
measurement primitives and ratios (sdsqueeze.accel.measure) that the report needs.
"""
