"""Errors caused by what the user gave us (options, data, checkpoints), and the one way entry
points exit on them.

Entry points run through `run_guarded`: a `VSRError` becomes its message as one line, without a
traceback (unless `--debug`), and exit 2; so do the two failures of the machine that a user can
act on, out of memory (exit 3) and a full disk (exit 2), each with the entry point's advice. Every
message names the culprit: the file, the option key path or the value. Bugs in our own code stay
ordinary exceptions, so they keep their tracebacks.
"""
from __future__ import annotations

import errno
import sys
from collections.abc import Callable

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


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


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def report_user_errors(run: Callable[[], int], debug: bool) -> int:
    """Run an entry point's `run()`; a VSRError becomes one `error:` line on stderr and exit 2
    (the traceback only with --debug)."""
    try:
        return run()
    except VSRError as exc:
        if debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2


INTERRUPTED = 130  # the exit status of a run stopped by Ctrl-C: 128 + SIGINT, as shells report it


def report_interrupt(run: Callable[[], int], debug: bool, interrupted_line: Callable[[], str]) -> int:
    """`report_user_errors` for tools that leave resumable work behind (the converters): Ctrl-C
    prints `interrupted_line()` (what was kept, how to go on) instead of a traceback, exit 130."""
    try:
        return report_user_errors(run, debug)
    except KeyboardInterrupt:
        print(interrupted_line(), file=sys.stderr)
        return INTERRUPTED


def run_guarded(run: Callable[[], int], debug: bool, *, out_of_memory: str, disk_full: str) -> int:
    """An entry point's `run()` with every expected failure as one `error:` line: user errors
    (exit 2), out of memory (exit 3: `out_of_memory` says what ran out and what to reduce), a full
    disk (exit 2: `disk_full` says what was kept and how to go on). `debug` shows the traceback."""
    import torch  # here, not above: the schedule's modules import this file on machines without torch

    try:
        return report_user_errors(run, debug)
    except torch.OutOfMemoryError as exc:
        if debug:
            raise
        print(f"error: {out_of_memory} ({first_line(exc)})", file=sys.stderr)
        return 3
    except OSError as exc:
        if debug or exc.errno not in DISK_FULL_ERRNOS:
            raise
        print(f"error: {exc.filename or 'a file'}: {exc.strerror}; {disk_full}", file=sys.stderr)
        return 2
