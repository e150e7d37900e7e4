"""Columnar, dictionary-encoded metadata: what the local store filters with numpy.

The filter language (``_filter.py``) compiles to conditions; each condition asks the column of
its key which rows hold a matching element (:meth:`_Column.any_element`, over every row or a
few), or, for a selective filter, the column's index (``_colindex.py``: the rows holding a
value, found by binary search, kept in step with every write). Both the per-record and the
columnar evaluator classify values with :func:`classify`, so they agree on odd data too.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from crossmodal_search.stores._colindex import KeyIndex

__all__ = ["NUM_OPS", "BoolArray", "Kind", "MetadataColumns", "Operand", "classify", "elements"]

BoolArray: TypeAlias = npt.NDArray[np.bool_]

# A metadata value is classified as one of three kinds; anything else (None, dict, ...) matches
# no operator but "exists". Both evaluators use this, so they agree on odd data too.
Kind = Literal["b", "n", "s"]


def classify(value: object) -> tuple[Kind, bool | float | str] | None:
    if isinstance(value, bool | np.bool_):
        return "b", bool(value)
    if isinstance(value, str):
        return "s", value
    if isinstance(value, int | float | np.integer | np.floating):
        try:
            return "n", float(value)
        except OverflowError:  # an int beyond double range is no number S3 Vectors can hold
            return None
    return None


def elements(value: object) -> Iterable[object]:
    if isinstance(value, list | tuple):
        return value
    return (value,)


#: A compiled condition's operand: scalars for $eq/$in, a number for ordering, a bool for
#: $exists, a prefix for $startsWith.
Operand: TypeAlias = "tuple[tuple[Kind, bool | float | str], ...] | float | bool | str"


NUM_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


class _Column:
    """One metadata key over all rows: every value is a row of up to ``width`` elements.

    A scalar is a one-element row and a list its elements, which is why "any element matches"
    is the one rule for both. Per element kind there is one lazily created ``(capacity, width)``
    array: string codes (int32, -1 empty), numbers (float64, NaN empty), booleans (int8, -1 empty).
    """

    __slots__ = ("bools", "codes", "index", "nums", "present", "uses", "width")

    def __init__(self, capacity: int) -> None:
        self.width = 1
        # The key's index (built by the second query using the key) and those queries' count.
        self.index: KeyIndex | None = None
        self.uses = 0
        self.present: BoolArray = np.zeros(capacity, dtype=bool)
        self.codes: npt.NDArray[np.int32] | None = None
        self.nums: npt.NDArray[np.float64] | None = None
        self.bools: npt.NDArray[np.int8] | None = None

    @property
    def capacity(self) -> int:
        return int(self.present.shape[0])

    def _new(self, dtype: Any, fill: Any, capacity: int, width: int) -> Any:
        return np.full((capacity, width), fill, dtype=dtype)

    def reserve(self, capacity: int) -> None:
        if capacity <= self.capacity:
            return
        old = self.capacity
        present = np.zeros(capacity, dtype=bool)
        present[:old] = self.present
        self.present = present
        for name, fill in (("codes", -1), ("nums", np.nan), ("bools", -1)):
            arr = getattr(self, name)
            if arr is not None:
                new = self._new(arr.dtype, fill, capacity, self.width)
                new[:old] = arr
                setattr(self, name, new)

    def _widen(self, width: int) -> None:
        for name, fill in (("codes", -1), ("nums", np.nan), ("bools", -1)):
            arr = getattr(self, name)
            if arr is not None:
                new = self._new(arr.dtype, fill, self.capacity, width)
                new[:, : self.width] = arr
                setattr(self, name, new)
        self.width = width

    def _array(self, kind: Kind) -> Any:
        if kind == "s":
            if self.codes is None:
                self.codes = self._new(np.int32, -1, self.capacity, self.width)
            return self.codes
        if kind == "n":
            if self.nums is None:
                self.nums = self._new(np.float64, np.nan, self.capacity, self.width)
            return self.nums
        if self.bools is None:
            self.bools = self._new(np.int8, -1, self.capacity, self.width)
        return self.bools

    def clear(self, row: int | slice) -> None:
        if self.index is not None:
            if isinstance(row, slice):
                self.index.touch_rows(row)
            else:
                self.index.touch(row)
        self.present[row] = False
        if self.codes is not None:
            self.codes[row] = -1
        if self.nums is not None:
            self.nums[row] = np.nan
        if self.bools is not None:
            self.bools[row] = -1

    def set(self, row: int, value: object, vocab: dict[str, int], *, fresh: bool = False) -> bool:
        """Store ``value`` in ``row``; ``fresh`` rows are known to be empty already. True when
        the value is a list."""
        if not fresh:
            self.clear(row)
        elif self.index is not None:
            self.index.touch(row)
        self.present[row] = True
        # Fast paths for plain scalars, the common case.
        if type(value) is str:
            code = vocab.get(value)
            if code is None:
                code = vocab[value] = len(vocab)
            self._array("s")[row, 0] = code
            return False
        if type(value) is float or (type(value) is int and -(2**1023) < value < 2**1023):
            self._array("n")[row, 0] = value
            return False
        items = list(elements(value))
        if len(items) > self.width:
            self._widen(max(len(items), 2 * self.width))
        for j, element in enumerate(items):
            kv = classify(element)
            if kv is None:
                continue
            kind, v = kv
            arr = self._array(kind)
            if kind == "s":
                assert isinstance(v, str)
                code = vocab.get(v)
                if code is None:
                    code = vocab[v] = len(vocab)
                arr[row, j] = code
            else:
                arr[row, j] = v
        return isinstance(value, list | tuple)

    def move(self, src: npt.NDArray[np.intp], dst: npt.NDArray[np.intp]) -> None:
        if self.index is not None:
            self.index.touch_rows(dst)
        self.present[dst] = self.present[src]
        for arr in (self.codes, self.nums, self.bools):
            if arr is not None:
                arr[dst] = arr[src]

    def any_element(
        self, op: str, operand: Operand, vocab: Mapping[str, int], rows: int | npt.NDArray[np.intp]
    ) -> BoolArray:
        """Which rows have an element satisfying the positive operator ``op`` (not $exists):
        of the first ``rows`` rows, or of the rows listed."""
        hit: BoolArray | None = None
        sel: slice | npt.NDArray[np.intp] = slice(0, rows) if isinstance(rows, int) else rows
        size = rows if isinstance(rows, int) else rows.shape[0]

        def accumulate(elem: BoolArray) -> None:
            nonlocal hit
            if self.width > 16:
                row: BoolArray = np.any(elem, axis=1)
            else:
                # OR-ing a few columns beats np.any(axis=1), which is slow on narrow rows.
                row = elem[:, 0].copy()
                for j in range(1, self.width):
                    row |= elem[:, j]
            hit = row if hit is None else hit | row

        if op == "$startsWith":
            prefix = operand
            assert isinstance(prefix, str)
            if self.codes is not None:
                codes = [code for text, code in vocab.items() if text.startswith(prefix)]
                if codes:
                    accumulate(np.isin(self.codes[sel], codes))
        elif op in NUM_OPS:
            if self.nums is not None:
                with np.errstate(invalid="ignore"):
                    accumulate(NUM_OPS[op](self.nums[sel], operand))
        else:
            assert isinstance(operand, tuple)
            strings: list[Any] = [vocab[v] for k, v in operand if isinstance(v, str) and v in vocab]
            numbers: list[Any] = [v for k, v in operand if k == "n"]
            flags: list[Any] = [int(v) for k, v in operand if k == "b"]
            for arr, wanted in ((self.codes, strings), (self.nums, numbers), (self.bools, flags)):
                if arr is None or not wanted:
                    continue
                block = arr[sel]
                if len(wanted) > 8:
                    accumulate(np.isin(block, wanted))
                    continue
                elem = block == wanted[0]
                for value in wanted[1:]:
                    elem |= block == value
                accumulate(elem)
        return hit if hit is not None else np.zeros(size, dtype=bool)


class MetadataColumns:
    """Columnar, dictionary-encoded metadata for vectorised filtering.

    Rows are addressed by position (the local store keeps them aligned with its vector matrix).
    Keys in ``non_filterable`` are not indexed: they can never appear in a valid filter.
    """

    def __init__(self, non_filterable: Iterable[str] = (), capacity: int = 0) -> None:
        self._non_filterable = frozenset(non_filterable)
        self._columns: dict[str, _Column] = {}
        self._n = 0
        self._capacity = capacity
        self.vocab: dict[str, int] = {}
        #: Whether a row ever set held a list value (never reset): while False, a copy of a
        #: row's metadata that a caller may change is a plain ``dict`` copy.
        self.lists = False

    @classmethod
    def from_metadata(
        cls, metadatas: Sequence[Mapping[str, object]], non_filterable: Iterable[str] = ()
    ) -> MetadataColumns:
        """Columns holding ``metadatas`` in order."""
        cols = cls(non_filterable, capacity=len(metadatas))
        cols.resize(len(metadatas))
        for row, md in enumerate(metadatas):
            cols.set_row(row, md, fresh=True)
        return cols

    def __len__(self) -> int:
        return self._n

    def column(self, key: str) -> _Column | None:
        """The column of one metadata key, or None when no row ever had it."""
        return self._columns.get(key)

    def note_use(self, keys: Iterable[str]) -> None:
        """A query filters on ``keys``: the second one to do so builds their indexes."""
        for key in keys:
            col = self._columns.get(key)
            if col is not None and col.uses < 2:
                col.uses += 1

    def key_index(self, key: str) -> KeyIndex | None:
        """The index of ``key``'s column (built, or rebuilt after many writes, now), or None
        when no row ever had the key or only one query has filtered on it."""
        col = self._columns.get(key)
        if col is None or col.uses < 2:
            return None
        index = col.index
        if index is None or index.stale(self._n):
            index = col.index = KeyIndex(col, self._n)
        return index

    def resize(self, n: int) -> None:
        """Set the row count; new rows are empty, dropped rows are cleared."""
        if n > self._capacity:
            self._capacity = max(n, int(self._capacity * 1.5) + 16)
            for col in self._columns.values():
                col.reserve(self._capacity)
        if n < self._n:
            for col in self._columns.values():
                col.clear(slice(n, self._n))
        self._n = n

    def set_row(self, row: int, metadata: Mapping[str, object], *, fresh: bool = False) -> None:
        """Replace the metadata of ``row`` (which must be ``< len(self)``).

        ``fresh=True`` skips clearing: only for rows added by :meth:`resize` and not set since.
        """
        if not 0 <= row < self._n:
            raise IndexError(row)
        if not fresh:
            for key, existing in self._columns.items():
                if key not in metadata:
                    existing.clear(row)
        for key, value in metadata.items():
            if key in self._non_filterable:
                if isinstance(value, list | tuple):
                    self.lists = True
                continue
            col = self._columns.get(key)
            if col is None:
                col = self._columns[key] = _Column(self._capacity)
            if col.set(row, value, self.vocab, fresh=fresh):
                self.lists = True

    def move_rows(
        self, src: Sequence[int] | npt.NDArray[np.intp], dst: Sequence[int] | npt.NDArray[np.intp]
    ) -> None:
        """Copy rows ``src[i]`` onto ``dst[i]`` (used to compact after deletes)."""
        s = np.asarray(src, dtype=np.intp)
        d = np.asarray(dst, dtype=np.intp)
        for col in self._columns.values():
            col.move(s, d)
