"""Optional accelerators for the local store: a Matryoshka funnel and an HNSW graph.

An exact scan reads every stored byte per query, so its speed is bounded by memory bandwidth.
An accelerator answers the same top-k question while reading less:

* :class:`FunnelAccelerator` keeps a copy of the first ``prefix_dim`` dimensions (a quarter
  of the bytes for 256 of 1024), scans that, and re-ranks the best ``candidates`` rows at
  full dimension. It relies on Matryoshka-trained embeddings (Nova is one) putting
  most of the signal in the leading dimensions; on random vectors its recall is poor.
* :class:`HnswAccelerator` builds an HNSW graph with `hnswlib` (extra ``ann``). Queries visit
  a few thousand rows instead of all of them; building takes from ~20 s (clustered data) to
  ~2 min (random data) per 100k x 1024 rows on two shared cores, and is done lazily on the
  first query; later puts and deletes are applied to the graph incrementally.

Both are approximate; both honour filters exactly: a row outside the filter is never returned.
When a filter keeps few rows, they scan exactly those rows (cheaper than any index, and
exact); otherwise they over-fetch and widen the search until ``top_k`` allowed rows are found,
falling back to the exact scan if widening does not get there.

The store owns the vectors; an accelerator holds derived state only. The store tells it about
changes (:meth:`Accelerator.update`, :meth:`Accelerator.remove`, :meth:`Accelerator.invalidate`)
and passes its current matrix to :meth:`Accelerator.search`. Rows are the store's row numbers;
they may be raw vectors, or unit vectors plus their norms (how a float16 store keeps them).
Measured speed and recall: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import DistanceMetric
from crossmodal_search.errors import ConfigurationError
from crossmodal_search.stores._kernels import DotKernel, load_numkong, require_numkong

__all__ = [
    "Accelerator",
    "AcceleratorName",
    "FunnelAccelerator",
    "Hits",
    "HnswAccelerator",
    "exact_search",
    "make_accelerator",
]

logger = logging.getLogger(__name__)

AcceleratorName: TypeAlias = Literal["funnel", "hnsw"]

FloatMatrix: TypeAlias = npt.NDArray[np.floating[Any]]
RowArray: TypeAlias = npt.NDArray[np.intp]
Mask: TypeAlias = npt.NDArray[np.bool_]

#: Rows and distances of one query's matches, best first (distance as the store reports it:
#: ``1 - cosine`` or the L2 distance).
Hits: TypeAlias = tuple[RowArray, npt.NDArray[np.float32]]

# float16 -> float32 conversion in numpy is scalar code; convert in blocks that stay in cache.
_CHUNK_ROWS = 8192


@runtime_checkable
class Accelerator(Protocol):
    """What :class:`~crossmodal_search.stores.LocalVectorStore` needs from an accelerator."""

    @property
    def name(self) -> str:
        """Short name used in logs and benchmark tables."""
        ...

    def invalidate(self) -> None:
        """Forget derived state; it is rebuilt from the matrix on the next search."""
        ...

    def update(self, rows: npt.ArrayLike, vectors: FloatMatrix) -> None:
        """Rows ``rows`` now hold ``vectors`` (new rows or overwritten ones)."""
        ...

    def remove(self, rows: npt.ArrayLike) -> None:
        """Rows ``rows`` no longer hold live records."""
        ...

    def search(
        self,
        matrix: FloatMatrix,
        queries: FloatMatrix,
        top_k: int,
        *,
        metric: DistanceMetric,
        allowed: Mask | None = None,
        norms: npt.NDArray[np.floating[Any]] | None = None,
        unit_rows: bool = False,
    ) -> list[Hits]:
        """Top ``top_k`` rows of ``matrix`` per query, restricted to ``allowed`` rows.

        ``matrix`` is the store's current ``(n, d)`` matrix; ``allowed`` a boolean mask of
        length ``n`` (``None``: every row is live and allowed). ``norms`` are the rows' L2
        norms when the store keeps them (computed here otherwise). With ``unit_rows`` the
        matrix holds unit vectors and row ``i`` stands for ``matrix[i] * norms[i]`` (how a
        float16 store keeps its rows).
        """
        ...


def make_accelerator(spec: AcceleratorName | Accelerator | None) -> Accelerator | None:
    """Resolve the ``accelerator=`` option of the local store.

    Args:
        spec: ``"funnel"``, ``"hnsw"``, an :class:`Accelerator` instance, or ``None``.

    Raises:
        ConfigurationError: unknown name, or ``"hnsw"`` without the ``ann`` extra.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "funnel":
            return FunnelAccelerator()
        if spec == "hnsw":
            return HnswAccelerator()
        raise ConfigurationError(
            f"unknown accelerator {spec!r}: use 'funnel', 'hnsw', an Accelerator or None"
        )
    if isinstance(spec, Accelerator):
        return spec
    raise ConfigurationError(f"accelerator must be a name or an Accelerator, not {type(spec)!r}")


