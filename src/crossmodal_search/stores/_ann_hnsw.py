"""The HNSW accelerator over ``hnswlib`` (extra ``ann``)."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import DistanceMetric
from crossmodal_search.errors import ConfigurationError
from crossmodal_search.stores._ann_scan import (
    CHUNK_ROWS,
    FloatMatrix,
    Hits,
    Mask,
    RowView,
    allowed_count,
    as_f32,
    empty_hits,
    exact_rows,
    prepare_queries,
)

logger = logging.getLogger(__name__)


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
            self._index.add_items(as_f32(np.asarray(vectors)), idx, num_threads=self.num_threads)
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
        view = RowView(matrix, metric, norms, unit_rows)
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
        for start in range(0, n, 4 * CHUNK_ROWS):
            stop = min(n, start + 4 * CHUNK_ROWS)
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
        view = RowView(matrix, metric, norms, unit_rows)
        n = matrix.shape[0]
        q = prepare_queries(queries, metric)
        live = allowed_count(allowed, n)
        if live == 0:
            return [empty_hits() for _ in range(q.shape[0])]
        small = live <= max(4 * top_k, self.ef_search)
        if small or (allowed is not None and live <= self.exact_fraction * n):
            return exact_rows(view, q, top_k, allowed)
        with self._lock:
            if self._index is None or self._metric != metric:
                self.build(matrix, metric=metric, norms=norms, unit_rows=unit_rows)
            index = self._index
            graph_rows = int(np.count_nonzero(self._present))
        k = min(top_k, live)
        if allowed is None:
            found = self._knn(index, q, k, graph_rows, metric)
            if found is None:
                return exact_rows(view, q, top_k, None)
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
                    hits.extend(exact_rows(view, q[i : i + 1], k, allowed))
                    break
                rows, dist = found[0]
                keep = np.flatnonzero((rows < n) & allowed[np.minimum(rows, n - 1)])[:k]
                if keep.size >= k:
                    hits.append((rows[keep], dist[keep]))
                    break
                if want >= graph_rows or want >= 8 * fetch:
                    hits.extend(exact_rows(view, q[i : i + 1], k, allowed))
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
