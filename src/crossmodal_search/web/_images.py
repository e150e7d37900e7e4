"""Query images: checked from their bytes, decoded once within a memory budget, and shrunk.

An upload is handled in two steps. :func:`read_header` parses only the header (type, declared
size, JPEG draft scale) and estimates how much memory decoding will take; the caller reserves that
much of a :class:`DecodeBudget` before :func:`shrink_image` decodes the pixels, shrinks them to at
most :data:`QUERY_IMAGE_MAX_SIDE` a side and re-encodes them. The search then gets those small
bytes, so nothing decodes the original again.

Memory per format (Pillow stores RGB and RGBA at 4 bytes a pixel, L and P at 1): JPEGs decode at
a reduced scale (``draft``), except that a progressive JPEG keeps all its DCT coefficients (2
bytes per sample at full size); PNG and GIF decode at full size; WebP takes about four full-size
RGBA copies (libwebp's animation decoder keeps two canvases, Pillow two more). Shrinking works in
strips of rows, so it never holds a second full-size copy.
"""

from __future__ import annotations

import functools
import io
import math
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import anyio
import anyio.to_thread
from PIL import Image, UnidentifiedImageError

from crossmodal_search.errors import UnsupportedMediaError
from crossmodal_search.web._limits import PayloadTooLarge, UnsupportedImageType

#: Pillow format name -> MIME type, for the formats Nova Multimodal Embeddings accepts.
ACCEPTED_IMAGE_FORMATS: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}

#: Longest side of the image a search embeds. Nova documents no pixel limit; the offline embedder
#: looks at 128 px. 2048 px is what the page itself shrinks large photos to before uploading, and
#: keeps every detail a product photo query needs. Bigger uploads are reduced by a whole factor
#: (box filter), so the side sent is between half of this and this.
QUERY_IMAGE_MAX_SIDE = 2048

#: Rows decoded pixels are shrunk in at a time (times the reduction factor).
_STRIP_ROWS = 64
#: Pillow's bytes per pixel for the modes an accepted image decodes to (anything else: 4).
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_GRAY_MODES = frozenset({"1", "L", "I;16", "I;16B", "I;16L", "I", "F"})
#: EXIF orientation -> the transposition that shows the image upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What an upload's header says, and what decoding it will take."""

    format: str
    width: int
    height: int
    #: The size the pixels decode at (smaller than declared for a JPEG decoded in draft mode).
    draft: tuple[int, int] | None
    #: Estimated peak memory of :func:`shrink_image`, in bytes.
    decode_bytes: int

    @property
    def mime_type(self) -> str:
        """The MIME type of the upload."""
        return ACCEPTED_IMAGE_FORMATS[self.format]


@dataclass(frozen=True, slots=True)
class QueryImage:
    """The image a search embeds: at most :data:`QUERY_IMAGE_MAX_SIDE` a side, upright."""

    data: bytes
    format: str
    width: int
    height: int

    @property
    def decode_bytes(self) -> int:
        """Memory an embedder may take to decode and prepare ``data``.

        Nova's preparation decodes it (4 bytes a pixel) and holds its base64 form and the
        request body. The offline embedder decodes a JPEG at 1/8 scale, but a PNG, GIF or WebP
        in full and then makes two working copies (measured: about 10 bytes a pixel).
        """
        copies = 1 if self.format == "JPEG" else 3
        return copies * 4 * self.width * self.height + 3 * len(self.data)