# --------------------------------------------------------------------------- exact scan


def _as_f32(block: FloatMatrix) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(block, dtype=np.float32)


class _Rows:
    """The store's rows as the metric sees them: raw dot products turned into scores.

    Scores are higher-is-better: cosine similarity, or ``2 v.q - |v|^2`` for L2 (the query's
    own ``|q|^2`` is added back when converting to a distance).
    """

    def __init__(
        self,
        matrix: FloatMatrix,
        metric: DistanceMetric,
        norms: npt.NDArray[np.floating[Any]] | None,
        unit_rows: bool,
    ) -> None:
        if unit_rows and norms is None:
            raise ValueError("unit_rows needs the rows' norms")
        self.matrix = matrix
        self.metric = metric
        self.norms = None if norms is None else np.asarray(norms, dtype=np.float32)
        self.unit_rows = unit_rows

    def _norms_of(self, rows: RowArray | slice, block: npt.NDArray[np.float32]) -> Any:
        if self.norms is not None:
            return self.norms[rows]
        return np.sqrt(np.einsum("ij,ij->i", block, block))

    def finish(
        self, dots: npt.NDArray[np.float32], rows: RowArray | slice, block: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Turn raw ``block @ q.T`` products (``(rows, q)``) into scores in place."""
        if self.metric == "cosine":
            if not self.unit_rows:
                norms = self._norms_of(rows, block)
                dots *= np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)[:, None]
            return dots
        norms = self._norms_of(rows, block)
        if self.unit_rows:
            dots *= norms[:, None]
        dots *= 2
        dots -= (norms * norms)[:, None]
        return dots

    def scores(self, rows: RowArray | None, q: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Scores ``(len(rows) or n, len(q))`` of the given rows (all when ``None``)."""
        n = self.matrix.shape[0] if rows is None else rows.shape[0]
        out = np.empty((n, q.shape[0]), dtype=np.float32)
        for start in range(0, n, _CHUNK_ROWS):
            stop = min(n, start + _CHUNK_ROWS)
            idx: RowArray | slice = slice(start, stop) if rows is None else rows[start:stop]
            block = _as_f32(self.matrix[idx])
            part = out[start:stop]
            np.matmul(block, q.T, out=part)
            self.finish(part, idx, block)
        return out

    def true_vectors(
        self, start: int, stop: int, dims: int | None = None
    ) -> npt.NDArray[np.float32]:
        """Rows ``start:stop`` (first ``dims`` columns) as the vectors they stand for."""
        block = np.array(self.matrix[start:stop, :dims], dtype=np.float32)
        if self.unit_rows:
            assert self.norms is not None
            block *= self.norms[start:stop, None]
        return block


def _to_distances(
    scores: npt.NDArray[np.float32], queries_sq: float, metric: DistanceMetric
) -> npt.NDArray[np.float32]:
    if metric == "cosine":
        return (1.0 - scores).astype(np.float32)
    dist: npt.NDArray[np.float32] = np.sqrt(np.maximum(queries_sq - scores, 0.0)).astype(np.float32)
    return dist


def _top(scores: npt.NDArray[np.float32], k: int) -> RowArray:
    """Indices of the ``k`` largest finite scores, best first."""
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if k < scores.shape[0]:
        idx = np.argpartition(scores, scores.shape[0] - k)[-k:]
    else:
        idx = np.arange(scores.shape[0])
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return idx[np.isfinite(scores[idx])].astype(np.intp)


def exact_search(
    matrix: FloatMatrix,
    queries: FloatMatrix,
    top_k: int,
    *,
    metric: DistanceMetric,
    allowed: Mask | None = None,
    norms: npt.NDArray[np.floating[Any]] | None = None,
    unit_rows: bool = False,
) -> list[Hits]:
    """Exact top-k by a full scan (the reference every accelerator is measured against).

    Only rows in ``allowed`` are scanned when a mask is given, so a selective filter makes
    this cheaper, not dearer. ``norms``/``unit_rows`` as in :meth:`Accelerator.search`.
    """
    return _exact(
        _Rows(matrix, metric, norms, unit_rows), _prepare_queries(queries, metric), top_k, allowed
    )


def _exact(view: _Rows, q: npt.NDArray[np.float32], top_k: int, allowed: Mask | None) -> list[Hits]:
    rows: RowArray | None = None
    if allowed is not None:
        rows = np.flatnonzero(allowed[: view.matrix.shape[0]])
        if rows.size == 0:
            return [_empty_hits() for _ in range(q.shape[0])]
        if rows.size == view.matrix.shape[0]:
            rows = None
    scores = view.scores(rows, q)
    hits: list[Hits] = []
    for i in range(q.shape[0]):
        best = _top(scores[:, i], top_k)
        dist = _to_distances(scores[best, i], float(q[i] @ q[i]), view.metric)
        hits.append((rows[best] if rows is not None else best, dist))
    return hits


def _prepare_queries(queries: FloatMatrix, metric: DistanceMetric) -> npt.NDArray[np.float32]:
    q = np.array(queries, dtype=np.float32, ndmin=2, copy=True)
    if metric == "cosine":
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        np.divide(q, norms, out=q, where=norms > 0)
    return q


def _empty_hits() -> Hits:
    return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.float32)


