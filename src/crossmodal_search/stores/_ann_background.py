"""Building and updating a graph on a worker thread (``HnswAccelerator(background=True)``).

The store's writes never wait for the graph: each one is queued (:meth:`BackgroundGraph.write`)
and a worker thread applies the queue, or first builds the graph from the store's rows, read a
block at a time through a :class:`~crossmodal_search.stores._ann_scan.RowSource` so writes
interleave with the build. The graph answers queries only when it is *ready*: built, nothing
queued, the worker idle; until then :meth:`BackgroundGraph.ready_graph` returns ``None`` and
the accelerator answers with the exact scan (correct, slower).

Why no write is lost: a build first starts recording writes, then reads the rows. A row
written before the recording started is read with its new value; a write recorded after is
applied after the build, in order (the last write wins), unless the build read that row after
the write was recorded (it then holds the new value already).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import DistanceMetric
from crossmodal_search.stores._ann_graph import Graph
from crossmodal_search.stores._ann_scan import FloatMatrix, RowArray, RowSource

logger = logging.getLogger(__name__)

#: Rows read and inserted per step of a background build: bounds how long the store's lock is
#: held by one read, and how long closing waits for the step under way.
BUILD_ROWS = 4096

GraphFactory = Callable[[DistanceMetric, int, int], Graph]  # metric, dimension, capacity

_live: weakref.WeakSet[BackgroundGraph] = weakref.WeakSet()
_atexit_registered = False


def _close_all() -> None:
    """At interpreter exit, stop every worker (each finishes its current step, then exits)."""
    for graph in list(_live):
        graph.close()


class WeakRowSource:
    """A :class:`RowSource` over a store's read method, held weakly: a store dropped without
    being closed stops its build (reads return None) instead of being kept alive by it."""

    def __init__(
        self,
        metric: DistanceMetric,
        read: Callable[[int, int], tuple[npt.NDArray[np.float32], int] | None],
    ) -> None:
        self.metric: DistanceMetric = metric
        self._read = weakref.WeakMethod(read)

    def read(self, start: int, stop: int) -> tuple[npt.NDArray[np.float32], int] | None:
        method = self._read()
        return None if method is None else method(start, stop)


class _Write(NamedTuple):
    rows: RowArray
    vectors: FloatMatrix | None  # None: the rows were removed


class BackgroundGraph:
    """A graph built and kept up to date by a worker thread.

    Args:
        new_graph: Makes an empty graph for a metric, dimension and row capacity.
    """

    def __init__(self, new_graph: GraphFactory) -> None:
        self._new_graph = new_graph
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._source: RowSource | None = None
        self._graph: Graph | None = None
        self._pending: list[_Write] = []
        self._recording = False  # a build has started (or finished): queue the writes
        self._thread: threading.Thread | None = None
        # Bumped by reset() and close(): a worker drops what it was doing for an older one.
        self._generation = 0
        self._closed = False
        self.error: BaseException | None = None
        self.build_seconds: float | None = None

    # ------------------------------------------------------------------ the store's side

    def attach(self, source: RowSource) -> None:
        """Build from ``source`` (one store at a time: a closed store's graph can serve the
        next store opened with it)."""
        with self._lock:
            if self._source is source:
                return
            if self._source is not None and not self._closed:
                raise ValueError("a background graph serves one store at a time")
            thread = self._thread
        if thread is not None:
            thread.join()  # a closed store's worker, finishing its step
        with self._lock:
            self._source = source
            self._closed = False
            self._generation += 1
            self._graph = None
            self._pending = []
            self._recording = False
            self.error = None

    def reset(self) -> None:
        """Forget the graph and the queue; the next write starts a new build."""
        with self._lock:
            self._generation += 1
            self._graph = None
            self._pending = []
            self._recording = False
            self.error = None
            self.build_seconds = None

    def write(self, rows: RowArray, vectors: FloatMatrix | None) -> None:
        """Rows ``rows`` now hold ``vectors`` (``None``: removed); applied by the worker."""
        with self._lock:
            if self._recording:
                self._pending.append(_Write(rows, vectors))
            self._start_locked()

    def ready_graph(self) -> Graph | None:
        """The graph if it is up to date with every write, else ``None`` (and the worker is
        started if there is work for it)."""
        with self._lock:
            if self._closed:
                return None
            if self._graph is not None and not self._pending and self._thread is None:
                return self._graph
            self._start_locked()
            return None

    @property
    def graph(self) -> Graph | None:
        """The graph as it is (possibly behind the writes), or ``None``."""
        return self._graph

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the worker is idle; True if the graph is then ready."""
        with self._idle:
            self._idle.wait_for(lambda: self._thread is None, timeout)
            idle = self._thread is None and not self._closed
            return idle and self._graph is not None and not self._pending

    def close(self) -> None:
        """Stop the worker (it finishes its current step), wait for it, drop the graph."""
        with self._lock:
            self._closed = True
            self._generation += 1
            self._graph = None
            self._pending = []
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # ------------------------------------------------------------------ the worker

    def _start_locked(self) -> None:
        global _atexit_registered
        if self._thread is not None or self._closed or self._source is None:
            return
        if self._graph is None and self.error is not None:
            return  # a failed build stays failed (exact scans) until reset()
        if self._graph is not None and not self._pending:
            return
        if not _atexit_registered:
            atexit.register(_close_all)
            _atexit_registered = True
        _live.add(self)
        # A daemon thread, stopped by _close_all at exit: a store never closed does not keep
        # the interpreter alive for the rest of a build.
        self._thread = threading.Thread(target=self._run, name="crossmodal-hnsw-build", daemon=True)
        self._thread.start()

    def _stop_locked(self) -> None:
        self._thread = None
        self._idle.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                generation = self._generation
                source = self._source
                if self._closed or source is None:
                    self._stop_locked()
                    return
                writes: list[_Write] = []
                if self._graph is None:
                    if self.error is not None:
                        self._stop_locked()
                        return
                    self._pending = []
                    self._recording = True
                elif self._pending:
                    writes, self._pending = self._pending, []
                else:
                    self._stop_locked()
                    return
                graph = self._graph
            try:
                if graph is None:
                    self._build(source, generation)
                else:
                    for w in _coalesced(writes):
                        if w.vectors is None:
                            graph.remove(w.rows)
                        else:
                            graph.add(w.rows, w.vectors)
            except Exception as exc:  # any failure: log it, answer exactly
                logger.exception(
                    "HNSW background build failed; queries use the exact scan until the "
                    "store is reset"
                )
                with self._lock:
                    if generation == self._generation:
                        self.error = exc
                        self._graph = None
                        self._pending = []
                        self._recording = False

    def _stale(self, generation: int) -> bool:
        return generation != self._generation or self._closed

    def _build(self, source: RowSource, generation: int) -> None:
        """Build a graph from the source's rows; installed unless reset or closed meanwhile."""
        started = time.perf_counter()
        graph: Graph | None = None
        start = 0
        # read_mark[row]: writes queued before that row was read (its value includes them).
        read_mark = np.zeros(0, dtype=np.int64)
        while not self._stale(generation):
            with self._lock:
                mark = len(self._pending)
            got = source.read(start, start + BUILD_ROWS)
            if got is None:  # the store is closed or gone: nothing more to build from
                with self._lock:
                    if generation == self._generation:
                        self._closed = True
                return
            vectors, n = got
            if graph is None:
                graph = self._new_graph(source.metric, vectors.shape[1], n)
            stop = start + vectors.shape[0]
            graph.add(np.arange(start, stop, dtype=np.int64), vectors)
            read_mark = np.concatenate([read_mark, np.full(stop - start, mark, dtype=np.int64)])
            start = stop
            if vectors.shape[0] == 0 or start >= n:
                break
        with self._lock:
            if graph is None or self._stale(generation):
                return
            self._graph = graph
            queued = len(self._pending)
            self._pending = _unread(self._pending, read_mark)
            self.build_seconds = time.perf_counter() - started
            replay = len(self._pending)
        logger.info(
            "built HNSW over %d rows in the background in %.1f s; %d of the %d writes made "
            "meanwhile to apply",
            start,
            self.build_seconds,
            replay,
            queued,
        )


