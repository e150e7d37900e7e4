"""What the accelerators share: the :class:`Accelerator` protocol, the row view of the
store's matrix and the exact scan they fall back to (and answer selective filters with)."""

from __future__ import annotations

import math
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import DistanceMetric

FloatMatrix: TypeAlias = npt.NDArray[np.floating[Any]]
RowArray: TypeAlias = npt.NDArray[np.intp]
Mask: TypeAlias = npt.NDArray[np.bool_]

#: Rows and distances of one query's matches, best first (distance as the store reports it:
#: ``1 - cosine`` or the L2 distance).
Hits: TypeAlias = tuple[RowArray, npt.NDArray[np.float32]]

# float16 -> float32 conversion in numpy is scalar code; convert in blocks that stay in cache.
CHUNK_ROWS = 8192


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


@runtime_checkable
class RowSource(Protocol):
    """A store's rows as a background build reads them: a block at a time, each read
    consistent with the store's writes (taken under its lock)."""

    @property
    def metric(self) -> DistanceMetric:
        """The store's distance metric."""
        ...

    def read(self, start: int, stop: int) -> tuple[npt.NDArray[np.float32], int] | None:
        """The vectors rows ``start:stop`` stand for (fewer past the last row) and the
        store's row count; ``None`` once the store is closed."""
        ...


@runtime_checkable
class BackgroundAccelerator(Accelerator, Protocol):
    """An accelerator that builds its state on a thread of its own from the store's rows."""

    def attach(self, source: RowSource) -> None:
        """Read the store's rows from ``source`` (called once, when the store opens)."""
        ...

    def close(self) -> None:
        """Stop the background work and wait for it (called when the store closes)."""
        ...


# --------------------------------------------------------------------------- exact scan


def as_f32(block: FloatMatrix) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(block, dtype=np.float32)


class RowView:
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
        for start in range(0, n, CHUNK_ROWS):
            stop = min(n, start + CHUNK_ROWS)
            idx: RowArray | slice = slice(start, stop) if rows is None else rows[start:stop]
            block = as_f32(self.matrix[idx])
            part = out[start:stop]
            np.matmul(block, q.T, out=part)
            self.finish(part, idx, block)
        return out

    def rerank(self, rows: RowArray, q: npt.NDArray[np.float32], k: int) -> Hits:
        """The best ``k`` of candidate ``rows`` for one prepared query, by their full vectors."""
        block = as_f32(self.matrix[rows])
        fine = self.finish(block @ q[:, None], rows, block)[:, 0]
        best = top_rows(fine, k)
        return rows[best], to_distances(fine[best], float(q @ q), self.metric)

    def true_vectors(
        self, start: int, stop: int, dims: int | None = None
    ) -> npt.NDArray[np.float32]:
        """Rows ``start:stop`` (first ``dims`` columns) as the vectors they stand for."""
        block = np.array(self.matrix[start:stop, :dims], dtype=np.float32)
        if self.unit_rows:
            assert self.norms is not None
            block *= self.norms[start:stop, None]
        return block


def to_distances(
    scores: npt.NDArray[np.float32], queries_sq: float, metric: DistanceMetric
) -> npt.NDArray[np.float32]:
    if metric == "cosine":
        return (1.0 - scores).astype(np.float32)
    dist: npt.NDArray[np.float32] = np.sqrt(np.maximum(queries_sq - scores, 0.0)).astype(np.float32)
    return dist


def top_rows(scores: npt.NDArray[np.float32], k: int) -> RowArray:
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
    return exact_rows(
        RowView(matrix, metric, norms, unit_rows), prepare_queries(queries, metric), top_k, allowed
    )


def exact_rows(
    view: RowView, q: npt.NDArray[np.float32], top_k: int, allowed: Mask | None
) -> list[Hits]:
    rows: RowArray | None = None
    if allowed is not None:
        rows = np.flatnonzero(allowed[: view.matrix.shape[0]])
        if rows.size == 0:
            return [empty_hits() for _ in range(q.shape[0])]
        if rows.size == view.matrix.shape[0]:
            rows = None
    scores = view.scores(rows, q)
    hits: list[Hits] = []
    for i in range(q.shape[0]):
        best = top_rows(scores[:, i], top_k)
        dist = to_distances(scores[best, i], float(q[i] @ q[i]), view.metric)
        hits.append((rows[best] if rows is not None else best, dist))
    return hits


def prepare_queries(queries: FloatMatrix, metric: DistanceMetric) -> npt.NDArray[np.float32]:
    q = np.array(queries, dtype=np.float32, ndmin=2, copy=True)
    if metric == "cosine":
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        np.divide(q, norms, out=q, where=norms > 0)
    return q


def empty_hits() -> Hits:
    return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.float32)


def allowed_count(allowed: Mask | None, n: int) -> int:
    return n if allowed is None else int(np.count_nonzero(allowed[:n]))


def at_least_top(scores: npt.NDArray[np.float32], count: int) -> RowArray:
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
