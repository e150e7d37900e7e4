"""The vectors of a memory-mapped local store: segment files mapped in place, then memory.

A store opened with ``memory_map`` does not read its vectors: each segment whose rows are new
keys appended in order is mapped (copy-on-write, so nothing ever writes to the file) and becomes
the next run of rows; the operating system reads pages as search touches them and drops them
under memory pressure, so a store larger than RAM is searched at the disk's speed. Rows written
later, and rows that cannot be mapped, live in an in-memory *tail* after the mapped ones.

:class:`RowMatrix` offers the few array operations the row table and the search use (gather by
row numbers, assign, row slices, the pieces to scan); a slice of it is a lighter view, never a
copy of the mapped rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["RowMatrix", "RowMatrixView", "Rows", "pieces"]


class RowMatrix:
    """Rows ``[0, mapped)`` in memory maps, then an in-memory tail (its capacity grows).

    Args:
        dimension: Vector length.
        dtype: Storage dtype.
    """

    def __init__(self, dimension: int, dtype: np.dtype[Any]) -> None:
        self.dtype = dtype
        self.dimension = dimension
        self.parts: list[npt.NDArray[Any]] = []
        self.starts: list[int] = [0]  # starts[i]: first row of parts[i]; starts[-1]: the tail's
        self.tail: npt.NDArray[Any] = np.empty((0, dimension), dtype=dtype)

    @property
    def mapped(self) -> int:
        """Rows held by memory maps."""
        return self.starts[-1]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.mapped + self.tail.shape[0], self.dimension)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    def map(self, part: npt.NDArray[Any], used: int) -> None:
        """Append a mapped ``part`` after the mapped rows; ``used`` (the rows in use) must be all
        of them: a mapped part cannot follow tail rows."""
        if used != self.mapped:
            raise ValueError(f"cannot map rows after {used} rows in use ({self.mapped} mapped)")
        self.parts.append(part)
        self.starts.append(self.mapped + part.shape[0])
        self.tail = np.empty((0, self.dimension), dtype=self.dtype)

    def reserve(self, rows: int, used: int) -> None:
        """Room for ``rows`` rows (the first ``used`` are kept); only the tail grows."""
        if rows <= self.shape[0]:
            return
        kept = max(0, used - self.mapped)
        capacity = max(rows - self.mapped, int(self.tail.shape[0] * 1.5), 1024)
        tail = np.empty((capacity, self.dimension), dtype=self.dtype)
        tail[:kept] = self.tail[:kept]
        self.tail = tail

    def pieces(self, stop: int) -> list[npt.NDArray[Any]]:
        """Views covering rows ``[0, stop)`` in order: the mapped parts, then the tail."""
        out: list[npt.NDArray[Any]] = []
        for part, start in zip(self.parts, self.starts, strict=False):
            if start >= stop:
                return out
            out.append(part[: stop - start])
        if stop > self.mapped:
            out.append(self.tail[: stop - self.mapped])
        return out

    def _locate(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """The part of each row (``len(self.parts)``: the tail)."""
        found: npt.NDArray[np.intp] = np.searchsorted(self.starts, rows, side="right") - 1
        return found

    def _source(self, which: int) -> tuple[npt.NDArray[Any], int]:
        if which < len(self.parts):
            return self.parts[which], self.starts[which]
        return self.tail, self.mapped

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                raise IndexError("RowMatrix slices take no step")
            return RowMatrixView(self, start, stop)
        if isinstance(key, int | np.integer):
            part, first = self._source(int(self._locate(np.asarray([key]))[0]))
            return part[int(key) - first]
        rows = np.asarray(key, dtype=np.intp)
        out = np.empty((rows.shape[0], self.dimension), dtype=self.dtype)
        which = self._locate(rows)
        for w in np.unique(which).tolist():
            picked = which == w
            part, first = self._source(w)
            out[picked] = part[rows[picked] - first]
        return out

    def __setitem__(self, key: Any, values: npt.ArrayLike) -> None:
        if isinstance(key, slice):
            start, stop, _ = key.indices(self.shape[0])
            key = np.arange(start, stop)
        rows = np.asarray(key, dtype=np.intp)
        block = np.asarray(values)
        which = self._locate(rows)
        for w in np.unique(which).tolist():
            picked = which == w
            part, first = self._source(w)
            part[rows[picked] - first] = block[picked] if block.ndim == 2 else block


class RowMatrixView:
    """Rows ``[start, stop)`` of a :class:`RowMatrix` (what slicing it returns)."""

    def __init__(self, base: RowMatrix, start: int, stop: int) -> None:
        self.base = base
        self.start = start
        self.stop = max(start, stop)
        self.dtype = base.dtype

    @property
    def shape(self) -> tuple[int, int]:
        return (self.stop - self.start, self.base.dimension)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                raise IndexError("RowMatrix slices take no step")
            if self.start == 0 and start == 0:
                return RowMatrixView(self.base, 0, stop)
            key = np.arange(start, stop)
        if isinstance(key, int | np.integer):
            return self.base[int(key) + self.start]
        return self.base[np.asarray(key, dtype=np.intp) + self.start]

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        """Every row of the view in one array (read into memory: small views only)."""
        out: npt.NDArray[Any] = self.base[np.arange(self.start, self.stop)]
        return out if dtype is None else out.astype(dtype)


#: Stored rows as the row table and the segment writer take them.
Rows: TypeAlias = "npt.NDArray[Any] | RowMatrix | RowMatrixView"


def pieces(matrix: Rows, stop: int) -> Sequence[Any]:
    """Arrays covering rows ``[0, stop)`` of ``matrix``, in order (one for an ndarray)."""
    if isinstance(matrix, RowMatrixView):
        if matrix.start != 0:
            raise ValueError("pieces of a view need it to start at row 0")
        return matrix.base.pieces(min(stop, matrix.stop))
    if isinstance(matrix, RowMatrix):
        return matrix.pieces(stop)
    return [matrix[:stop]]
