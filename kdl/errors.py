"""The exceptions kdl raises for bad input: each says what was received and what was expected.

The CLI prints any `KdlError` as one line and exits non-zero; other exceptions are bugs.

>>> from kdl.errors import DataError
>>> isinstance(DataError("x"), ValueError)
True
"""

import os
import sys
import warnings


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


class KdlWarning(UserWarning):
    """Input kdl uses as given but that is probably not what was meant (pixels outside 0..255,
    sentences cut to max_length); the CLI prints it as one `kdl: warning:` line."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message, category=KdlWarning):
    """Issue a warning about the user's input, attributed to the first caller outside the kdl
    package (as Python 3.12's `skip_file_prefixes` does), so that Python's display shows the
    user's own line (a script's, a notebook cell's), never a line of kdl's internals; the `kdl`
    command prints a `KdlWarning` as one line of its own.
    """
    depth, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        depth, frame = depth + 1, frame.f_back
    warnings.warn(message, category, stacklevel=depth + 1)
