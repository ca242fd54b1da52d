"""Entry point of the ``gridedge`` command.

Each sub-command lives in its own module of this package and exposes
``register(subparsers: argparse._SubParsersAction) -> None``, which adds its parser and sets
``func`` (a callable taking the parsed namespace and returning an exit code). Modules are imported
lazily, only for the command asked, so ``gridedge p1 decode`` never imports volttron.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gridedge.errors import GridEdgeError

__all__ = ["main", "COMMANDS"]

#: command name -> module under gridedge.cli that registers it
COMMANDS: dict[str, str] = {
    "up": "platform_cmds",
    "down": "platform_cmds",
    "status": "platform_cmds",
    "vtn": "vtn",
    "sim": "sim",
    "stpm34": "stpm34",
    "p1": "p1",
    "capacity": "capacity",
    "dashboard": "dashboard",
    "xdm1041": "xdm1041",
}


def _build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridedge", description="GridEdge site controller")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    modules = [COMMANDS[command]] if command in COMMANDS else sorted(set(COMMANDS.values()))
    for name in modules:
        try:
            module = importlib.import_module(f"gridedge.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gridedge.cli.{name}":
                continue  # a command whose module is not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the sub-command; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = _build_parser(command)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GridEdgeError as exc:
        print(f"gridedge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
