"""TEST HOOK: fault injection for the kill tests. Nothing here is armed in production.

`VSR_TEST_KILL_AT=step:3,save:4.state@1=SIGTERM` makes a process send itself a signal (SIGKILL
unless `=NAME` says otherwise) when it reaches a point: `step:<iter>` after that iteration's
optimizer step (train.py), `save:<file name>` inside `checkpoint.atomic_save` after the temp file
is written and fsynced but before the rename. `@<rank>` restricts an entry to one rank. Entries
fire only in the first attempt of a torchrun group (TORCHELASTIC_RESTART_COUNT unset or 0), so a
restarted group can finish. It lets tests kill a run at exact places.

The trainer asks once, before its loop, for `step_hook(rank)`: a no-op unless a test armed a
step, so the loop pays nothing per step for a hook it never uses.
"""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

KILL_ENV = "VSR_TEST_KILL_AT"


def armed_points(rank: int | None = None) -> dict[str, str]:
    """Point -> signal name, for the entries of `VSR_TEST_KILL_AT` armed for `rank` (the first
    entry of a point wins); empty outside a test."""
    spec = os.environ.get(KILL_ENV)
    if not spec or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") not in ("", "0"):
        return {}
    if rank is None:
        rank = int(os.environ.get("RANK", "0") or 0)
    points: dict[str, str] = {}
    for entry in spec.split(","):
        target, _, signame = entry.strip().partition("=")
        target, _, only_rank = target.partition("@")
        if not only_rank or int(only_rank) == rank:
            points.setdefault(target, signame or "SIGKILL")
    return points


def _kill_self(signame: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), getattr(signal, signame))


def kill_point(point: str, rank: int | None = None) -> None:
    """Send the signal armed for `point` (reads the environment: for rare points such as saves)."""
    signame = armed_points(rank).get(point)
    if signame:
        _kill_self(signame)


def _never(done: int) -> None:
    pass


def step_hook(rank: int) -> Callable[[int], None]:
    """What train.py calls with each finished iteration: a no-op unless a test armed `step:<iter>`
    points for this rank, resolved once before the loop."""
    steps = {int(point[len("step:"):]): signame for point, signame in armed_points(rank).items()
             if point.startswith("step:")}
    if not steps:
        return _never

    def kill_after(done: int) -> None:
        if done in steps:
            _kill_self(steps[done])
    return kill_after
