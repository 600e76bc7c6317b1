"""Exceptions of the engine. Every message says what to do about it."""


class UNetCoreError(Exception):
    """Base class: a problem with the user's input or files, reported without a traceback."""


class InputError(UNetCoreError, ValueError):
    """Bad input data (shape, dtype, values). The message says how to fix it."""


class CheckpointError(UNetCoreError):
    """A checkpoint file that cannot be loaded safely (missing, foreign, tampered, wrong version)."""


class JobCrashed(UNetCoreError):
    """A job running in its own process ended without a result (killed, crashed, out of memory)."""


class OutputError(UNetCoreError, OSError):
    """A file could not be written (read-only folder, no permission, full disk); nothing was
    left under the target name. Also an :class:`OSError`, so ``except OSError`` still catches it.
    ``errno`` is that of the underlying error."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    def __str__(self) -> str:
        return str(self.args[0])
