"""Input normalisation for images, documents, audio and video before they reach Nova.

Everything here runs locally and raises :class:`~crossmodal_search.errors.InvalidInputError` or
:class:`~crossmodal_search.errors.UnsupportedMediaError` *before* any network call.

Images: the ``format`` field Nova needs is detected from the bytes with Pillow, never from the
file name. png/jpeg/gif/webp are sent unchanged; any other format Pillow reads (bmp, tiff, ico,
...) is converted (PNG when it has transparency, JPEG otherwise). A non-trivial EXIF orientation
is applied (the pixels are rotated and re-encoded). Images whose base64 form would exceed the
inline limit (25 MB) are downscaled until they fit.

Audio and video: the container is detected from its magic bytes (or an explicit ``format=``
when detection is impossible). Nova's synchronous API accepts clips of at most 30 seconds; that
limit is enforced by the service. Locally we check the inline size limit and, for WAV (whose
header states the duration), the 30 s limit. Other containers need a demuxer to measure, which
this package does not depend on, so a long mp3/mp4 is rejected by Bedrock with a
``ServiceValidationError`` instead.

Sources can also be objects in S3 (``s3://bucket/key`` or :class:`S3Source` with a bucket owner),
which Nova reads itself; for those the format cannot be sniffed without downloading, so it is
taken from ``format=`` or else from the key's extension.
"""

from __future__ import annotations

import base64
import io
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias, get_args

from crossmodal_search.errors import InvalidInputError, UnsupportedMediaError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "AUDIO_FORMATS",
    "IMAGE_FORMATS",
    "INLINE_LIMIT_BYTES",
    "SYNC_MAX_SECONDS",
    "VIDEO_FORMATS",
    "AudioFormat",
    "ImageFormat",
    "MediaInput",
    "PreparedMedia",
    "S3Source",
    "VideoFormat",
    "base64_size",
    "is_s3_uri",
    "load_pil_image",
    "prepare_audio",
    "prepare_image",
    "prepare_video",
    "read_path",
    "s3_or_none",
]

ImageFormat: TypeAlias = Literal["png", "jpeg", "gif", "webp"]
AudioFormat: TypeAlias = Literal["mp3", "wav", "ogg"]
VideoFormat: TypeAlias = Literal["mp4", "mov", "mkv", "webm", "flv", "mpeg", "mpg", "wmv", "3gp"]
MediaKind: TypeAlias = Literal["image", "audio", "video"]

IMAGE_FORMATS: tuple[str, ...] = get_args(ImageFormat)
AUDIO_FORMATS: tuple[str, ...] = get_args(AudioFormat)
VIDEO_FORMATS: tuple[str, ...] = get_args(VideoFormat)

#: Nova's synchronous inline limit for any media: 25 MB *after* base64 encoding.
INLINE_LIMIT_BYTES = 25_000_000
#: Longest audio/video clip the synchronous API embeds (service-enforced).
SYNC_MAX_SECONDS = 30.0

_S3_URI = re.compile(r"^s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?$")
_ACCOUNT_ID = re.compile(r"^[0-9]{12}$")


def is_s3_uri(value: object) -> bool:
    """True for a string Bedrock accepts as an ``s3Uri`` (``s3://bucket/key``, <= 1024 chars)."""
    return isinstance(value, str) and bool(_S3_URI.match(value)) and len(value) <= 1024


@dataclass(frozen=True)
class S3Source:
    """An object in Amazon S3 that Bedrock reads itself.

    Args:
        uri: ``s3://bucket/key``.
        bucket_owner: the 12-digit account id owning the bucket, when it is not the caller's.

    Example:
        >>> S3Source("s3://my-bucket/images/1.jpg", bucket_owner="123456789012").to_source()
        {'s3Location': {'uri': 's3://my-bucket/images/1.jpg', 'bucketOwner': '123456789012'}}
    """

    uri: str
    bucket_owner: str | None = None

    def __post_init__(self) -> None:
        if not is_s3_uri(self.uri):
            raise InvalidInputError(
                f"not a valid S3 URI: {self.uri!r} (expected s3://bucket/key, at most 1024 chars)"
            )
        if self.bucket_owner is not None and not _ACCOUNT_ID.match(str(self.bucket_owner)):
            raise InvalidInputError(
                f"bucket_owner must be a 12-digit AWS account id, got {self.bucket_owner!r}"
            )

    @property
    def key(self) -> str:
        """The object key (everything after the bucket name)."""
        _, _, rest = self.uri[len("s3://") :].partition("/")
        return rest

    def to_source(self) -> dict[str, object]:
        """The Nova ``SourceObject`` for this location."""
        loc: dict[str, str] = {"uri": self.uri}
        if self.bucket_owner is not None:
            loc["bucketOwner"] = self.bucket_owner
        return {"s3Location": loc}


