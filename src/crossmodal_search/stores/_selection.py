"""Which rows a filter keeps, planned by selectivity and cached per generation of the rows.

A filtered query needs the rows its filter keeps. :meth:`CompiledFilter.select` plans that by
the estimate of the per-key indexes (``_colindex.py``): a filter expected to keep at most
:data:`GATHER_FRACTION` of the rows gathers its candidates from the indexes, a broader one is
evaluated over every row. Gathering the kept rows' vectors into a contiguous block costs as
much again as multiplying them; so the first query with a filter at a generation of the rows
(``RowTable.version``) keeps the answer, a :class:`Selection`: the kept rows, and for a
selective filter (at most :data:`KEEP_FRACTION` of the rows) a contiguous copy of their scan
vectors. Later queries with the same filter multiply that copy directly. The plan follows the
selectivity: a selective filter scores only its rows (from the copy), a broad one is scanned
with the mask (every row multiplied, the kept products picked).

Every write bumps the version and empties the cache (the key indexes are kept in step with the
write instead, so the next query still finds its rows without a pass): selections are derived
from the rows, never persisted, so they cannot disagree with them (nor with a crash). Memory is
bounded: at most :data:`MAX_ENTRIES` filters, and the copies together at most 1/8 of the scan
rows.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from crossmodal_search.stores._filter import CompiledFilter
    from crossmodal_search.stores._rows import RowTable

__all__ = ["GATHER_FRACTION", "KEEP_FRACTION", "MAX_ENTRIES", "Selection", "SelectionCache"]

# Below this fraction of the rows a filtered query gathers the kept rows and multiplies only
# them; above it, it multiplies every row and picks the kept products. Gathering scattered rows
# costs more than streaming them: measured at 100k x 1024 float32 (2 shared cores), gathering
# (a block at a time) and multiplying 10 % of the rows took 4.7-5.3 ms, all of them 7-9 ms;
# 20 % gathered costs about what the full scan does.
GATHER_FRACTION = 0.12
# Filters keeping at most this fraction of the rows keep a contiguous copy of their scan rows.
KEEP_FRACTION = 0.05
# Filters remembered per generation of the rows.
MAX_ENTRIES = 32
# The copies of all remembered filters together: at most this fraction of the scan rows' bytes
# (but always room for one copy of up to 16 MiB, so a small store benefits too).
_BUDGET_FRACTION = 1 / 8
_MIN_BUDGET = 16 * 1024 * 1024


@dataclass
class Selection:
    """The rows one filter keeps at one generation of the rows."""

    #: Ascending kept rows, or None when the filter keeps every row.
    rows: npt.NDArray[np.intp] | None
    count: int
    #: The kept rows of the scan matrix, contiguous (selective filters only), else None.
    matrix: npt.NDArray[Any] | None = None
    #: The search's per-row factors of ``rows``, filled by its first use (see ``_exact``).
    factors: Any = field(default=None)

    @property
    def nbytes(self) -> int:
        held = 0 if self.rows is None else self.rows.nbytes
        return held + (0 if self.matrix is None else self.matrix.nbytes)


class SelectionCache:
    """The selections of the filters recently queried over ``rows`` (least recently used
    dropped first), valid until the next write."""

    def __init__(self, rows: RowTable) -> None:
        self._rows = rows
        self._version = -1
        self._entries: OrderedDict[CompiledFilter, Selection] = OrderedDict()
        self._bytes = 0

    def select(self, compiled: CompiledFilter) -> Selection:
        """The rows ``compiled`` keeps now (evaluated at most once per generation)."""
        rows = self._rows
        if self._version != rows.version:
            self._entries.clear()
            self._bytes = 0
            self._version = rows.version
        found = self._entries.get(compiled)
        if found is not None:
            self._entries.move_to_end(compiled)
            return found
        n = rows.n
        found_rows = compiled.select(rows.columns, GATHER_FRACTION)
        count = int(found_rows.shape[0])
        kept = None if count == n else found_rows
        selection = Selection(kept, count)
        if kept is not None and 0 < count <= n * KEEP_FRACTION:
            scan = rows.scan_matrix()
            row_bytes = rows.dimension * scan.dtype.itemsize
            budget = max(_MIN_BUDGET, int(n * row_bytes * _BUDGET_FRACTION))
            if count * row_bytes <= budget:
                selection.matrix = np.ascontiguousarray(scan[kept])
                self._evict(budget - selection.nbytes)
        self._entries[compiled] = selection
        self._bytes += selection.nbytes
        while len(self._entries) > MAX_ENTRIES:
            self._drop_oldest()
        return selection

    def _evict(self, room: int) -> None:
        """Drop the least recently used selections until they hold at most ``room`` bytes."""
        while self._entries and self._bytes > room:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, old = self._entries.popitem(last=False)
        self._bytes -= old.nbytes
