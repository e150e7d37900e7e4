"""The :class:`VectorStore` contract shared by ``LocalVectorStore`` and ``S3VectorsStore``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy.typing as npt

from crossmodal_search._types import DistanceMetric, Filter
from crossmodal_search.stores._limits import StoreLimits
from crossmodal_search.stores._models import GetResult, QueryMatch, VectorRecord


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