#: Any media input: raw bytes, a local path, an ``s3://`` URI string, or an :class:`S3Source`.
MediaInput: TypeAlias = "bytes | str | os.PathLike[str] | S3Source"


@dataclass(frozen=True)
class PreparedMedia:
    """Media ready for a Nova request: the detected ``format`` and either inline bytes or S3.

    Attributes:
        kind: ``"image"``, ``"audio"`` or ``"video"``.
        format: the Nova ``format`` value (e.g. ``"png"``, ``"mp3"``, ``"mp4"``).
        data: the bytes to send inline, or ``None`` for an S3 source.
        s3: the S3 location, or ``None`` for inline bytes.
        converted: True when the bytes differ from the input (format change, rotation, downscale).
    """

    kind: MediaKind
    format: str
    data: bytes | None = None
    s3: S3Source | None = None
    converted: bool = False

    def source(self) -> dict[str, object]:
        """The Nova ``SourceObject``: ``{"bytes": base64}`` or ``{"s3Location": ...}``."""
        if self.s3 is not None:
            return self.s3.to_source()
        assert self.data is not None
        return {"bytes": base64.b64encode(self.data).decode("ascii")}

    def content_id(self) -> bytes:
        """Bytes that identify the content (inline bytes, or the S3 location)."""
        if self.data is not None:
            return self.data
        assert self.s3 is not None
        return f"{self.s3.uri}\n{self.s3.bucket_owner or ''}".encode()


def base64_size(n: int) -> int:
    """Length of the base64 encoding of ``n`` bytes."""
    return 4 * ((n + 2) // 3)


def read_path(path: str | os.PathLike[str], what: str) -> bytes:
    p = Path(path)
    try:
        data = p.read_bytes()
    # UnsupportedMediaError, as CrossmodalSearcher.search raises for a missing query image.
    except FileNotFoundError:
        raise UnsupportedMediaError(f"{what} file not found: {str(p)!r}") from None
    except IsADirectoryError:
        raise UnsupportedMediaError(f"{what} path is a directory, not a file: {str(p)!r}") from None
    except OSError as exc:
        raise UnsupportedMediaError(f"cannot read {what} file {str(p)!r}: {exc}") from exc
    if not data:
        raise UnsupportedMediaError(f"{what} file is empty: {str(p)!r}")
    return data


def s3_or_none(value: object) -> S3Source | None:
    if isinstance(value, S3Source):
        return value
    if isinstance(value, str) and value.startswith("s3://"):
        return S3Source(value)
    return None


def _ext(key: str) -> str:
    return key.rsplit(".", 1)[-1].lower() if "." in key.rsplit("/", 1)[-1] else ""


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------

_PIL_TO_NOVA = {"PNG": "png", "JPEG": "jpeg", "GIF": "gif", "WEBP": "webp", "MPO": "jpeg"}
_EXT_TO_IMAGE = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "gif": "gif", "webp": "webp"}
_EXIF_ORIENTATION = 0x0112


