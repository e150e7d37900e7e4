"""``crossmodal --help`` imports no command module and nothing heavy, nor does any command's
``--help``; the output is unchanged.

Not timed (benchmarks/cli_startup.py times it): what is checked is what gets imported.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossmodal_search.cli import _COMMANDS, build_parser, main
from crossmodal_search.cli._common import make_searcher
from crossmodal_search.search import Product

HEAVY = (
    "numpy",
    "boto3",
    "botocore",
    "pydantic",
    "PIL",
    "tenacity",
    "fastapi",
    "starlette",
    "uvicorn",
    "mcp",
)


def _run(*argv: str) -> tuple[set[str], str]:
    """Top-level packages imported by ``python -m crossmodal_search.cli ARGV`` (a fresh process),
    and its standard output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_"))}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "crossmodal_search.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return imported, done.stdout


def _imported_by(*argv: str) -> set[str]:
    """What ``crossmodal ARGV --help``-like commands import; checks a usage was printed."""
    imported, out = _run(*argv)
    assert "usage: crossmodal" in out
    return imported


@pytest.mark.parametrize("argv", [("--help",), ("-v", "--help")])
def test_crossmodal_help_imports_nothing_heavy(argv: tuple[str, ...]) -> None:
    imported = _imported_by(*argv)
    assert "crossmodal_search" in imported  # the parse really ran
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))


@pytest.mark.parametrize("name", _COMMANDS)
def test_a_command_help_imports_nothing_heavy(name: str) -> None:
    imported = _imported_by(name, "--help")
    assert "crossmodal_search" in imported
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))


def test_store_action_help_imports_nothing_heavy() -> None:
    imported = _imported_by("store", "check", "--help")
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))


def test_a_local_search_imports_no_aws_sdk(tmp_path: Path) -> None:
    searcher, _ = make_searcher(store=f"local:{tmp_path / 'store'}", embedder="offline")
    with searcher:
        searcher.index(
            [
                Product(product_id="mug-1", text="blue ceramic mug", title="Blue mug"),
                Product(product_id="lamp-1", text="brass table lamp", title="Brass lamp"),
            ]
        )
    imported, out = _run(
        "search", "--store", f"local:{tmp_path / 'store'}", "--embedder", "offline", "blue mug"
    )
    assert "mug-1" in out  # the search really ran and found the product
    aws = {"boto3", "botocore", "tenacity"}
    assert imported.isdisjoint(aws), sorted(imported & aws)


def test_the_lazy_top_level_help_is_the_full_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out == build_parser().format_help()


@pytest.mark.parametrize("name", _COMMANDS)
def test_each_command_parses_and_helps_the_same_built_alone(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    full, alone = build_parser(), build_parser(only=name)
    assert alone.format_help() == full.format_help()  # the help lines of the table are current
    assert _command(alone, name).format_help() == _command(full, name).format_help()


def _command(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = sub.choices[name]
    return found


def test_a_mistyped_command_is_the_same_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as lazy:
        main(["serach", "red dress"])
    lazy_err = capsys.readouterr().err
    with pytest.raises(SystemExit) as full:
        build_parser().parse_args(["serach", "red dress"])
    assert (lazy.value.code, lazy_err) == (full.value.code, capsys.readouterr().err)
    assert "invalid choice: 'serach'" in lazy_err
