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
    from collections.abc import Mapping

    from crossmodal_search.stores._columns import Operand, _Column

__all__ = ["REBUILD_FRACTION", "KeyIndex"]

Rows = npt.NDArray[np.intp]

# An index with more touched rows than this fraction of the rows (and more than
# _MIN_REBUILD) is rebuilt on its next use: the touched rows are evaluated on the column per
# lookup, which costs about as much per row as the index saves.
REBUILD_FRACTION = 1 / 16
_MIN_REBUILD = 256
_EMPTY: Rows = np.empty(0, dtype=np.intp)


class KeyIndex:
    """The sorted ``(value, row)`` pairs of one column's first ``n`` rows, per element kind,
    and the rows touched since they were built."""

    __slots__ = ("_dirty", "_touched", "_touched_blocks", "pairs", "present", "width")

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

    # ------------------------------------------------------------------ maintenance

    def touch(self, row: int) -> None:
        """``row`` changed: the pairs no longer say what it holds."""
        self._touched.append(row)

    def touch_rows(self, rows: Rows | slice) -> None:
        if isinstance(rows, slice):
            rows = np.arange(rows.start, rows.stop, dtype=np.intp)
        self._touched_blocks.append(np.asarray(rows, dtype=np.intp))

    def dirty(self) -> Rows:
        """The rows touched since the build, ascending and distinct."""
        if self._touched or self._touched_blocks:
            parts = [self._dirty, np.asarray(self._touched, dtype=np.intp), *self._touched_blocks]
            self._dirty = np.unique(np.concatenate(parts))
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

        def equal(kind: str, value: float) -> None:
            found = self.pairs.get(kind)
            if found is not None:
                values, rows = found
                lo = int(np.searchsorted(values, value, side="left"))
                hi = int(np.searchsorted(values, value, side="right"))
                if hi > lo:
                    out.append(rows[lo:hi])

        if op == "$startsWith":
            assert isinstance(operand, str)
            for text, code in vocab.items():
                if text.startswith(operand):
                    equal("s", code)
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            found = self.pairs.get("n")
            if found is not None:
                values, rows = found
                assert isinstance(operand, float)
                side: Literal["left", "right"] = "right" if op in ("$gt", "$lte") else "left"
                cut = int(np.searchsorted(values, operand, side=side))
                part = rows[cut:] if op in ("$gt", "$gte") else rows[:cut]
                if part.size:
                    out.append(part)
        else:
            assert isinstance(operand, tuple)
            for kind, value in operand:
                if isinstance(value, str):
                    known = vocab.get(value)
                    if known is not None:
                        equal("s", known)
                else:
                    equal(kind, int(value) if kind == "b" else float(value))
        return out

    def estimate(self, op: str, operand: Operand, vocab: Mapping[str, int]) -> int:
        """At most how many rows match the positive ``op`` (plus every touched row)."""
        if op == "$exists":
            base = self.present.size
        else:
            base = sum(part.size for part in self._slices(op, operand, vocab))
        return base + self._dirty.size + len(self._touched)

    def lookup(
        self, column: _Column, op: str, operand: Operand, vocab: Mapping[str, int], n: int
    ) -> Rows:
        """Ascending rows below ``n`` matching the positive ``op`` (or ``$exists: true``)."""
        if op == "$exists":
            base = self.present
        else:
            parts = self._slices(op, operand, vocab)
            if not parts:
                base = _EMPTY
            elif len(parts) == 1 and self.width == 1:
                base = parts[0]  # one value's rows: ascending and distinct already
            else:
                base = np.unique(np.concatenate(parts))
        dirty = self.dirty()
        if not dirty.size:
            return base[base < n] if base.size and base[-1] >= n else base
        base = base[~np.isin(base, dirty, assume_unique=True)]
        if base.size and base[-1] >= n:
            base = base[base < n]
        again = dirty[: int(np.searchsorted(dirty, n))]
        if op == "$exists":
            hit = again[column.present[again]]
        else:
            hit = again[column.any_element(op, operand, vocab, again)]
        if not hit.size:
            return base
        return np.union1d(base, hit)