def _open_image(data: bytes, label: str, draft: tuple[int, int] | None = None) -> Image.Image:
    """Open and fully decode ``data``; every Pillow failure becomes UnsupportedMediaError."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UnsupportedMediaError(f"{label}: zero-length image data")
    try:
        img = Image.open(io.BytesIO(data))
        # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; we refuse both. (The
        # check is ours rather than a warnings filter, which would not be thread-safe.)
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and img.size[0] * img.size[1] > limit:
            raise Image.DecompressionBombError(
                f"{img.size[0]}x{img.size[1]} pixels is over Pillow's limit of {limit}"
            )
        if draft is not None and img.format in ("JPEG", "MPO"):
            img.draft("RGB", draft)  # decode JPEGs at a reduced scale when that is all we need
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnsupportedMediaError(
            f"{label}: image refused as a possible decompression bomb: {exc}"
        ) from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaError(
            f"{label}: not an image format Pillow can read ({len(data)} bytes, "
            f"starts with {data[:8]!r})"
        ) from exc
    except Exception as exc:
        # Pillow's decoders fail on damaged input with OSError, ValueError, SyntaxError,
        # struct.error, IndexError, ... and, under a strict warnings filter, with the warnings
        # they emit (corrupt EXIF, truncated tags). All mean the same thing to the caller.
        raise UnsupportedMediaError(f"{label}: corrupt or truncated image: {exc}") from exc
    return img


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )


def _encode(img: Image.Image, fmt: str) -> bytes:
    """Encode ``img`` as Nova format ``fmt`` (png/jpeg/webp), converting the mode as needed."""
    buf = io.BytesIO()
    if fmt == "jpeg":
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        img.save(buf, format="JPEG", quality=92)
    elif fmt == "webp":
        img.save(buf, format="WEBP", quality=92)
    else:
        if img.mode not in ("RGB", "RGBA", "L", "LA", "P", "1", "I", "I;16"):
            img = img.convert("RGBA" if _has_alpha(img) else "RGB")
        img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _target_format(img: Image.Image, source_format: str | None) -> str:
    """The format to re-encode into: keep png/jpeg/webp, else PNG with alpha, else JPEG."""
    if source_format in ("png", "jpeg", "webp"):
        return source_format
    return "png" if _has_alpha(img) else "jpeg"


def _downscale_to_fit(
    img: Image.Image, fmt: str, max_inline_bytes: int, label: str
) -> tuple[bytes, str]:
    """Shrink ``img`` until its base64 fits ``max_inline_bytes``."""
    from PIL import Image

    if fmt == "gif":  # re-encoding an animation frame by frame is not worth it; first frame only
        fmt = "png" if _has_alpha(img) else "jpeg"
    data = _encode(img, fmt)
    w, h = img.size
    for _ in range(12):
        size = base64_size(len(data))
        if size <= max_inline_bytes:
            return data, fmt
        scale = max(0.1, min(0.9, (max_inline_bytes / size) ** 0.5 * 0.95))
        w, h = max(1, int(w * scale)), max(1, int(h * scale))
        if w < 8 and h < 8:
            break
        data = _encode(img.resize((w, h), Image.Resampling.LANCZOS), fmt)
    if base64_size(len(data)) <= max_inline_bytes:
        return data, fmt
    raise UnsupportedMediaError(
        f"{label}: cannot downscale the image below the inline limit of {max_inline_bytes} "
        "bytes (base64); upload it to S3 and pass an s3:// URI instead"
    )


def _exif_orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF must not make an otherwise fine image unusable
        return 1
    return value if isinstance(value, int) else 1


def load_pil_image(
    image: bytes | Image.Image, *, label: str = "image", draft: tuple[int, int] | None = None
) -> Image.Image:
    """Decode image bytes (or take a PIL image) with the EXIF orientation applied.

    ``draft`` lets JPEGs decode at a reduced scale no smaller than that size.
    """
    from PIL import ImageOps

    img = _open_image(image, label, draft) if isinstance(image, bytes) else image
    if _exif_orientation(img) != 1:
        img = ImageOps.exif_transpose(img)
    return img


def _s3_image(s3: S3Source, format: str | None, label: str) -> PreparedMedia:
    """An image Nova reads from S3: its format comes from ``format=`` or the key's extension."""
    fmt = (format or _EXT_TO_IMAGE.get(_ext(s3.key), "")).lower()
    fmt = "jpeg" if fmt == "jpg" else fmt
    if fmt not in IMAGE_FORMATS:
        raise UnsupportedMediaError(
            f"{label}: cannot tell the image format of {s3.uri!r} without downloading it; "
            f"pass format= one of {', '.join(IMAGE_FORMATS)} (S3 images must already be in "
            "one of these formats)"
        )
    return PreparedMedia(kind="image", format=fmt, s3=s3)


