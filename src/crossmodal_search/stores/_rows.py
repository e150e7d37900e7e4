"""The local store's rows: keys, metadata and vectors, row-aligned, in memory.

Row ``i`` holds key ``keys[i]``, metadata ``metadata[i]`` and vector ``matrix[i]`` (float32
storage) or ``matrix[i] * norms[i]`` (float16 storage keeps unit vectors). Deletes swap the last
rows into the holes, so the matrix stays compact and a delete costs O(deleted rows). A float32
store may keep a 16-bit *scan copy* of its unit rows (``scan_dtype``) that the exact search reads
first; it is kept in step here, with every write. So are the BM25 indexes of the full-text
searchable keys (``text_fields``), each built from the rows by the first query that needs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import MetadataValue
from crossmodal_search.stores._columns import MetadataColumns
from crossmodal_search.stores._fulltext import TextIndex, analyzer
from crossmodal_search.stores._models import VectorRecord
from crossmodal_search.stores._rowmatrix import RowMatrix
from crossmodal_search.stores._text import TextField

if TYPE_CHECKING:
    from crossmodal_search.stores._ann import Accelerator
    from crossmodal_search.stores._kernels import _Format

__all__ = ["BLOCK_ROWS", "RowTable", "copy_metadata", "unit_rows"]

# Rows per block when converting or writing vectors: bounds temporary memory to a few MiB.
BLOCK_ROWS = 16384


class RowTable:
    """Row-aligned keys, metadata, vectors and norms of one store, plus its filter columns.

    Args:
        dimension: Vector length.
        dtype: Storage dtype (float32, or float16 for unit rows scaled by ``norms``).
        non_filterable: Metadata keys the filter columns leave out.
        scan_format: The 16-bit format of a float32 store's scan copy, or None.
        accelerator: Told about every changed row (approximate search), or None.
    """

    def __init__(
        self,
        *,
        dimension: int,
        dtype: np.dtype[Any],
        non_filterable: frozenset[str],
        scan_format: _Format | None = None,
        accelerator: Accelerator | None = None,
    ) -> None:
        self.dimension = dimension
        self.dtype = dtype
        self.scaled = dtype == np.float16
        self.scan_format = scan_format
        self.accelerator = accelerator
        self._non_filterable = non_filterable
        self.text_fields: tuple[TextField, ...] = ()
        self.reset()

    def reset(self) -> None:
        """Forget every row."""
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.metadata: list[dict[str, MetadataValue]] = []
        # In memory, or (a store opened with memory_map) segment files mapped, then memory.
        self.matrix: npt.NDArray[Any] | RowMatrix = np.empty((0, self.dimension), dtype=self.dtype)
        self.norms: npt.NDArray[np.float64] = np.empty(0, dtype=np.float64)
        self.columns = MetadataColumns(self._non_filterable)
        # BM25 index per full-text key, built on first use (see text_index).
        self._text: dict[str, TextIndex] = {}
        self.n = 0
        # The scan copy (same capacity as ``matrix``), built by the first search.
        self.scan_rows: npt.NDArray[Any] | None = None
        # Bumped by every write: search caches derived from the rows compare it.
        self.version = 0
        if self.accelerator is not None:
            self.accelerator.invalidate()

    # ------------------------------------------------------------------ reads

    def record(self, row: int) -> VectorRecord:
        """The record at ``row``, its vector as float32 and its metadata copied."""
        vec = self.matrix[row].astype(np.float32)
        if self.scaled:
            vec = (vec.astype(np.float64) * self.norms[row]).astype(np.float32)
        return VectorRecord(self.keys[row], vec, copy_metadata(self.metadata[row]))

    def true_vectors(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        """The float32 vectors of ``rows`` (float16 unit rows scaled back by their norms)."""
        vectors = self.matrix[rows].astype(np.float32)
        if self.scaled:
            vectors *= self.norms[rows].astype(np.float32)[:, None]
        return vectors

    def block(self, start: int, stop: int) -> tuple[npt.NDArray[np.float32], int]:
        """The float32 vectors of rows ``start:stop`` (fewer past the last row) and the row
        count: what a background accelerator build reads."""
        stop = max(start, min(stop, self.n))
        return self.true_vectors(np.arange(start, stop, dtype=np.intp)), self.n

    def text_index(self, key: str) -> TextIndex:
        """The BM25 index of full-text key ``key``, built from the rows if this is its first
        use (a store that is never text-searched never pays for one)."""
        index = self._text.get(key)
        if index is None:
            field = next(f for f in self.text_fields if f.key == key)
            index = TextIndex(analyzer(field.language))
            index.extend([md.get(key) for md in self.metadata[: self.n]])
            self._text[key] = index
        return index

    def set_text_fields(self, fields: Sequence[TextField]) -> None:
        """Make ``fields`` the full-text keys; indexes of keys gone or re-analysed are dropped."""
        wanted = {f.key: f for f in fields}
        for old in self.text_fields:
            new = wanted.get(old.key)
            if new is None or new.language != old.language:
                self._text.pop(old.key, None)
        self.text_fields = tuple(fields)

    def scan_matrix(self) -> npt.NDArray[Any] | RowMatrix:
        """The rows the first pass of a search reads: the stored ones, or the scan copy (built
        now if this is the first search since the rows were loaded)."""
        if self.scan_format is None:
            return self.matrix
        if self.scan_rows is None:
            self.scan_rows = np.empty(self.matrix.shape, dtype=self.scan_format.storage)
            self._write_scan(np.arange(self.n))
        return self.scan_rows

    # ------------------------------------------------------------------ writes

    def prepare(
        self, vectors: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[Any], npt.NDArray[np.float64]]:
        """Vectors as stored (float32 as given, or float16 unit vectors) and their float64 norms."""
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors)).astype(np.float64)
        # float32 squares overflow above ~1e19 and underflow below ~1e-19: redo those in float64.
        redo = np.flatnonzero(~np.isfinite(norms) | (norms < 1e-18))
        if redo.size:
            wide = vectors[redo].astype(np.float64)
            norms[redo] = np.sqrt(np.einsum("ij,ij->i", wide, wide))
        if not self.scaled:
            return vectors, norms
        stored = np.empty(vectors.shape, dtype=self.dtype)
        for s in range(0, vectors.shape[0], BLOCK_ROWS):
            block = slice(s, s + BLOCK_ROWS)
            stored[block] = unit_rows(vectors[block], norms[block])
        return stored, norms

    def put(
        self,
        keys: Sequence[str],
        stored: npt.NDArray[Any],
        norms: npt.NDArray[np.float64],
        metadata: Sequence[dict[str, MetadataValue]],
    ) -> None:
        """Insert or overwrite rows (``stored``/``norms`` from :meth:`prepare`)."""
        self.version += 1
        rows = np.empty(len(keys), dtype=np.intp)
        old_n = n = self.n
        for i, key in enumerate(keys):
            row = self.index.get(key)
            if row is None:
                row = self.index[key] = n
                self.keys.append(key)
                self.metadata.append(metadata[i])
                n += 1
            rows[i] = row
        self._reserve(n)
        self.n = n
        self.columns.resize(n)
        if rows.size and rows[-1] - rows[0] == rows.size - 1 and np.all(np.diff(rows) == 1):
            self.matrix[rows[0] : rows[-1] + 1] = stored
        else:
            self.matrix[rows] = stored
        self.norms[rows] = norms
        if self.scan_rows is not None:
            self._write_scan(rows)
        for i, row in enumerate(rows.tolist()):
            self.metadata[row] = metadata[i]
            self.columns.set_row(row, metadata[i], fresh=row >= old_n)
        for key, index in self._text.items():
            # New rows come in increasing order from old_n: they append, in one pass.
            appended = []
            for i, row in enumerate(rows.tolist()):
                if row < old_n:
                    index.put(row, metadata[i].get(key))
                else:
                    appended.append(metadata[i].get(key))
            index.extend(appended)
        if self.accelerator is not None:
            self.accelerator.update(rows, self.true_vectors(rows))

    def delete(self, keys: Sequence[str]) -> None:
        """Remove rows; unknown keys are ignored."""
        rows = sorted({self.index[k] for k in keys if k in self.index})
        if not rows:
            return
        self.version += 1
        n = self.n
        new_n = n - len(rows)
        gone = set(rows)
        for row in rows:
            del self.index[self.keys[row]]
        # Swap-remove: live rows from the tail fill the holes.
        holes = [r for r in rows if r < new_n]
        movers = [r for r in range(new_n, n) if r not in gone]
        if holes:
            h = np.asarray(holes, dtype=np.intp)
            m = np.asarray(movers, dtype=np.intp)
            self.matrix[h] = self.matrix[m]
            self.norms[h] = self.norms[m]
            if self.scan_rows is not None:
                self.scan_rows[h] = self.scan_rows[m]
            self.columns.move_rows(m, h)
            for dst, src in zip(holes, movers, strict=True):
                key = self.keys[src]
                self.keys[dst] = key
                self.metadata[dst] = self.metadata[src]
                self.index[key] = dst
        del self.keys[new_n:]
        del self.metadata[new_n:]
        self.columns.resize(new_n)
        for index in self._text.values():
            index.delete_rows(rows, holes, movers)
        self.n = new_n
        if self.accelerator is not None:
            if holes:
                self.accelerator.update(h, self.true_vectors(h))
            self.accelerator.remove(np.arange(new_n, n))

    def map_rows(
        self,
        keys: Sequence[str],
        vectors: npt.NDArray[Any],
        norms: npt.NDArray[np.float64],
        metadata: Sequence[dict[str, MetadataValue]],
    ) -> bool:
        """Append a segment's rows without copying its ``vectors`` (a copy-on-write memory map
        of the segment file): only when they are all new, distinct keys and every row in use is
        mapped too. False (and nothing changed) otherwise: :meth:`put` them."""
        n = self.n
        mapped = self.matrix.mapped if isinstance(self.matrix, RowMatrix) else 0
        if n != mapped or self.accelerator is not None or self.scan_rows is not None:
            return False
        if not vectors.flags.writeable:  # mapped read-only: writes would fail, so copy it
            return False
        if len(set(keys)) != len(keys) or any(k in self.index for k in keys):
            return False
        self.version += 1
        if not isinstance(self.matrix, RowMatrix):
            self.matrix = RowMatrix(self.dimension, self.dtype)
        self.matrix.map(vectors, n)
        new_n = n + len(keys)
        grown = np.zeros(self.matrix.shape[0], dtype=np.float64)
        grown[:n] = self.norms[:n]
        grown[n:new_n] = norms
        self.norms = grown
        self.keys.extend(keys)
        self.metadata.extend(metadata)
        self.index.update(zip(keys, range(n, new_n), strict=True))
        self.n = new_n
        self.columns.resize(new_n)
        for row, md in enumerate(metadata, start=n):
            self.columns.set_row(row, md, fresh=True)
        for key, index in self._text.items():
            index.extend([md.get(key) for md in metadata])
        return True

    def release(self) -> None:
        """Drop the rows (and with them any memory-mapped files)."""
        self.reset()

    def _reserve(self, rows: int) -> None:
        capacity = self.matrix.shape[0]
        if rows <= capacity:
            return
        if isinstance(self.matrix, RowMatrix):
            self.matrix.reserve(rows, self.n)  # the mapped rows stay where they are
        else:
            # Geometric growth keeps many small puts amortised O(1) per row; a first bulk put
            # allocates exactly what it needs.
            new_capacity = max(rows, int(capacity * 1.5), 1024 if capacity else 0)
            matrix = np.empty((new_capacity, self.dimension), dtype=self.dtype)
            matrix[: self.n] = self.matrix[: self.n]
            self.matrix = matrix
        new_capacity = self.matrix.shape[0]
        norms = np.zeros(new_capacity, dtype=np.float64)
        norms[: self.n] = self.norms[: self.n]
        self.norms = norms
        if self.scan_rows is not None:
            scan = np.empty((new_capacity, self.dimension), dtype=self.scan_rows.dtype)
            scan[: self.n] = self.scan_rows[: self.n]
            self.scan_rows = scan

    def _write_scan(self, rows: npt.NDArray[np.intp]) -> None:
        """Copy ``rows`` into the scan copy: unit vectors rounded to its 16-bit format (zero
        rows stay zero), a block at a time."""
        assert self.scan_format is not None and self.scan_rows is not None
        for s in range(0, rows.shape[0], BLOCK_ROWS):
            block = rows[s : s + BLOCK_ROWS]
            unit = unit_rows(self.matrix[block], self.norms[block])
            self.scan_rows[block] = self.scan_format.encode(unit)


def unit_rows(vectors: npt.NDArray[Any], norms: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``vectors`` divided by their ``norms`` in float64; all-zero rows stay zero."""
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    unit: npt.NDArray[np.float64] = vectors * inv[:, None]
    return unit


def copy_metadata(metadata: Mapping[str, MetadataValue]) -> dict[str, MetadataValue]:
    """A copy a caller may change without changing the store (lists copied too)."""
    out = dict(metadata)
    for key, value in out.items():
        if isinstance(value, list):
            out[key] = list(value)  # replacing a value while iterating is allowed
    return out
