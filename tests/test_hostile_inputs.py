"""Hostile input through the CLI and the catalog readers: every case gets a typed error (one
line, exit 1 or 2) or is counted and skipped; none gets a traceback. (The JSON API's corpus is
in tests/test_web_hostile.py.)"""

from __future__ import annotations

import gzip
import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from crossmodal_search._types import MetadataValue
from crossmodal_search.cli import main
from crossmodal_search.datasets import load_abo
from crossmodal_search.errors import InvalidInputError
from crossmodal_search.search import (
    Product,
    load_products,
)

OFFLINE = ["--embedder", "offline", "--dimension", "256"]


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(side: int = 12_000) -> bytes:
    """A tiny PNG that declares ``side`` x ``side`` pixels (one compressed all-zero IDAT)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side + 1) * 64)  # only a few rows: the rest is missing
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _line(**fields: object) -> bytes:
    return json.dumps({"product_id": "p", "text": "Blue mug", **fields}).encode()


#: name -> the bytes of one catalog line (a JSON-lines file of one product).
CATALOG_LINES: dict[str, bytes] = {
    "truncated JSON": b'{"product_id": "p", "text": "x"',
    "an array": b"[1, 2, 3]",
    "a string": b'"product"',
    "a number": b"42",
    "null": b"null",
    "no product_id": b'{"text": "Blue mug"}',
    "empty product_id": _line(product_id=""),
    "blank product_id": _line(product_id="   "),
    "numeric product_id": _line(product_id=7),
    "list product_id": _line(product_id=["a"]),
    "2,000-character product_id": _line(product_id="x" * 2000),
    "NUL in product_id": _line(product_id="a\x00b"),
    "numeric text": _line(text=5),
    "object text": _line(text={"en": "mug"}),
    "no text and no image": b'{"product_id": "p"}',
    "metadata a list": _line(metadata=["red"]),
    "metadata a string": _line(metadata="red"),
    "nested metadata value": _line(metadata={"size": {"w": 3}}),
    "NaN metadata": b'{"product_id": "p", "text": "x", "metadata": {"n": NaN}}',
    "Infinity metadata": b'{"product_id": "p", "text": "x", "metadata": {"n": Infinity}}',
    "-Infinity metadata": b'{"product_id": "p", "text": "x", "metadata": {"n": -Infinity}}',
    "NaN in a metadata list": b'{"product_id": "p", "text": "x", "metadata": {"n": [1, NaN]}}',
    "reserved metadata key": _line(metadata={"type": "text"}),
    "5,000-digit integer": b'{"product_id": "p", "text": "x", "metadata": {"n": '
    + b"9" * 5000
    + b"}}",
    "25-digit integer": b'{"product_id": "p", "text": "x", "metadata": {"n": -' + b"1" * 25 + b"}}",
    "100,000-deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "2,000-deep metadata": b'{"product_id": "p", "text": "x", "metadata": {"n": '
    + b"[" * 2000
    + b"]" * 2000
    + b"}}",
    "invalid UTF-8": b'{"product_id": "p", "text": "caf\xe9"}',
    "truncated UTF-8 sequence": b'{"product_id": "p", "text": "\xe2\x82"}',
    "UTF-16": '{"product_id": "p", "text": "x"}'.encode("utf-16"),
    "a 5 MB line": _line(text="y" * (5 * 1024 * 1024)),
    "an unknown field": _line(price=3),
    "video not in S3": _line(video="/tmp/clip.mp4"),
    "61 metadata keys": _line(metadata={f"k{i}": i for i in range(61)}),
    "3 KB filterable metadata": _line(metadata={"blurb": "z" * 3000}),
    "metadata key of 70 characters": _line(metadata={"k" * 70: 1}),
    "empty metadata key": _line(metadata={"": 1}),
}

#: name -> an image the product points at (written next to the catalog).
IMAGES: dict[str, bytes | None] = {
    "a missing image": None,
    "an empty image": b"",
    "a text file as image": b"just some words, not pixels",
    "a truncated PNG": _png(64, 64)[:60],
    "a decompression bomb": _bomb_png(),
    "a JPEG header and nothing else": b"\xff\xd8\xff\xe0\x00\x10JFIF",
}


def _assert_one_clean_error(code: int, err: str) -> None:
    assert code in (1, 2), err
    assert "Traceback" not in err
    assert err.strip(), "a failure must say why"
    assert all(len(line) < 2000 for line in err.splitlines()), "no input echoed back in full"


@pytest.mark.parametrize("name", sorted(CATALOG_LINES))
def test_hostile_catalog_lines_get_one_line_errors(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "products.jsonl"
    catalog.write_bytes(CATALOG_LINES[name] + b"\n")
    code = main(["index", str(catalog), "--store", f"local:{tmp_path / 's'}", *OFFLINE])
    err = capsys.readouterr().err
    _assert_one_clean_error(code, err)
    assert "products.jsonl:1:" in err or "failed p " in err, err


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_hostile_images_fail_their_product_only(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "photo.png"
    if IMAGES[name] is not None:
        image.write_bytes(IMAGES[name])  # type: ignore[arg-type]
    lines = [
        {"product_id": "bad", "text": "Blue mug", "image": "photo.png"},
        {"product_id": "good", "text": "Red lamp"},
    ]
    catalog = tmp_path / "products.jsonl"
    catalog.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    code = main(["index", str(catalog), "--store", f"local:{tmp_path / 's'}", *OFFLINE])
    captured = capsys.readouterr()
    _assert_one_clean_error(code, captured.err)
    assert "failed bad (" in captured.err
    assert "indexed 1 products" in captured.out  # the good one landed


#: CLI arguments -> (exit code, a fragment of the error).
ARGUMENTS: list[tuple[list[str], int, str]] = [
    (["search", "x", "--filter", "{"], 2, "not valid JSON"),
    (["search", "x", "--filter", "[1]"], 2, "must be a JSON object"),
    (["search", "x", "--filter", '{"a": NaN}'], 2, "NaN"),
    (["search", "x", "--filter", "[" * 20_000 + "]" * 20_000], 2, "nested deeper"),
    (["search", "x", "--filter", "[" * 100_000 + "]" * 100_000], 2, "over the limit"),
    (["search", "x", "--filter", '{"n": ' + "9" * 5000 + "}"], 2, "5000 digits"),
    (["search", "x", "--filter", '{"a": {"$regex": "."}}'], 1, "$regex"),
    (["search", "x", "--filter", '{"$and": []}'], 1, "$and"),
    (["search", "x", "--top-k", "0"], 2, "must be >= 1"),
    (["search", "x", "--top-k", "101"], 2, "1..100"),
    (["search", "x", "--top-k", "9" * 5000], 2, "not an integer"),
    (["search", "x", "--text-weight", "nan"], 2, "[0, 1]"),
    (["search", "x", "--text-weight", "2"], 2, "[0, 1]"),
    (["search", "x", "--mode", "smell"], 2, "invalid choice"),
    (["search", "x", "--dimension", "7"], 2, "invalid choice"),
    (["search", "x", "--store", "ftp://shop"], 1, "store spec"),
    (["search", "--image", "/nonexistent/photo.jpg"], 1, "not found"),
    (["search", "   "], 1, "non-empty"),
    (["index", "/nonexistent/catalog.jsonl"], 1, "catalog not found"),
    (["index", "c.jsonl", "--prune", "--limit", "3"], 2, "--prune"),
    (["store", "check", "/nonexistent/dir"], 1, "no local vector store"),
    (["copy", "memory:", "local:x"], 1, "SOURCE must be"),
]


@pytest.mark.parametrize(
    ("argv", "code", "fragment"), ARGUMENTS, ids=[" ".join(a)[:40] for a, _, _ in ARGUMENTS]
)
def test_hostile_arguments_get_one_line_errors(
    argv: list[str],
    code: int,
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "indexed"
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(json.dumps({"product_id": "p", "text": "Blue mug"}) + "\n")
    assert main(["index", str(catalog), "--store", f"local:{store}", *OFFLINE]) == 0
    capsys.readouterr()
    own_store = "--store" in argv or argv[0] in ("store", "copy")
    extra = [] if own_store else ["--store", f"local:{store}"]
    with_embedder = OFFLINE if argv[0] in ("search", "index") and "--dimension" not in argv else []
    try:
        got = main([*argv, *extra, *with_embedder])
    except SystemExit as exc:  # argparse usage errors
        got = int(exc.code or 0)
    err = capsys.readouterr().err
    _assert_one_clean_error(got, err)
    assert got == code, err
    assert fragment in err, err


# ---------------------------------------------------------------- the readers themselves


def _shard(root: Path, lines: list[bytes]) -> None:
    listings = root / "listings" / "metadata"
    listings.mkdir(parents=True, exist_ok=True)
    with gzip.open(listings / "listings_0.json.gz", "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n")


ABO_LINES: dict[str, bytes] = {
    "invalid UTF-8": b'{"item_id": "B1", "item_name": [{"value": "caf\xe9"}]}',
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "5,000-digit integer": b'{"item_id": "B1", "item_weight": ' + b"9" * 5000 + b"}",
    "NaN": b'{"item_id": "B1", "item_weight": NaN}',
    "no item_id": b'{"item_name": [{"value": "Mug"}]}',
    "numeric item_id": b'{"item_id": 7, "item_name": [{"value": "Mug"}]}',
    "item_name not a list": b'{"item_id": "B1", "item_name": "Mug"}',
    "bullet_point of numbers": b'{"item_id": "B1", "bullet_point": [1, 2]}',
    "main_image_id a number": b'{"item_id": "B1", "main_image_id": 5}',
    "an array": b"[1, 2]",
    "truncated": b'{"item_id": "B1", "item_na',
}


@pytest.mark.parametrize("name", sorted(ABO_LINES))
def test_hostile_abo_listings_are_counted_and_skipped(name: str, tmp_path: Path) -> None:
    good = b'{"item_id": "GOOD", "item_name": [{"language_tag": "en_US", "value": "Blue mug"}]}'
    _shard(tmp_path, [ABO_LINES[name], good])
    catalog = load_abo(tmp_path)
    assert [p.product_id for p in catalog.products] == ["GOOD"]
    assert catalog.malformed + catalog.skipped_no_content == 1


def test_unreadable_abo_files_are_clear_errors(tmp_path: Path) -> None:
    listings = tmp_path / "listings" / "metadata"
    listings.mkdir(parents=True)
    (listings / "listings_0.json.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InvalidInputError, match="cannot read gzipped JSON lines"):
        load_abo(tmp_path)
    good = gzip.compress(b'{"item_id": "B1", "item_name": [{"value": "Mug"}]}\n')
    (listings / "listings_0.json.gz").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(InvalidInputError, match="cannot read gzipped JSON lines"):
        load_abo(tmp_path)


def test_a_byte_order_mark_and_crlf_lines_are_read(tmp_path: Path) -> None:
    path = tmp_path / "products.jsonl"
    lines = [json.dumps({"product_id": f"p{i}", "text": "Mug"}) for i in range(3)]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    assert [p.product_id for p in load_products(path)] == ["p0", "p1", "p2"]


def test_nan_metadata_is_refused_when_the_product_is_made() -> None:
    values: list[MetadataValue] = [float("nan"), float("inf"), [1.0, float("-inf")]]
    for value in values:
        with pytest.raises(InvalidInputError, match="NaN or infinity"):
            Product("p", "Mug", metadata={"n": value})
    with pytest.raises(InvalidInputError, match="product_id"):
        Product.model_validate({"text": "Mug"})


# ---------------------------------------------------------------- operators get an answer


def test_index_declares_long_keys_non_filterable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "products.jsonl"
    line = {"product_id": "p", "text": "Blue mug", "metadata": {"blurb": "z" * 3000}}
    catalog.write_text(json.dumps(line) + "\n", encoding="utf-8")
    store = f"local:{tmp_path / 's'}"
    assert main(["index", str(catalog), "--store", store, *OFFLINE]) == 1
    err = capsys.readouterr().err
    assert "--non-filterable blurb" in err  # the error names the option that fixes it
    fixed = f"local:{tmp_path / 'fixed'}"
    argv = ["index", str(catalog), "--store", fixed, *OFFLINE, "--non-filterable", "blurb"]
    assert main(argv) == 0
    capsys.readouterr()
    found = ["search", "blue mug", "--store", fixed, *OFFLINE, "--json"]
    assert main(found) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["metadata"]["blurb"] == "z" * 3000


def test_empty_results_say_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = tmp_path / "products.jsonl"
    lines = [
        {"product_id": "p", "text": "Blue mug", "metadata": {"color": "blue", "brand": "Acme"}},
        {"product_id": "q", "text": "Red lamp", "metadata": {"color": "red"}},
    ]
    catalog.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    store = ["--store", f"local:{tmp_path / 's'}", *OFFLINE]
    assert main(["index", str(catalog), *store]) == 0
    capsys.readouterr()

    assert main(["search", "mug", *store, "--filter", '{"colour": "blue"}']) == 0
    captured = capsys.readouterr()
    assert "(no results)" in captured.out
    assert "no combined vector has metadata key 'colour' (did you mean 'color'?)" in captured.err
    assert "brand, color" in captured.err

    assert main(["search", "mug", *store, "--filter", '{"color": "green"}']) == 0
    assert "no combined vector matches the filter" in capsys.readouterr().err

    assert main(["search", "mug", *store, "--mode", "document"]) == 0
    assert "the store holds no document segments" in capsys.readouterr().err
