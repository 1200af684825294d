"""The ``rlpf`` command line: one thin module per command (``rlpf/cli/<command>.py``), each an
``add_parser(sub)`` that declares its arguments and a ``cmd_<command>(args)`` that calls the package
doing the work. This module builds the parser from them and turns rlpf's own errors into exit codes."""
from __future__ import annotations

import argparse
import os
import sys

# Headless rendering by default (videos of rlpf track / train / control). MuJoCo 3.3 reads MUJOCO_GL
# once, when it is first imported, and the command modules below import it (rlpf.judge.scoring), so
# the default must be in place before them; a user's own MUJOCO_GL (osmesa, glfw) wins.
os.environ.setdefault("MUJOCO_GL", "egl")

from rlpf import __version__  # noqa: E402
from rlpf.cli import (  # noqa: E402
    control,
    data,
    eval_control,
    evaluate,
    export_motion,
    generate,
    import_motion,
    lift,
    pixel,
    pretrain,
    render,
    score,
    simulate,
    track,
    train,
    train_pose,
    train_tracker,
    worlds,
)

COMMANDS = (score, simulate, data, pretrain, train, generate, evaluate, track, train_tracker, eval_control, control, worlds,
            import_motion, export_motion, render, train_pose, lift, pixel)
"""In the order ``rlpf --help`` lists them."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may stand anywhere, e.g. `rlpf score a.npz --world ant weights.x=1`
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if len(overrides) != len(extra) or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(a for a in extra if a not in overrides) or ' '.join(extra)}")
    if overrides:
        args.overrides = args.overrides + overrides
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.func, args)


def run_command(func, args) -> int:
    """Run one command: rlpf's own errors (bad input, files, configs: ``RLPFError``) become one line
    on stderr and exit 2; Ctrl-C exits 130; anything else is a bug and keeps its traceback."""
    from rlpf.core.errors import RLPFError

    name = func.__name__.removeprefix("cmd_").replace("_", "-")
    try:
        return func(args)
    except RLPFError as e:
        print(f"rlpf {name}: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        # a path the user gave that is not there / not usable; the message names it
        print(f"rlpf {name}: {e.strerror or e}: {e.filename}" if e.filename else f"rlpf {name}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"rlpf {name}: {e or 'interrupted'}", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rlpf",
        description="Reinforcement Learning from Physical Feedback: score, simulate, track and align "
                    "generative world models with a MuJoCo physics simulator (rlpf train runs the whole loop).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"rlpf {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p
