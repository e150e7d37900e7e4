"""Photos in and out of the MCP server: query photos from untrusted callers, product thumbnails.

A query photo comes as a path under the image root, as base64 or as an ``s3://`` URI. Files and
base64 go through the web API's checks (``crossmodal_search.web.prepare_query_image``: type from
the bytes, size, declared area, one decode within the memory budget, shrunk); an S3 URI is
checked for shape and handed to the embedder (Bedrock reads it with the server's credentials).
Product photos attached to answers are read only from the image root, checked the same way and
shrunk to a thumbnail.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from mcp_types import ImageContent
from PIL import Image

from crossmodal_search.embeddings import ImageInput, check_s3_uri
from crossmodal_search.errors import InvalidInputError
from crossmodal_search.web import (
    DecodeBudget,
    HTTPProblem,
    ImageRoot,
    QueryImage,
    prepare_query_image,
    read_header,
)

__all__ = [
    "ProductPhotos",
    "QueryPhoto",
    "QueryPhotos",
    "clip",
    "relative_in_root",
    "resolve_in_root",
]

logger = logging.getLogger(__name__)

_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)
_ECHO_CHARS = 64


def clip(value: str, limit: int = _ECHO_CHARS) -> str:
    """``value`` quoted for a message, cut to ``limit`` characters (its length said)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


class _TooLarge(HTTPProblem):
    def __init__(self, message: str) -> None:
        super().__init__(413, "PayloadTooLarge", message)


@dataclass(frozen=True, slots=True)
class QueryPhoto:
    """A checked query photo: what the searcher embeds and the decode memory it may take."""

    image: ImageInput
    decode_bytes: int


class QueryPhotos:
    """Turns a tool's ``image_path``, ``image_base64`` or ``image_uri`` into a checked photo."""

    def __init__(
        self, root: ImageRoot | None, budget: DecodeBudget, *, max_bytes: int, max_pixels: int
    ) -> None:
        self.root = root
        self.budget = budget
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    async def load(self, *, path: str | None, data: str | None, uri: str | None) -> QueryPhoto:
        """The one photo given (the caller checked that exactly one is)."""
        if uri is not None:
            check_s3_uri(uri, what="image_uri")
            return QueryPhoto(uri, 0)
        raw = await self._read(path) if path is not None else self._decode(data or "")
        checked = await prepare_query_image(
            raw, budget=self.budget, max_bytes=self.max_bytes, max_pixels=self.max_pixels
        )
        return QueryPhoto(checked.data, _search_share(checked, self.budget))

    async def _read(self, path: str) -> bytes:
        found = resolve_in_root(self.root, path) if self.root is not None else None
        if self.root is None:
            raise InvalidInputError(
                "this server reads no image files (it was started without --image-root): send "
                "the photo as image_base64"
            )
        if found is None:
            raise InvalidInputError(
                f"image_path {clip(path)} is not an image file under the server's image root "
                "(a path relative to it, or an absolute path inside it; .jpg, .jpeg, .png, "
                ".gif or .webp)"
            )
        size = found.stat().st_size
        if size > self.max_bytes:
            raise _TooLarge(f"the image is {size} bytes; the limit is {self.max_bytes} bytes")
        return await anyio.to_thread.run_sync(found.read_bytes)

    def _decode(self, data: str) -> bytes:
        encoded = _DATA_URL.sub("", data.strip(), count=1)
        limit = 4 * math.ceil(self.max_bytes / 3)
        if len(encoded) > limit:
            raise _TooLarge(
                f"image_base64 is {len(encoded)} characters; the limit is {limit} "
                f"({self.max_bytes} bytes)"
            )
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInputError(f"image_base64 is not valid base64: {exc}") from exc


def _search_share(image: QueryImage, budget: DecodeBudget) -> int:
    # The embedder decodes the (small) image again: the search holds that much of the budget.
    return min(image.decode_bytes, budget.total_bytes)


def resolve_in_root(root: ImageRoot, path: str) -> Path | None:
    """The image file ``path`` names under ``root`` (relative to it, or absolute inside it),
    or ``None``: ``..``, symlinks out of the root and non-image suffixes are refused."""
    if os.path.isabs(path):
        try:
            relative = Path(path).relative_to(root.root).as_posix()
        except ValueError:
            return None
    else:
        relative = path
    return root.resolve(relative)


def relative_in_root(root: ImageRoot | None, image_path: str | None) -> str | None:
    """``image_path`` (as indexed; a relative one is taken relative to the root) as a path
    relative to the image root, when it names an image file inside it; else ``None``."""
    if root is None or not image_path or "://" in image_path:
        return None
    path = Path(image_path)
    if not path.is_absolute():
        path = root.root / path
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(root.root):
        return None
    relative = real.relative_to(root.root).as_posix()
    return relative if root.resolve(relative) is not None else None


class ProductPhotos:
    """Product photos as MCP image content: files under the image root, shrunk to thumbnails."""

    def __init__(
        self,
        root: ImageRoot | None,
        budget: DecodeBudget,
        *,
        side: int,
        max_bytes: int,
        max_pixels: int,
    ) -> None:
        self.root = root
        self.budget = budget
        self.side = side
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    async def thumbnail(self, image_path: str | None) -> ImageContent | None:
        """The product photo at most ``side`` pixels a side, or ``None`` when it is not a
        readable image under the root, or is over ``max_bytes`` or ``max_pixels`` (a product
        without a photo is no error)."""
        relative = relative_in_root(self.root, image_path)
        found = self.root.resolve(relative) if self.root is not None and relative else None
        if found is None:
            return None
        try:
            if found.stat().st_size > self.max_bytes:
                return None
            data = await anyio.to_thread.run_sync(found.read_bytes)
            header = read_header(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
            if header.decode_bytes > self.budget.total_bytes:
                return None
            async with self.budget.reserve(header.decode_bytes):
                mime, small = await anyio.to_thread.run_sync(_shrink, data, self.side)
        except Exception as exc:  # a damaged catalog photo: the answer goes without it
            logger.warning("cannot attach the photo %s: %s", found, exc)
            return None
        return ImageContent(type="image", data=base64.b64encode(small).decode(), mime_type=mime)


def _shrink(data: bytes, side: int) -> tuple[str, bytes]:
    with Image.open(io.BytesIO(data), formats=["JPEG", "PNG", "GIF", "WEBP"]) as image:
        image.draft("RGB", (side, side))
        image.thumbnail((side, side))
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        small = image.convert("RGBA" if has_alpha else "RGB")
    buffer = io.BytesIO()
    if has_alpha:
        small.save(buffer, format="PNG")
        return "image/png", buffer.getvalue()
    small.save(buffer, format="JPEG", quality=85)
    return "image/jpeg", buffer.getvalue()
