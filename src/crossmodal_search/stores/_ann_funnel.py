"""The Matryoshka funnel accelerator: scan leading dimensions, re-rank at full dimension."""

from __future__ import annotations

import threading
from typing import Any, Literal

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
    at_least_top,
    exact_rows,
    prepare_queries,
)
from crossmodal_search.stores._kernels import DotKernel, load_numkong, require_numkong


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
        view = RowView(matrix, metric, norms, unit_rows)
        n, dim = matrix.shape
        q = prepare_queries(queries, metric)
        live = allowed_count(allowed, n)
        candidates = max(self.candidates, 8 * top_k)
        if (
            self.prefix_dim >= dim
            or live <= candidates
            or (allowed is not None and live <= self.exact_fraction * n)
        ):
            return exact_rows(view, q, top_k, allowed)
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
            rows = at_least_top(coarse[i], candidates)
            rows = rows[np.isfinite(coarse[i, rows])]
            hits.append(view.rerank(rows, q[i], top_k))
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

    def _ensure(self, view: RowView) -> tuple[npt.NDArray[Any], npt.NDArray[np.float32]]:
        n = view.matrix.shape[0]
        metric = view.metric
        with self._lock:
            if self._prefix is None or self._metric != metric or self._rows < n:
                self._kernel = None if self.prefix_dtype == "float32" else load_numkong()
                prefix = self._new_prefix(n)
                sq = np.empty(n, dtype=np.float32)
                for start in range(0, n, CHUNK_ROWS):
                    stop = min(n, start + CHUNK_ROWS)
                    block = self._project(view.true_vectors(start, stop, self.prefix_dim), metric)
                    prefix[start:stop] = block
                    sq[start:stop] = np.einsum("ij,ij->i", block, block)
                self._prefix = prefix
                self._prefix_sq = sq
                self._rows = n
                self._metric = metric
            assert self._prefix_sq is not None
            return self._prefix[:n], self._prefix_sq[:n]