def _decode_local(image: object, label: str) -> tuple[Image.Image, bytes | None, str]:
    """``(decoded image, the original bytes or None, label)`` of a local image input."""
    from PIL import Image

    if isinstance(image, Image.Image):
        try:
            image.load()
        except (OSError, ValueError) as exc:
            raise UnsupportedMediaError(f"{label}: cannot load the PIL image: {exc}") from exc
        return image, None, label
    if isinstance(image, (bytes, bytearray, memoryview)):
        original = bytes(image)
    elif isinstance(image, (str, os.PathLike)):
        original = read_path(image, "image")
        label = f"{label} {str(image)!r}"
    else:
        raise InvalidInputError(
            f"{label}: expected bytes, a path, an s3:// URI, an S3Source or a PIL image, got "
            f"{type(image).__name__}"
        )
    return _open_image(original, label), original, label


def prepare_image(
    image: object,
    *,
    format: str | None = None,
    max_inline_bytes: int = INLINE_LIMIT_BYTES,
    label: str = "image",
) -> PreparedMedia:
    """Normalise an image input for Nova.

    Args:
        image: bytes, a local path, an ``s3://`` URI, an :class:`S3Source` or a PIL image.
        format: only for S3 sources whose key has no image extension (``png``/``jpeg``/...).
        max_inline_bytes: the inline limit after base64; larger images are downscaled.
        label: how the input is named in error messages.

    Raises:
        InvalidInputError: wrong type, missing file.
        UnsupportedMediaError: empty, corrupt, not an image, decompression bomb, too large.
    """
    s3 = s3_or_none(image)
    if s3 is not None:
        return _s3_image(s3, format, label)
    if format is not None:
        raise InvalidInputError(
            f"{label}: format= is only for s3:// sources; local images are detected from bytes"
        )
    img, original, label = _decode_local(image, label)
    source_format = _PIL_TO_NOVA.get(img.format or "")
    if img.format == "MPO":  # multi-picture JPEG: send the primary image as a plain JPEG
        original = None

    rotated = _exif_orientation(img) != 1
    if rotated:
        from PIL import ImageOps

        img = ImageOps.exif_transpose(img)

    # CMYK JPEGs (print workflows) are valid JPEG but not what image models are trained on;
    # send RGB.
    if original is not None and source_format is not None and not rotated and img.mode != "CMYK":
        if base64_size(len(original)) <= max_inline_bytes:
            return PreparedMedia(kind="image", format=source_format, data=original)
        data, fmt = _downscale_to_fit(img, source_format, max_inline_bytes, label)
        return PreparedMedia(kind="image", format=fmt, data=data, converted=True)

    fmt = _target_format(img, source_format)
    data = _encode(img, fmt)
    if base64_size(len(data)) > max_inline_bytes:
        data, fmt = _downscale_to_fit(img, fmt, max_inline_bytes, label)
    return PreparedMedia(kind="image", format=fmt, data=data, converted=True)


# --------------------------------------------------------------------------------------------
# audio / video
# --------------------------------------------------------------------------------------------


def _sniff_audio(data: bytes) -> str | None:
    if data[:3] == b"ID3":
        return "mp3"
    if len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0 and (data[1] & 0x06):
        return "mp3"  # MPEG audio frame sync with a layer set
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"OggS":
        return "ogg"
    return None