def _unread(pending: list[_Write], read_mark: npt.NDArray[np.int64]) -> list[_Write]:
    """``pending`` without the rows whose write the build read already (queued before the
    read of their row): replaying them would redo work (an hnswlib update is dearer than an
    insert) for the same result."""
    kept: list[_Write] = []
    for i, w in enumerate(pending):
        inside = w.rows < read_mark.size
        done = np.zeros(w.rows.size, dtype=np.bool_)
        done[inside] = read_mark[w.rows[inside]] > i
        if not done.any():
            kept.append(w)
        elif not done.all():
            keep = ~done
            kept.append(_Write(w.rows[keep], None if w.vectors is None else w.vectors[keep]))
    return kept


def _coalesced(writes: list[_Write]) -> list[_Write]:
    """Runs of consecutive puts of distinct rows as one write each: one parallel hnswlib
    insert of many rows is faster than many small ones (order is kept, removals split runs)."""
    out: list[_Write] = []
    run: list[_Write] = []

    def flush() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            rows = np.concatenate([w.rows for w in run])
            vectors = np.concatenate([np.asarray(w.vectors) for w in run])
            out.append(_Write(rows, vectors))
        run.clear()

    seen: set[int] = set()
    for w in writes:
        rows = set(w.rows.tolist())
        if w.vectors is None or rows & seen or len(rows) != w.rows.size:
            flush()
            seen.clear()
        if w.vectors is None or len(rows) != w.rows.size:
            out.append(w)  # a removal, or rows written twice in one call: applied alone
            continue
        run.append(w)
        seen |= rows
    flush()
    return out
