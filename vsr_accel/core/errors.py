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


def one_line(exc: BaseException) -> str:
    """The user-facing line of an error. A DataLoader worker re-raises our errors with the
    worker's traceback folded into the message; its last line is `<module>.<Class>: <message>`."""
    text = str(exc).strip()
    if "Original Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    prefix = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


def report_user_errors(run, debug: bool) -> int:
    """Run an entry point's `run()`; a VSRError becomes one `error:` line on stderr and exit 2
    (the traceback only with --debug). Shared by train.py, infer.py and scripts/evaluate.py."""
    import sys

    try:
        return run()
    except VSRError as exc:
        if debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
