"""Errors caused by what the user gave us (options, data, checkpoints).

Entry points catch `VSRError` and print its message as one line, without a traceback
(unless `--debug`), then exit non-zero. Every message names the culprit: the file, the
option key path or the value. Bugs in our own code stay ordinary exceptions, so they keep
their tracebacks.
"""


class VSRError(Exception):
    """Base class of user-facing errors: the message alone must tell the user what to fix."""


class ConfigError(VSRError):
    """An option file, option key or option value is wrong."""


class DataError(VSRError):
    """A dataset folder, image, LMDB or meta-info file is missing or inconsistent."""


class CheckpointError(VSRError):
    """A checkpoint is missing, truncated, unsafe or does not match the model/curriculum."""