def _allowed_count(allowed: Mask | None, n: int) -> int:
    return n if allowed is None else int(np.count_nonzero(allowed[:n]))


def _at_least_top(scores: npt.NDArray[np.float32], count: int) -> RowArray:
    """Sorted indices of a superset (about twice as large) of the ``count`` best scores.

    A full ``argpartition`` over every row costs as much as a quarter of the prefix scan; a
    threshold estimated on a strided sample, then one comparison pass, is ~10x cheaper. The
    set ``scores >= t`` holds the top ``count`` whenever it has at least ``count`` rows.
    """
    n = scores.shape[0]
    step = max(1, n // 8192)
    sample = scores[::step]
    want = min(sample.shape[0], math.ceil(2 * count * sample.shape[0] / n) + 1)
    if want < sample.shape[0] and n > 4 * count:
        threshold = np.partition(sample, sample.shape[0] - want)[sample.shape[0] - want]
        rows = np.flatnonzero(scores >= threshold)
        if count <= rows.shape[0] <= 8 * count:
            return rows
    kth = max(0, n - count)
    return np.sort(np.argpartition(scores, kth)[kth:])


# --------------------------------------------------------------------------- funnel


class FunnelAccelerator:
    """Matryoshka funnel: scan the leading ``prefix_dim`` dimensions, re-rank at full dimension.

    Memory: an extra ``n x prefix_dim`` copy: float16 scanned by NumKong when the ``simd`` extra
    is installed (12.5 % of a float32 store at 256 of 1024; single queries ~2x faster in the first
    pass), else float32 (25 %).
    Recall depends on the embedding: measured recall@10 is ~1.0 on vectors whose leading
    dimensions carry most of the variance (Matryoshka-trained models) and poor on random
    vectors (see ``docs/benchmarks.md``).

    Args:
        prefix_dim: Leading dimensions scanned in the first pass.
        candidates: Rows re-ranked at full dimension (at least ``8 x top_k`` are used).
        exact_fraction: A filter keeping at most this fraction of the rows is answered by an
            exact scan of those rows only.
        prefix_dtype: ``"auto"`` (float16 when NumKong is installed, else float32),
            ``"float16"`` (needs the ``simd`` extra) or ``"float32"``.
    """

    def __init__(
        self,
        *,
        prefix_dim: int = 256,
        candidates: int = 256,
        exact_fraction: float = 0.05,
        prefix_dtype: Literal["auto", "float32", "float16"] = "auto",
    ) -> None:
        if prefix_dim < 1 or candidates < 1 or not 0.0 <= exact_fraction <= 1.0:
            raise ConfigurationError(
                "FunnelAccelerator needs prefix_dim >= 1, candidates >= 1, 0 <= exact_fraction <= 1"
            )
        if prefix_dtype not in ("auto", "float32", "float16"):
            raise ConfigurationError(
                f"prefix_dtype must be 'auto', 'float32' or 'float16', got {prefix_dtype!r}"
            )
        if prefix_dtype == "float16":
            require_numkong("prefix_dtype='float16'")
        self.prefix_dtype = prefix_dtype
        self.prefix_dim = prefix_dim
        self.candidates = candidates
        self.exact_fraction = exact_fraction
        self._lock = threading.Lock()
        # Always held as a (rows, prefix_dim) view (see _new_prefix). float16 (NumKong): that is
        # the storage, the layout its kernel reads. float32: a view of (prefix_dim, rows)
        # storage, since a vector-matrix product over contiguous columns streams at full memory
        # bandwidth (~1.4x faster than the row-major gemv).
        self._prefix: npt.NDArray[Any] | None = None
        self._kernel: DotKernel | None = None
        self._prefix_sq: npt.NDArray[np.float32] | None = None
        self._rows = 0
        self._metric: DistanceMetric | None = None

    @property
    def name(self) -> str:
        return f"funnel({self.prefix_dim}->{self.candidates})"

    @property
    def nbytes(self) -> int:
        """Bytes of derived state held (the prefix copy)."""
        return 0 if self._prefix is None else int(self._prefix.nbytes)

    @property
    def prefix_storage(self) -> Literal["float32", "float16"] | None:
        """The prefix copy's dtype once built by the first query (None before)."""
        if self._prefix is None:
            return None
        return "float32" if self._kernel is None else "float16"

    def invalidate(self) -> None:
        with self._lock:
            self._prefix = None
            self._prefix_sq = None
            self._rows = 0

    def update(self, rows: npt.ArrayLike, vectors: FloatMatrix) -> None:
        with self._lock:
            if self._prefix is None or self._metric is None:
                return
            idx = np.asarray(rows, dtype=np.intp).reshape(-1)
            if idx.size == 0:
                return
            needed = int(idx.max()) + 1
            if needed > self._prefix.shape[0]:
                self._grow(max(needed, 2 * self._prefix.shape[0]))
            assert self._prefix is not None and self._prefix_sq is not None
            block = self._project(np.asarray(vectors)[:, : self.prefix_dim], self._metric)
            self._prefix[idx] = block
            self._prefix_sq[idx] = np.einsum("ij,ij->i", block, block)
            self._rows = max(self._rows, needed)

    def remove(self, rows: npt.ArrayLike) -> None:
        # Removed rows are excluded by the store's ``allowed`` mask (or cut off by ``n``).
        return None

    def search(
        self,
        matrix: FloatMatrix,
        queries: FloatMatrix,
        top_k: int,
        *,
        metric: DistanceMetric,
        allowed: Mask | None = None,
        norms: npt.NDArray[np.floating[Any]] | None = None,
        unit_rows: bool = False,
    ) -> list[Hits]:
        view = _Rows(matrix, metric, norms, unit_rows)
        n, dim = matrix.shape
        q = _prepare_queries(queries, metric)
        live = _allowed_count(allowed, n)
        candidates = max(self.candidates, 8 * top_k)
        if (
            self.prefix_dim >= dim
            or live <= candidates
            or (allowed is not None and live <= self.exact_fraction * n)
        ):
            return _exact(view, q, top_k, allowed)
        prefix, prefix_sq = self._ensure(view)
        qp = self._project(q[:, : self.prefix_dim], metric)
        if self._kernel is None:
            coarse = qp @ prefix.T  # (queries, rows); prefix.T is the (prefix_dim, rows) storage
        else:
            coarse = np.ascontiguousarray(self._kernel.dots(prefix, qp).T)
        if metric == "euclidean":
            coarse *= 2
            coarse -= prefix_sq
        if allowed is not None:
            coarse[:, ~allowed[:n]] = -np.inf
        hits: list[Hits] = []
        for i in range(q.shape[0]):
            rows = _at_least_top(coarse[i], candidates)
            rows = rows[np.isfinite(coarse[i, rows])]
            block = _as_f32(matrix[rows])
            fine = view.finish(block @ q[i][:, None], rows, block)[:, 0]
            best = _top(fine, top_k)
            hits.append((rows[best], _to_distances(fine[best], float(q[i] @ q[i]), metric)))
        return hits

    # -- internals

    def _project(self, block: FloatMatrix, metric: DistanceMetric) -> npt.NDArray[np.float32]:
        out = np.array(block, dtype=np.float32, copy=True, ndmin=2)
        if metric == "cosine":
            # Matryoshka truncation: re-normalise the prefix so it ranks by prefix cosine.
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _grow(self, capacity: int) -> None:
        assert self._prefix is not None and self._prefix_sq is not None
        prefix = self._new_prefix(capacity)
        prefix[: self._prefix.shape[0]] = self._prefix
        sq = np.zeros(capacity, dtype=np.float32)
        sq[: self._prefix_sq.shape[0]] = self._prefix_sq
        self._prefix, self._prefix_sq = prefix, sq

    def _new_prefix(self, rows: int) -> npt.NDArray[Any]:
        """Zeroed prefix storage for ``rows`` rows, as its (rows, prefix_dim) view."""
        if self._kernel is not None:
            return np.zeros((rows, self.prefix_dim), dtype=np.float16)
        return np.zeros((self.prefix_dim, rows), dtype=np.float32).T

    def _ensure(self, view: _Rows) -> tuple[npt.NDArray[Any], npt.NDArray[np.float32]]:
        n = view.matrix.shape[0]
        metric = view.metric
        with self._lock:
            if self._prefix is None or self._metric != metric or self._rows < n:
                self._kernel = None if self.prefix_dtype == "float32" else load_numkong()
                prefix = self._new_prefix(n)
                sq = np.empty(n, dtype=np.float32)
                for start in range(0, n, _CHUNK_ROWS):
                    stop = min(n, start + _CHUNK_ROWS)
                    block = self._project(view.true_vectors(start, stop, self.prefix_dim), metric)
                    prefix[start:stop] = block
                    sq[start:stop] = np.einsum("ij,ij->i", block, block)
                self._prefix = prefix
                self._prefix_sq = sq
                self._rows = n
                self._metric = metric
            assert self._prefix_sq is not None
            return self._prefix[:n], self._prefix_sq[:n]


# --------------------------------------------------------------------------- HNSW


def _import_hnswlib() -> Any:
    try:
        import hnswlib
    except ImportError as exc:
        raise ConfigurationError(
            "accelerator='hnsw' needs hnswlib: pip install 'crossmodal-search[ann]'"
        ) from exc
    return hnswlib


class HnswAccelerator:
    """Approximate nearest neighbours through an HNSW graph (``hnswlib``, extra ``ann``).

    The graph is built on the first query (20 s to 2 min per 100k x 1024 rows on two cores)
    and then kept up to date by :meth:`update` / :meth:`remove`. It is held in memory only:
    opening a store again rebuilds it on its first query.

    Args:
        m: Graph degree (``M``); more is better recall, more memory, slower build.
        ef_construction: Build-time beam width.
        ef_search: Query-time beam width (raised to ``top_k`` or the over-fetch when needed);
            128 keeps recall@10 >= 0.99 on the benchmark's clustered 100k x 1024 set.
        exact_fraction: A filter keeping at most this fraction of the rows is answered by an
            exact scan of those rows only.
        num_threads: Threads used to build (``-1``: all cores).
        seed: Random seed of the graph (builds are reproducible given the same insert order).

    Raises:
        ConfigurationError: ``hnswlib`` is not installed.
    """

    def __init__(
        self,
        *,
        m: int = 16,
        ef_construction: int = 100,
        ef_search: int = 128,
        exact_fraction: float = 0.05,
        num_threads: int = -1,
        seed: int = 100,
    ) -> None:
        self._hnswlib = _import_hnswlib()
        if m < 2 or ef_construction < 1 or ef_search < 1 or not 0.0 <= exact_fraction <= 1.0:
            raise ConfigurationError(
                "HnswAccelerator needs m >= 2, ef_construction >= 1, ef_search >= 1 "
                "and 0 <= exact_fraction <= 1"
            )
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.exact_fraction = exact_fraction
        self.num_threads = num_threads
        self.seed = seed
        self._lock = threading.RLock()
        self._index: Any = None
        self._metric: DistanceMetric | None = None
        # Which row labels are live in the graph (hnswlib keeps deleted ones, marked).
        self._present = np.zeros(0, dtype=np.bool_)
        self.build_seconds: float | None = None

    @property
    def name(self) -> str:
        return f"hnsw(M={self.m},ef={self.ef_search})"

    @property
    def nbytes(self) -> int:
        """Approximate bytes held by the graph and its copy of the vectors."""
        index = self._index
        if index is None:
            return 0
        dim = int(index.dim)
        per_row = 4 * dim + 4 * (2 * self.m + 1) + 8 + 4  # vector, level-0 links, label, count
        return int(index.get_max_elements()) * per_row

    @property
    def built(self) -> bool:
        return self._index is not None

    def invalidate(self) -> None:
        with self._lock:
            self._index = None
            self._present = np.zeros(0, dtype=np.bool_)

    def update(self, rows: npt.ArrayLike, vectors: FloatMatrix) -> None:
        with self._lock:
            if self._index is None:
                return
            idx = np.asarray(rows, dtype=np.int64).reshape(-1)
            if idx.size == 0:
                return
            present = self._present
            if int(idx.max()) >= present.size:
                present = np.concatenate(
                    [present, np.zeros(int(idx.max()) + 1 - present.size, dtype=np.bool_)]
                )
            # Upper bound on new slots (re-added labels reuse theirs); growth doubles.
            new = int(np.unique(idx).size)
            capacity = int(self._index.get_max_elements())
            count = int(self._index.element_count)
            if count + new > capacity:
                self._index.resize_index(max(2 * capacity, count + new))
            self._index.add_items(_as_f32(np.asarray(vectors)), idx, num_threads=self.num_threads)
            present[idx] = True
            self._present = present

    def remove(self, rows: npt.ArrayLike) -> None:
        with self._lock:
            if self._index is None:
                return
            for row in np.asarray(rows, dtype=np.int64).reshape(-1).tolist():
                if 0 <= row < self._present.size and self._present[row]:
                    self._index.mark_deleted(row)
                    self._present[row] = False

    def build(
        self,
        matrix: FloatMatrix,
        *,
        metric: DistanceMetric,
        norms: npt.NDArray[np.floating[Any]] | None = None,
        unit_rows: bool = False,
    ) -> None:
        """Build the graph over every row of ``matrix`` now (otherwise done on first query)."""
        view = _Rows(matrix, metric, norms, unit_rows)
        n, dim = matrix.shape
        started = time.perf_counter()
        # hnswlib's "cosine" space normalises rows and queries itself; distance = 1 - cos.
        index = self._hnswlib.Index(space="cosine" if metric == "cosine" else "l2", dim=dim)
        index.init_index(
            max_elements=max(n, 16),
            M=self.m,
            ef_construction=self.ef_construction,
            random_seed=self.seed,
        )
        for start in range(0, n, 4 * _CHUNK_ROWS):
            stop = min(n, start + 4 * _CHUNK_ROWS)
            index.add_items(
                view.true_vectors(start, stop),
                np.arange(start, stop, dtype=np.int64),
                num_threads=self.num_threads,
            )
        with self._lock:
            self._index = index
            self._metric = metric
            self._present = np.ones(n, dtype=np.bool_)
            self.build_seconds = time.perf_counter() - started
        logger.info("built HNSW over %d x %d in %.1f s", n, dim, self.build_seconds)

    def search(
        self,
        matrix: FloatMatrix,
        queries: FloatMatrix,
        top_k: int,
        *,
        metric: DistanceMetric,
        allowed: Mask | None = None,
        norms: npt.NDArray[np.floating[Any]] | None = None,
        unit_rows: bool = False,
    ) -> list[Hits]:
        view = _Rows(matrix, metric, norms, unit_rows)
        n = matrix.shape[0]
        q = _prepare_queries(queries, metric)
        live = _allowed_count(allowed, n)
        if live == 0:
            return [_empty_hits() for _ in range(q.shape[0])]
        small = live <= max(4 * top_k, self.ef_search)
        if small or (allowed is not None and live <= self.exact_fraction * n):
            return _exact(view, q, top_k, allowed)
        with self._lock:
            if self._index is None or self._metric != metric:
                self.build(matrix, metric=metric, norms=norms, unit_rows=unit_rows)
            index = self._index
            graph_rows = int(np.count_nonzero(self._present))
        k = min(top_k, live)
        if allowed is None:
            found = self._knn(index, q, k, graph_rows, metric)
            if found is None:
                return _exact(view, q, top_k, None)
            return [(rows[rows < n], dist[rows < n]) for rows, dist in found]
        # Over-fetch in proportion to the filter's selectivity, then widen until enough
        # allowed rows come back; an exhausted widening falls back to the exact scan.
        fetch = min(graph_rows, math.ceil(2 * k * n / live))
        hits: list[Hits] = []
        for i in range(q.shape[0]):
            want = fetch
            while True:
                found = self._knn(index, q[i : i + 1], want, graph_rows, metric)
                if found is None:
                    hits.extend(_exact(view, q[i : i + 1], k, allowed))
                    break
                rows, dist = found[0]
                keep = np.flatnonzero((rows < n) & allowed[np.minimum(rows, n - 1)])[:k]
                if keep.size >= k:
                    hits.append((rows[keep], dist[keep]))
                    break
                if want >= graph_rows or want >= 8 * fetch:
                    hits.extend(_exact(view, q[i : i + 1], k, allowed))
                    break
                want = min(graph_rows, want * 2)
        return hits

    def _knn(
        self,
        index: Any,
        q: npt.NDArray[np.float32],
        k: int,
        graph_rows: int,
        metric: DistanceMetric,
    ) -> list[Hits] | None:
        """Graph search; ``None`` when hnswlib cannot return ``k`` rows (too many deleted)."""
        k = min(k, graph_rows)
        try:
            with self._lock:
                index.set_ef(max(self.ef_search, k))
                labels, dists = index.knn_query(q, k=k, num_threads=1 if q.shape[0] == 1 else -1)
        except RuntimeError:
            logger.debug("hnswlib returned fewer than %d rows; using the exact scan", k)
            return None
        out: list[Hits] = []
        for row_labels, row_dists in zip(labels, dists, strict=True):
            d = row_dists.astype(np.float32)
            if metric == "euclidean":
                d = np.sqrt(np.maximum(d, 0.0)).astype(np.float32)
            out.append((row_labels.astype(np.intp), d))
        return out
