"""``crossmodal mcp`` driven by the real ``mcp`` client over stdio, in a subprocess, on a local
store indexed from the sample catalog with the offline embedder."""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp.server.mcpserver", reason="needs the 'mcp' extra (mcp 2)")

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import CallToolResult, ImageContent, TextContent
from PIL import Image

from crossmodal_search.cli import main
from crossmodal_search.datasets import load_abo, write_sample_catalog
from crossmodal_search.embeddings import OfflineEmbedder
from crossmodal_search.search import CrossmodalSearcher
from crossmodal_search.stores import LocalVectorStore
from tests.retriever_helpers import BOTH_QUERY, PHOTO_QUERY
from tests.web_helpers import image_bytes, png_declaring

DIMENSION = 256
TOOLS = {"search_products", "similar_products", "get_product", "list_filter_keys"}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sample catalog and a local store indexed from it: (catalog root, store directory)."""
    root = write_sample_catalog(tmp_path_factory.mktemp("catalog"))
    store_dir = root.parent / "store"
    store = LocalVectorStore(store_dir, dimension=DIMENSION)
    with CrossmodalSearcher(OfflineEmbedder(dimension=DIMENSION), store) as searcher:
        assert not searcher.index(load_abo(root).products).failed
    # A way out of the image root that a path check must not follow.
    (root / "escape.jpg").symlink_to(Path(sys.executable).resolve())
    return root, store_dir


def _server_args(catalog: tuple[Path, Path], *extra: str) -> list[str]:
    root, store_dir = catalog
    return [
        "-m",
        "crossmodal_search.cli",
        "mcp",
        "--store",
        f"local:{store_dir}",
        "--embedder",
        "offline",
        "--dimension",
        str(DIMENSION),
        "--image-root",
        str(root),
        "--max-image-mb",
        "1",
        *extra,
    ]


def run_session(
    catalog: tuple[Path, Path], tmp_path: Path, body: Callable[[Client], Awaitable[None]]
) -> str:
    """Start the server over stdio, run ``body`` with a connected client; the server's stderr."""
    params = StdioServerParameters(
        command=sys.executable, args=_server_args(catalog), env=dict(os.environ)
    )
    errlog = tmp_path / "server-stderr.txt"

    async def session() -> None:
        with errlog.open("w") as err:
            async with Client(stdio_client(params, errlog=err), read_timeout_seconds=60) as client:
                await body(client)

    anyio.run(session)
    return errlog.read_text()


def _text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def _ids(result: CallToolResult) -> list[str]:
    assert not result.is_error, _text(result)
    assert result.structured_content is not None
    return [hit["product_id"] for hit in result.structured_content["results"]]


def test_the_tools_are_listed_with_their_input_schemas(
    catalog: tuple[Path, Path], tmp_path: Path
) -> None:
    listed: dict[str, Any] = {}

    async def body(client: Client) -> None:
        listed.update({t.name: t for t in (await client.list_tools()).tools})

    stderr = run_session(catalog, tmp_path, body)
    assert set(listed) == TOOLS
    search = listed["search_products"].input_schema["properties"]
    assert {"text", "image_path", "image_base64", "image_uri", "mode", "fusion"} <= set(search)
    assert {"text_weight", "top_k", "filter", "include_images"} <= set(search)
    assert search["top_k"]["minimum"] == 1 and search["top_k"]["maximum"] == 100
    assert search["text_weight"]["maximum"] == 1.0
    assert set(search["mode"]["enum"]) >= {"text", "image", "combined", "all"}
    assert search["fusion"]["enum"] == ["mean", "rrf"]
    assert listed["similar_products"].input_schema["required"] == ["product_id"]
    assert listed["get_product"].input_schema["required"] == ["product_id"]
    for tool in listed.values():
        assert tool.description and tool.output_schema is not None
        assert tool.annotations.read_only_hint is True
    assert "results" in listed["search_products"].output_schema["properties"]
    # The store was opened read-only and the image root announced (stdout is the protocol's).
    assert f"local:{catalog[1]}" in stderr and f"images: read from {catalog[0]}" in stderr


