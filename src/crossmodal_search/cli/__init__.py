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

#: Sub-command modules, in the order ``--help`` lists them, with the help line ``--help`` shows
#: (the module's own parser says the same: tests/test_cli_startup.py compares them). Only the
#: module of the command being run is imported: ``crossmodal --help`` imports none.
_HELP: dict[str, str] = {
    "index": "embed a catalog into a store (resumable: a rerun skips what is already indexed)",
    "search": "search by text, by image, or both",
    "similar": "products similar to an indexed product (no embedding call)",
    "copy": "copy an index into another store (local <-> S3 Vectors)",
    "store": "describe, upgrade, check or recover a store",
    "demo": "index a generated sample catalog locally and run example searches",
    "serve": "run the search page and JSON API (needs the 'web' extra)",
    "mcp": "run the MCP tool server for agents and assistants (needs the 'mcp' extra)",
    "eval": "measure search quality on labelled queries and compare settings",
    "tag": "tag indexed products zero-shot from a vocabulary (filterable metadata)",
}
_COMMANDS: tuple[str, ...] = tuple(_HELP)

EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser (the docs generator's: every command's).

    With ``only``, just that command's module is imported and its parser built; the other
    commands get an empty parser with the same help line, so the top-level usage, help and
    errors read the same.
    """
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
        if only is None or name == only:
            importlib.import_module(f"crossmodal_search.cli._{name}").register(sub)
        else:
            sub.add_parser(name, help=_HELP[name])
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
    args_list = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_command_in(args_list))
    args = parser.parse_args(args_list)
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


def _command_in(argv: Sequence[str]) -> str:
    """The command ``argv`` names ("" for none: ``--help``, ``--version``, a usage error).

    The options before a command take no value, so the command is the first word that is
    not an option."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in _HELP else ""
        if word == "--":
            return ""
    return ""
