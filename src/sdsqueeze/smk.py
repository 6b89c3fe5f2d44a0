"""Glue for Snakemake `script:` entry points: logging to the rule's log, one clear error line."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from collections.abc import Callable

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, RuntimeError)
# Storage the user can fix (a full disk or quota, a read-only or unwritable results folder):
# the OSError's text names the errno and the file.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}


def is_user_error(err: BaseException) -> bool:
    return isinstance(err, USER_ERRORS) or (isinstance(err, OSError) and err.errno in STORAGE_ERRNOS)


def claim_gpu_if_asked(snakemake) -> None:
    """A job with `resources: gpu=N>0` gets its own device before torch starts (see gpu_slots)."""
    if int(getattr(snakemake.resources, "gpu", 0) or 0) > 0:
        from sdsqueeze import gpu_slots

        gpu_slots.claim_gpu()


@contextlib.contextmanager
def native_output_to(log):
    """File descriptors 1 and 2 point at the job's log inside the block; yields a stream to the
    console. Python's redirect_stdout/stderr only reach Python code, while libraries write to
    the descriptors directly: torch's profiler (kineto) prints `gpuGetDeviceCount failed with
    code 35` on a machine without a CUDA driver."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    console = os.fdopen(os.dup(2), "w", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        yield console
    finally:
        for stream in (sys.stdout, sys.stderr, log):
            stream.flush()
        for fd, original in zip((1, 2), saved):
            os.dup2(original, fd)
            os.close(original)
        console.close()


def run(snakemake, main: Callable[[object], None], exclusive_gpu: bool = True) -> None:
    """Call ``main(snakemake)`` with stdout/stderr sent to the rule's log file.

    A GPU job runs ``main`` as the only job on its device (gpu_slots.exclusive_use; it matters only
    when several jobs share one GPU); ``exclusive_gpu=False`` leaves that to ``main`` (generation
    takes the device alone for its timed batches only).

    Errors a user can fix (bad input, missing model or GPU) end the job with their message, also
    repeated on the console; anything else keeps its traceback in the log for debugging.
    """
    log_path = snakemake.log[0] if len(snakemake.log) else None
    stream = open(log_path, "w") if log_path else contextlib.nullcontext(sys.stderr)
    with contextlib.ExitStack() as stack:
        handle = stack.enter_context(stream)
        console = stack.enter_context(native_output_to(handle)) if log_path else sys.stderr
        stack.enter_context(contextlib.redirect_stdout(handle))
        stack.enter_context(contextlib.redirect_stderr(handle))
        logging.basicConfig(stream=handle, level=logging.INFO, force=True,
                            format="%(asctime)s %(levelname)s %(message)s")
        try:
            claim_gpu_if_asked(snakemake)
            import torch

            # Numerics depend on the thread count (parallel reductions split differently), so
            # torch gets the config's count even when Snakemake scales the job's threads down.
            torch.set_num_threads(int(getattr(snakemake, "config", {}).get("threads", snakemake.threads)))
            if exclusive_gpu:
                from sdsqueeze import gpu_slots

                with gpu_slots.exclusive_use():
                    main(snakemake)
            else:
                main(snakemake)
        except BaseException as err:
            if not is_user_error(err):
                logging.exception("job failed (unexpected error; traceback above)")
                raise
            logging.exception("job failed")
            print(f"ERROR ({snakemake.rule}): {err}", file=console)
            sys.exit(1)
