"""Exceptions of the engine. Every message says what to do about it."""


class UNetCoreError(Exception):
    """Base class: a problem with the user's input or files, reported without a traceback."""


class InputError(UNetCoreError, ValueError):
    """Bad input data (shape, dtype, values). The message says how to fix it."""


class CheckpointError(UNetCoreError):
    """A checkpoint file that cannot be loaded safely (missing, foreign, tampered, wrong version)."""


class JobCrashed(UNetCoreError):
    """A job running in its own process ended without a result (killed, crashed, out of memory)."""