def test_each_tool_answers_on_the_sample_catalog(
    catalog: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = catalog
    photo = root / str(PHOTO_QUERY.image)
    answers: dict[str, CallToolResult] = {}

    async def body(client: Client) -> None:
        calls: dict[str, tuple[str, dict[str, Any]]] = {
            "text": ("search_products", {"text": "red summer dress", "top_k": 3}),
            "path": ("search_products", {"image_path": str(PHOTO_QUERY.image), "mode": "image"}),
            "absolute": ("search_products", {"image_path": str(photo), "mode": "image"}),
            "base64": (
                "search_products",
                {"image_base64": base64.b64encode(photo.read_bytes()).decode(), "mode": "image"},
            ),
            "both": (
                "search_products",
                {
                    "text": BOTH_QUERY.text,
                    "image_path": str(BOTH_QUERY.image),
                    "mode": "image",
                    "text_weight": BOTH_QUERY.text_weight,
                },
            ),
            "filtered": (
                "search_products",
                {"text": "sneakers", "filter": {"color": "green", "product_type": "SHOES"}},
            ),
            "nothing": ("search_products", {"text": "sneakers", "filter": {"colour": "green"}}),
            "similar": ("similar_products", {"product_id": "B0SAMPLE21", "top_k": 3}),
            "product": ("get_product", {"product_id": "B0SAMPLE01"}),
            "keys": ("list_filter_keys", {}),
        }
        for name, (tool, arguments) in calls.items():
            answers[name] = await client.call_tool(tool, arguments)

    run_session(catalog, tmp_path, body)
    text = answers["text"]
    assert _ids(text)[0] == "B0SAMPLE01" and len(_ids(text)) == 3
    assert text.structured_content is not None
    first = text.structured_content["results"][0]
    assert "Red Summer Midi Dress" in first["title"]
    assert first["matched_type"] == "combined" and first["matched_by"] == "both"
    assert first["matched_words"] == ["red", "summer", "dress"]  # hybrid search by default
    assert first["image"].startswith("images/") and (root / first["image"]).is_file()
    assert first["metadata"]["brand"] == "Daisy Row" and first["photo_attached"] is False
    assert json.loads(_text(text)) == text.structured_content  # the same, for text-only clients
    assert text.structured_content["query"]["mode"] == "combined"
    for name in ("path", "absolute", "base64"):
        assert _ids(answers[name])[0] == PHOTO_QUERY.expected, name
    assert _ids(answers["both"])[0] == BOTH_QUERY.expected
    assert _ids(answers["filtered"]) == ["B0SAMPLE21"]
    nothing = answers["nothing"].structured_content
    assert nothing is not None and nothing["results"] == []
    assert "colour" in nothing["note"] and "color" in nothing["note"]  # why, and what to use
    similar = _ids(answers["similar"])
    assert "B0SAMPLE21" not in similar and len(similar) == 3
    product = answers["product"].structured_content
    assert product is not None and product["product_id"] == "B0SAMPLE01"
    assert "Sleeveless A-line cut" in product["text"]
    assert set(product["vector_types"]) == {"text", "image", "combined"}
    keys = answers["keys"].structured_content
    assert keys is not None and keys["complete"] is True and keys["sampled_products"] == 38
    by_key = {k["key"]: k for k in keys["keys"]}
    assert {"brand", "color", "product_type"} <= set(by_key)
    assert not {"text", "title", "product_id", "type"} & set(by_key)  # the searcher's own
    assert {"red", "green"} <= set(by_key["color"]["examples"])
    assert by_key["color"]["types"] == ["list of string"]


def _photos(result: CallToolResult) -> list[tuple[str, Image.Image]]:
    """(caption, decoded photo) of each image block of an answer."""
    found: list[tuple[str, Image.Image]] = []
    for caption, block in itertools.pairwise(result.content):
        if isinstance(block, ImageContent):
            assert isinstance(caption, TextContent)
            image = Image.open(io.BytesIO(base64.b64decode(block.data)))
            assert block.mime_type == f"image/{image.format.lower()}"  # type: ignore[union-attr]
            found.append((caption.text, image))
    return found


def test_product_photos_come_as_image_content_when_asked(
    catalog: tuple[Path, Path], tmp_path: Path
) -> None:
    answers: dict[str, CallToolResult] = {}

    async def body(client: Client) -> None:
        search = {"text": "red summer dress", "top_k": 3}
        answers["without"] = await client.call_tool("search_products", search)
        answers["with"] = await client.call_tool(
            "search_products", {**search, "include_images": True}
        )
        answers["product"] = await client.call_tool(
            "get_product", {"product_id": "B0SAMPLE22", "include_image": True}
        )

    run_session(catalog, tmp_path, body)
    assert _photos(answers["without"]) == []
    photos = _photos(answers["with"])
    ids = _ids(answers["with"])
    assert [caption.split(":")[0] for caption, _ in photos] == ids
    for _, image in photos:
        assert max(image.size) <= 384 and image.format == "JPEG"
    assert answers["with"].structured_content is not None
    assert all(h["photo_attached"] for h in answers["with"].structured_content["results"])
    red = photos[0][1].convert("RGB").resize((1, 1)).getpixel((0, 0))
    assert isinstance(red, tuple) and red[0] > red[1] and red[0] > red[2]  # the red dress
    product = _photos(answers["product"])
    assert len(product) == 1 and '"product_id": "B0SAMPLE22"' in product[0][0]


def test_bad_inputs_are_tool_errors_and_the_server_keeps_serving(
    catalog: tuple[Path, Path], tmp_path: Path
) -> None:
    big = base64.b64encode(os.urandom(1024 * 1024 + 10)).decode()
    jpeg = image_bytes("JPEG", (64, 64))
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("search_products", {}, "give a text, a photo, or both"),
        ("search_products", {"text": "x" * 8193}, "at most 8192 characters"),
        ("search_products", {"text": "red", "top_k": 0}, "greater than or equal to 1"),
        ("search_products", {"text": "red", "top_k": 101}, "less than or equal to 100"),
        ("search_products", {"text": "red", "top_k": "ten"}, "valid integer"),
        ("search_products", {"text": "red", "text_weight": 1.5}, "less than or equal to 1"),
        ("search_products", {"text": "red", "mode": "photo"}, "'combined'"),
        ("search_products", {"text": "red", "fusion": "max"}, "'mean' or 'rrf'"),
        ("search_products", {"text": "red", "filter": {"c": {"$regex": "r"}}}, "'$regex'"),
        ("search_products", {"text": "red", "filter": "red"}, "valid dictionary"),
        ("search_products", {"text": "r", "filter": {"c": ["x" * 64] * 300}}, "at most 16384"),
        ("search_products", {"image_path": "../../etc/passwd"}, "not an image file under"),
        ("search_products", {"image_path": "/etc/hostname"}, "not an image file under"),
        ("search_products", {"image_path": "escape.jpg"}, "not an image file under"),
        ("search_products", {"image_path": "images/../../store"}, "not an image file under"),
        ("search_products", {"image_path": "missing.jpg"}, "not an image file under"),
        ("search_products", {"image_base64": "not base64!"}, "not valid base64"),
        ("search_products", {"image_base64": _b64(b"hello world")}, "UnsupportedMediaType"),
        ("search_products", {"image_base64": _b64(png_declaring(20000, 20000))}, "pixels"),
        ("search_products", {"image_base64": _b64(jpeg[: len(jpeg) // 2])}, "corrupt"),
        ("search_products", {"image_base64": big}, "PayloadTooLarge"),
        ("search_products", {"image_path": "a.jpg", "image_uri": "s3://b/a.jpg"}, "one photo"),
        ("search_products", {"image_uri": "https://example.com/a.jpg"}, "s3://bucket/key"),
        ("search_products", {"image_uri": "s3://catalog-bucket/a.jpg"}, "local images only"),
        ("similar_products", {"product_id": "NOPE"}, "ProductNotFoundError: no product 'NOPE'"),
        ("similar_products", {"product_id": "B0SAMPLE01", "top_k": -1}, "greater than"),
        ("get_product", {"product_id": "NOPE"}, "no product 'NOPE' in the catalog"),
        ("get_product", {"product_id": ""}, "at least 1 character"),
        ("get_product", {"product_id": "x" * 5000}, "at most 1024 characters"),
        ("no_such_tool", {}, "no_such_tool"),
    ]
    answers: list[CallToolResult] = []
    after: list[CallToolResult] = []

    async def body(client: Client) -> None:
        for tool, arguments, _ in bad:
            answers.append(await client.call_tool(tool, arguments))
        after.append(await client.call_tool("search_products", {"text": "red summer dress"}))

    stderr = run_session(catalog, tmp_path, body)
    assert len(bad) >= 15
    for (tool, arguments, expected), answer in zip(bad, answers, strict=True):
        message = _text(answer)
        assert answer.is_error, (tool, arguments)
        assert expected in message, (expected, message)
        assert len(message) < 1500  # a huge input is never echoed whole
    assert _ids(after[0])[0] == "B0SAMPLE01"  # still serving
    assert "Traceback" not in stderr


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_streamable_http_binds_loopback_and_answers(catalog: tuple[Path, Path]) -> None:
    args = [sys.executable, *_server_args(catalog, "--transport", "streamable-http", "--port", "0")]
    with subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=dict(os.environ)) as proc:
        try:
            assert proc.stderr is not None
            url = ""
            for line in proc.stderr:
                if found := re.search(r"MCP server on (http://\S+/mcp)", line):
                    url = found.group(1)
                    break
            assert url.startswith("http://127.0.0.1:"), url
            ids: list[str] = []

            async def call() -> None:
                async with Client(url, read_timeout_seconds=60) as client:
                    ids.extend(_ids(await client.call_tool("search_products", {"text": "mug"})))

            anyio.run(call)
            assert ids and ids[0].startswith("B0SAMPLE")
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def test_a_missing_store_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["mcp", "--store", f"local:{tmp_path / 'none'}", "--embedder", "offline"])
    assert code == 1
    assert "no index at" in capsys.readouterr().err


def test_the_client_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    example = runpy.run_path(str(Path(__file__).parent.parent / "examples" / "mcp_client.py"))
    example["main"]([])
    out = capsys.readouterr().out
    assert "tools: search_products, similar_products, get_product, list_filter_keys" in out
    sections: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.endswith(":"):
            title = line[:-1]
            sections[title] = []
        elif found := re.match(r"  \S+  (B0SAMPLE\d+)  ", line):
            sections[title].append(found.group(1))
    assert sections["text"][0] == "B0SAMPLE01"
    assert sections["photo + 'in green'"][0] == "B0SAMPLE21"  # the photographed shoe, in green
    shoes = {f"B0SAMPLE{n}" for n in range(19, 25)}
    assert sections["sneakers, shoes only"] and set(sections["sneakers, shoes only"]) <= shoes
    assert "B0SAMPLE21" not in sections["like B0SAMPLE21"]
    assert "B0SAMPLE21: 1 photo(s), image/jpeg" in out


def test_a_server_without_an_image_root_reads_no_files(tmp_path: Path) -> None:
    # In process: the same client, connected to the server object itself.
    from crossmodal_search.integrations.mcp import create_server

    root = write_sample_catalog(tmp_path)
    searcher = CrossmodalSearcher(
        OfflineEmbedder(dimension=DIMENSION), LocalVectorStore(dimension=DIMENSION)
    )
    searcher.index(load_abo(root).products)
    answers: list[CallToolResult] = []

    async def body() -> None:
        async with Client(create_server(searcher)) as client:
            answers.append(
                await client.call_tool("search_products", {"image_path": str(PHOTO_QUERY.image)})
            )
            answers.append(
                await client.call_tool("search_products", {"text": "red", "include_images": True})
            )

    with searcher:
        anyio.run(body)
    refused, found = answers
    assert refused.is_error and "started without --image-root" in _text(refused)
    assert found.structured_content is not None and _photos(found) == []
    for hit in found.structured_content["results"]:
        # The photo is a file on the server's disk: neither named nor attached.
        assert hit["image"] is None and hit["photo_attached"] is False


def test_bad_server_settings_are_configuration_errors(tmp_path: Path) -> None:
    from crossmodal_search.errors import ConfigurationError
    from crossmodal_search.integrations.mcp import create_server

    searcher = CrossmodalSearcher(
        OfflineEmbedder(dimension=DIMENSION), LocalVectorStore(dimension=DIMENSION)
    )
    with pytest.raises(ConfigurationError, match="not a directory"):
        create_server(searcher, image_root=tmp_path / "missing")
    with pytest.raises(ConfigurationError, match="must be positive"):
        create_server(searcher, max_image_bytes=0)
