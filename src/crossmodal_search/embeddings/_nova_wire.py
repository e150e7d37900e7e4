"""Nova's SINGLE_EMBEDDING wire format: request bodies built and answers parsed, no I/O.

:class:`~crossmodal_search.embeddings.NovaEmbeddings` sends what this module builds and reads
what it parses; the batch jobs reuse :func:`build_request` for their JSONL records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

import numpy as np

from crossmodal_search._types import NOVA_DIMENSIONS, EmbeddingPurpose, Vector
from crossmodal_search.embeddings._base import check_text
from crossmodal_search.embeddings._media import PreparedMedia, S3Source
from crossmodal_search.errors import InvalidInputError, ServiceError

__all__ = [
    "DETAIL_LEVELS",
    "DOCUMENTED_TEXT_CHARS",
    "MAX_TEXT_CHARS",
    "SCHEMA_VERSION",
    "TRUNCATION_MODES",
    "VIDEO_MODES",
    "DetailLevel",
    "NovaRequest",
    "TruncationMode",
    "VideoEmbeddingMode",
    "build_request",
    "check_dimension",
    "check_inline_text",
    "choice",
    "image_payload",
    "parse_answer",
    "pick_vectors",
    "text_payload",
]

TruncationMode: TypeAlias = Literal["START", "END", "NONE"]
DetailLevel: TypeAlias = Literal["STANDARD_IMAGE", "DOCUMENT_IMAGE"]
VideoEmbeddingMode: TypeAlias = Literal["AUDIO_VIDEO_COMBINED", "AUDIO_VIDEO_SEPARATE"]
Modality: TypeAlias = Literal["text", "image", "audio", "video"]

TRUNCATION_MODES: tuple[str, ...] = get_args(TruncationMode)
DETAIL_LEVELS: tuple[str, ...] = get_args(DetailLevel)
VIDEO_MODES: tuple[str, ...] = get_args(VideoEmbeddingMode)

SCHEMA_VERSION = "nova-multimodal-embed-v1"
#: Inline text the service accepts (observed; longer text is a ValidationException).
MAX_TEXT_CHARS = 50_000
#: Inline text limit the AWS docs state; the model truncates by tokens (8K) anyway.
DOCUMENTED_TEXT_CHARS = 8_192


def check_dimension(dimension: object) -> int:
    """``dimension`` as an int when it is a Nova dimension, else :class:`InvalidInputError`."""
    if isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)):
        raise InvalidInputError(f"dimension must be one of {NOVA_DIMENSIONS}, got {dimension!r}")
    if int(dimension) not in NOVA_DIMENSIONS:
        raise InvalidInputError(f"dimension must be one of {NOVA_DIMENSIONS}, got {dimension}")
    return int(dimension)


def choice(value: object, allowed: tuple[str, ...], what: str) -> str:
    """``value`` when it is one of ``allowed``, else :class:`InvalidInputError` naming ``what``."""
    if value not in allowed:
        raise InvalidInputError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def check_inline_text(text: object, label: str = "text") -> str:
    """``text`` when Nova takes it inline: a str, not blank, at most ``MAX_TEXT_CHARS``."""
    value = check_text(text, label)
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidInputError(
            f"{label} has {len(value)} characters; Nova accepts at most {MAX_TEXT_CHARS} "
            "inline (embed longer text with SegmentedEmbeddingJobs.embed_long_text, or pass "
            "an S3Source)"
        )
    return value


def text_payload(text: str | S3Source, truncation: str) -> dict[str, Any]:
    """The ``text`` object of a request: an inline value or an S3 source."""
    if isinstance(text, S3Source):
        return {"truncationMode": truncation, "source": text.to_source()}
    return {"truncationMode": truncation, "value": text}


def image_payload(media: PreparedMedia, detail_level: str) -> dict[str, Any]:
    """The ``image`` object of a request for a prepared image."""
    return {"format": media.format, "source": media.source(), "detailLevel": detail_level}


def build_request(
    modality: Modality,
    payload: dict[str, Any],
    *,
    purpose: EmbeddingPurpose,
    dimension: int,
) -> dict[str, Any]:
    """The SINGLE_EMBEDDING request body for one input (see reference Part A2)."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": purpose.value,
            "embeddingDimension": dimension,
            modality: payload,
        },
    }


@dataclass(frozen=True, slots=True)
class NovaRequest:
    """One validated request and what is needed to read and cache its answer.

    Attributes:
        body: the ``InvokeModel`` body.
        expect: the ``embeddingType`` values that answer it, preferred first.
        cache_keys: embedding type (``""`` for the single vector) -> cache key; None: no cache.
        separate: the answer holds one vector per type in ``expect`` (all of them required).
    """

    body: dict[str, Any]
    expect: tuple[str, ...]
    cache_keys: dict[str, str] | None = None
    separate: bool = False

    @property
    def dimension(self) -> int:
        """The requested ``embeddingDimension``."""
        return int(self.body["singleEmbeddingParams"]["embeddingDimension"])


def _invalid(message: str) -> ServiceError:
    return ServiceError(message, code="InvalidModelResponse", operation="InvokeModel")


def parse_answer(raw: bytes) -> list[dict[str, Any]]:
    """The ``embeddings`` items of an ``InvokeModel`` answer; ServiceError when malformed."""
    try:
        parsed = json.loads(raw)
        embeddings = parsed["embeddings"]
        if not isinstance(embeddings, list) or not embeddings:
            raise TypeError("'embeddings' is not a non-empty list")
    except (ValueError, KeyError, TypeError) as exc:
        raise _invalid(f"InvokeModel returned an unexpected body ({exc}): {raw[:200]!r}") from exc
    return [e for e in embeddings if isinstance(e, dict)]


def parse_vector(item: Mapping[str, Any], dimension: int) -> Vector:
    """One answer item's ``embedding``: finite float32 of shape ``(dimension,)``."""
    try:
        vec = np.asarray(item.get("embedding"), dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise _invalid("InvokeModel returned a non-numeric embedding") from exc
    if vec.ndim != 1 or vec.shape[0] != dimension:
        raise _invalid(
            f"InvokeModel returned an embedding of shape {vec.shape}, expected ({dimension},)"
        )
    if not np.all(np.isfinite(vec)):
        raise _invalid("InvokeModel returned an embedding with NaN or infinite values")
    return vec


def pick_vectors(request: NovaRequest, items: list[dict[str, Any]]) -> dict[str, Vector]:
    """The vectors answering ``request``, keyed by embedding type (``""`` for a single one)."""
    by_type: dict[str, Vector] = {}
    for item in items:
        etype = str(item.get("embeddingType", ""))
        if etype in request.expect and etype not in by_type:
            by_type[etype] = parse_vector(item, request.dimension)
    got = [i.get("embeddingType") for i in items]
    if request.separate:
        missing = [t for t in request.expect if t not in by_type]
        if missing:
            raise _invalid(f"InvokeModel answer lacks embedding types {missing}; got {got}")
        return by_type
    found = next((t for t in request.expect if t in by_type), None)
    if found is None:
        raise _invalid(f"InvokeModel answer has no {'/'.join(request.expect)} embedding; got {got}")
    return {"": by_type[found]}
