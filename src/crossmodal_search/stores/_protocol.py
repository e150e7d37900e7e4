"""The contracts shared by ``LocalVectorStore`` and ``S3VectorsStore``: :class:`VectorStore`
(vectors, metadata, similarity) and :class:`TextSearchStore` (full-text and hybrid search)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy.typing as npt

from crossmodal_search._types import DistanceMetric, Filter
from crossmodal_search.stores._limits import StoreLimits
from crossmodal_search.stores._models import GetResult, QueryMatch, VectorRecord
from crossmodal_search.stores._text import IndexMode, TextField, TextMatch


@runtime_checkable
class VectorStore(Protocol):
    """A keyed collection of vectors with metadata, searchable by similarity.

    Both implementations accept the same records, enforce the same S3 Vectors limits and
    evaluate the same filter language, so code written against one runs on the other.
    """

    @property
    def dimension(self) -> int:
        """Length of every vector in the store."""
        ...

    @property
    def distance_metric(self) -> DistanceMetric:
        """``"cosine"`` (distance = 1 - cosine similarity) or ``"euclidean"`` (L2 distance)."""
        ...

    @property
    def non_filterable_metadata_keys(self) -> frozenset[str]:
        """Metadata keys stored but not usable in filters (e.g. long descriptions)."""
        ...

    @property
    def limits(self) -> StoreLimits:
        """The limits checked before every write and query (S3 Vectors' by default)."""
        ...

    def put(self, records: Iterable[VectorRecord]) -> None:
        """Insert or overwrite records (upsert). Validates everything before writing anything."""
        ...

    def get(self, keys: Sequence[str]) -> GetResult:
        """Fetch records in the order asked; keys not stored are listed in ``missing``."""
        ...

    def delete(self, keys: Sequence[str]) -> None:
        """Delete records; unknown keys are ignored."""
        ...

    def query(
        self,
        vector: npt.ArrayLike,
        *,
        top_k: int = 10,
        filter: Filter | None = None,
    ) -> list[QueryMatch]:
        """The ``top_k`` nearest records matching ``filter``, best first."""
        ...

    def query_many(
        self,
        vectors: npt.ArrayLike,
        *,
        top_k: int = 10,
        filter: Filter | None = None,
    ) -> list[list[QueryMatch]]:
        """:meth:`query` for each row of an ``(n, dimension)`` matrix (answers in row order)."""
        ...

    def keys(self) -> Iterator[str]:
        """Every stored key (order unspecified)."""
        ...

    def records(self) -> Iterator[VectorRecord]:
        """Every stored record with vector and metadata (order unspecified)."""
        ...

    def close(self) -> None:
        """Release what the store holds (a lock, a client's connections); idempotent."""
        ...


@runtime_checkable
class TextSearchStore(VectorStore, Protocol):
    """A :class:`VectorStore` that also ranks words: full-text (BM25) and hybrid search.

    S3 Vectors does this on ``ENHANCED`` indexes; ``LocalVectorStore`` always can. Metadata
    keys with a :class:`TextField` are searchable; their string values (or lists of strings)
    are indexed as they are written, with no re-embedding.
    """

    @property
    def index_mode(self) -> IndexMode:
        """``ENHANCED`` (pre-filtering, ``$startsWith``, full-text) or ``CLASSIC``."""
        ...

    @property
    def text_fields(self) -> tuple[TextField, ...]:
        """The full-text searchable metadata keys, with their analyzer language and status."""
        ...

    def add_text_fields(self, fields: Iterable[TextField]) -> None:
        """Make metadata keys full-text searchable; records already stored are indexed too."""
        ...

    def remove_text_fields(self, keys: Iterable[str]) -> None:
        """Stop full-text indexing of metadata keys (the metadata itself stays)."""
        ...

    def query_text(
        self,
        texts: Mapping[str, str],
        *,
        vector: npt.ArrayLike | None = None,
        top_k: int = 10,
        filter: Filter | None = None,
    ) -> list[TextMatch]:
        """Records ranked by their words, or by words and ``vector`` together.

        ``texts`` maps searchable metadata keys to the words to find in them. Without a
        ``vector`` the ranking is the sum of BM25 scores over those keys and only records that
        hold a query word are returned (possibly fewer than ``top_k``); with one, each key's
        BM25 ranking and the vector ranking are fused by Reciprocal Rank Fusion. ``filter``
        applies before ranking.
        """
        ...
