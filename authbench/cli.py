"""The `authbench` command line: one entry point, a subcommand per job.

Each subcommand lives in `authbench.commands.<name>` and exposes `register(subparsers)`,
which adds its parser and sets `func` to a callable taking the parsed args and returning
an exit code. A command module that cannot be imported is a packaging bug: it raises.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from authbench import __version__

COMMANDS = (
    "up",
    "bench",
    "chaos",
    "report",
    "rotate_keys",
    "model",
    "compare",
    "revocation_window",
    "spectrum",
    "soak",
    "loadgen",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authbench",
        description="Sessions in a shared store or stateless JWTs? Start the system, load it, "
        "break its Redis, and read the measurements.",
    )
    parser.add_argument("--version", action="version", version=f"authbench {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"authbench.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
