"""The ``crossmodal`` command: a thin layer over the public API.

Each sub-command lives in its own module ``crossmodal_search.cli._<name>`` exposing
``register(subparsers)`` (adds its parser and sets ``func``) and is listed in ``_COMMANDS``.
``main`` owns logging configuration (AWS secrets redacted at any verbosity) and turns
:class:`CrossmodalSearchError` into one clear line on stderr and a non-zero exit (``--debug``
shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from crossmodal_search._version import __version__
from crossmodal_search.cli._logging import configure_logging
from crossmodal_search.errors import CrossmodalSearchError

__all__ = ["main"]

#: Sub-command modules, in the order ``--help`` lists them.
_COMMANDS: tuple[str, ...] = (
    "index",
    "search",
    "similar",
    "copy",
    "store",
    "demo",
    "serve",
    "mcp",
    "eval",
    "tag",
)

EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (used by ``main`` and by the docs generator)."""
    parser = argparse.ArgumentParser(
        prog="crossmodal",
        description="Crossmodal product search: index a catalog, search it by text and/or image.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMANDS:
        importlib.import_module(f"crossmodal_search.cli._{name}").register(sub)
    for command in sub.choices.values():
        # Also accepted after the sub-command; SUPPRESS keeps a value given before it.
        common = command.add_argument_group("common options")
        common.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
        )
        common.add_argument(
            "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crossmodal`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        code: int = args.func(args)
    except (CrossmodalSearchError, OSError) as exc:
        # OSError: a file or directory the user named cannot be read or written.
        if args.debug:
            raise
        print(f"crossmodal: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("crossmodal: interrupted", file=sys.stderr)
        return 130
    return code
