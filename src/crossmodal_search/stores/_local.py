"""``LocalVectorStore``: the embedded store, in memory or persisted in a directory.

The store is a facade over three parts, each in its own module:

* ``stores/_rows.py``: the rows in memory (keys, metadata, vectors, filter columns, BM25
  indexes of the full-text keys);
* ``stores/_exact.py``: exact search over those rows (and the optional accelerators);
  ``stores/_hybrid.py``: full-text and hybrid ranking;
* ``stores/_persist.py``: the directory on disk (lock, atomic manifest, segments, merges).

A write is validated, prepared (storage dtype and norms), made durable by the segment log, and
only then applied to the rows, so memory never holds what the disk does not.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import DistanceMetric, Filter
from crossmodal_search.errors import ConfigurationError, InvalidInputError
from crossmodal_search.stores._ann import (
    Accelerator,
    AcceleratorName,
    BackgroundAccelerator,
    WeakRowSource,
)
from crossmodal_search.stores._exact import ExactSearch
from crossmodal_search.stores._filter import CompiledFilter, FilterCache
from crossmodal_search.stores._fulltext import analyzer
from crossmodal_search.stores._hybrid import text_matches
from crossmodal_search.stores._kernels import (
    Float16Kernel,
    KernelName,
    ScanDType,
    resolve_float16_kernel,
)
from crossmodal_search.stores._limits import (
    DEFAULT_NON_FILTERABLE_KEYS,
    StoreLimits,
    key_list,
    validate_batch,
    validate_query,
    validate_query_matrix,
    validate_top_k,
)
from crossmodal_search.stores._local_options import LocalOptions
from crossmodal_search.stores._models import GetResult, QueryMatch, VectorRecord
from crossmodal_search.stores._persist import Manifest, SegmentLog, StorageDType
from crossmodal_search.stores._rows import RowTable
from crossmodal_search.stores._text import (
    IndexMode,
    TextField,
    TextMatch,
    validate_text_fields,
    validate_text_queries,
)

__all__ = ["LocalVectorStore", "StorageDType"]

logger = logging.getLogger(__name__)

# Size past which a write logs a warning (exact search scans every vector).
_LARGE_STORE = 5_000_000


class LocalVectorStore:
    """An embedded vector store with S3 Vectors semantics: exact search, same filters and limits.

    Size guidance: search is exact, so a query costs one pass over every vector, at the speed
    memory streams them (``docs/benchmarks.md`` has the figures: on two shared cores about
    14 ms at 100k x 1024 float32 and 130 ms at 1M; a filter selecting 1% of the rows cuts that
    to a few ms). One million 1024-d float32 vectors take ~4 GiB of RAM (float16: ~2 GiB).
    ``storage_dtype="float16"`` with the ``simd`` extra (NumKong) searches faster than
    float32; without it, numpy converts float16 element by element and a query is ~15x slower.
    Beyond a few million vectors use ``S3VectorsStore``. One process writes a directory at a
    time (an ``flock`` lock); any number may open it ``read_only=True``.

    Args:
        path: Directory to persist to (created if missing), or None for a purely in-memory store.
        dimension: Vector length. May be omitted when reopening an existing directory.
        distance_metric: ``"cosine"`` (distance = 1 - cosine similarity) or ``"euclidean"``
            (L2 distance). None means cosine for a new store and the stored metric when
            reopening; an explicit value must match the stored one.
        non_filterable_metadata_keys: Metadata keys stored but not usable in filters (and not
            counted against the 2 KB filterable limit). When reopening, the stored set is used
            unless a different one is passed explicitly.
        limits: Limits checked before every write and query. The default is the S3 Vectors
            limits, so what works locally also works on S3 Vectors; ``StoreLimits.relaxed()``
            lifts every size and count limit for purely local use.
        storage_dtype: ``"float32"`` (default; vectors round-trip exactly) or ``"float16"``
            (half the memory; stores unit vectors plus their norms, so ``get`` returns vectors
            within ~1e-3 relative error and search is computed in float32 blocks). None means
            float32 for a new store and the stored dtype for an existing one.
        read_only: Open an existing directory without taking the write lock; every mutating
            call raises. Each call first checks (one ``stat``) whether a writer has committed
            since, and if so applies the new segments, so a reader serves what the writer
            wrote as soon as its call returns.
        float16_kernel: How float16 rows are multiplied: ``"auto"`` (default: NumKong's SIMD
            kernels when the ``simd`` extra is installed, else numpy), ``"numkong"`` (required;
            ConfigurationError if missing) or ``"numpy"``. Results are the same with either:
            candidates are re-scored in float64. Ignored for float32 storage.
        scan_dtype: A float32 store can keep a 16-bit copy of its vectors for the first pass
            of search: ``"bfloat16"`` or ``"float16"`` (extra ``simd``; 50 % more memory; built
            by the first query, kept in step by writes, not persisted). Results are identical
            to scanning the float32 vectors: rows within the copy's rounding bound of the k-th
            best are re-scored from the float32 vectors in float64. Measured at 100k x 1024:
            ~0.6x the float32 time per query, 1.25 vs 2.0 ms per query in batches of 32
            (``docs/benchmarks.md``). None (default): no copy. Not
            combinable with ``accelerator``; a float16 store is scanned as float16 already.
        accelerator: Approximate search for large stores (``stores/_ann.py``; not persisted):
            ``"funnel"`` (Matryoshka: scan 256 leading dimensions, re-rank at full dimension),
            ``"hnsw"`` (graph index; extra ``ann``; built on the first query;
            ``HnswAccelerator(background=True)`` builds it on a thread while writes go on),
            an ``Accelerator`` instance, or None (default: exact search). Filters stay exact;
            distances of returned matches are exact; recall is measured in
            ``docs/benchmarks.md``.
        text_fields: Metadata keys to make full-text searchable (:meth:`query_text`), kept in
            the directory. When reopening, keys not yet searchable are added; a key analyzed
            in another language raises IndexMismatchError.
        memory_map: Map the segment files instead of reading the vectors (persisted stores):
            opening costs a few ``stat`` calls whatever the size, the first call reads the keys
            and metadata, and pages of vectors come in as search touches them, so a store
            larger than RAM is searched at the disk's speed. Vector checksums are then left to
            ``crossmodal store check``. None (default): mapped when the vector files hold
            256 MiB or more. Not combinable with ``accelerator``.

    Raises:
        StoreLockedError: Another open store (in any process) holds the directory for writing.
        IndexMismatchError: The directory holds a store of another dimension, metric, dtype or
            non-filterable key set.
        ConfigurationError: The directory is not a store, or is unreadable.

    Example:
        >>> store = LocalVectorStore(dimension=2)
        >>> store.put([VectorRecord.create("a", [1, 0], {"colour": "red"}),
        ...            VectorRecord.create("b", [0, 1], {"colour": "blue"})])
        >>> [m.key for m in store.query([1, 0.1], top_k=1)]
        ['a']
        >>> [m.key for m in store.query([1, 0.1], filter={"colour": "blue"})]
        ['b']
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        dimension: int | None = None,
        distance_metric: DistanceMetric | None = None,
        non_filterable_metadata_keys: Iterable[str] = DEFAULT_NON_FILTERABLE_KEYS,
        limits: StoreLimits | None = None,
        storage_dtype: StorageDType | None = None,
        read_only: bool = False,
        accelerator: AcceleratorName | Accelerator | None = None,
        float16_kernel: Float16Kernel = "auto",
        scan_dtype: ScanDType | None = None,
        text_fields: Iterable[TextField] = (),
        memory_map: bool | None = None,
    ) -> None:
        if memory_map and path is None:
            raise ConfigurationError("memory_map=True needs a directory (path) to map")
        options = LocalOptions.check(
            dimension=dimension,
            distance_metric=distance_metric,
            non_filterable_metadata_keys=non_filterable_metadata_keys,
            limits=limits,
            storage_dtype=storage_dtype,
            read_only=read_only,
            accelerator=accelerator,
            float16_kernel=float16_kernel,
            scan_dtype=scan_dtype,
            text_fields=text_fields,
            memory_map=memory_map,
        )
        self._limits = options.limits
        self._path = Path(path) if path is not None else None
        self._read_only = read_only
        self._closed = False
        self._unloaded = False
        self._mutex = threading.RLock()
        self._log: SegmentLog | None = None
        if self._path is None:
            manifest = options.new_manifest(None)
        else:
            self._log = SegmentLog(self._path, read_only=read_only)
            try:
                manifest = options.settle(self._log, self._path)
            except BaseException:
                self._log.close()
                raise
        self._dimension = manifest.dimension
        self._metric = manifest.distance_metric
        self._non_filterable = manifest.non_filterable_metadata_keys
        self._filters = FilterCache(self._non_filterable)
        self._text_fields = manifest.text_fields
        self._start(options, manifest)
        logger.debug("opened %r", self)

    def _start(self, options: LocalOptions, manifest: Manifest) -> None:
        """Build the rows and the search for ``manifest``'s settings, then load the segments."""
        dtype: np.dtype[Any] = np.dtype(manifest.storage_dtype)
        scaled = dtype == np.float16
        # A float16 store's rows are the 16-bit scan already.
        self._scan_format = None if scaled else options.scan_format
        kernel = resolve_float16_kernel(options.float16_kernel) if scaled else options.scan_kernel
        self._kernel_error = 0.0
        if kernel is not None:
            d = manifest.dimension
            rows_error = kernel.format.row_error(d) if scaled else kernel.format.copy_error(d)
            self._kernel_error = 1.01 * (kernel.error_bound(d) + rows_error)
        self._kernel = kernel
        self._dtype = dtype
        self._accelerator = options.accelerator
        if isinstance(self._accelerator, BackgroundAccelerator):
            self._accelerator.attach(WeakRowSource(self._metric, self._read_rows))
        self._bind(self._new_rows())
        # A mapped store reads its keys and metadata, and maps its vectors, on first use.
        self._unloaded = False
        if self._log is None:
            return
        try:
            self._log.memory_map = options.maps(manifest)
            if self._log.memory_map:
                self._log.check_sizes()
                self._unloaded = True
            else:
                self._log.load(self._rows)
            if not self._read_only:
                self._log.remove_orphans()
        except BaseException:
            self._log.close()
            raise

    def _load(self) -> None:
        """Read the rows of a store opened with ``memory_map`` (its first use)."""
        if not self._unloaded or self._log is None:
            return
        try:
            self._log.load(self._rows)
        except BaseException:
            self._rows.reset()
            raise
        self._unloaded = False
        logger.debug("%r loaded (vectors mapped)", self)

    def _new_rows(self) -> RowTable:
        rows = RowTable(
            dimension=self._dimension,
            dtype=self._dtype,
            non_filterable=self._non_filterable,
            scan_format=self._scan_format,
            accelerator=self._accelerator,
        )
        rows.set_text_fields(self._text_fields)
        return rows

    def _bind(self, rows: RowTable) -> None:
        """Search ``rows`` from now on."""
        self._rows = rows
        self._exact = ExactSearch(
            rows,
            metric=self._metric,
            kernel=self._kernel,
            kernel_error=self._kernel_error,
            accelerator=self._accelerator,
        )

    def _read_rows(self, start: int, stop: int) -> tuple[npt.NDArray[np.float32], int] | None:
        """A background build's read (under the mutex: it sees whole writes); None if closed."""
        with self._mutex:
            return None if self._closed else self._rows.block(start, stop)

    def _catch_up(self) -> None:
        """A reader serves what the writer has committed since (one stat when nothing has)."""
        self._load()
        if not self._read_only or self._log is None:
            return
        rows = self._log.refresh(self._rows, self._new_rows)
        if rows is not None and rows is not self._rows:
            self._bind(rows)
        manifest = self._log.manifest
        if manifest is not None and manifest.text_fields != self._text_fields:
            self._text_fields = manifest.text_fields
            self._rows.set_text_fields(self._text_fields)
        if rows is not None and self._log.manifest is not None:
            logger.debug("%r caught up with generation %d", self, self._log.manifest.generation)

    # ------------------------------------------------------------------ properties

    @property
    def dimension(self) -> int:
        """Length of every vector in the store."""
        return self._dimension

    @property
    def distance_metric(self) -> DistanceMetric:
        """``"cosine"`` (distance = 1 - cosine similarity) or ``"euclidean"`` (L2 distance)."""
        return self._metric

    @property
    def non_filterable_metadata_keys(self) -> frozenset[str]:
        """Metadata keys stored but not usable in filters."""
        return self._non_filterable

    @property
    def limits(self) -> StoreLimits:
        """The limits enforced before writes and queries."""
        return self._limits

    @property
    def index_mode(self) -> IndexMode:
        """Always ``ENHANCED``: filters apply before ranking, full-text search and
        ``$startsWith`` work."""
        return "ENHANCED"

    @property
    def text_fields(self) -> tuple[TextField, ...]:
        """The full-text searchable metadata keys (always ``ACTIVE``: indexed as written)."""
        with self._mutex:
            if not self._closed:
                self._catch_up()
            return self._text_fields

    @property
    def storage_dtype(self) -> StorageDType:
        """``"float32"`` or ``"float16"``."""
        return "float16" if self._rows.scaled else "float32"

    @property
    def path(self) -> Path | None:
        """The store directory, or None for an in-memory store."""
        return self._path

    def __len__(self) -> int:
        with self._mutex:
            if not self._closed:
                self._catch_up()
            return self._rows.n

    @property
    def float16_kernel(self) -> KernelName | None:
        """The kernel multiplying float16 rows (see the constructor), or None for float32."""
        return None if self._kernel is None else self._kernel.name

    @property
    def scan_dtype(self) -> ScanDType | None:
        """The dtype of a float32 store's scan copy (the ``scan_dtype=`` option), or None."""
        return None if self._scan_format is None else self._scan_format.name

    def __repr__(self) -> str:
        where = str(self._path) if self._path is not None else ":memory:"
        return (
            f"LocalVectorStore({where!r}, dimension={self._dimension}, "
            f"distance_metric={self._metric!r}, storage_dtype={self.storage_dtype!r}, "
            f"vectors={'(not read yet)' if self._unloaded else self._rows.n})"
        )

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the directory's write lock. Further calls on the store raise."""
        with self._mutex:
            self._closed = True
            if self._log is not None:
                self._log.close()
                if self._log.memory_map:
                    self._rows.release()  # unmap the segment files
        # Outside the mutex: a background build may be waiting for it to read rows.
        if isinstance(self._accelerator, BackgroundAccelerator):
            self._accelerator.close()

    def __enter__(self) -> LocalVectorStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self, *, write: bool = False) -> None:
        if self._closed:
            raise ConfigurationError(f"{self!r} is closed")
        if write and self._read_only:
            raise ConfigurationError(f"{self!r} was opened read_only=True")
        if write:
            self._load()
        else:
            self._catch_up()

    # ------------------------------------------------------------------ public API

    def put(self, records: Iterable[VectorRecord]) -> None:
        """Insert or overwrite records (upsert), durably.

        Everything is validated first; a bad record raises and nothing is written.

        Raises:
            InvalidInputError: Bad key, vector (NaN, infinity, zero on cosine) or duplicate key.
            DimensionMismatchError: A vector's length differs from :attr:`dimension`.
            MetadataLimitError: Metadata breaks a limit (the error names record and key).
        """
        with self._mutex:
            self._check_open(write=True)
            batch = validate_batch(
                records,
                dimension=self._dimension,
                distance_metric=self._metric,
                non_filterable=self._non_filterable,
                limits=self._limits,
            )
            if not batch.keys:
                return
            stored, norms = self._rows.prepare(batch.vectors)
            if self._log is not None:
                self._log.append(batch.keys, stored, norms, batch.metadata, deleted=())
            before = self._rows.n
            self._rows.put(batch.keys, stored, norms, batch.metadata)
            if self._log is not None:
                self._log.merge_if_due(self._rows)
            if before < _LARGE_STORE <= self._rows.n:
                logger.warning(
                    "%r holds %d vectors; exact search scans all of them per query, "
                    "consider S3VectorsStore for catalogs this size",
                    self,
                    self._rows.n,
                )

    def delete(self, keys: Sequence[str]) -> None:
        """Delete records, durably. Keys not stored are ignored."""
        with self._mutex:
            self._check_open(write=True)
            wanted = key_list(keys)
            present = list(dict.fromkeys(k for k in wanted if k in self._rows.index))
            if not present:
                return
            if self._log is not None:
                empty = np.empty((0, self._dimension), dtype=self._rows.dtype)
                self._log.append([], empty, np.empty(0), [], deleted=present)
            self._rows.delete(present)
            if self._log is not None:
                self._log.merge_if_due(self._rows)

    def get(self, keys: Sequence[str]) -> GetResult:
        """Fetch records in the order asked; keys not stored are listed in ``missing``."""
        with self._mutex:
            self._check_open()
            wanted = key_list(keys)
            found: list[VectorRecord] = []
            missing: list[str] = []
            for key in wanted:
                row = self._rows.index.get(key)
                if row is None:
                    missing.append(key)
                else:
                    found.append(self._rows.record(row))
            return GetResult(tuple(found), tuple(missing))

    def keys(self) -> Iterator[str]:
        """Every stored key, in row order (a snapshot taken when called)."""
        with self._mutex:
            self._check_open()
            return iter(list(self._rows.keys))

    def records(self) -> Iterator[VectorRecord]:
        """Every stored record with its vector and metadata (records deleted meanwhile skipped)."""
        with self._mutex:
            self._check_open()
            snapshot = list(self._rows.keys)
        for start in range(0, len(snapshot), 1024):
            with self._mutex:
                chunk = [
                    self._rows.record(row)
                    for key in snapshot[start : start + 1024]
                    if (row := self._rows.index.get(key)) is not None
                ]
            yield from chunk

    def query(
        self,
        vector: npt.ArrayLike,
        *,
        top_k: int = 10,
        filter: Filter | None = None,
    ) -> list[QueryMatch]:
        """The ``top_k`` nearest records matching ``filter``, best first (ties by key).

        Raises:
            InvalidInputError: Bad ``top_k`` (1..100 by default), NaN/infinite or (cosine)
                all-zero query vector.
            DimensionMismatchError: The vector's length differs from :attr:`dimension`.
            InvalidFilterError: ``filter`` is outside the S3 Vectors filter language.
        """
        with self._mutex:
            self._check_open()
            q = validate_query(
                vector, top_k, self._dimension, self._limits, distance_metric=self._metric
            )
            compiled = self._compile(filter)
            return self._exact.search(q[None, :], int(top_k), compiled)[0]

    def query_many(
        self,
        vectors: npt.ArrayLike,
        *,
        top_k: int = 10,
        filter: Filter | None = None,
    ) -> list[list[QueryMatch]]:
        """:meth:`query` for each row of an ``(n, dimension)`` matrix, with one matrix product.

        Returns exactly what calling :meth:`query` per row returns.
        """
        with self._mutex:
            self._check_open()
            q = validate_query_matrix(
                vectors, top_k, self._dimension, self._limits, distance_metric=self._metric
            )
            compiled = self._compile(filter)
            return self._exact.search(q, int(top_k), compiled)

    def add_text_fields(self, fields: Iterable[TextField]) -> None:
        """Make metadata keys full-text searchable, durably. Stored records are indexed too
        (by the first text query, from their metadata: nothing is re-embedded).

        Raises:
            InvalidInputError: A key already searchable, a bad key or language, more than 10.
            ConfigurationError: A stemming language without PyStemmer (extra ``fulltext``).
        """
        with self._mutex:
            self._check_open(write=True)
            new = validate_text_fields(fields, existing=self._text_fields)
            if not new:
                return
            for f in new:
                analyzer(f.language)
            self._set_text_fields((*self._text_fields, *new))

    def remove_text_fields(self, keys: Iterable[str]) -> None:
        """Stop full-text indexing of ``keys``, durably (their metadata stays).

        Raises:
            InvalidInputError: A key that is not full-text searchable.
        """
        with self._mutex:
            self._check_open(write=True)
            if isinstance(keys, str):
                raise InvalidInputError("keys must be a sequence of strings, not a single string")
            gone = set(keys)
            have = {f.key for f in self._text_fields}
            unknown = sorted(str(k) for k in gone - have)
            if unknown:
                raise InvalidInputError(
                    f"metadata key {unknown[0]!r} is not full-text searchable "
                    f"(searchable: {', '.join(sorted(have)) or 'none'})"
                )
            if gone:
                self._set_text_fields(tuple(f for f in self._text_fields if f.key not in gone))

    def _set_text_fields(self, fields: tuple[TextField, ...]) -> None:
        if self._log is not None:
            self._log.set_text_fields(fields)
        self._text_fields = fields
        self._rows.set_text_fields(fields)

    def query_text(
        self,
        texts: Mapping[str, str],
        *,
        vector: npt.ArrayLike | None = None,
        top_k: int = 10,
        filter: Filter | None = None,
    ) -> list[TextMatch]:
        """Records ranked by their words, or by words and ``vector`` together (hybrid).

        ``texts`` maps full-text keys to the words to find. Text only: ranked by the sum of
        the keys' BM25 scores, records without a query word left out (so possibly fewer than
        ``top_k``). With ``vector``: each key's BM25 ranking and the vector ranking (each its
        best ``top_k``) fused by Reciprocal Rank Fusion. ``filter`` applies first.

        Raises:
            InvalidInputError: No text, more than 10, an empty or over-long text, a key that is
                not full-text searchable, a bad ``top_k`` or vector.
            DimensionMismatchError: The vector's length differs from :attr:`dimension`.
            InvalidFilterError: ``filter`` is outside the filter language.
        """
        with self._mutex:
            self._check_open()
            queries = validate_text_queries(texts, {f.key: f for f in self._text_fields})
            validate_top_k(top_k, self._limits)
            q = None
            if vector is not None:
                q = validate_query(
                    vector, top_k, self._dimension, self._limits, distance_metric=self._metric
                )
            compiled = self._compile(filter)
            return text_matches(self._rows, self._exact, queries, q, int(top_k), compiled)

    # ------------------------------------------------------------------ helpers

    def _compile(self, filter: Filter | None) -> CompiledFilter | None:
        if filter is None:
            return None
        return self._filters.compile(filter)
