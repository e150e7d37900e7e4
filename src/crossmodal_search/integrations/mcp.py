"""An MCP tool server over a :class:`~crossmodal_search.search.CrossmodalSearcher`.

Needs the optional extra ``mcp`` (the official ``mcp`` SDK). ``crossmodal mcp`` runs it over
stdio (or streamable HTTP); in Python::

    from crossmodal_search.integrations.mcp import create_server

    server = create_server(searcher, image_root="catalog/images")
    server.run()  # stdio; server.run("streamable-http", host="127.0.0.1", port=8000)

The tools (docs/mcp.md): ``search_products`` (a text, a photo given as a path under the image
root, as base64 or as an ``s3://`` URI, or both; mode, fusion, weight, top-k, filter),
``similar_products``, ``get_product`` and ``list_filter_keys``. Every tool only reads. Bad input
is answered with a tool error (``isError``) carrying the web API's message; the server keeps
serving.
"""

from __future__ import annotations

import os

from crossmodal_search.errors import ConfigurationError

try:
    from mcp.server.mcpserver import MCPServer
    from mcp_types import ToolAnnotations
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise ConfigurationError(
        "crossmodal_search.integrations.mcp needs the optional 'mcp' extra (the mcp SDK): "
        "pip install 'crossmodal-search[mcp]'"
    ) from exc

from crossmodal_search import __version__
from crossmodal_search.integrations._mcp_images import ProductPhotos, QueryPhotos
from crossmodal_search.integrations._mcp_tools import CatalogTools
from crossmodal_search.search import CrossmodalSearcher
from crossmodal_search.web import (
    DEFAULT_DECODE_MEMORY_BUDGET,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    DecodeBudget,
    ImageRoot,
    S3ImageLinks,
)

__all__ = ["DEFAULT_THUMBNAIL_SIDE", "INSTRUCTIONS", "MCPServer", "create_server"]

#: Longest side of a product photo attached to an answer (``include_images``).
DEFAULT_THUMBNAIL_SIDE = 384

INSTRUCTIONS = """\
Search a product catalog by text, by photo, or both. search_products takes a text and/or one \
photo (image_path under the server's image root, image_base64, or an s3:// image_uri); call \
list_filter_keys first to learn the metadata keys and values a filter may use (for example \
{"color": "green", "price": {"$lt": 50}}). similar_products finds products like one found; \
get_product shows one in full. Pass include_images to see the product photos."""


def create_server(
    searcher: CrossmodalSearcher,
    *,
    image_root: str | os.PathLike[str] | None = None,
    s3_images: S3ImageLinks | None = None,
    max_image_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode_memory_budget: int = DEFAULT_DECODE_MEMORY_BUDGET,
    thumbnail_side: int = DEFAULT_THUMBNAIL_SIDE,
    name: str = "crossmodal-search",
) -> MCPServer:
    """Build the MCP server over a ready searcher (its store already indexed).

    Args:
        searcher: Answers the tools; the server only reads from it.
        image_root: The only directory image files are read from: query photos given as
            ``image_path`` and the product photos attached to answers. ``None``: neither.
        s3_images: Presigned links for product photos indexed as ``s3://`` URIs.
        max_image_bytes: Largest photo accepted (a query photo's file or decoded base64); a
            larger product photo is not attached.
        max_pixels: Largest photo area accepted (decompression-bomb guard).
        decode_memory_budget: Bytes of memory the photos being decoded at once may take (see
            docs/web.md, "Memory"); a photo that alone needs more is refused.
        thumbnail_side: Longest side of an attached product photo, in pixels.
        name: The server's name, as MCP clients show it.

    Raises:
        ConfigurationError: ``image_root`` is not a directory, or a limit is not positive.
    """
    if min(max_image_bytes, max_pixels, decode_memory_budget, thumbnail_side) <= 0:
        raise ConfigurationError(
            "max_image_bytes, max_pixels, decode_memory_budget and thumbnail_side must be positive"
        )
    root = ImageRoot(image_root) if image_root is not None else None
    budget = DecodeBudget(decode_memory_budget)
    tools = CatalogTools(
        searcher=searcher,
        root=root,
        query_photos=QueryPhotos(root, budget, max_bytes=max_image_bytes, max_pixels=max_pixels),
        product_photos=ProductPhotos(
            root, budget, side=thumbnail_side, max_bytes=max_image_bytes, max_pixels=max_pixels
        ),
        s3_images=s3_images,
    )
    server: MCPServer = MCPServer(
        name, version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
    for tool, title in (
        (tools.search_products, "Search products by text and/or photo"),
        (tools.similar_products, "Products like this one"),
        (tools.get_product, "One product"),
        (tools.list_filter_keys, "Filterable metadata keys"),
    ):
        server.add_tool(tool, title=title, annotations=read_only)
    return server
