"""What ``FakeS3Vectors`` keeps: buckets, indexes (with their full-text indexes), vectors, limits.

An index's text search configurations each own a :class:`~crossmodal_search.stores._fulltext.
TextIndex` whose rows are aligned with :attr:`Index.rows`; :meth:`Index.store` and
:meth:`Index.remove` keep vectors, metadata and those text indexes in step in one place, so a
query always sees the most recent write (S3 Vectors writes are strongly consistent).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from crossmodal_search.stores._fulltext import TextIndex, analyzer
from crossmodal_search.stores._text import Language

__all__ = [
    "ENHANCED_BUCKETS_SINCE",
    "ERROR_STATUS",
    "Bucket",
    "Index",
    "ServiceError",
    "StoredVector",
    "TextConfig",
    "TokenBucket",
    "decode_token",
    "encode_token",
    "validation",
]

#: HTTP status of each S3 Vectors error code (botocore model; ValidationException has none: 400).
ERROR_STATUS: dict[str, int] = {
    "ValidationException": 400,
    "KmsDisabledException": 400,
    "KmsInvalidKeyUsageException": 400,
    "KmsInvalidStateException": 400,
    "KmsNotFoundException": 400,
    "ServiceQuotaExceededException": 402,
    "AccessDeniedException": 403,
    "NotFoundException": 404,
    "RequestTimeoutException": 408,
    "ConflictException": 409,
    "TooManyRequestsException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}

MAX_PAYLOAD_BYTES = 20 * 1024 * 1024
MAX_PUT_VECTORS = 500
MAX_DELETE_VECTORS = 500
MAX_GET_VECTORS = 100
MAX_TOP_K = 100
MAX_DIMENSION = 4096
MAX_KEY_CHARS = 1024
MAX_METADATA_KEY_CHARS = 63
MAX_FILTERABLE_BYTES = 2048
MAX_TOTAL_METADATA_BYTES = 40960
MAX_METADATA_KEYS = 50
MAX_NON_FILTERABLE_KEYS = 10
MAX_TEXT_CONFIGURATIONS = 10
MAX_QUERY_TEXTS = 10
MAX_QUERY_TEXT_CHARS = 1024
MAX_LIST_RESULTS = 1000
MAX_LIST_SEGMENTS = 16
MAX_TAGS = 50
#: A list_vectors page stops early once about this much data has been gathered.
LIST_PAGE_BYTES = 1024 * 1024
#: Buckets created from this moment on make ENHANCED indexes; older ones CLASSIC indexes.
ENHANCED_BUCKETS_SINCE = datetime(2026, 9, 30, tzinfo=timezone.utc).timestamp()
INDEX_MODES = ("CLASSIC", "ENHANCED")
LANGUAGES = ("en", "fr", "es", "pt", "it", "de", "nl", "zh", "ja", "ko")


class ServiceError(Exception):
    """Raised inside a handler; becomes an error response."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def validation(message: str) -> ServiceError:
    """A ``ValidationException`` (HTTP 400)."""
    return ServiceError("ValidationException", message)


@dataclass
class StoredVector:
    """One vector as stored: float32 data and the metadata as parsed from the request JSON."""

    data: np.ndarray[Any, np.dtype[np.float32]]
    metadata: dict[str, Any]


@dataclass
class TextConfig:
    """One text search configuration of an index."""

    language: Language | None
    status: str = "ACTIVE"


@dataclass
class Index:
    """A vector index: configuration, vectors in write order, and one text index per config."""

    bucket: str
    name: str
    arn: str
    dimension: int
    distance_metric: str
    non_filterable: tuple[str, ...]
    creation_time: float
    mode: str = "ENHANCED"
    vectors: dict[str, StoredVector] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    text_configs: dict[str, TextConfig] = field(default_factory=dict)
    #: Row -> key; row ``i`` of every text index holds the text of ``rows[i]``.
    rows: list[str] = field(default_factory=list)
    row_of: dict[str, int] = field(default_factory=dict)
    text: dict[str, TextIndex] = field(default_factory=dict)

    def store(self, staged: dict[str, StoredVector]) -> None:
        """Upsert ``staged``: vectors, metadata and the text of every searchable key."""
        for key, stored in staged.items():
            row = self.row_of.get(key)
            if row is None:
                row = self.row_of[key] = len(self.rows)
                self.rows.append(key)
            self.vectors[key] = stored
            for metadata_key, text_index in self.text.items():
                text_index.put(row, stored.metadata.get(metadata_key))

    def remove(self, key: str) -> None:
        """Delete ``key`` if stored; the last row moves into its place, as in the text indexes."""
        row = self.row_of.pop(key, None)
        if row is None:
            return
        del self.vectors[key]
        for text_index in self.text.values():
            text_index.delete(row)
        last = self.rows.pop()
        if last != key:
            self.rows[row] = last
            self.row_of[last] = row

    def add_text(self, key: str, config: TextConfig) -> None:
        """Configure ``key`` for full-text search and index what is already stored (backfill)."""
        text_index = TextIndex(analyzer(config.language))
        for row, vector_key in enumerate(self.rows):
            text_index.put(row, self.vectors[vector_key].metadata.get(key))
        self.text_configs[key] = config
        self.text[key] = text_index

    def drop_text(self, key: str) -> None:
        """Stop full-text indexing of ``key``."""
        del self.text_configs[key]
        del self.text[key]


@dataclass
class Bucket:
    """A vector bucket; ``default_mode`` is the mode its new indexes get."""

    name: str
    arn: str
    creation_time: float
    default_mode: str = "ENHANCED"
    indexes: dict[str, Index] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def legacy(self) -> bool:
        """Created before 30 Sep 2026: its indexes may be CLASSIC."""
        return self.creation_time < ENHANCED_BUCKETS_SINCE


def encode_token(state: dict[str, Any]) -> str:
    """An opaque ``nextToken``."""
    return base64.urlsafe_b64encode(json.dumps(state).encode("utf-8")).decode("ascii")


def decode_token(token: object) -> dict[str, Any]:
    """The state of a ``nextToken`` from :func:`encode_token`.

    Raises:
        ServiceError: not a token of ours.
    """
    try:
        decoded = json.loads(base64.urlsafe_b64decode(str(token).encode("ascii")))
    except ValueError as exc:
        raise validation("Invalid nextToken") from exc
    if not isinstance(decoded, dict):
        raise validation("Invalid nextToken")
    return decoded


class TokenBucket:
    """Requests per second with a burst capacity (the fake's ``throttle``)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.capacity = burst
        self.tokens = burst
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
