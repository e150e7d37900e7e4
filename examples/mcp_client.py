"""Drive ``crossmodal mcp`` with the official ``mcp`` client, as an agent would.

Launches the server over stdio (by default ``crossmodal mcp --demo --embedder offline``: the
sample catalog, no AWS account), lists its tools, learns the filter keys, and searches by text,
by photo + text (the photo sent as base64), with a filter, then asks for similar products and
one product with its photo::

    python examples/mcp_client.py
    python examples/mcp_client.py --photo my-photo.jpg -- crossmodal mcp --store local:shop

Needs the ``mcp`` extra: ``pip install 'crossmodal-search[mcp]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult, ImageContent

DEMO_SERVER = [sys.executable, "-m", "crossmodal_search.cli", "mcp", "--demo", "--embedder"]


def show(title: str, answer: CallToolResult) -> list[dict[str, Any]]:
    """Print one line per product found; the products."""
    if answer.is_error:
        raise RuntimeError(answer.content[0].model_dump().get("text", "tool error"))
    results: list[dict[str, Any]] = (answer.structured_content or {}).get("results", [])
    print(f"{title}:")
    for hit in results:
        print(f"  {hit['similarity']:.3f}  {hit['product_id']}  {hit['title']}")
    return results


# --8<-- [start:session]
async def explore(server: StdioServerParameters, photo: Path) -> None:
    async with Client(server) as client:
        tools = await client.list_tools()
        print("tools:", ", ".join(tool.name for tool in tools.tools))

        keys = await client.call_tool("list_filter_keys", {})
        for key in (keys.structured_content or {}).get("keys", [])[:3]:
            print(f"  filter key {key['key']}: {key['examples'][:4]}")

        text = {"text": "red summer dress", "top_k": 3}
        show("text", await client.call_tool("search_products", text))

        photo_b64 = base64.b64encode(photo.read_bytes()).decode()
        both = {"image_base64": photo_b64, "text": "in green", "text_weight": 0.6, "mode": "image"}
        found = show("photo + 'in green'", await client.call_tool("search_products", both))

        shoes = {"text": "sneakers", "filter": {"product_type": "SHOES"}, "top_k": 3}
        show("sneakers, shoes only", await client.call_tool("search_products", shoes))

        like = {"product_id": found[0]["product_id"], "top_k": 3}
        show(f"like {like['product_id']}", await client.call_tool("similar_products", like))

        one = {"product_id": found[0]["product_id"], "include_image": True}
        product = await client.call_tool("get_product", one)
        photos = [block for block in product.content if isinstance(block, ImageContent)]
        print(f"{one['product_id']}: {len(photos)} photo(s), {photos[0].mime_type}")


# --8<-- [end:session]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, help="a query photo (default: a sample one)")
    parser.add_argument("server", nargs="*", help="the server command (default: the demo)")
    args = parser.parse_args(argv)
    command = args.server or [*DEMO_SERVER, "offline"]
    command[0] = shutil.which(command[0]) or command[0]
    with tempfile.TemporaryDirectory() as tmp:
        photo = args.photo
        if photo is None:
            from crossmodal_search.datasets import SAMPLE_QUERIES, write_sample_catalog

            query = next(q for q in SAMPLE_QUERIES if q.name == "image")
            photo = write_sample_catalog(tmp) / str(query.image)  # blue sneakers
        server = StdioServerParameters(command=command[0], args=command[1:])
        asyncio.run(explore(server, photo))


if __name__ == "__main__":
    main()
