"""``LocalVectorStore``: the embedded store, in memory or persisted in a directory.

Search is exact: one matrix product over every stored vector (or only the rows a filter
selects), a partial sort, then the few candidates are re-scored in float64, so reported
distances do not depend on BLAS rounding. Ties are broken by key, so results are deterministic.

On-disk layout (``path`` given)::

    DIR/manifest.json          format version, dimension, metric, dtype, non-filterable keys,
                               generation and the ordered list of segments with their byte sizes
    DIR/seg-00000007.npy       the vectors written by one operation (storage dtype, no pickle)
    DIR/seg-00000007.jsonl     one line per record of that operation: {"k", "n", "m"} for a
                               put (key, vector norm, metadata), {"k", "d": true} for a delete
    DIR/.lock                  flock()-ed by the one writer

Every mutating call is durable when it returns. It appends one segment (new files, fsync),
then commits by atomically replacing ``manifest.json`` (write a temporary file, fsync, rename,
fsync the directory). Segments are replayed in order on open. A crash at any point leaves
either the previous or the new manifest, and each references only complete files, so the
store reopens in the previous or the new state, never in between. Files no manifest
references (left by a crash) are removed when a writer next opens the directory.

To keep reopening fast, segments are merged like a binary counter: the newest segments are
rewritten as one whenever the older neighbour is at most twice their size, so a store holds
O(log n) segments and each record is rewritten O(log n) times over its life (amortised
appends). A merge that reaches the first segment writes a fresh snapshot without tombstones.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import DistanceMetric, Filter, MetadataValue
from crossmodal_search.errors import (
    ConfigurationError,
    IndexMismatchError,
    InvalidInputError,
    StoreCorruptedError,
    StoreLockedError,
)
from crossmodal_search.stores._ann import Accelerator, AcceleratorName, make_accelerator
from crossmodal_search.stores._filter import CompiledFilter, MetadataColumns, compile_filter
from crossmodal_search.stores._kernels import (
    DotKernel,
    Float16Kernel,
    KernelName,
    ScanDType,
    require_numkong,
    resolve_float16_kernel,
    scan_format,
    validate_float16_kernel,
)
from crossmodal_search.stores._limits import (
    DEFAULT_NON_FILTERABLE_KEYS,
    StoreLimits,
    validate_batch,
    validate_dimension,
    validate_distance_metric,
    validate_non_filterable_keys,
    validate_query,
    validate_query_matrix,
)
from crossmodal_search.stores._models import GetResult, QueryMatch, VectorRecord

if sys.platform != "win32":
    import fcntl

__all__ = ["LocalVectorStore", "StorageDType"]

logger = logging.getLogger(__name__)

StorageDType = Literal["float32", "float16"]

_FORMAT = "crossmodal-search/local-vector-store"
_VERSION = 1
_MANIFEST = "manifest.json"
_LOCK = ".lock"
_SEGMENT_RE = re.compile(r"^seg-(\d{8})\.(npy|jsonl)$")
# Rows per block when converting or writing vectors: bounds temporary memory to a few MiB.
_BLOCK_ROWS = 16384
# Score-matrix budget for query_many (elements): bounds memory to ~256 MiB of float32 scores.
_SCORE_BUDGET = 64 * 1024 * 1024
# A filter selecting less than this fraction of rows is answered by gathering those rows only.
_GATHER_FRACTION = 0.5
# Size past which a write logs a warning (exact search scans every vector).
_LARGE_STORE = 5_000_000
# Relative slack when picking candidates for exact re-scoring, far above float32 matmul error.
_RELATIVE_TOLERANCE = 1e-5
# Rows per block when bounding the k-th best order key by block minima (see _candidates).
_BOUND_BLOCK = 128


@dataclass(frozen=True)
class _RowFactors:
    """Per-row float32 factors of the order keys, cached between writes (see _order_keys)."""

    neg_inv: npt.NDArray[np.float32] | None  # cosine, raw rows: -1 / |x|
    squared: npt.NDArray[np.float32] | None  # euclidean: |x|^2
    scale: npt.NDArray[np.float32] | None  # euclidean, float16 unit rows: |x|
    top_norm: float
    bottom_norm: float


@dataclass
class _Segment:
    seg_id: int
    puts: int
    deletes: int
    vectors_bytes: int
    records_bytes: int
    touched: frozenset[str] | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return self.puts + self.deletes

    @property
    def vectors_name(self) -> str:
        return f"seg-{self.seg_id:08d}.npy"

    @property
    def records_name(self) -> str:
        return f"seg-{self.seg_id:08d}.jsonl"

    def to_json(self) -> dict[str, int]:
        return {
            "id": self.seg_id,
            "puts": self.puts,
            "deletes": self.deletes,
            "vectors_bytes": self.vectors_bytes,
            "records_bytes": self.records_bytes,
        }


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _corrupt(path: Path, why: str) -> ConfigurationError:
    return ConfigurationError(f"local vector store at {path} is unreadable: {why}")


class LocalVectorStore:
    """An embedded vector store with S3 Vectors semantics: exact search, same filters and limits.

    Size guidance: search is exact, so a query costs one pass over every vector (measured on
    one core: ~23 ms at 100k x 1024 float32, ~230 ms at 1M; a filter selecting 1% of the rows
    cuts that to a few ms). One million 1024-d float32 vectors take ~4 GiB of RAM (float16:
    ~2 GiB). ``storage_dtype="float16"`` with the ``simd`` extra (NumKong) searches faster than
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
            call raises. Reads a snapshot taken when opened.
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
            ``"hnsw"`` (graph index; extra ``ann``; built on the first query), an
            ``Accelerator`` instance, or None (default: exact search). Filters stay exact;
            distances of returned matches are exact; recall is measured in
            ``docs/benchmarks.md``.

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
    ) -> None:
        # Options are checked before the directory is opened or locked.
        validate_float16_kernel(float16_kernel)
        self._scan_format = scan_format(scan_dtype)
        scan_kernel = (
            None
            if self._scan_format is None
            else require_numkong(f"scan_dtype={scan_dtype!r}", self._scan_format)
        )
        if self._scan_format is not None and accelerator is not None:
            raise ConfigurationError(
                "scan_dtype and accelerator are alternatives: the accelerator does its own scan"
            )
        if scan_dtype == "bfloat16" and storage_dtype == "float16":
            raise ConfigurationError(
                "scan_dtype='bfloat16' needs float32 storage (float16 rows are scanned as they are)"
            )
        self._accelerator = make_accelerator(accelerator)
        self._dimension = 0
        self._scaled = False
        self._n = 0
        self._limits = limits or StoreLimits()
        self._metric = validate_distance_metric(distance_metric or "cosine")
        explicit_keys = non_filterable_metadata_keys is not DEFAULT_NON_FILTERABLE_KEYS
        self._non_filterable = validate_non_filterable_keys(
            non_filterable_metadata_keys, self._limits
        )
        if storage_dtype not in (None, "float32", "float16"):
            raise InvalidInputError(
                f"storage_dtype must be 'float32' or 'float16', got {storage_dtype!r}"
            )
        self._path = Path(path) if path is not None else None
        self._read_only = read_only
        self._closed = False
        self._mutex = threading.RLock()
        self._lock_finalizer: weakref.finalize[Any, Any] | None = None
        self._segments: list[_Segment] = []
        self._generation = 0

        manifest: dict[str, Any] | None = None
        if self._path is not None:
            manifest = self._open_directory(self._path)
        if manifest is not None:
            dimension = self._check_compatible(
                manifest, dimension, distance_metric, storage_dtype, explicit_keys
            )
            storage_dtype = manifest["storage_dtype"]
        elif dimension is None:
            raise ConfigurationError(
                "dimension is required to create a new store"
                + (f" (no store found at {self._path})" if self._path else "")
            )
        self._dimension = validate_dimension(dimension, self._limits)
        self._dtype: np.dtype[Any] = np.dtype(storage_dtype or "float32")
        self._scaled = self._dtype == np.float16
        if self._scaled and scan_dtype == "bfloat16":  # reopened a float16 directory
            self._release_lock()
            raise ConfigurationError(
                f"scan_dtype='bfloat16' needs float32 storage; {self._path} holds float16 vectors"
            )
        if self._scaled:
            self._scan_format = None  # its rows are the float16 scan
        self._kernel: DotKernel | None = (
            resolve_float16_kernel(float16_kernel) if self._scaled else scan_kernel
        )
        # The first pass reads unit rows (float16 storage, or a scan copy): row i stands for
        # its unit vector times _norms[i].
        self._unit_scan = self._kernel is not None
        # The scan copy of a float32 store's rows (same capacity as _matrix), once built.
        self._scan_rows: npt.NDArray[Any] | None = None
        # Extra slack for candidates (relative to the order keys' magnitude): the kernel rounds
        # the query; float16 unit rows are only unit length to within rounding; a scan copy's
        # rows are the float32 unit rows rounded.
        self._kernel_error = 0.0
        if self._kernel is not None:
            fmt = self._kernel.format
            rows_error = (
                fmt.row_error(self._dimension) if self._scaled else fmt.copy_error(self._dimension)
            )
            self._kernel_error = 1.01 * (self._kernel.error_bound(self._dimension) + rows_error)

        # Row-aligned state: row i holds key _keys[i]; its vector is _matrix[i] (float32) or
        # _matrix[i] * _norms[i] (float16 unit rows).
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        self._metadata: list[dict[str, MetadataValue]] = []
        self._matrix: npt.NDArray[Any] = np.empty((0, self._dimension), dtype=self._dtype)
        self._norms: npt.NDArray[np.float64] = np.empty(0, dtype=np.float64)
        self._columns = MetadataColumns(self._non_filterable)
        self._n = 0
        self._factors: _RowFactors | None = None

        if self._path is not None:
            try:
                if manifest is None:
                    if read_only:
                        raise ConfigurationError(f"no local vector store at {self._path}")
                    self._commit_manifest()
                elif read_only:
                    self._load_snapshot(manifest)
                else:
                    self._load(manifest)
            except BaseException:
                self._release_lock()
                raise
            if not read_only:
                self._remove_orphans()
        logger.debug("opened %r with %d vectors", self, self._n)

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
    def storage_dtype(self) -> StorageDType:
        """``"float32"`` or ``"float16"``."""
        return "float16" if self._scaled else "float32"

    @property
    def path(self) -> Path | None:
        """The store directory, or None for an in-memory store."""
        return self._path

    def __len__(self) -> int:
        return self._n

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
            f"vectors={self._n})"
        )

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the directory's write lock. Further calls on the store raise."""
        with self._mutex:
            self._closed = True
            self._release_lock()

    def __enter__(self) -> LocalVectorStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _release_lock(self) -> None:
        if self._lock_finalizer is not None:
            self._lock_finalizer()
            self._lock_finalizer = None

    def _check_open(self, *, write: bool = False) -> None:
        if self._closed:
            raise ConfigurationError(f"{self!r} is closed")
        if write and self._read_only:
            raise ConfigurationError(f"{self!r} was opened read_only=True")

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
            stored, norms = self._prepare(batch.vectors)
            if self._path is not None:
                self._write_segment(batch.keys, stored, norms, batch.metadata, deleted=())
            before = self._n
            self._apply_put(batch.keys, stored, norms, batch.metadata)
            self._after_write()
            if before < _LARGE_STORE <= self._n:
                logger.warning(
                    "%r holds %d vectors; exact search scans all of them per query, "
                    "consider S3VectorsStore for catalogs this size",
                    self,
                    self._n,
                )

    def delete(self, keys: Sequence[str]) -> None:
        """Delete records, durably. Keys not stored are ignored."""
        with self._mutex:
            self._check_open(write=True)
            wanted = self._check_keys(keys)
            present = list(dict.fromkeys(k for k in wanted if k in self._index))
            if not present:
                return
            if self._path is not None:
                empty = np.empty((0, self._dimension), dtype=self._dtype)
                self._write_segment([], empty, np.empty(0), [], deleted=present)
            self._apply_delete(present)
            self._after_write()

    def get(self, keys: Sequence[str]) -> GetResult:
        """Fetch records in the order asked; keys not stored are listed in ``missing``."""
        with self._mutex:
            self._check_open()
            wanted = self._check_keys(keys)
            found: list[VectorRecord] = []
            missing: list[str] = []
            for key in wanted:
                row = self._index.get(key)
                if row is None:
                    missing.append(key)
                else:
                    found.append(self._record(row))
            return GetResult(tuple(found), tuple(missing))

    def keys(self) -> Iterator[str]:
        """Every stored key, in row order (a snapshot taken when called)."""
        with self._mutex:
            self._check_open()
            return iter(list(self._keys))

    def records(self) -> Iterator[VectorRecord]:
        """Every stored record with its vector and metadata (records deleted meanwhile skipped)."""
        with self._mutex:
            self._check_open()
            snapshot = list(self._keys)
        for start in range(0, len(snapshot), 1024):
            with self._mutex:
                chunk = [
                    self._record(row)
                    for key in snapshot[start : start + 1024]
                    if (row := self._index.get(key)) is not None
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
            return self._search(q[None, :], int(top_k), compiled)[0]

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
            return self._search(q, int(top_k), compiled)

    # ------------------------------------------------------------------ helpers

    def _check_keys(self, keys: Sequence[str]) -> list[str]:
        if isinstance(keys, str | bytes):
            raise InvalidInputError("keys must be a sequence of strings, not a single string")
        out = list(keys)
        for key in out:
            if not isinstance(key, str):
                raise InvalidInputError(f"keys must be strings, got {type(key).__name__}")
        return out

    def _compile(self, filter: Filter | None) -> CompiledFilter | None:
        if filter is None:
            return None
        return compile_filter(filter, non_filterable=self._non_filterable)

    def _record(self, row: int) -> VectorRecord:
        vec = self._matrix[row].astype(np.float32)
        if self._scaled:
            vec = (vec.astype(np.float64) * self._norms[row]).astype(np.float32)
        return VectorRecord(self._keys[row], vec, _copy_metadata(self._metadata[row]))

    def _prepare(
        self, vectors: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[Any], npt.NDArray[np.float64]]:
        """Vectors as stored (float32 as given, or float16 unit vectors) and their float64 norms."""
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors)).astype(np.float64)
        # float32 squares overflow above ~1e19 and underflow below ~1e-19: redo those in float64.
        redo = np.flatnonzero(~np.isfinite(norms) | (norms < 1e-18))
        if redo.size:
            wide = vectors[redo].astype(np.float64)
            norms[redo] = np.sqrt(np.einsum("ij,ij->i", wide, wide))
        if not self._scaled:
            return vectors, norms
        stored = np.empty(vectors.shape, dtype=self._dtype)
        for s in range(0, vectors.shape[0], _BLOCK_ROWS):
            block = slice(s, s + _BLOCK_ROWS)
            stored[block] = _unit_rows(vectors[block], norms[block])
        return stored, norms

    def _reserve(self, rows: int) -> None:
        capacity = self._matrix.shape[0]
        if rows <= capacity:
            return
        # Geometric growth keeps many small puts amortised O(1) per row; a first bulk put
        # allocates exactly what it needs.
        new_capacity = max(rows, int(capacity * 1.5), 1024 if capacity else 0)
        matrix = np.empty((new_capacity, self._dimension), dtype=self._dtype)
        matrix[: self._n] = self._matrix[: self._n]
        norms = np.zeros(new_capacity, dtype=np.float64)
        norms[: self._n] = self._norms[: self._n]
        self._matrix, self._norms = matrix, norms
        if self._scan_rows is not None:
            scan = np.empty((new_capacity, self._dimension), dtype=self._scan_rows.dtype)
            scan[: self._n] = self._scan_rows[: self._n]
            self._scan_rows = scan

    def _apply_put(
        self,
        keys: Sequence[str],
        stored: npt.NDArray[Any],
        norms: npt.NDArray[np.float64],
        metadata: Sequence[dict[str, MetadataValue]],
    ) -> None:
        self._factors = None
        rows = np.empty(len(keys), dtype=np.intp)
        old_n = n = self._n
        for i, key in enumerate(keys):
            row = self._index.get(key)
            if row is None:
                row = self._index[key] = n
                self._keys.append(key)
                self._metadata.append(metadata[i])
                n += 1
            rows[i] = row
        self._reserve(n)
        self._n = n
        self._columns.resize(n)
        if rows.size and rows[-1] - rows[0] == rows.size - 1 and np.all(np.diff(rows) == 1):
            self._matrix[rows[0] : rows[-1] + 1] = stored
        else:
            self._matrix[rows] = stored
        self._norms[rows] = norms
        if self._scan_rows is not None:
            self._write_scan(rows)
        for i, row in enumerate(rows.tolist()):
            self._metadata[row] = metadata[i]
            self._columns.set_row(row, metadata[i], fresh=row >= old_n)
        if self._accelerator is not None:
            self._accelerator.update(rows, self._true_vectors(rows))

    def _apply_delete(self, keys: Sequence[str]) -> None:
        rows = sorted({self._index[k] for k in keys if k in self._index})
        if not rows:
            return
        self._factors = None
        n = self._n
        new_n = n - len(rows)
        gone = set(rows)
        for row in rows:
            del self._index[self._keys[row]]
        # Swap-remove: live rows from the tail fill the holes, so the matrix stays compact and
        # a delete costs O(deleted rows), not O(store size).
        holes = [r for r in rows if r < new_n]
        movers = [r for r in range(new_n, n) if r not in gone]
        if holes:
            h = np.asarray(holes, dtype=np.intp)
            m = np.asarray(movers, dtype=np.intp)
            self._matrix[h] = self._matrix[m]
            self._norms[h] = self._norms[m]
            if self._scan_rows is not None:
                self._scan_rows[h] = self._scan_rows[m]
            self._columns.move_rows(m, h)
            for dst, src in zip(holes, movers, strict=True):
                key = self._keys[src]
                self._keys[dst] = key
                self._metadata[dst] = self._metadata[src]
                self._index[key] = dst
        del self._keys[new_n:]
        del self._metadata[new_n:]
        self._columns.resize(new_n)
        self._n = new_n
        if self._accelerator is not None:
            if holes:
                self._accelerator.update(h, self._true_vectors(h))
            self._accelerator.remove(np.arange(new_n, n))

    # ------------------------------------------------------------------ search

    def _search(
        self, queries: npt.NDArray[np.float32], top_k: int, compiled: CompiledFilter | None
    ) -> list[list[QueryMatch]]:
        n = self._n
        nq = queries.shape[0]
        if n == 0 or nq == 0:
            return [[] for _ in range(nq)]
        if self._accelerator is not None:
            return self._accelerated(queries, top_k, compiled)
        rows: npt.NDArray[np.intp] | None = None
        if compiled is not None:
            mask = compiled.mask(self._columns)
            selected = int(np.count_nonzero(mask))
            if selected == 0:
                return [[] for _ in range(nq)]
            if selected < n:
                rows = np.flatnonzero(mask)
        factors = self._row_factors(rows)
        results: list[list[QueryMatch]] = []
        count = n if rows is None else rows.shape[0]
        group = max(1, _SCORE_BUDGET // count)
        # float64: float32 squares under/overflow at 1e+-19.
        norms = np.linalg.norm(queries.astype(np.float64), axis=1)
        for start in range(0, nq, group):
            q = queries[start : start + group]
            qn = norms[start : start + group]
            picks: list[npt.NDArray[np.intp] | None] = [None] * q.shape[0]  # None: every row
            narrow = np.flatnonzero(~self._beyond_float32(qn, factors))
            if narrow.size:
                dots = self._dots(q[narrow], rows)  # (count, len(narrow))
                if narrow.size == 1:
                    order = self._order_keys(dots[:, 0], factors)
                    found = [self._candidates(order, top_k, float(qn[narrow[0]]), factors.top_norm)]
                else:
                    found = self._candidates_many(dots, top_k, qn[narrow], factors)
                for j, candidates in zip(narrow.tolist(), found, strict=True):
                    picks[j] = candidates
            for j, picked in enumerate(picks):
                if picked is None:  # beyond float32's range: every row, in float64
                    source = np.arange(count) if rows is None else rows
                else:
                    source = picked if rows is None else rows[picked]
                results.append(self._exact(source, q[j], top_k))
        return results

    def _beyond_float32(
        self, qn: npt.NDArray[np.float64], factors: _RowFactors
    ) -> npt.NDArray[np.bool_]:
        """Per query of norm ``qn``: could its float32 products or order keys overflow, or lose
        their relative precision to underflow? Only vectors scaled far from unit length (norms
        beyond 2^+-50) get here; those queries skip the float32 pass and score every row in
        float64."""
        top, bottom = factors.top_norm, factors.bottom_norm
        if self._metric == "cosine":
            if self._unit_scan:  # unit rows: the products scale with |q| only
                high, low = qn, qn
            else:
                high, low = qn * top, np.minimum(qn * bottom, bottom * 2.0**40)
        else:
            high = np.maximum(qn * top, top * top)
            low = 2.0 * qn * top + top * top
        beyond: npt.NDArray[np.bool_] = (high > 2.0**100) | (low < 2.0**-60)
        return beyond

    # -- accelerator wiring (stores/_ann.py): candidates from it, exact distances from _exact

    def _true_vectors(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        vectors = self._matrix[rows].astype(np.float32)
        if self._scaled:
            vectors *= self._norms[rows].astype(np.float32)[:, None]
        return vectors

    def _accelerated(
        self, queries: npt.NDArray[np.float32], top_k: int, compiled: CompiledFilter | None
    ) -> list[list[QueryMatch]]:
        assert self._accelerator is not None
        n = self._n
        mask = None if compiled is None else compiled.mask(self._columns)[:n]
        hits = self._accelerator.search(
            self._matrix[:n],
            queries,
            top_k,
            metric=self._metric,
            allowed=mask,
            norms=self._norms[:n],
            unit_rows=self._scaled,
        )
        return [self._exact(rows, q, top_k) for (rows, _), q in zip(hits, queries, strict=True)]

    def _dots(
        self, q: npt.NDArray[np.float32], rows: npt.NDArray[np.intp] | None
    ) -> npt.NDArray[np.float32]:
        """First-pass row . query products, shape (rows, queries), in float32: of the stored
        rows, or of the scan copy's unit rows."""
        scan = self._scan_matrix()
        if rows is None:
            matrix = scan[: self._n]
        elif rows.shape[0] < self._n * _GATHER_FRACTION:
            matrix = scan[rows]
        else:
            # A filter keeping most rows: multiply everything, keep the selected products.
            return self._dots(q, None)[rows]
        if self._kernel is not None:  # 16-bit rows (stores/_kernels.py)
            return self._kernel.dots(matrix, q)
        out: npt.NDArray[np.float32] = matrix @ np.ascontiguousarray(q.T)
        return out

    def _scan_matrix(self) -> npt.NDArray[Any]:
        """The rows the first pass reads: the stored ones, or the scan copy (built now if
        this is the first search since the store was opened or reloaded)."""
        if self._scan_format is None:
            return self._matrix
        if self._scan_rows is None:
            self._scan_rows = np.empty(self._matrix.shape, dtype=self._scan_format.storage)
            self._write_scan(np.arange(self._n))
            logger.debug("built the %s scan copy: %d rows", self._scan_format.name, self._n)
        return self._scan_rows

    def _write_scan(self, rows: npt.NDArray[np.intp]) -> None:
        """Copy rows ``rows`` of a float32 store into the scan copy: unit vectors rounded to
        its 16-bit format (zero rows stay zero), a block at a time."""
        assert self._scan_format is not None and self._scan_rows is not None
        for s in range(0, rows.shape[0], _BLOCK_ROWS):
            block = rows[s : s + _BLOCK_ROWS]
            unit = _unit_rows(self._matrix[block], self._norms[block])
            self._scan_rows[block] = self._scan_format.encode(unit)

    def _row_factors(self, rows: npt.NDArray[np.intp] | None) -> _RowFactors:
        """The order-key factors of every row (cached until the next write), or of ``rows``."""
        if self._factors is None:
            norms = self._norms[: self._n]
            cosine = self._metric == "cosine"
            # Rows beyond float32's range give infinite factors; no query uses them (every query
            # that could meet such a row is scored in float64: _beyond_float32).
            with np.errstate(over="ignore", divide="ignore"):
                self._factors = _RowFactors(
                    neg_inv=(-1.0 / norms).astype(np.float32)
                    if cosine and not self._unit_scan
                    else None,
                    squared=None if cosine else (norms * norms).astype(np.float32),
                    scale=norms.astype(np.float32) if self._unit_scan and not cosine else None,
                    top_norm=float(norms.max()) if norms.size else 0.0,
                    bottom_norm=float(norms.min()) if norms.size else 0.0,
                )
        full = self._factors
        if rows is None:
            return full
        # Element-wise the same values as computing the factors of the selected rows afresh.
        return _RowFactors(
            neg_inv=None if full.neg_inv is None else full.neg_inv[rows],
            squared=None if full.squared is None else full.squared[rows],
            scale=None if full.scale is None else full.scale[rows],
            top_norm=float(self._norms[rows].max()) if rows.size else 0.0,
            bottom_norm=float(self._norms[rows].min()) if rows.size else 0.0,
        )

    def _order_keys(
        self, dots: npt.NDArray[np.float32], factors: _RowFactors
    ) -> npt.NDArray[np.float32]:
        """Per-row values ordered like the distance (smaller is closer), cheap to compute.

        ``dots`` is one query's products ``(rows,)`` or several ``(rows, queries)``; it may be
        overwritten (a product block used once).
        """

        def per_row(factor: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            return factor if dots.ndim == 1 else factor[:, None]

        out: npt.NDArray[np.float32]
        # In place when contiguous: no second pass over a fresh array.
        inplace = dots if dots.flags.c_contiguous and dots.flags.writeable else None
        if self._metric == "cosine":
            # Raw vectors are divided by their norms; float16 rows are unit vectors already.
            if factors.neg_inv is None:
                out = np.negative(dots, out=inplace)
            else:
                out = np.multiply(dots, per_row(factors.neg_inv), out=inplace)
            return out
        assert factors.squared is not None
        scaled = (
            dots
            if factors.scale is None
            else np.multiply(dots, per_row(factors.scale), out=inplace)
        )
        out = np.multiply(scaled, np.float32(-2.0), out=inplace)
        out += per_row(factors.squared)
        return out

    def _candidates(
        self,
        order: npt.NDArray[np.float32],
        top_k: int,
        qn: float,
        top_norm: float,
    ) -> npt.NDArray[np.intp]:
        """Rows whose approximate distance is within rounding of the k-th best, for a query of
        norm ``qn``."""
        if order.shape[0] <= top_k:
            return np.arange(order.shape[0])
        kth, bound, near = _kth_smallest(order, top_k)
        limit = self._limit(kth, qn, top_norm)
        if near is not None and limit <= bound:
            # Every key <= limit is <= bound, so it is among ``near``: same rows, same order.
            return near[order[near] <= limit]
        return np.flatnonzero(order <= limit)

    def _limit(self, kth: float, qn: float, top_norm: float) -> float:
        """The largest order key a row of the true top k can have, given the k-th best key.

        Each key may be off by ``e`` (float32 rounding, plus the float16 kernel's error): a row
        of the true top k has a key of at most true k-th + e <= approximate k-th + 2e. ``qn`` is
        the query's norm.
        """
        # Cosine order keys are -|q| cos; euclidean ones |x|^2 - 2 x.q.
        magnitude = qn if self._metric == "cosine" else 2.0 * qn * top_norm + top_norm**2
        error = (_RELATIVE_TOLERANCE + self._kernel_error) * magnitude + abs(kth) * 1e-6
        return kth + 2.0 * error

    def _candidates_many(
        self,
        dots: npt.NDArray[np.float32],
        top_k: int,
        qn: npt.NDArray[np.float64],
        factors: _RowFactors,
    ) -> list[npt.NDArray[np.intp]]:
        """:meth:`_candidates` for each column of ``dots`` (overwritten; the queries' norms are
        ``qn``), in whole-array passes.

        Per query, the k-th smallest of the 128-row block minima bounds the k-th smallest key
        from above (see :func:`_kth_smallest`), so ``key <= limit(bound)`` keeps every row that
        ``key <= limit(kth)`` keeps, plus a few more that the exact re-score ranks out. One pass
        over the ``(rows, queries)`` block does all queries: a loop of per-query selections over
        100k rows costs ~0.3 ms per query, as much as a sixth of the matrix product.
        """
        count, nq = dots.shape
        order = self._order_keys(dots, factors)
        blocks = count // _BOUND_BLOCK
        if blocks < 4 * top_k:
            columns = np.ascontiguousarray(order.T)
            return [
                self._candidates(columns[j], top_k, float(qn[j]), factors.top_norm)
                for j in range(nq)
            ]
        mins = _block_minima(order[: blocks * _BOUND_BLOCK].reshape(blocks, _BOUND_BLOCK, nq))
        bounds = np.partition(mins, top_k - 1, axis=0)[top_k - 1]
        limits = np.array(
            [self._limit(float(b), float(qn[j]), factors.top_norm) for j, b in enumerate(bounds)],
            dtype=np.float64,
        )
        # Rounding the limits up to float32 only widens the comparison. A non-finite limit
        # (no finite key among a query's block minima) takes the per-query path.
        finite = np.isfinite(limits)
        limit32 = np.nextafter(limits.astype(np.float32), np.float32(np.inf))
        limit32[~finite] = -np.inf
        # A row can only pass if its block's minimum does: compare the rows of those blocks
        # (a few dozen per query) and the tail rows after the last whole block.
        hit_block, hit_query = np.nonzero(mins <= limit32)
        block_rows = hit_block[:, None] * _BOUND_BLOCK + np.arange(_BOUND_BLOCK)
        passed = order[block_rows, hit_query[:, None]] <= limit32[hit_query][:, None]
        tail_rows, tail_query = np.nonzero(order[blocks * _BOUND_BLOCK :] <= limit32)
        rows = np.concatenate([block_rows[passed], tail_rows + blocks * _BOUND_BLOCK])
        cols = np.concatenate(
            [np.broadcast_to(hit_query[:, None], block_rows.shape)[passed], tail_query]
        )
        by_query = np.argsort(cols, kind="stable")
        picks = np.split(rows[by_query], np.cumsum(np.bincount(cols, minlength=nq))[:-1])
        for j in np.flatnonzero(~finite).tolist():
            column = np.ascontiguousarray(order[:, j])
            picks[j] = self._candidates(column, top_k, float(qn[j]), factors.top_norm)
        return picks

    def _exact(
        self, rows: npt.NDArray[np.intp], q: npt.NDArray[np.float32], top_k: int
    ) -> list[QueryMatch]:
        """Float64 distances for candidate rows, sorted by (distance, key), best ``top_k``."""
        q64 = q.astype(np.float64)
        qn = float(np.linalg.norm(q64))
        dist = np.empty(rows.shape[0], dtype=np.float64)
        for s in range(0, rows.shape[0], 4096):
            block_rows = rows[s : s + 4096]
            x = self._matrix[block_rows].astype(np.float64)
            if self._scaled:
                x *= self._norms[block_rows][:, None]
            if self._metric == "cosine":
                xn = np.sqrt(np.einsum("ij,ij->i", x, x))
                # einsum, not BLAS: each row's sum is the same whatever else is in the block,
                # so a distance does not depend on which other rows were candidates.
                dots = np.einsum("ij,j->i", x, q64)
                dist[s : s + 4096] = 1.0 - dots / (xn * qn)
            else:
                diff = x - q64
                dist[s : s + 4096] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        if self._metric == "cosine":
            np.clip(dist, 0.0, 2.0, out=dist)
        if rows.shape[0] > top_k:  # sort only the k best and rows tied with the k-th
            keep = dist <= np.partition(dist, top_k - 1)[top_k - 1]
            dist, rows = dist[keep], rows[keep]
        ranked = sorted(
            zip(dist.tolist(), (self._keys[r] for r in rows.tolist()), rows.tolist(), strict=True)
        )
        return [
            QueryMatch(key, d, _copy_metadata(self._metadata[row]))
            for d, key, row in ranked[:top_k]
        ]

    # ------------------------------------------------------------------ persistence

    def _open_directory(self, path: Path) -> dict[str, Any] | None:
        """Create/lock the directory; return its manifest, or None for a new store."""
        if path.exists() and not path.is_dir():
            raise ConfigurationError(f"{path} exists and is not a directory")
        if not path.exists():
            if self._read_only:
                raise ConfigurationError(f"no local vector store at {path}")
            path.mkdir(parents=True)
            _fsync_dir(path.parent)  # the new directory's entry must survive a crash too
        if not self._read_only:
            self._acquire_lock(path)
        try:
            manifest_path = path / _MANIFEST
            if manifest_path.exists():
                return self._read_manifest(manifest_path)
            segments = sorted(p.name for p in path.iterdir() if _SEGMENT_RE.match(p.name))
            if segments:
                # Never an empty store over data: the segments may hold every record.
                raise StoreCorruptedError(
                    f"local vector store at {path} has {len(segments)} segment files but no "
                    f"{_MANIFEST}; nothing was changed. Rebuild the manifest from its complete "
                    f"segments with `crossmodal store recover {path}`",
                    path=str(path),
                )
            foreign = [
                p.name
                for p in path.iterdir()
                if p.name != _LOCK
                and not _SEGMENT_RE.match(p.name)
                and not p.name.startswith(_MANIFEST + ".")
            ]
            if foreign:
                raise ConfigurationError(
                    f"{path} is not empty and holds no {_MANIFEST}; refusing to use it as a "
                    f"local vector store (found {sorted(foreign)[:3]})"
                )
            return None
        except BaseException:
            self._release_lock()
            raise

    def _acquire_lock(self, path: Path) -> None:
        if sys.platform == "win32":  # pragma: no cover - POSIX only
            return
        fd = os.open(path / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StoreLockedError(
                f"another process (or another open LocalVectorStore) is writing {path}; "
                "close it first, or open this one with read_only=True"
            ) from exc
        self._lock_finalizer = weakref.finalize(self, os.close, fd)

    def _read_manifest(self, manifest_path: Path) -> dict[str, Any]:
        try:
            data = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _corrupt(manifest_path.parent, f"cannot read {_MANIFEST}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise _corrupt(manifest_path.parent, f"{_MANIFEST} is not a {_FORMAT} manifest")
        if data.get("version") != _VERSION:
            raise _corrupt(
                manifest_path.parent,
                f"format version {data.get('version')!r} is not supported (expected {_VERSION})",
            )
        try:
            int(data["dimension"])
            validate_distance_metric(data["distance_metric"])
            if data["storage_dtype"] not in ("float32", "float16"):
                raise ValueError(f"storage_dtype {data['storage_dtype']!r}")
            frozenset(data["non_filterable_metadata_keys"])
            int(data["generation"])
            for seg in data["segments"]:
                _Segment(
                    int(seg["id"]),
                    int(seg["puts"]),
                    int(seg["deletes"]),
                    int(seg["vectors_bytes"]),
                    int(seg["records_bytes"]),
                )
        except (KeyError, TypeError, ValueError, InvalidInputError) as exc:
            raise _corrupt(manifest_path.parent, f"malformed {_MANIFEST}: {exc}") from exc
        return data

    def _check_compatible(
        self,
        manifest: Mapping[str, Any],
        dimension: int | None,
        distance_metric: str | None,
        storage_dtype: str | None,
        explicit_keys: bool,
    ) -> int:
        stored_dim = int(manifest["dimension"])
        where = self._path
        if dimension is not None and dimension != stored_dim:
            raise IndexMismatchError(
                f"store at {where} has dimension {stored_dim}, not {dimension}"
            )
        if distance_metric is not None and distance_metric != manifest["distance_metric"]:
            raise IndexMismatchError(
                f"store at {where} uses distance metric {manifest['distance_metric']!r}, "
                f"not {distance_metric!r}"
            )
        self._metric = validate_distance_metric(manifest["distance_metric"])
        if storage_dtype is not None and storage_dtype != manifest["storage_dtype"]:
            raise IndexMismatchError(
                f"store at {where} stores {manifest['storage_dtype']}, not {storage_dtype}"
            )
        stored_keys = frozenset(manifest["non_filterable_metadata_keys"])
        if explicit_keys and stored_keys != self._non_filterable:
            raise IndexMismatchError(
                f"store at {where} has non-filterable keys {sorted(stored_keys)}, "
                f"not {sorted(self._non_filterable)}"
            )
        self._non_filterable = stored_keys
        return stored_dim

    def _manifest(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "dimension": self._dimension,
            "distance_metric": self._metric,
            "storage_dtype": self.storage_dtype,
            "non_filterable_metadata_keys": sorted(self._non_filterable),
            "generation": self._generation,
            "segments": [s.to_json() for s in self._segments],
        }

    def _commit_manifest(self, segments: list[_Segment] | None = None) -> None:
        """Atomically make ``segments`` (default: the current list) the store's contents."""
        assert self._path is not None
        if segments is not None:
            previous = self._segments
            self._segments = segments
        body = json.dumps(self._manifest(), indent=1).encode("utf-8")
        tmp = self._path / f"{_MANIFEST}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path / _MANIFEST)
        except BaseException:
            if segments is not None:
                self._segments = previous
            raise
        # Past the rename the new state is what a reader sees: it is committed.
        try:
            _fsync_dir(self._path)
        except OSError:
            logger.warning("fsync of directory %s failed", self._path, exc_info=True)

    def _next_id(self) -> int:
        self._generation += 1
        return self._generation

    def _write_segment(
        self,
        keys: Sequence[str],
        stored: npt.NDArray[Any],
        norms: npt.NDArray[np.float64],
        metadata: Sequence[Mapping[str, MetadataValue]],
        *,
        deleted: Sequence[str],
        rows: npt.NDArray[np.intp] | None = None,
        replace_from: int | None = None,
    ) -> None:
        """Write one segment and commit it.

        With ``replace_from`` the segment replaces ``self._segments[replace_from:]`` (a merge);
        ``rows`` then says which rows of ``stored`` to write (None: ``stored`` as it is).
        """
        assert self._path is not None
        seg = _Segment(self._next_id(), len(keys), len(deleted), 0, 0)
        vectors_path = self._path / seg.vectors_name
        records_path = self._path / seg.records_name
        committed = False
        try:
            seg.vectors_bytes = _write_npy(vectors_path, stored, rows, self._dimension)
            with open(records_path, "wb") as fh:
                buf: list[str] = []
                for i, key in enumerate(keys):
                    buf.append(_dumps({"k": key, "n": float(norms[i]), "m": metadata[i]}))
                    if len(buf) >= 4096:
                        fh.write("".join(buf).encode("utf-8"))
                        buf.clear()
                buf.extend(_dumps({"k": key, "d": True}) for key in deleted)
                fh.write("".join(buf).encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
                seg.records_bytes = fh.tell()
            if replace_from is None:
                seg.touched = frozenset(keys) | frozenset(deleted)
                self._commit_manifest([*self._segments, seg])
                committed = True
                logger.debug(
                    "committed segment %d (%d puts, %d deletes)",
                    seg.seg_id,
                    len(keys),
                    len(deleted),
                )
            else:
                seg.touched = None if replace_from == 0 else frozenset(keys) | frozenset(deleted)
                old = self._segments[replace_from:]
                self._commit_manifest([*self._segments[:replace_from], seg])
                committed = True
                for s in old:
                    for name in (s.vectors_name, s.records_name):
                        (self._path / name).unlink(missing_ok=True)
                logger.debug("merged %d segments into segment %d", len(old), seg.seg_id)
        except BaseException:
            # Not referenced by any committed manifest: safe to drop (or left for cleanup).
            if not committed:
                vectors_path.unlink(missing_ok=True)
                records_path.unlink(missing_ok=True)
            raise

    def _after_write(self) -> None:
        """Merge the newest segments when they have grown to half their older neighbour."""
        if self._path is None:
            return
        segs = self._segments
        start = len(segs) - 1
        acc = segs[start].size
        while start > 0 and segs[start - 1].size <= 2 * acc:
            start -= 1
            acc += segs[start].size
        if start == len(segs) - 1:
            return
        try:
            if start == 0:
                self._write_segment(
                    self._keys,
                    self._matrix[: self._n],
                    self._norms[: self._n],
                    self._metadata,
                    deleted=(),
                    replace_from=0,
                )
            else:
                touched: set[str] = set()
                for s in segs[start:]:
                    assert s.touched is not None
                    touched |= s.touched
                live = [k for k in touched if k in self._index]
                dead = [k for k in touched if k not in self._index]
                rows = np.asarray([self._index[k] for k in live], dtype=np.intp)
                self._write_segment(
                    live,
                    self._matrix,
                    self._norms[rows],
                    [self._metadata[r] for r in rows.tolist()],
                    deleted=dead,
                    rows=rows,
                    replace_from=start,
                )
        except OSError:
            # The write itself is committed; a failed merge only leaves more segments.
            logger.warning("merging segments of %s failed", self._path, exc_info=True)

    def _load(self, manifest: Mapping[str, Any]) -> None:
        assert self._path is not None
        self._generation = int(manifest["generation"])
        segments = [
            _Segment(
                int(s["id"]),
                int(s["puts"]),
                int(s["deletes"]),
                int(s["vectors_bytes"]),
                int(s["records_bytes"]),
            )
            for s in manifest["segments"]
        ]
        for i, seg in enumerate(segments):
            keys, norms, metadata, deleted = self._read_segment(seg)
            if i > 0:
                seg.touched = frozenset(keys) | frozenset(deleted)
            self._apply_delete(deleted)
            vectors = self._read_vectors(seg)
            if keys:
                self._apply_put(keys, vectors, np.asarray(norms, dtype=np.float64), metadata)
            del vectors
        self._segments = segments

    def _load_snapshot(self, manifest: Mapping[str, Any]) -> None:
        """Load without the lock: if a writer merges segments away meanwhile, reread."""
        assert self._path is not None
        for _ in range(20):
            try:
                self._load(manifest)
                return
            except ConfigurationError:
                fresh = self._read_manifest(self._path / _MANIFEST)
                if fresh.get("generation") == manifest.get("generation"):
                    raise
                logger.debug("%s changed while loading; rereading", self._path)
                manifest = fresh
                self._reset_rows()
        self._load(manifest)

    def _reset_rows(self) -> None:
        self._keys, self._index, self._metadata = [], {}, []
        self._matrix = np.empty((0, self._dimension), dtype=self._dtype)
        self._norms = np.empty(0, dtype=np.float64)
        self._columns = MetadataColumns(self._non_filterable)
        self._n = 0
        self._factors = None
        self._scan_rows = None
        if self._accelerator is not None:
            self._accelerator.invalidate()

    def _read_vectors(self, seg: _Segment) -> npt.NDArray[Any]:
        assert self._path is not None
        path = self._path / seg.vectors_name
        try:
            size = path.stat().st_size
            if size != seg.vectors_bytes:
                raise ValueError(
                    f"{seg.vectors_name} is {size} bytes, expected {seg.vectors_bytes}"
                )
            if seg.puts == 0:
                return np.empty((0, self._dimension), dtype=self._dtype)
            arr: npt.NDArray[Any] = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise _corrupt(self._path, str(exc)) from exc
        if arr.shape != (seg.puts, self._dimension) or arr.dtype != self._dtype:
            raise _corrupt(
                self._path,
                f"{seg.vectors_name} holds {arr.dtype}{arr.shape}, expected "
                f"{self._dtype}{(seg.puts, self._dimension)}",
            )
        return arr

    def _read_segment(
        self, seg: _Segment
    ) -> tuple[list[str], list[float], list[dict[str, MetadataValue]], list[str]]:
        assert self._path is not None
        path = self._path / seg.records_name
        keys: list[str] = []
        norms: list[float] = []
        metadata: list[dict[str, MetadataValue]] = []
        deleted: list[str] = []
        try:
            raw = path.read_bytes()
            if len(raw) != seg.records_bytes:
                raise ValueError(
                    f"{seg.records_name} is {len(raw)} bytes, expected {seg.records_bytes}"
                )
            for line in raw.decode("utf-8").splitlines():
                item = json.loads(line)
                if item.get("d"):
                    deleted.append(item["k"])
                else:
                    keys.append(item["k"])
                    norms.append(float(item["n"]))
                    metadata.append(item["m"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _corrupt(self._path, f"{seg.records_name}: {exc}") from exc
        if len(keys) != seg.puts or len(deleted) != seg.deletes:
            raise _corrupt(self._path, f"{seg.records_name} does not match the manifest")
        return keys, norms, metadata, deleted

    def _remove_orphans(self) -> None:
        assert self._path is not None
        referenced = {n for s in self._segments for n in (s.vectors_name, s.records_name)}
        for p in self._path.iterdir():
            orphan_segment = _SEGMENT_RE.match(p.name) and p.name not in referenced
            if orphan_segment or p.name == f"{_MANIFEST}.tmp":
                logger.info("removing %s left by an interrupted write", p)
                p.unlink(missing_ok=True)


def _unit_rows(
    vectors: npt.NDArray[Any], norms: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``vectors`` divided by their ``norms`` in float64; all-zero rows stay zero."""
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    unit: npt.NDArray[np.float64] = vectors * inv[:, None]
    return unit


def _block_minima(blocks: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Per block and column, the smallest non-NaN key of a ``(blocks, rows, columns)`` array.

    Halving pairwise is ~1.7x faster than ``min(axis=1)`` on (781, 128, 32); NaN keys (never
    candidates) are skipped so that they cannot hide a block's finite keys.
    """
    part = blocks
    while part.shape[1] > 1:
        half = part.shape[1] // 2
        merged = np.fmin(part[:, :half], part[:, half : 2 * half])
        if part.shape[1] % 2:
            merged[:, 0] = np.fmin(merged[:, 0], part[:, -1])
        part = merged
    out: npt.NDArray[np.float32] = part[:, 0]
    return out


def _kth_smallest(
    order: npt.NDArray[np.float32], k: int
) -> tuple[float, float, npt.NDArray[np.intp] | None]:
    """The k-th smallest key (NaN last, exactly as ``np.partition``), without a full partition.

    Returns ``(kth, bound, near)``: ``near`` (ascending rows whose key is <= ``bound``) holds
    every key <= ``kth``; or ``(kth, nan, None)`` when the whole array was partitioned.
    """
    blocks = order.shape[0] // _BOUND_BLOCK
    if blocks >= 4 * k:
        # The k smallest block minima are keys in k distinct blocks, all <= the k-th smallest
        # minimum ``bound``; so at least k keys are <= bound, hence kth <= bound, and the k
        # smallest keys are exactly the k smallest of the (few) keys <= bound. NaN minima sort
        # last; a non-finite bound falls back to the full partition.
        mins = order[: blocks * _BOUND_BLOCK].reshape(blocks, _BOUND_BLOCK).min(axis=1)
        bound = float(np.partition(mins, k - 1)[k - 1])
        if np.isfinite(bound):
            near = np.flatnonzero(order <= bound)
            return float(np.partition(order[near], k - 1)[k - 1]), bound, near
    return float(np.partition(order, k - 1)[k - 1]), float("nan"), None


def _dumps(item: Mapping[str, object]) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"


def _copy_metadata(metadata: Mapping[str, MetadataValue]) -> dict[str, MetadataValue]:
    return {k: (list(v) if isinstance(v, list) else v) for k, v in metadata.items()}


def _write_npy(
    path: Path,
    matrix: npt.NDArray[Any],
    rows: npt.NDArray[np.intp] | None,
    dimension: int,
) -> int:
    """Write ``matrix`` (or ``matrix[rows]``) as .npy in blocks, fsync it, return its size."""
    count = matrix.shape[0] if rows is None else rows.shape[0]
    header = {
        "descr": np.lib.format.dtype_to_descr(matrix.dtype),
        "fortran_order": False,
        "shape": (count, dimension),
    }
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for s in range(0, count, _BLOCK_ROWS):
            block = (
                matrix[s : s + _BLOCK_ROWS] if rows is None else matrix[rows[s : s + _BLOCK_ROWS]]
            )
            fh.write(np.ascontiguousarray(block).tobytes())
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell()
