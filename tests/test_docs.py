"""Code in docs/ is real: each Python block is an examples/ region or is executed here.

Python blocks whose text equals a region of an ``examples/*.py`` file (between
``# --8<-- [start:NAME]`` and ``# --8<-- [end:NAME]``) are covered by mypy and by the tests that
run the examples; every other Python block is executed, in order, one namespace per page, in a
temporary directory. ``crossmodal`` command lines in shell blocks must parse.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import shlex
import textwrap
from pathlib import Path

import pytest

from crossmodal_search.cli import _COMMANDS, build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").glob("*.md") if not p.name.startswith("benchmarks")),
]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_REGION = re.compile(
    r"^[ \t]*# --8<-- \[start:([\w-]+)\]\n(.*?)^[ \t]*# --8<-- \[end:\1\]", re.M | re.S
)


def _regions() -> dict[str, str]:
    regions = {}
    for path in EXAMPLES:
        for name, body in _REGION.findall(path.read_text(encoding="utf-8")):
            regions[f"{path.name}:{name}"] = textwrap.dedent(body).strip()
    return regions


def _blocks(page: Path, languages: tuple[str, ...]) -> list[str]:
    return [
        body for lang, body in _FENCE.findall(page.read_text(encoding="utf-8")) if lang in languages
    ]


def test_docs_exist() -> None:
    names = {p.name for p in DOCS}
    assert {
        "getting-started.md",
        "iam.md",
        "stores.md",
        "search.md",
        "testing.md",
        "offline-embedder.md",
    } <= names


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_python_blocks_are_examples_or_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    regions = _regions()
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs.{page.stem}"}
    for block in _blocks(page, ("python", "py")):
        text = textwrap.dedent(block).strip()
        if text in regions.values():
            continue
        exec(compile(text, f"{page.name} block", "exec"), namespace)


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_cli_lines_parse(page: Path) -> None:
    parser = build_parser()
    for block in _blocks(page, ("sh", "bash", "console")):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip().removeprefix("$ ")
            if line.startswith("crossmodal "):
                args = parser.parse_args(shlex.split(line)[1:])
                assert callable(args.func), line


def test_every_region_is_used_in_the_docs() -> None:
    used = "\n".join(
        textwrap.dedent(b).strip() for page in DOCS for b in _blocks(page, ("python", "py"))
    )
    unused = [name for name, text in _regions().items() if text not in used]
    assert unused == []


def test_quickstart_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "B0SAMPLE01" in lines[0] and "Red Summer Midi Dress" in lines[0]


def test_embeddings_example_runs_against_the_fake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3
    from PIL import Image

    from crossmodal_search.testing import FakeBedrock

    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (64, 64), (200, 20, 30)).save("red.jpg")
    Image.new("RGB", (64, 64), (20, 40, 200)).save("blue.png")
    fake = FakeBedrock()
    # NovaEmbeddings(region_name=...) builds its client from boto3's default session.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", fake.session())
    runpy.run_path(str(ROOT / "examples" / "embeddings_quickstart.py"), run_name="__main__")
    assert capsys.readouterr().out.strip() == "[0 1]"
    purposes = [r["singleEmbeddingParams"]["embeddingPurpose"] for r in fake.requests]
    assert sorted(purposes) == ["GENERIC_INDEX", "GENERIC_INDEX", "GENERIC_RETRIEVAL"]
    formats = sorted(
        r["singleEmbeddingParams"].get("image", {}).get("format", "") for r in fake.requests
    )
    assert formats == ["", "jpeg", "png"]


def test_testing_example_runs() -> None:
    module = runpy.run_path(str(ROOT / "examples" / "testing_with_fakes.py"))
    tests = [fn for name, fn in module.items() if name.startswith("test_") and callable(fn)]
    assert len(tests) == 2
    for test in tests:
        test()


def test_aws_sample_flow_runs_against_fakes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from crossmodal_search import CrossmodalSearcher, NovaEmbeddings, S3VectorsStore
    from crossmodal_search.datasets import load_abo, write_sample_catalog
    from crossmodal_search.testing import FakeBedrock, FakeS3Vectors

    flow = runpy.run_path(str(ROOT / "examples" / "aws_sample_flow.py"))
    products = load_abo(write_sample_catalog(tmp_path)).products[:8]
    bedrock, s3 = FakeBedrock(), FakeS3Vectors()
    searcher = CrossmodalSearcher(
        NovaEmbeddings(client=bedrock.client(), dimension=256),
        S3VectorsStore("sample-vectors", "product", client=s3.client(), dimension=256),
    )
    flow["index_and_query"](searcher, products)
    out = capsys.readouterr().out
    assert "16 Nova calls and 24 vectors to write" in out
    assert "indexed 8, unchanged 0" in out
    assert out.count("  1. ") == 3
    assert s3.vector_count("sample-vectors", "product") == 24
    # the three queries: image (IMAGE_RETRIEVAL), text and text+image (GENERIC_RETRIEVAL)
    purposes = [r["singleEmbeddingParams"]["embeddingPurpose"] for r in bedrock.requests[16:]]
    assert purposes == [
        "IMAGE_RETRIEVAL",
        "GENERIC_RETRIEVAL",
        "GENERIC_RETRIEVAL",
        "GENERIC_RETRIEVAL",
    ]


_CLI_HEADER = """# Command-line reference

Generated from `crossmodal COMMAND --help` by `tests/test_docs.py`, which fails when this page
is stale; regenerate with `UPDATE_DOCS=1 pytest tests/test_docs.py -k cli_reference`.
See [getting-started.md](getting-started.md) for examples.
"""


def _sections(prefix: str, parser: argparse.ArgumentParser) -> list[str]:
    """The help of every command under ``parser`` (nested ones too), in declaration order."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    out = []
    for sub in subs:
        for name, command in sub.choices.items():
            out.append(f"\n## {prefix} {name}\n\n```text\n{command.format_help()}```\n")
            out += _sections(f"{prefix} {name}", command)
    return out


def _cli_reference() -> str:
    return _CLI_HEADER + "".join(_sections("crossmodal", build_parser()))


def test_cli_reference_covers_every_command() -> None:
    page = _cli_reference()
    for name in _COMMANDS:
        assert f"\n## crossmodal {name}\n" in page
    assert "\n## crossmodal store recover\n" in page


def test_cli_reference_is_current(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delenv("CROSSMODAL_STORE", raising=False)
    expected = _cli_reference()
    page = ROOT / "docs" / "cli.md"
    if os.environ.get("UPDATE_DOCS") == "1":
        page.write_text(expected, encoding="utf-8")
    assert page.read_text(encoding="utf-8") == expected, "run UPDATE_DOCS=1 pytest -k cli_reference"
