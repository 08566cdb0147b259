"""What every entry point's command line shares: flags in both spellings, and the command that
resumes a stopped run.

BasicSR spells its flags with underscores (`--auto_resume`, `--force_yml`), most tools with
dashes (`--force-resume`, `--world-size`); users type either. `ArgumentParser` registers every
long flag under both, so no tool refuses the other spelling of one of its own flags.
"""
from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping, Sequence


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser that also accepts each long flag with `_` and `-` swapped
    (`--auto_resume` and `--auto-resume` set the same `auto_resume`). The flag as written
    first keeps the `dest` and is the one shown first in `--help`."""

    def add_argument(self, *names: str, **kwargs):
        spellings = list(names)
        for name in names:
            if name.startswith("--"):
                for other in ("--" + name[2:].replace("_", "-"), "--" + name[2:].replace("-", "_")):
                    if other not in spellings and other not in self._option_string_actions:
                        spellings.append(other)
        return super().add_argument(*spellings, **kwargs)


LAUNCHER_ONLY = ("--local_rank", "--local-rank")  # torch.distributed.launch adds these per process


def resume_command(script: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The command that continues this run: the same script and arguments (every `--set`, the
    options file...), shell-quoted, plus `--auto_resume` unless it is there already; under torchrun
    the launcher with this node's process count (several nodes: the same on every node)."""
    env = os.environ if env is None else env
    args: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        if arg in LAUNCHER_ONLY:
            skip_value = True
            continue
        if arg.split("=", 1)[0] in LAUNCHER_ONLY:
            continue
        args.append(arg)
    if not any(a in ("--auto_resume", "--auto-resume") for a in args):
        args.append("--auto_resume")
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return shlex.join(["python", script, *args])
    local = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    command = shlex.join(["python", "-m", "torch.distributed.run", f"--nproc_per_node={local}", script, *args])
    return command if local == world else f"{command} (with your launcher's node arguments, on every node)"
