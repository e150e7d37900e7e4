"""What the Bedrock fakes check of a Nova request body, written from the service's schema.

The fakes do not import the library's own constants on purpose: a wrong value in the library
must fail against the fake, not be copied into it. :class:`Invalid` is a request the service
would answer with ``ValidationException``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

import numpy as np

from crossmodal_search._types import NOVA_DIMENSIONS, EmbeddingPurpose, Vector

__all__ = [
    "AUDIO_FORMATS",
    "IMAGE_FORMATS",
    "MODALITIES",
    "PURPOSES",
    "S3_URI",
    "SCHEMA_VERSION",
    "VIDEO_FORMATS",
    "VIDEO_MODES",
    "Invalid",
    "check_dimension",
    "enum",
    "fields",
    "one_modality",
    "seeded_vector",
    "source",
]

SCHEMA_VERSION = "nova-multimodal-embed-v1"
PURPOSES = frozenset(p.value for p in EmbeddingPurpose)
IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})
AUDIO_FORMATS = frozenset({"mp3", "wav", "ogg"})
VIDEO_FORMATS = frozenset({"mp4", "mov", "mkv", "webm", "flv", "mpeg", "mpg", "wmv", "3gp"})
VIDEO_MODES = frozenset({"AUDIO_VIDEO_COMBINED", "AUDIO_VIDEO_SEPARATE"})
MODALITIES = ("text", "image", "audio", "video")
S3_URI = re.compile(r"^s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?$")


class Invalid(Exception):
    """A request the real service would reject with ValidationException."""


def fields(obj: object, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    """``obj`` when it is an object with every ``required`` key and no key outside both sets."""
    if not isinstance(obj, dict):
        raise Invalid(f"{where}: expected an object, got {type(obj).__name__}")
    unknown = set(obj) - required - optional
    if unknown:
        raise Invalid(f"{where}: extraneous key(s) {sorted(unknown)} are not permitted")
    missing = required - set(obj)
    if missing:
        raise Invalid(f"{where}: required key(s) {sorted(missing)} not found")
    return obj


def enum(value: object, allowed: frozenset[str] | set[str], where: str) -> str:
    """``value`` when it is one of ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise Invalid(f"{where}: {value!r} is not a valid enum value ({sorted(allowed)})")
    return value


def check_dimension(params: dict[str, Any], where: str) -> int:
    """``embeddingDimension`` (default 3072) when Nova offers it."""
    dim = params.get("embeddingDimension", 3072)
    if isinstance(dim, bool) or dim not in NOVA_DIMENSIONS:
        raise Invalid(f"{where}/embeddingDimension: {dim!r} not allowed")
    return int(dim)


def one_modality(params: dict[str, Any], where: str) -> str:
    """The one of text, image, audio and video that ``params`` holds."""
    found = [m for m in MODALITIES if m in params]
    if len(found) != 1:
        raise Invalid(f"{where}: exactly one of text, image, audio, video required, got {found}")
    return found[0]


def source(obj: object, where: str, *, allow_bytes: bool) -> bytes | str:
    """A ``SourceObject``: the decoded bytes, or ``"<uri>#<bucket owner>"`` for S3."""
    src = fields(obj, where, set(), {"bytes", "s3Location"})
    if len(src) != 1:
        raise Invalid(f"{where}: exactly one of bytes, s3Location required")
    if "bytes" in src:
        if not allow_bytes:
            raise Invalid(f"{where}: bytes is not supported for text")
        b64 = src["bytes"]
        if not isinstance(b64, str) or not b64:
            raise Invalid(f"{where}/bytes: expected a non-empty base64 string")
        try:
            data = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Invalid(f"{where}/bytes: invalid base64: {exc}") from None
        if not data:
            raise Invalid(f"{where}/bytes: empty content")
        return data
    loc = fields(src["s3Location"], where + "/s3Location", {"uri"}, {"bucketOwner"})
    uri = loc["uri"]
    if not isinstance(uri, str) or not S3_URI.match(uri) or len(uri) > 1024:
        raise Invalid(f"{where}/s3Location/uri: {uri!r} is not a valid S3 URI")
    owner = loc.get("bucketOwner")
    if owner is not None and not (isinstance(owner, str) and re.fullmatch(r"\d{12}", owner)):
        raise Invalid(f"{where}/s3Location/bucketOwner: {owner!r} is not an account id")
    return f"{uri}#{owner or ''}"


def seeded_vector(seed: str, dim: int) -> Vector:
    """A deterministic pseudo-random unit vector (for content the fakes cannot read)."""
    rng = np.random.default_rng(
        int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "little")
    )
    v = rng.standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)
