"""The HNSW accelerator over ``hnswlib`` (extra ``ann``), built on first query or in the
background (``stores/_ann_background.py``)."""

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
from crossmodal_search.stores._ann_background import BackgroundGraph
from crossmodal_search.stores._ann_graph import Graph, import_hnswlib
from crossmodal_search.stores._ann_scan import (
    CHUNK_ROWS,
    FloatMatrix,
    Hits,
    Mask,
    RowSource,
    RowView,
    allowed_count,
    empty_hits,
    exact_rows,
    prepare_queries,
)

logger = logging.getLogger(__name__)

# Measured side by side (benchmarks/hnsw_build.py, docs/benchmarks.md) on the clustered
# 100k x 1024 set, five builds each: ef_construction=48 builds in ~0.55x the time of 100 but
# its recall@10 varies from build to build (0.985-0.994 at ef_search=384); 56 keeps >= 0.995
# at ef_search=256 in ~0.6x the build time (CPU ~0.62x). M=8-12 saves less time than it costs
# recall; faiss's IndexHNSWFlat builds no faster at the same recall.
DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 56
DEFAULT_EF_SEARCH = 256


class HnswAccelerator:
    """Approximate nearest neighbours through an HNSW graph (``hnswlib``, extra ``ann``).

    By default the graph is built by the first query (~8 s for 100k x 1024 clustered rows,
    ~50 s for random ones, on two cores) and then kept up to date by :meth:`update` /
    :meth:`remove` on the writing thread. With ``background=True`` a store's writes never
    wait for the graph: a worker thread builds it from the store's rows after the first write
    and applies later writes; until it is up to date, queries are answered by the exact
    scan. The graph is held in memory only: opening a store again rebuilds it.

    Args:
        m: Graph degree (``M``); more is better recall, more memory, slower build.
        ef_construction: Build-time beam width.
        ef_search: Query-time beam width (raised to ``top_k`` or the over-fetch when needed).
            The defaults keep recall@10 >= 0.99 on the benchmark's clustered 100k x 1024 set.
        exact_fraction: A filter keeping at most this fraction of the rows is answered by an
            exact scan of those rows only.
        num_threads: Threads used to build (``-1``: all cores).
        seed: Random seed of the graph (builds are reproducible given the same insert order).
        background: Build and update the graph on a worker thread (see above). A failed
            build is logged, kept in :attr:`error`, and queries stay exact until the store
            is reset (reopened).
        prefix_dim: Link the graph by the leading ``prefix_dim`` dimensions only (cosine:
            re-normalised) and re-rank ``rerank`` candidates per query at full dimension.
            For Matryoshka-trained embeddings such as Nova's, whose leading dimensions carry
            most of the signal: on the benchmark's clustered 100k x 1024 set, 256 builds
            ~3x faster than the full graph at the same recall. On embeddings without that
            structure recall drops (the graph then ranks by a fraction of the signal).
        rerank: Candidates per query a prefix graph returns for the exact re-rank.

    Raises:
        ConfigurationError: ``hnswlib`` is not installed, or an option is out of range.
    """

    def __init__(
        self,
        *,
        m: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int = DEFAULT_EF_SEARCH,
        exact_fraction: float = 0.05,
        num_threads: int = -1,
        seed: int = 100,
        background: bool = False,
        prefix_dim: int | None = None,
        rerank: int = 100,
    ) -> None:
        self._hnswlib = import_hnswlib()
        if m < 2 or ef_construction < 1 or ef_search < 1 or not 0.0 <= exact_fraction <= 1.0:
            raise ConfigurationError(
                "HnswAccelerator needs m >= 2, ef_construction >= 1, ef_search >= 1 "
                "and 0 <= exact_fraction <= 1"
            )
        if prefix_dim is not None and (
            isinstance(prefix_dim, bool) or not isinstance(prefix_dim, int) or prefix_dim < 1
        ):
            raise ConfigurationError(f"prefix_dim must be None or an int >= 1, got {prefix_dim!r}")
        if isinstance(rerank, bool) or not isinstance(rerank, int) or rerank < 1:
            raise ConfigurationError(f"rerank must be an int >= 1, got {rerank!r}")
        self.prefix_dim = prefix_dim
        self.rerank = rerank
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.exact_fraction = exact_fraction
        self.num_threads = num_threads
        self.seed = seed
        self.background = background
        self._lock = threading.RLock()
        self._graph: Graph | None = None
        self._worker = BackgroundGraph(self._new_graph) if background else None
        self._attached = False
        self._build_seconds: float | None = None

    @property
    def name(self) -> str:
        prefix = "" if self.prefix_dim is None else f",prefix={self.prefix_dim}"
        return f"hnsw(M={self.m},ef={self.ef_search}{prefix})"

    @property
    def nbytes(self) -> int:
        """Approximate bytes held by the graph and its copy of the vectors."""
        graph = self._current()
        return 0 if graph is None else graph.nbytes

    @property
    def built(self) -> bool:
        """Whether a graph exists (with ``background``: possibly still catching up)."""
        return self._current() is not None

    @property
    def ready(self) -> bool:
        """Whether queries are answered by the graph now (with ``background``: built and up
        to date with every write; otherwise: built)."""
        if self._worker is not None:
            return self._worker.ready_graph() is not None
        return self._graph is not None

    @property
    def build_seconds(self) -> float | None:
        """Seconds the last full build took (None before one finished)."""
        if self._worker is not None:
            return self._worker.build_seconds
        return self._build_seconds

    @property
    def error(self) -> BaseException | None:
        """Why the last background build failed (queries then use the exact scan), or None."""
        return None if self._worker is None else self._worker.error

    def _current(self) -> Graph | None:
        return self._worker.graph if self._worker is not None else self._graph

    def _new_graph(self, metric: DistanceMetric, dim: int, capacity: int) -> Graph:
        return Graph(
            self._hnswlib,
            metric=metric,
            dim=dim,
            capacity=capacity,
            m=self.m,
            ef_construction=self.ef_construction,
            seed=self.seed,
            num_threads=self.num_threads,
            prefix_dim=self.prefix_dim,
        )

    # ------------------------------------------------------------------ background build

    def attach(self, source: RowSource) -> None:
        """Let a background build read the store's rows (the store calls this once)."""
        if self._worker is not None:
            try:
                self._worker.attach(source)
            except ValueError as exc:
                raise ConfigurationError(
                    "a background HnswAccelerator serves one open store: create one per store"
                ) from exc
            self._attached = True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background build (and the writes queued after it) to finish; True if
        the graph then answers queries. Without ``background``: whether it is built."""
        if self._worker is None:
            return self._graph is not None
        return self._worker.wait(timeout)

    def close(self) -> None:
        """Stop a background build and wait for its thread (the store calls this on close)."""
        if self._worker is not None:
            self._worker.close()

    # ------------------------------------------------------------------ the store's writes

    def invalidate(self) -> None:
        with self._lock:
            self._graph = None
            if self._worker is not None:
                self._worker.reset()

    def update(self, rows: npt.ArrayLike, vectors: FloatMatrix) -> None:
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self._attached and self._worker is not None:
            if idx.size:
                self._worker.write(idx, np.asarray(vectors))
            return
        with self._lock:
            if self._graph is not None:
                self._graph.add(idx, vectors)

    def remove(self, rows: npt.ArrayLike) -> None:
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self._attached and self._worker is not None:
            if idx.size:
                self._worker.write(idx, None)
            return
        with self._lock:
            if self._graph is not None:
                self._graph.remove(idx)

    def build(
        self,
        matrix: FloatMatrix,
        *,
        metric: DistanceMetric,
        norms: npt.NDArray[np.floating[Any]] | None = None,
        unit_rows: bool = False,
    ) -> None:
        """Build the graph over every row of ``matrix`` now, on this thread (otherwise done
        by the first query, or in the background)."""
        view = RowView(matrix, metric, norms, unit_rows)
        n, dim = matrix.shape
        started = time.perf_counter()
        graph = self._new_graph(metric, dim, n)
        for start in range(0, n, 4 * CHUNK_ROWS):
            stop = min(n, start + 4 * CHUNK_ROWS)
            graph.add(np.arange(start, stop, dtype=np.int64), view.true_vectors(start, stop))
        with self._lock:
            self._graph = graph
            self._build_seconds = time.perf_counter() - started
        logger.info("built HNSW over %d x %d in %.1f s", n, dim, self._build_seconds)

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
        graph = self._graph_for(matrix, metric, norms, unit_rows)
        if graph is None:  # a background build is not ready: the exact answer, now
            return exact_rows(view, q, top_k, allowed)
        hits = self._graph_search(graph, view, q, top_k, allowed, live)
        if graph.prefix is None:
            return hits
        # A prefix graph ranks by the leading dimensions: its pool is re-ranked in full.
        return [view.rerank(rows, q[i], top_k) for i, (rows, _) in enumerate(hits)]

    def _graph_search(
        self,
        graph: Graph,
        view: RowView,
        q: npt.NDArray[np.float32],
        top_k: int,
        allowed: Mask | None,
        live: int,
    ) -> list[Hits]:
        n = view.matrix.shape[0]
        graph_rows = graph.live
        # A prefix graph's order is approximate: it returns a pool for the re-rank.
        k = min(top_k if graph.prefix is None else max(top_k, self.rerank), live)
        if allowed is None:
            found = graph.knn(q, k, self.ef_search)
            if found is None:
                return exact_rows(view, q, k, None)
            return [(rows[rows < n], dist[rows < n]) for rows, dist in found]
        # Over-fetch in proportion to the filter's selectivity, then widen until enough
        # allowed rows come back; an exhausted widening falls back to the exact scan.
        fetch = min(graph_rows, math.ceil(2 * k * n / live))
        hits: list[Hits] = []
        for i in range(q.shape[0]):
            want = fetch
            while True:
                found = graph.knn(q[i : i + 1], want, self.ef_search)
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

    def _graph_for(
        self,
        matrix: FloatMatrix,
        metric: DistanceMetric,
        norms: npt.NDArray[np.floating[Any]] | None,
        unit_rows: bool,
    ) -> Graph | None:
        """The graph to answer with: the background one if ready, else built now."""
        if self._attached and self._worker is not None:
            graph = self._worker.ready_graph()
            return graph if graph is not None and graph.metric == metric else None
        with self._lock:
            if self._graph is None or self._graph.metric != metric:
                self.build(matrix, metric=metric, norms=norms, unit_rows=unit_rows)
            return self._graph