def read_header(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageHeader:
    """Check the upload's size, type and declared area from its header, decoding no pixels.

    The type comes from the bytes (Pillow's format detection), never from a file name or a
    declared content type, so a small file declaring huge dimensions (a decompression bomb) is
    refused before anything is decoded.

    Raises:
        PayloadTooLarge: over ``max_bytes`` or ``max_pixels`` (413).
        UnsupportedImageType: not a JPEG, PNG, GIF or WebP image (415).
        UnsupportedMediaError: an accepted type whose header is corrupt (422).
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the image is {len(data)} bytes; the limit is {max_bytes} bytes")
    with _opened(data) as image:
        width, height = image.size
        if width * height > max_pixels:
            raise PayloadTooLarge(
                f"the image is {width}x{height} = {width * height} pixels; "
                f"the limit is {max_pixels} pixels"
            )
        coefficients = _jpeg_coefficient_bytes(image)
        draft = _draft(image)
        return ImageHeader(
            format=_format(image),
            width=width,
            height=height,
            draft=draft,
            decode_bytes=_decode_bytes(image, coefficients),
        )


def shrink_image(data: bytes, header: ImageHeader) -> QueryImage:
    """Decode ``data`` once and return it upright, at most :data:`QUERY_IMAGE_MAX_SIDE` a side.

    An upload already small enough, upright and in a plain colour mode is returned unchanged
    (after a full decode proved it whole); anything else is re-encoded, as PNG when it has
    transparency and as JPEG otherwise.

    Raises:
        UnsupportedMediaError: the pixels do not decode (corrupt or truncated; 422).
    """
    with _opened(data) as image:
        if header.draft is not None:
            image.draft(None, header.draft)
        _load(image)
        orientation = _orientation(image)
        factor = math.ceil(max(image.size) / QUERY_IMAGE_MAX_SIDE)
        plain = image.mode in ("RGB", "L", "RGBA", "LA", "P") and header.format != "MPO"
        if factor <= 1 and orientation == 1 and plain and header.draft is None:
            return QueryImage(data, header.format, *image.size)
        small = _reduce(image, factor)
    small = small.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else small
    return _encode(small)


async def prepare_query_image(
    data: bytes, *, budget: DecodeBudget, max_bytes: int, max_pixels: int
) -> QueryImage:
    """``data`` checked from its header, then decoded once within ``budget`` and shrunk.

    The header is parsed and the pixels decoded on worker threads; the decode waits for its
    share of ``budget``. This is what ``POST /api/search`` does with an upload, for any server
    that takes query photos from untrusted callers (the MCP tool server too).

    Raises:
        PayloadTooLarge: over ``max_bytes`` or ``max_pixels``, or decoding alone needs more
            than the whole budget.
        UnsupportedImageType: not a JPEG, PNG, GIF or WebP image.
        UnsupportedMediaError: a corrupt or truncated image.
    """
    header = await anyio.to_thread.run_sync(
        functools.partial(read_header, data, max_bytes=max_bytes, max_pixels=max_pixels)
    )
    if header.decode_bytes > budget.total_bytes:
        raise PayloadTooLarge(
            f"decoding this {header.width}x{header.height} {header.format} image takes about "
            f"{_mib(header.decode_bytes)} MiB; this server decodes at most "
            f"{_mib(budget.total_bytes)} MiB of images at once: send a smaller image"
        )
    async with budget.reserve(header.decode_bytes):
        return await anyio.to_thread.run_sync(shrink_image, data, header)


def _mib(nbytes: int) -> int:
    return max(1, round(nbytes / (1024 * 1024)))


@contextmanager
def _opened(data: bytes) -> Iterator[Image.Image]:
    """``Image.open`` on untrusted bytes, with every failure mapped to a typed refusal."""
    if not data:
        raise UnsupportedMediaError("the uploaded image is empty")
    accepted = ", ".join(sorted(ACCEPTED_IMAGE_FORMATS))
    try:
        # ``formats=`` keeps Pillow from trying its other (rarely used, larger attack surface)
        # decoders on untrusted bytes.
        image = Image.open(io.BytesIO(data), formats=list(ACCEPTED_IMAGE_FORMATS))
    except UnidentifiedImageError as exc:
        raise UnsupportedImageType(
            f"the upload is not an image of an accepted type ({accepted})"
        ) from exc
    except Exception as exc:
        raise _refusal(exc) from exc
    with image:
        yield image


def _load(image: Image.Image) -> None:
    try:
        image.load()
    except Exception as exc:
        raise _refusal(exc) from exc


def _refusal(exc: Exception) -> PayloadTooLarge | UnsupportedMediaError:
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        # Pillow's own global guard fired first (only for sizes above our default limit).
        return PayloadTooLarge(f"the image declares too many pixels: {exc}")
    # Pillow's parsers and decoders fail on damaged data with OSError, ValueError, SyntaxError,
    # EOFError, struct.error, IndexError, ...: all mean the same to the shopper.
    return UnsupportedMediaError(f"the image is corrupt or truncated: {exc}")


def _format(image: Image.Image) -> str:
    # A multi-picture JPEG (cameras' MPO) is opened by the JPEG plugin: its first picture is a
    # plain JPEG.
    return "JPEG" if image.format == "MPO" else str(image.format)


def _draft(image: Image.Image) -> tuple[int, int] | None:
    """The size a JPEG may decode at: the smallest 1/2, 1/4 or 1/8 scale whose longest side
    is still at least half of QUERY_IMAGE_MAX_SIDE (libjpeg scales while decoding, so a phone
    photo of 4032 x 3024 decodes straight to 2016 x 1512)."""
    if image.format not in ("JPEG", "MPO"):
        return None
    width, height = image.size
    side = max(width, height)
    if side <= QUERY_IMAGE_MAX_SIDE:
        return None
    half = QUERY_IMAGE_MAX_SIDE // 2
    request = (max(1, math.ceil(width * half / side)), max(1, math.ceil(height * half / side)))
    if image.draft(None, request) is None or image.size == (width, height):
        return None
    return request


def _jpeg_coefficient_bytes(image: Image.Image) -> int:
    """A progressive JPEG's DCT coefficient buffer: 2 bytes per sample of every component."""
    if image.format not in ("JPEG", "MPO") or not image.info.get("progressive"):
        return 0
    width, height = image.size
    # Pillow's JPEG plugin lists each component's (id, h, v, table) sampling factors.
    layers: list[tuple[object, int, int, int]] = getattr(image, "layer", None) or []
    sampling = [(int(h), int(v)) for _, h, v, _ in layers] or [(1, 1)] * len(image.getbands())
    h_max = max(h for h, _ in sampling) or 1
    v_max = max(v for _, v in sampling) or 1
    samples = sum(math.ceil(width * h / h_max) * math.ceil(height * v / v_max) for h, v in sampling)
    return 2 * samples


def _decode_bytes(image: Image.Image, coefficients: int) -> int:
    """Peak memory of :func:`shrink_image` for ``image`` (opened, draft applied)."""
    width, height = image.size
    decoded = width * height * _BYTES_PER_PIXEL.get(image.mode, 4)
    if image.format == "WEBP":
        decoded *= 4
    factor = max(1, math.ceil(max(width, height) / QUERY_IMAGE_MAX_SIDE))
    small = math.ceil(width / factor) * math.ceil(height / factor) * 4
    # Reducing: a strip cropped, converted and premultiplied at a time, into the small image.
    reducing = 3 * width * _STRIP_ROWS * factor * 4 + small if factor > 1 else 0
    # Then its upright (or converted) copy and the encoder's output.
    return decoded + coefficients + reducing + 2 * small


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF must not make an otherwise fine image unusable
        return 1
    return value if isinstance(value, int) else 1


def _work_mode(image: Image.Image) -> str:
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return "RGBA"
    return "L" if image.mode in _GRAY_MODES else "RGB"


def _convert(strip: Image.Image, mode: str) -> Image.Image:
    if strip.mode == mode:
        return strip
    if mode == "L" and strip.mode not in ("1", "L"):
        # 16-bit and 32-bit grey: scale to 8 bits (a plain conversion would clip at 255).
        return strip.convert("I").point(lambda v: v / 257).convert("L")
    return strip.convert(mode)


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    """``image`` reduced ``factor`` times (box filter), a strip of rows at a time.

    Pillow's ``reduce`` on RGBA first makes a premultiplied copy of the whole image; strips keep
    that copy (and any mode conversion) a few rows tall.
    """
    mode = _work_mode(image)
    if factor <= 1:
        return _convert(image, mode)
    width, height = image.size
    out = Image.new(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    rows = factor * _STRIP_ROWS
    for top in range(0, height, rows):
        strip = _convert(image.crop((0, top, width, min(height, top + rows))), mode)
        out.paste(strip.reduce(factor), (0, top // factor))
    return out


def _encode(image: Image.Image) -> QueryImage:
    buffer = io.BytesIO()
    if image.mode == "RGBA":
        image.save(buffer, format="PNG", compress_level=3)
        fmt = "PNG"
    else:
        image.save(buffer, format="JPEG", quality=92)
        fmt = "JPEG"
    return QueryImage(buffer.getvalue(), fmt, *image.size)


class DecodeBudget:
    """Bytes of image decoding allowed in flight at once, granted first come, first served.

    Each upload reserves its estimated decode memory before decoding and gives it back after;
    an upload that does not fit waits until enough earlier ones finish. Lives in one event loop.
    """

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes
        self._free = total_bytes
        self._waiting: deque[_Waiter] = deque()

    @property
    def free_bytes(self) -> int:
        """Bytes not reserved at the moment."""
        return self._free

    @asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[None]:
        """Hold ``nbytes`` (at most ``total_bytes``) of the budget for the ``async with`` body."""
        if not 0 <= nbytes <= self.total_bytes:
            raise ValueError(f"cannot reserve {nbytes} bytes of {self.total_bytes}")
        if self._waiting or self._free < nbytes:
            waiter = _Waiter(nbytes, anyio.Event())
            self._waiting.append(waiter)
            try:
                await waiter.granted.wait()
            except BaseException:
                if waiter.granted.is_set():
                    self._release(nbytes)  # granted just as it was cancelled
                else:
                    self._waiting.remove(waiter)
                    self._release(0)  # it may have blocked smaller requests behind it
                raise
        else:
            self._free -= nbytes
        try:
            yield
        finally:
            self._release(nbytes)

    def _release(self, nbytes: int) -> None:
        self._free += nbytes
        while self._waiting and self._waiting[0].nbytes <= self._free:
            waiter = self._waiting.popleft()
            self._free -= waiter.nbytes
            waiter.granted.set()


@dataclass(eq=False, slots=True)
class _Waiter:
    nbytes: int
    granted: anyio.Event
