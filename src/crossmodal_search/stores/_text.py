"""Full-text and hybrid search: the values both stores exchange, and the checks they share.

S3 Vectors' ENHANCED indexes take *text search configurations* on metadata keys, rank text
with BM25, and fuse a BM25 ranking per key with the vector ranking by Reciprocal Rank Fusion in
one ``QueryVectors`` call. ``LocalVectorStore`` answers the same requests (``stores/_fulltext.py``).
The limits here are the service's documented ones, checked before any call.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from crossmodal_search._constants import LANGUAGES as LANGUAGES
from crossmodal_search._constants import Language as Language
from crossmodal_search._types import MetadataValue
from crossmodal_search.errors import InvalidInputError

__all__ = [
    "LANGUAGES",
    "MAX_QUERY_TEXTS",
    "MAX_QUERY_TEXT_CHARS",
    "MAX_TEXT_FIELDS",
    "RRF_K",
    "IndexMode",
    "Language",
    "TextField",
    "TextMatch",
    "TextQuery",
    "TextStatus",
    "reciprocal_rank_fusion",
    "validate_text_fields",
    "validate_text_queries",
]

#: ``CLASSIC`` filters during the (approximate) vector search; ``ENHANCED`` filters first and
#: takes full-text search, ``$startsWith`` and ``update_metadata_configuration``.
IndexMode: TypeAlias = Literal["CLASSIC", "ENHANCED"]
#: ``BUILDING``: a configuration being backfilled, not yet serving queries.
TextStatus: TypeAlias = Literal["ACTIVE", "BUILDING"]

MAX_TEXT_FIELDS = 10
MAX_QUERY_TEXTS = 10
MAX_QUERY_TEXT_CHARS = 1024
#: The Reciprocal Rank Fusion constant (S3 Vectors does not document its own; 60 is standard).
RRF_K = 60
_MAX_KEY_CHARS = 63


@dataclass(frozen=True)
class TextField:
    """A metadata key made full-text searchable (a ``textSearchConfiguration``).

    Attributes:
        key: The metadata key whose string value (or list of strings) is indexed.
        language: The analyzer's language (stop words and stemming); None: the standard
            analyzer (lower case, no stop words, no stemming).
        status: ``ACTIVE``, or ``BUILDING`` while S3 Vectors backfills it (read from the index).
    """

    key: str
    language: Language | None = None
    status: TextStatus = "ACTIVE"


@dataclass(frozen=True)
class TextQuery:
    """Words to match against one searchable metadata key (one ``queryTexts`` entry)."""

    key: str
    text: str


@dataclass(frozen=True)
class TextMatch:
    """One result of a full-text or hybrid query.

    Attributes:
        key: The vector's key.
        score: What ranked it: the fused (RRF) score of a hybrid query, the sum of its BM25
            scores over the keys of a text-only one. Higher is better.
        bm25: The raw BM25 score per searchable key the record matched (keys it did not
            match are absent).
        fused: The RRF score (hybrid queries only).
        distance: The vector distance, when the record came through the vector ranking.
        metadata: The record's metadata.
    """

    key: str
    score: float
    bm25: Mapping[str, float] = field(default_factory=dict)
    fused: float | None = None
    distance: float | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)


def validate_text_fields(
    fields: Iterable[TextField], *, existing: Iterable[TextField] = ()
) -> tuple[TextField, ...]:
    """Check text search configurations (and, with ``existing``, the index's total).

    Raises:
        InvalidInputError: A bad key or language, a key twice, or more than 10 in all.
    """
    out = tuple(fields)
    seen = {f.key for f in existing}
    for f in out:
        if not isinstance(f, TextField):
            raise InvalidInputError(f"text fields must be TextField values, got {f!r}")
        if not isinstance(f.key, str) or not 1 <= len(f.key) <= _MAX_KEY_CHARS:
            raise InvalidInputError(
                f"a text field's metadata key must be 1-{_MAX_KEY_CHARS} characters, got {f.key!r}"
            )
        if f.language is not None and f.language not in LANGUAGES:
            raise InvalidInputError(
                f"text field {f.key!r}: language must be one of {', '.join(LANGUAGES)} "
                f"(or None for the standard analyzer), got {f.language!r}"
            )
        if f.key in seen:
            raise InvalidInputError(f"metadata key {f.key!r} has a text search configuration")
        seen.add(f.key)
    if len(seen) > MAX_TEXT_FIELDS:
        raise InvalidInputError(
            f"an index takes at most {MAX_TEXT_FIELDS} text search configurations, got {len(seen)}"
        )
    return out


def validate_text_queries(
    texts: Mapping[str, str], fields: Mapping[str, TextField]
) -> list[TextQuery]:
    """Check the query texts (searchable key -> words) of a full-text or hybrid query.

    Raises:
        InvalidInputError: None or more than 10 texts, an empty or over-long text, a key
            without a text search configuration, or one still building.
    """
    if not isinstance(texts, Mapping):
        raise InvalidInputError(
            f"query texts are a mapping of searchable metadata key to words, got {texts!r}"
        )
    items = [TextQuery(str(k) if not isinstance(k, str) else k, v) for k, v in texts.items()]
    if not items:
        raise InvalidInputError("a full-text query needs at least one query text")
    if len(items) > MAX_QUERY_TEXTS:
        raise InvalidInputError(
            f"at most {MAX_QUERY_TEXTS} query texts per query, got {len(items)}"
        )
    seen: set[str] = set()
    for q in items:
        if not isinstance(q.text, str) or not q.text.strip():
            raise InvalidInputError(f"the query text for {q.key!r} must be a non-empty string")
        if len(q.text) > MAX_QUERY_TEXT_CHARS:
            raise InvalidInputError(
                f"a query text holds at most {MAX_QUERY_TEXT_CHARS} characters, got "
                f"{len(q.text)} for {q.key!r}"
            )
        if q.key in seen:
            raise InvalidInputError(f"each query text must target a distinct key; {q.key!r} twice")
        seen.add(q.key)
        configured = fields.get(q.key)
        if configured is None:
            known = ", ".join(sorted(fields)) or "none"
            raise InvalidInputError(
                f"metadata key {q.key!r} is not full-text searchable on this index (searchable: "
                f"{known}); add it with add_text_fields"
            )
        if configured.status == "BUILDING":
            raise InvalidInputError(
                f"the text search configuration of {q.key!r} is still BUILDING (backfilling); "
                "query it once it is ACTIVE"
            )
    return items


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], *, k: int = RRF_K
) -> dict[str, float]:
    """``sum over rankings of 1 / (k + rank)`` per key (ranks from 1; absent: nothing).

    Each sum is exact (``math.fsum``), so two keys with the same ranks in other rankings tie
    exactly, whatever the order of the rankings, and ties go to the key order as documented.
    """
    terms: dict[str, list[float]] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, 1):
            terms.setdefault(key, []).append(1.0 / (k + rank))
    return {key: math.fsum(values) for key, values in terms.items()}
