"""The full-text half of ``S3VectorsStore``: index mode, text fields and ``query_text``.

:class:`S3TextSearch` is a base class of :class:`~crossmodal_search.stores.S3VectorsStore` and
holds what :class:`~crossmodal_search.stores.TextSearchStore` adds to a vector store. S3 Vectors
serves full-text and hybrid queries on ``ENHANCED`` indexes only; what the store knows of the
index (mode, fields and their ``BUILDING``/``ACTIVE`` status) is what ``GetIndex`` said last, and
a request that looks impossible by that knowledge re-reads it once before it is refused, so an
index upgraded or a field finished elsewhere is picked up without reopening the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy.typing as npt

from crossmodal_search._types import DistanceMetric, Filter
from crossmodal_search.errors import ConfigurationError, InvalidInputError, ServiceValidationError
from crossmodal_search.stores._filter import normalize_filter
from crossmodal_search.stores._limits import StoreLimits, validate_query, validate_top_k
from crossmodal_search.stores._s3v_index import UPGRADE_HINT, Caller, IndexAdmin, index_state
from crossmodal_search.stores._s3v_query import collect_pages, parse_text_matches, query_request
from crossmodal_search.stores._s3v_wire import (
    QueryOutputVectorWire,
    QueryVectorsRequest,
    text_search_client,
)
from crossmodal_search.stores._text import (
    IndexMode,
    TextField,
    TextMatch,
    validate_text_fields,
    validate_text_queries,
)

if TYPE_CHECKING:
    from mypy_boto3_s3vectors import S3VectorsClient

__all__ = ["S3TextSearch"]

logger = logging.getLogger(__name__)


class S3TextSearch:
    """Index modes, text fields and full-text/hybrid queries of an S3 Vectors index."""

    # Set by S3VectorsStore.__init__.
    _admin: IndexAdmin
    _bucket: str
    _index: str
    _client: S3VectorsClient
    _call: Caller
    _limits: StoreLimits
    _dimension: int
    _metric: DistanceMetric
    _non_filterable: frozenset[str]
    _mode: IndexMode
    _text_fields: tuple[TextField, ...]

    @property
    def index_mode(self) -> IndexMode:
        """``ENHANCED`` (pre-filtering, ``$startsWith``, full-text) or ``CLASSIC``, as last read."""
        return self._mode

    @property
    def text_fields(self) -> tuple[TextField, ...]:
        """The full-text searchable keys with language and status, as last read.

        A field added to a non-empty index is ``BUILDING`` while S3 Vectors backfills it;
        :meth:`refresh` re-reads the statuses (a text query on a field last seen ``BUILDING``
        re-reads them by itself).
        """
        return self._text_fields

    # -- index mode and text fields -------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the index's mode and text fields (with their status): one ``GetIndex``."""
        described = self._admin.describe(must_exist=True)
        assert described is not None
        state = index_state(described)
        self._mode, self._text_fields = state.mode, state.text_fields

    def wait_for_text_fields(self, *, timeout: float = 600.0, poll_interval: float = 5.0) -> bool:
        """Wait until no text field is ``BUILDING`` (a field added to an index that holds
        vectors is backfilled first); re-reads the index every ``poll_interval`` seconds.

        Returns:
            True when every field is ``ACTIVE``, False if some were still building after
            ``timeout`` seconds (see :attr:`text_fields`).
        """
        deadline = time.monotonic() + timeout
        self.refresh()
        while any(f.status != "ACTIVE" for f in self._text_fields):
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))
            self.refresh()
        return True

    def update_index_mode(self, mode: IndexMode) -> None:
        """Move the index to ``mode`` in place (``UpdateIndexMode``).

        ``ENHANCED`` works on any index, with no re-ingestion, no change to queries and no extra
        charge. S3 Vectors takes ``CLASSIC`` only for indexes in buckets created before 30 Sep
        2026 (and, we assume, without text fields); its refusal is raised.

        Raises:
            InvalidInputError: ``mode`` is not ``CLASSIC`` or ``ENHANCED`` (no call is made).
            ServiceValidationError: S3 Vectors refused the change.
        """
        if mode not in ("CLASSIC", "ENHANCED"):
            raise InvalidInputError(f"mode must be 'CLASSIC' or 'ENHANCED', got {mode!r}")
        try:
            self._admin.update_index_mode(mode)
        except ServiceValidationError as exc:
            if mode != "CLASSIC":
                raise
            raise ServiceValidationError(
                f"{self._admin.name} cannot go back to CLASSIC: S3 Vectors allows it only for "
                "indexes in buckets created before 30 Sep 2026 and (we assume) without text "
                f"fields. {exc}",
                code=exc.code,
                request_id=exc.request_id,
                status_code=exc.status_code,
                operation=exc.operation,
            ) from exc
        logger.info("%s is now %s", self._admin.name, mode)
        self._mode = mode

    def add_text_fields(self, fields: Iterable[TextField]) -> None:
        """Make metadata keys full-text searchable (``UpdateMetadataConfiguration`` add).

        S3 Vectors backfills the records already stored; until it is done the new fields are
        ``BUILDING`` (see :attr:`text_fields`) and queries on them are refused.

        Raises:
            InvalidInputError: a bad key or language, a key already searchable, or more than 10
                fields on the index (no call is made).
            ConfigurationError: the index is CLASSIC (move it with :meth:`update_index_mode`).
        """
        added = validate_text_fields(fields, existing=self._text_fields)
        if not added:
            return
        if self._mode != "ENHANCED":
            self.refresh()  # moved by someone else since we looked?
        if self._mode != "ENHANCED":
            raise ConfigurationError(
                f"{self._admin.name} is CLASSIC: text fields need an ENHANCED index; {UPGRADE_HINT}"
            )
        self._admin.add_text_fields(added)
        logger.info(
            "%s: added text search configurations for %s", self._admin.name, [f.key for f in added]
        )
        self.refresh()

    def remove_text_fields(self, keys: Iterable[str]) -> None:
        """Stop full-text indexing of metadata keys (``UpdateMetadataConfiguration`` delete).

        The metadata itself stays. To change a field's language, remove it and add it again.

        Raises:
            InvalidInputError: a key that is not full-text searchable (no call is made).
        """
        if isinstance(keys, str | bytes):
            raise InvalidInputError("keys must be a sequence of strings, not a single string")
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return
        if any(k not in self._text_field_map() for k in wanted):
            self.refresh()  # added by someone else since we looked?
        have = self._text_field_map()
        unknown = sorted(str(k) for k in wanted if k not in have)
        if unknown:
            raise InvalidInputError(
                f"metadata key {unknown[0]!r} is not full-text searchable "
                f"(searchable: {', '.join(sorted(have)) or 'none'})"
            )
        self._admin.delete_text_fields(wanted)
        logger.info("%s: removed text search configurations for %s", self._admin.name, wanted)
        self._text_fields = tuple(f for f in self._text_fields if f.key not in wanted)

    def _text_field_map(self) -> dict[str, TextField]:
        return {f.key: f for f in self._text_fields}

    def query_text(
        self,
        texts: Mapping[str, str],
        *,
        vector: npt.ArrayLike | None = None,
        top_k: int = 10,
        filter: Filter | None = None,
    ) -> list[TextMatch]:
        """Records ranked by their words (BM25), or by words and ``vector`` together (hybrid).

        ``texts`` maps searchable metadata keys to the words to find in them. Without a
        ``vector`` results are ranked by the sum of their BM25 scores over those keys, and only
        records holding a query word come back (possibly fewer than ``top_k``). With one, each
        key's BM25 ranking and the vector ranking are fused by Reciprocal Rank Fusion (one
        ``QueryVectors`` call). ``filter`` applies before ranking (ENHANCED pre-filtering).

        Raises:
            InvalidInputError: no texts, more than 10, an empty or over-long (1,024 characters)
                text, a key that is not searchable or still ``BUILDING``, a bad ``top_k`` or
                vector.
            DimensionMismatchError: the vector has another length than the index.
            InvalidFilterError: the filter is invalid for this index.
            ConfigurationError: the index is CLASSIC (move it with :meth:`update_index_mode`).
        """
        if isinstance(texts, Mapping) and not self._serves(texts):
            self.refresh()  # a field last seen BUILDING may be ACTIVE now
        if self._mode != "ENHANCED":
            raise ConfigurationError(
                f"{self._admin.name} is CLASSIC: full-text and hybrid queries need an ENHANCED "
                f"index; {UPGRADE_HINT}, then add_text_fields(...)"
            )
        queries = validate_text_queries(texts, self._text_field_map())
        validate_top_k(top_k, self._limits)
        vec = None
        if vector is not None:
            vec = validate_query(
                vector, top_k, self._dimension, self._limits, distance_metric=self._metric
            )
        request = query_request(
            self._bucket,
            self._index,
            top_k=top_k,
            vector=vec,
            texts=queries,
            filter=self._filter(filter, "ENHANCED"),
        )
        logger.debug(
            "QueryVectors (%s, keys %s, top_k %d) on %s",
            "hybrid" if vec is not None else "full-text",
            [q.key for q in queries],
            top_k,
            self._admin.name,
        )
        return parse_text_matches(self._query_pages(request), hybrid=vec is not None)

    def _serves(self, texts: Mapping[str, object]) -> bool:
        fields = self._text_field_map()
        return self._mode == "ENHANCED" and all(
            k in fields and fields[k].status == "ACTIVE" for k in texts
        )

    def _filter(self, filter: Filter | None, mode: IndexMode) -> Mapping[str, Any] | None:
        if filter is None:
            return None
        normalized: Mapping[str, Any] = normalize_filter(
            filter, non_filterable=self._non_filterable, index_mode=mode
        )
        return normalized

    def _query_pages(self, request: QueryVectorsRequest) -> list[QueryOutputVectorWire]:
        client = text_search_client(self._client)
        return collect_pages(
            lambda page: self._call("QueryVectors", lambda: client.query_vectors(**page)),
            request,
        )
