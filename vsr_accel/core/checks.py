"""The small checks every validator of user input shares: what counts as an integer or a number
in an options file (YAML's `true` is a bool, and a bool is an int to Python), and the
"did you mean ...?" guess for a misspelt name."""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def is_int(value: Any) -> bool:
    """An integer, and not a bool (`num_feat: true` must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or a float, and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The valid name `word` most likely misspells, for "did you mean ...?"; None when nothing is
    close (difflib's ratio below 0.5). Case-only slips ('basicvsrm' for 'BasicVSRM') are caught too."""
    choices = [str(choice) for choice in choices]
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    if not matches:
        lowered = {choice.lower(): choice for choice in choices}
        matches = [lowered[m] for m in difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.5)]
    return matches[0] if matches else None