def _sniff_video(data: bytes) -> str | None:
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand == b"qt  ":
            return "mov"
        if brand.startswith((b"3gp", b"3g2")):
            return "3gp"
        return "mp4"
    if data[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "mov"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in data[:64] else "mkv"
    if data[:3] == b"FLV":
        return "flv"
    if data[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"
    if data[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":
        return "wmv"
    return None


# Formats that share a container signature; an explicit format within the family wins.
_FAMILIES: tuple[frozenset[str], ...] = (
    frozenset({"mp4", "mov", "3gp"}),
    frozenset({"mkv", "webm"}),
    frozenset({"mpeg", "mpg"}),
)


def _same_family(a: str, b: str) -> bool:
    return a == b or any(a in f and b in f for f in _FAMILIES)


def wav_duration(data: bytes) -> float | None:
    """Duration in seconds from a RIFF/WAVE header, or None when the header is unusual."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int(struct.unpack("<I", data[pos + 4 : pos + 8])[0])
        if cid == b"fmt " and size >= 16:
            byte_rate = int(struct.unpack("<I", data[pos + 16 : pos + 20])[0])
        elif cid == b"data":
            if byte_rate <= 0:
                return None
            return min(size, len(data) - pos - 8) / byte_rate
        pos += 8 + size + (size & 1)
    return None


def _prepare_av(
    media: object,
    *,
    kind: Literal["audio", "video"],
    formats: tuple[str, ...],
    format: str | None,
    max_inline_bytes: int,
    label: str,
) -> PreparedMedia:
    fmt_given = format.lower().lstrip(".") if format is not None else None
    if fmt_given is not None and fmt_given not in formats:
        raise UnsupportedMediaError(
            f"{label}: unsupported {kind} format {format!r}; Nova accepts {', '.join(formats)}"
        )
    s3 = s3_or_none(media)
    if s3 is not None:
        fmt = fmt_given or _ext(s3.key)
        if fmt not in formats:
            raise UnsupportedMediaError(
                f"{label}: cannot tell the {kind} format of {s3.uri!r}; pass format= one of "
                f"{', '.join(formats)}"
            )
        return PreparedMedia(kind=kind, format=fmt, s3=s3)
    if isinstance(media, (bytes, bytearray, memoryview)):
        data = bytes(media)
    elif isinstance(media, (str, os.PathLike)):
        data = read_path(media, kind)
        label = f"{label} {str(media)!r}"
    else:
        raise InvalidInputError(
            f"{label}: expected bytes, a path, an s3:// URI or an S3Source, got "
            f"{type(media).__name__}"
        )
    if not data:
        raise UnsupportedMediaError(f"{label}: zero-length {kind} data")
    sniffed = _sniff_audio(data) if kind == "audio" else _sniff_video(data)
    if sniffed is None and kind == "video" and _sniff_audio(data) is not None:
        raise UnsupportedMediaError(f"{label}: this is audio ({_sniff_audio(data)}), not video")
    if sniffed is None and kind == "audio" and _sniff_video(data) is not None:
        raise UnsupportedMediaError(f"{label}: this is video ({_sniff_video(data)}), not audio")
    if sniffed is not None and fmt_given is not None and not _same_family(sniffed, fmt_given):
        raise UnsupportedMediaError(
            f"{label}: format={fmt_given!r} was given but the bytes are {sniffed}"
        )
    found = fmt_given or sniffed
    if found is None:
        raise UnsupportedMediaError(
            f"{label}: unrecognised {kind} container (starts with {data[:12]!r}); Nova accepts "
            f"{', '.join(formats)}; pass format= if you are sure"
        )
    fmt = found
    if base64_size(len(data)) > max_inline_bytes:
        raise UnsupportedMediaError(
            f"{label}: {len(data)} bytes is over the inline limit of {max_inline_bytes} bytes "
            f"after base64; upload the clip to S3 and pass an s3:// URI"
        )
    if fmt == "wav":
        seconds = wav_duration(data)
        if seconds is not None and seconds > SYNC_MAX_SECONDS:
            raise UnsupportedMediaError(
                f"{label}: {seconds:.1f} s of audio; the synchronous API embeds at most "
                f"{SYNC_MAX_SECONDS:.0f} s (use the async segmented API for longer clips)"
            )
    return PreparedMedia(kind=kind, format=fmt, data=data)


def prepare_audio(
    audio: object,
    *,
    format: str | None = None,
    max_inline_bytes: int = INLINE_LIMIT_BYTES,
    label: str = "audio",
) -> PreparedMedia:
    """Normalise an audio clip (mp3/wav/ogg): bytes, path, ``s3://`` URI or :class:`S3Source`.

    The format is detected from magic bytes; ``format=`` is needed only for S3 keys without an
    extension or for raw data the detector does not recognise.
    """
    return _prepare_av(
        audio,
        kind="audio",
        formats=AUDIO_FORMATS,
        format=format,
        max_inline_bytes=max_inline_bytes,
        label=label,
    )


def prepare_video(
    video: object,
    *,
    format: str | None = None,
    max_inline_bytes: int = INLINE_LIMIT_BYTES,
    label: str = "video",
) -> PreparedMedia:
    """Normalise a video clip (mp4/mov/mkv/webm/flv/mpeg/mpg/wmv/3gp); see prepare_audio."""
    return _prepare_av(
        video,
        kind="video",
        formats=VIDEO_FORMATS,
        format=format,
        max_inline_bytes=max_inline_bytes,
        label=label,
    )
