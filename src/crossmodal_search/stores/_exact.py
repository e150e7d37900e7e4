"""Exact nearest-neighbour search over a :class:`~crossmodal_search.stores._rows.RowTable`.

One matrix product over every row (or only the rows a filter selects) gives cheap *order keys*
(ordered like the distance); a partial selection keeps every row within rounding of the k-th best;
those few candidates are re-scored in float64, so reported distances do not depend on BLAS
rounding and ties are broken by key: results are deterministic and exact. The first pass may read
16-bit rows (float16 storage, or a float32 store's scan copy) through a kernel whose error bound
widens the candidate limit (``stores/_kernels.py``). An optional accelerator (``stores/_ann.py``)
proposes candidates instead; their distances are still computed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import DistanceMetric
from crossmodal_search.stores._models import QueryMatch
from crossmodal_search.stores._rowmatrix import pieces
from crossmodal_search.stores._rows import RowTable, copy_metadata
from crossmodal_search.stores._selection import GATHER_FRACTION, Selection, SelectionCache

if TYPE_CHECKING:
    from crossmodal_search.stores._ann import Accelerator
    from crossmodal_search.stores._filter import CompiledFilter
    from crossmodal_search.stores._kernels import DotKernel

__all__ = ["ExactSearch"]

# Score-matrix budget for batches of queries (elements): bounds memory to ~256 MiB of float32.
_SCORE_BUDGET = 64 * 1024 * 1024
# Relative slack when picking candidates for exact re-scoring, far above float32 matmul error.
_RELATIVE_TOLERANCE = 1e-5
# Up to this many rows, one query is multiplied as a matrix-vector product (see _multiply).
_GEMV_ROWS = 65536
# Rows per block when bounding the k-th best order key by block minima (see _candidates_many).
_BOUND_BLOCK = 128
# Candidates re-scored in float64 per block (bounds the temporaries).
_EXACT_BLOCK = 4096
# Bytes of kept rows copied at a time into a reused block (fits in L2). Gathering them into
# one new array costs a page fault per 4 KiB written, more than reading the rows: a filter
# keeping 10 % of 100k x 1024 rows took 16 ms gathered at once, 4.7 ms a block at a time.
_GATHER_BYTES = 512 * 1024


@dataclass(frozen=True)
class _RowFactors:
    """Per-row float32 factors of the order keys, cached between writes (see _order_keys)."""

    neg_inv: npt.NDArray[np.float32] | None  # cosine, raw rows: -1 / |x|
    squared: npt.NDArray[np.float32] | None  # euclidean: |x|^2
    scale: npt.NDArray[np.float32] | None  # euclidean, float16 unit rows: |x|
    top_norm: float
    bottom_norm: float


class ExactSearch:
    """The search of one store's rows.

    Args:
        rows: The rows searched (read at every call; writes bump ``rows.version``).
        metric: ``"cosine"`` or ``"euclidean"``.
        kernel: Multiplies 16-bit rows (float16 storage or a scan copy), or None (numpy).
        kernel_error: Extra candidate slack, relative to the order keys' magnitude, for the
            kernel's rounding and 16-bit rows that are unit length only to within rounding.
        accelerator: Proposes candidates instead of the full scan, or None.
    """

    def __init__(
        self,
        rows: RowTable,
        *,
        metric: DistanceMetric,
        kernel: DotKernel | None,
        kernel_error: float,
        accelerator: Accelerator | None,
    ) -> None:
        self._rows = rows
        self._metric = metric
        self._kernel = kernel
        # The first pass reads unit rows (float16 storage, or a scan copy): row i stands for its
        # unit vector times norms[i].
        self._unit_scan = kernel is not None
        self._kernel_error = kernel_error
        self._accelerator = accelerator
        self._factors: _RowFactors | None = None
        self._factors_version = -1
        self._selections = SelectionCache(rows)

    def search(
        self, queries: npt.NDArray[np.float32], top_k: int, compiled: CompiledFilter | None
    ) -> list[list[QueryMatch]]:
        n = self._rows.n
        nq = queries.shape[0]
        if n == 0 or nq == 0:
            return [[] for _ in range(nq)]
        if self._accelerator is not None:
            return self._accelerated(queries, top_k, compiled)
        selection: Selection | None = None
        if compiled is not None:
            selection = self._selections.select(compiled)
            if selection.count == 0:
                return [[] for _ in range(nq)]
        rows = None if selection is None else selection.rows
        factors = self._row_factors(selection)
        if nq == 1:
            one = self._search_one(queries[0], top_k, selection, factors)
            if one is not None:
                return [one]
        results: list[list[QueryMatch]] = []
        count = n if rows is None else rows.shape[0]
        group = max(1, _SCORE_BUDGET // count)
        # float64: float32 squares under/overflow at 1e+-19.
        wide = queries.astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))
        for start in range(0, nq, group):
            q = queries[start : start + group]
            qn = norms[start : start + group]
            picks: list[npt.NDArray[np.intp] | None] = [None] * q.shape[0]  # None: every row
            narrow = np.flatnonzero(~self._beyond_float32(qn, factors))
            if narrow.size:
                dots = self._dots(q[narrow], selection)  # (count, len(narrow))
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

    def _search_one(
        self,
        q: npt.NDArray[np.float32],
        top_k: int,
        selection: Selection | None,
        factors: _RowFactors,
    ) -> list[QueryMatch] | None:
        """:meth:`search` for one query, without the batch bookkeeping (a filtered query over a
        few rows is mostly bookkeeping); None when the query needs the float64 path."""
        q64 = q.astype(np.float64)
        qn = math.sqrt(float(q64.dot(q64)))
        # The same bounds as _beyond_float32, in Python floats (numpy is slow on one value).
        top, bottom = factors.top_norm, factors.bottom_norm
        if self._metric == "cosine":
            high, low = (
                (qn, qn) if self._unit_scan else (qn * top, min(qn * bottom, bottom * 2.0**40))
            )
        else:
            high, low = max(qn * top, top * top), 2.0 * qn * top + top * top
        if high > 2.0**100 or low < 2.0**-60:
            return None
        order = self._order_keys(self._dots(q[None, :], selection)[:, 0], factors)
        picked = self._candidates(order, top_k, qn, factors.top_norm)
        if selection is None or selection.rows is None:
            return self._exact(picked, q, top_k, q64, qn)
        source = None
        if selection.matrix is not None and self._rows.scan_format is None:
            # The copy holds the stored rows themselves, just read: no trip to the matrix.
            source = selection.matrix[picked]
        return self._exact(selection.rows[picked], q, top_k, q64, qn, source)

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

    def _accelerated(
        self, queries: npt.NDArray[np.float32], top_k: int, compiled: CompiledFilter | None
    ) -> list[list[QueryMatch]]:
        assert self._accelerator is not None
        n = self._rows.n
        mask = None if compiled is None else compiled.mask(self._rows.columns)[:n]
        hits = self._accelerator.search(
            self._rows.matrix[:n],
            queries,
            top_k,
            metric=self._metric,
            allowed=mask,
            norms=self._rows.norms[:n],
            unit_rows=self._rows.scaled,
        )
        return [self._exact(rows, q, top_k) for (rows, _), q in zip(hits, queries, strict=True)]

    def _dots(
        self, q: npt.NDArray[np.float32], selection: Selection | None
    ) -> npt.NDArray[np.float32]:
        """First-pass row . query products, shape (rows, queries), in float32: of the stored
        rows, or of the scan copy's unit rows (every row, or those ``selection`` keeps)."""
        scan = self._rows.scan_matrix()
        rows = None if selection is None else selection.rows
        if rows is None:
            # One array, or (a memory-mapped store) its mapped segments and the rows after.
            parts = pieces(scan, self._rows.n)
            if len(parts) > 1:
                return np.concatenate([self._multiply(part, q) for part in parts])
            matrix = parts[0]
        elif selection is not None and selection.matrix is not None:
            matrix = selection.matrix  # the kept rows, gathered by an earlier query
        elif rows.shape[0] < self._rows.n * GATHER_FRACTION:
            if isinstance(scan, np.ndarray):
                return self._multiply_rows(scan, rows, q)
            matrix = scan[rows]  # memory-mapped segments: their own gather
        else:
            # A filter keeping many rows: multiply everything, keep the selected products.
            return self._dots(q, None)[rows]
        return self._multiply(matrix, q)

    def _multiply_rows(
        self, scan: npt.NDArray[Any], rows: npt.NDArray[np.intp], q: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """:meth:`_multiply` of ``scan[rows]``, gathered a block at a time into one buffer."""
        step = max(16, _GATHER_BYTES // max(1, scan.shape[1] * scan.dtype.itemsize))
        out = np.empty((rows.shape[0], q.shape[0]), dtype=np.float32)
        block = np.empty((min(step, rows.shape[0]), scan.shape[1]), dtype=scan.dtype)
        for start in range(0, rows.shape[0], step):
            part = rows[start : start + step]
            view = block[: part.shape[0]]
            np.take(scan, part, axis=0, out=view)
            out[start : start + part.shape[0]] = self._multiply(view, q)
        return out

    def _multiply(
        self, matrix: npt.NDArray[Any], q: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        if self._kernel is not None:  # 16-bit rows (stores/_kernels.py)
            return self._kernel.dots(matrix, q)
        if q.shape[0] == 1 and matrix.shape[0] <= _GEMV_ROWS:
            # Matrix times vector (gemv): OpenBLAS threads a small matrix product (gemm) once
            # its threads exist, and waking them cost a 1 % filtered query at 100k x 256 ~10 us.
            column: npt.NDArray[np.float32] = (matrix @ q[0])[:, None]
            return column
        out: npt.NDArray[np.float32] = matrix @ np.ascontiguousarray(q.T)
        return out

    def _row_factors(self, selection: Selection | None) -> _RowFactors:
        """The order-key factors of every row (cached until the next write), or of the rows
        ``selection`` keeps (cached with it, computed from those rows' norms only: a write
        does not make a selective query pay for every row's factors)."""
        if selection is not None and selection.rows is not None:
            if selection.factors is None:
                selection.factors = self._factors_of(self._rows.norms[selection.rows])
            kept: _RowFactors = selection.factors
            return kept
        if self._factors is None or self._factors_version != self._rows.version:
            self._factors_version = self._rows.version
            self._factors = self._factors_of(self._rows.norms[: self._rows.n])
        return self._factors

    def _factors_of(self, norms: npt.NDArray[np.float64]) -> _RowFactors:
        """The factors of rows with ``norms``."""
        cosine = self._metric == "cosine"
        # Rows beyond float32's range give infinite factors; no query uses them (every query
        # that could meet such a row is scored in float64: _beyond_float32).
        with np.errstate(over="ignore", divide="ignore"):
            return _RowFactors(
                neg_inv=(-1.0 / norms).astype(np.float32)
                if cosine and not self._unit_scan
                else None,
                squared=None if cosine else (norms * norms).astype(np.float32),
                scale=norms.astype(np.float32) if self._unit_scan and not cosine else None,
                top_norm=float(norms.max()) if norms.size else 0.0,
                bottom_norm=float(norms.min()) if norms.size else 0.0,
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
        self,
        rows: npt.NDArray[np.intp],
        q: npt.NDArray[np.float32],
        top_k: int,
        q64: npt.NDArray[np.float64] | None = None,
        qn: float | None = None,
        source: npt.NDArray[Any] | None = None,
    ) -> list[QueryMatch]:
        """Float64 distances for candidate rows, sorted by (distance, key), best ``top_k``
        (``q64``/``qn``: the query in float64 and its norm, when known; ``source``: the stored
        vectors of ``rows`` when already gathered, e.g. from a selection's copy).

        The candidates are few (about ``top_k`` for a scan, more for near-ties), so this is
        mostly fixed cost: keys are read only for ties and for the rows returned.
        """
        if q64 is None or qn is None:
            q64 = q.astype(np.float64)
            qn = math.sqrt(float(q64.dot(q64)))  # what np.linalg.norm computes, without checks
        if rows.shape[0] <= _EXACT_BLOCK:
            dist = self._distances(rows, q64, qn, source)
        else:  # bounded temporaries for many candidates
            dist = np.concatenate(
                [
                    self._distances(rows[s : s + _EXACT_BLOCK], q64, qn, None)
                    for s in range(0, rows.shape[0], _EXACT_BLOCK)
                ]
            )
        if self._metric == "cosine":
            np.minimum(np.maximum(dist, 0.0, out=dist), 2.0, out=dist)
        if rows.shape[0] > top_k:  # sort only the k best and rows tied with the k-th
            keep = dist <= np.partition(dist, top_k - 1)[top_k - 1]
            dist, rows = dist[keep], rows[keep]
        distances = dist.tolist()
        row_list = rows.tolist()
        keys = self._rows.keys
        metadata = self._rows.metadata
        # Without list values anywhere, a plain dict copy is a copy the caller may change.
        copy = copy_metadata if self._rows.columns.lists else dict
        if len(set(distances)) == len(distances):  # no ties: the distance alone orders
            order = sorted(range(len(distances)), key=distances.__getitem__)[:top_k]
            return [
                QueryMatch(keys[row_list[i]], distances[i], copy(metadata[row_list[i]]))
                for i in order
            ]
        ranked = sorted(zip(distances, (keys[r] for r in row_list), row_list, strict=True))
        return [QueryMatch(key, d, copy(metadata[row])) for d, key, row in ranked[:top_k]]

    def _distances(
        self,
        rows: npt.NDArray[np.intp],
        q64: npt.NDArray[np.float64],
        qn: float,
        source: npt.NDArray[Any] | None,
    ) -> npt.NDArray[np.float64]:
        """Float64 distances from the query to the stored vectors of ``rows``."""
        x = (self._rows.matrix[rows] if source is None else source).astype(np.float64)
        if self._rows.scaled:
            x *= self._rows.norms[rows][:, None]
        if self._metric == "cosine":
            xn = np.sqrt(np.einsum("ij,ij->i", x, x))
            # einsum, not BLAS: each row's sum is the same whatever else is in the block,
            # so a distance does not depend on which other rows were candidates.
            dots = np.einsum("ij,j->i", x, q64)
            dist: npt.NDArray[np.float64] = 1.0 - dots / (xn * qn)
            return dist
        diff = x - q64
        out: npt.NDArray[np.float64] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        return out


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
