"""The exceptions kdl raises for bad input: each says what was received and what was expected.

The CLI prints any `KdlError` as one line and exits non-zero; other exceptions are bugs.

>>> from kdl.errors import DataError
>>> isinstance(DataError("x"), ValueError)
True
"""


class KdlError(Exception):
    """Base class of every error kdl raises on purpose."""


class DataError(KdlError, ValueError):
    """A dataset, file or array is missing, corrupt or inconsistent."""


class ConfigError(KdlError, ValueError):
    """A recipe config, option or name is unknown or out of range."""


class BackendError(KdlError, RuntimeError):
    """The requested backend is unknown, unavailable or not the one Keras was imported with."""


class TrainingDiverged(KdlError, RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch, the step and the
    last good checkpoint."""


class RunError(KdlError, OSError):
    """A run directory cannot be written (disk full, no permission), is in use by another
    process, or holds something that is not a kdl run of this task."""
