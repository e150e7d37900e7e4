"""Per-key indexes of the filter columns: the rows holding a value, found without a pass.

A :class:`KeyIndex` holds one metadata key's elements as sorted ``(value, row)`` pairs per
kind (string codes, numbers, booleans) and the rows that have the key. Equality, ``$in`` and
``$startsWith`` are slices found by binary search, ranges one slice; the slices' lengths are
the selectivity estimate a query is planned by, before anything is evaluated.

Writes do not rebuild an index: the column marks each row it changes (set, cleared, moved
onto, truncated) as *touched*. A lookup takes the index's rows minus the touched ones, plus
the touched rows that match now (evaluated on the column, which always holds the truth). Once
more than :data:`REBUILD_FRACTION` of the rows are touched the index is rebuilt on its next
use. So an index is never persisted and never trusted beyond what the column says: it is
built from the columns by the second query that uses its key (a key filtered once never pays
for one), and a store that is reopened or recovered simply builds it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from crossmodal_search.stores._columns import Operand, _Column

__all__ = ["REBUILD_FRACTION", "KeyIndex", "sorted_unique"]

Rows = npt.NDArray[np.intp]

# An index with more touched rows than this fraction of the rows (and more than
# _MIN_REBUILD) is rebuilt on its next use: the touched rows are evaluated on the column per
# lookup, which costs about as much per row as the index saves.
REBUILD_FRACTION = 1 / 16
_MIN_REBUILD = 256
# Conditions whose rows (and, separately, row counts) an index remembers, all forgotten when
# full: at most this many, and at most _HELD_ROWS rows per row holding the key in all.
_MAX_BASES = 256
_HELD_ROWS = 4
_EMPTY: Rows = np.empty(0, dtype=np.intp)
_RANGES = frozenset({"$gt", "$gte", "$lt", "$lte"})


def sorted_unique(rows: Rows) -> Rows:
    """``rows`` ascending without repeats: what ``np.unique`` returns, several times faster
    on a few thousand rows (numpy 2's ``unique`` hashes first, then sorts)."""
    if rows.size < 2:
        return rows
    out = np.sort(rows)
    keep = np.empty(out.size, dtype=bool)
    keep[0] = True
    np.not_equal(out[1:], out[:-1], out=keep[1:])
    return out[keep]


class KeyIndex:
    """The sorted ``(value, row)`` pairs of one column's first ``n`` rows, per element kind,
    and the rows touched since they were built."""

    __slots__ = (
        "_bases",
        "_counts",
        "_dirty",
        "_held",
        "_stale_rows",
        "_touched",
        "_touched_blocks",
        "pairs",
        "present",
        "width",
    )

    def __init__(self, column: _Column, n: int) -> None:
        self.width = column.width
        self.present: Rows = np.flatnonzero(column.present[:n])
        self.pairs: dict[str, tuple[npt.NDArray[Any], Rows]] = {}
        for kind, arr in (("s", column.codes), ("n", column.nums), ("b", column.bools)):
            if arr is None:
                continue
            flat = arr[:n].ravel()
            valid = ~np.isnan(flat) if kind == "n" else flat >= 0
            where = np.flatnonzero(valid)
            values = flat[where]
            # Stable: the rows of one value stay ascending.
            order = np.argsort(values, kind="stable")
            self.pairs[kind] = (values[order], where[order] // self.width)
        self._touched: list[int] = []
        self._touched_blocks: list[Rows] = []
        self._dirty: Rows = _EMPTY
        # Which of the rows the pairs cover (the first n) were touched: one gather takes
        # them out of a condition's rows.
        self._stale_rows = np.zeros(n, dtype=bool)
        self._bases: dict[tuple[str, Operand], Rows] = {}
        self._counts: dict[tuple[str, Operand], int] = {}
        self._held = 0

    # ------------------------------------------------------------------ maintenance

    def touch(self, row: int) -> None:
        """``row`` changed: the pairs no longer say what it holds."""
        self._touched.append(row)
        if row < self._stale_rows.shape[0]:
            self._stale_rows[row] = True

    def touch_rows(self, rows: Rows | slice) -> None:
        if isinstance(rows, slice):
            rows = np.arange(rows.start, rows.stop, dtype=np.intp)
        rows = np.asarray(rows, dtype=np.intp)
        self._touched_blocks.append(rows)
        self._stale_rows[rows[rows < self._stale_rows.shape[0]]] = True

    def dirty(self) -> Rows:
        """The rows touched since the build, ascending and distinct."""
        if self._touched or self._touched_blocks:
            parts = [self._dirty, np.asarray(self._touched, dtype=np.intp), *self._touched_blocks]
            self._dirty = sorted_unique(np.concatenate(parts))
            self._touched.clear()
            self._touched_blocks.clear()
        return self._dirty

    def stale(self, n: int) -> bool:
        """Whether so many rows were touched that a rebuild pays."""
        pending = len(self._touched) + sum(b.size for b in self._touched_blocks)
        touched = self._dirty.size + pending
        return touched > max(_MIN_REBUILD, n * REBUILD_FRACTION)

    # ------------------------------------------------------------------ lookups

    def _slices(self, op: str, operand: Operand, vocab: Mapping[str, int]) -> list[Rows]:
        """The rows of the pairs matching the positive ``op`` (as built; possibly repeated)."""
        out: list[Rows] = []

        def equal(kind: str, wanted: Sequence[float]) -> None:
            found = self.pairs.get(kind)
            if found is None or not wanted:
                return
            values, rows = found
            # Needles in the values' dtype: Python numbers would convert the whole array.
            if len(wanted) == 1:  # the common equality: scalars cost less than arrays
                needle = values.dtype.type(wanted[0])
                lo = [int(np.searchsorted(values, needle, side="left"))]
                hi = [int(np.searchsorted(values, needle, side="right"))]
            else:
                needles = np.asarray(wanted, dtype=values.dtype)
                lo = np.searchsorted(values, needles, side="left").tolist()
                hi = np.searchsorted(values, needles, side="right").tolist()
            out.extend(rows[a:b] for a, b in zip(lo, hi, strict=True) if b > a)

        if op == "$startsWith":
            assert isinstance(operand, str)
            equal("s", [code for text, code in vocab.items() if text.startswith(operand)])
        elif op in _RANGES:
            found = self.pairs.get("n")
            if found is not None:
                values, rows = found
                assert isinstance(operand, float)
                side: Literal["left", "right"] = "right" if op in ("$gt", "$lte") else "left"
                cut = int(np.searchsorted(values, np.float64(operand), side=side))
                part = rows[cut:] if op in ("$gt", "$gte") else rows[:cut]
                if part.size:
                    out.append(part)
        else:
            assert isinstance(operand, tuple)
            codes = [vocab[v] for _, v in operand if isinstance(v, str) and v in vocab]
            equal("s", codes)
            equal("n", [float(v) for kind, v in operand if kind == "n"])
            equal("b", [int(v) for kind, v in operand if kind == "b"])
        return out

    def _base(self, op: str, operand: Operand, vocab: Mapping[str, int]) -> Rows:
        """The ascending rows the pairs list for the positive ``op``, remembered: the pairs
        change only by a rebuild (a string code new since the build is held by touched rows
        only, which every lookup evaluates on the column)."""
        key = (op, operand)
        found = self._bases.get(key)
        if found is not None:
            return found
        if op == "$exists":
            found = self.present
        else:
            parts = self._slices(op, operand, vocab)
            if not parts:
                found = _EMPTY
            elif len(parts) == 1 and self.width == 1 and op not in _RANGES:
                found = parts[0]  # one value's rows: ascending and distinct already
            elif self.width == 1 and op in _RANGES:
                found = np.sort(parts[0])  # rows in value order, distinct: one row, one value
            else:
                found = sorted_unique(np.concatenate(parts))
        found = found.view()
        found.flags.writeable = False  # handed out as it is: no caller may change it
        held = self._held + found.size
        if len(self._bases) >= _MAX_BASES or held > _HELD_ROWS * max(1024, self.present.size):
            self._bases.clear()
            held = found.size
        self._bases[key] = found
        self._held = held
        return found

    def estimate(self, op: str, operand: Operand, vocab: Mapping[str, int]) -> int:
        """At most how many rows match the positive ``op`` (or ``$exists: true``): the rows
        the pairs list, plus every touched row."""
        pending = len(self._touched) + sum(b.size for b in self._touched_blocks)
        key = (op, operand)
        listed = self._counts.get(key)
        if listed is None:
            if op == "$exists":
                listed = self.present.size
            else:  # the slices' sizes: no sort for a condition that may turn out broad
                listed = sum(part.size for part in self._slices(op, operand, vocab))
            if len(self._counts) >= _MAX_BASES:
                self._counts.clear()
            self._counts[key] = listed
        return listed + self._dirty.size + pending

    def lookup(
        self, column: _Column, op: str, operand: Operand, vocab: Mapping[str, int], n: int
    ) -> Rows:
        """Ascending rows below ``n`` matching the positive ``op`` (or ``$exists: true``)."""
        base = self._base(op, operand, vocab)
        dirty = self.dirty()
        if not dirty.size:
            return base[base < n] if base.size and base[-1] >= n else base
        base = base[~self._stale_rows[base]]
        if base.size and base[-1] >= n:
            base = base[base < n]
        again = dirty[: int(np.searchsorted(dirty, n))]
        if op == "$exists":
            hit = again[column.present[again]]
        else:
            hit = again[column.any_element(op, operand, vocab, again)]
        if not hit.size:
            return base
        return np.sort(np.concatenate([base, hit]))  # disjoint: base has no touched row
