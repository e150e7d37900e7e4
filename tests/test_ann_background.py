"""HNSW built in the background: exact answers until it is ready, no write lost, clean stops."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from crossmodal_search._types import DistanceMetric
from crossmodal_search.errors import ConfigurationError
from crossmodal_search.stores import LocalVectorStore, VectorRecord
from crossmodal_search.stores._ann import (
    BackgroundAccelerator,
    HnswAccelerator,
    RowSource,
    exact_search,
)
from crossmodal_search.stores._ann_background import BUILD_ROWS

Matrix = npt.NDArray[np.float32]
THREAD = "crossmodal-hnsw-build"
TIMEOUT = 120.0  # generous: the machine is shared; never reached when the code is right


def unit(n: int, d: int, seed: int) -> Matrix:
    """Clustered unit vectors whose leading dimensions carry most of the variance."""
    rng = np.random.default_rng(seed)
    scale = (1.0 / np.sqrt(np.arange(d) + 1.0)).astype(np.float32)
    centres = rng.standard_normal((20, d)).astype(np.float32) * scale
    x = centres[rng.integers(0, 20, n)]
    x += 0.5 * rng.standard_normal((n, d)).astype(np.float32) * scale
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    out: Matrix = x.astype(np.float32)
    return out


class Rows:
    """A store's rows as a RowSource, whose ``gate``-th read waits until ``go`` is set
    (``entered`` says it is waiting): the test decides what happens during a build."""

    def __init__(self, matrix: Matrix, *, gate: int = 0, fail: bool = False) -> None:
        self.matrix = matrix
        self.n = matrix.shape[0]
        self.metric: DistanceMetric = "cosine"
        self.lock = threading.Lock()
        self.gate = gate
        self.fail = fail
        self.reads = 0
        self.entered = threading.Event()
        self.go = threading.Event()

    def read(self, start: int, stop: int) -> tuple[Matrix, int] | None:
        if self.reads == self.gate:
            self.entered.set()
            assert self.go.wait(TIMEOUT)
        self.reads += 1
        if self.fail:
            raise OSError("the disk went away")
        with self.lock:
            return self.matrix[start : min(stop, self.n)].copy(), self.n

    def write(self, acc: HnswAccelerator, row: int, vector: Matrix) -> None:
        """What the store does on a put: change the row, then tell the accelerator."""
        with self.lock:
            if row >= self.matrix.shape[0]:
                grown = np.zeros((row + 1, self.matrix.shape[1]), dtype=np.float32)
                grown[: self.matrix.shape[0]] = self.matrix
                self.matrix = grown
            self.matrix[row] = vector
            self.n = max(self.n, row + 1)
        acc.update([row], vector[None, :])


def error_of(acc: HnswAccelerator) -> BaseException | None:
    """``acc.error`` now (a call, so that mypy does not narrow it between two reads)."""
    return acc.error


def ready(acc: HnswAccelerator) -> bool:
    return acc.ready


def background(**kw: object) -> HnswAccelerator:
    return HnswAccelerator(m=16, ef_construction=64, ef_search=128, background=True, **kw)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    yield
    assert not [t for t in threading.enumerate() if t.name == THREAD and t.is_alive()]


def test_a_background_hnsw_is_a_background_accelerator() -> None:
    acc = background()
    assert isinstance(acc, BackgroundAccelerator)
    assert isinstance(Rows(unit(10, 4, 0)), RowSource)


def test_queries_are_exact_while_building_then_use_the_graph() -> None:
    x = unit(3000, 32, 1)
    queries = unit(20, 32, 2)
    rows = Rows(x)
    acc = background()
    acc.attach(rows)
    try:
        acc.update(np.arange(3000), x)  # the store's first put starts the build
        assert rows.entered.wait(TIMEOUT)
        assert not ready(acc)
        hits = acc.search(x, queries, 10, metric="cosine")
        exact = exact_search(x, queries, 10, metric="cosine")
        for (got, dist), (want, want_dist) in zip(hits, exact, strict=True):
            assert got.tolist() == want.tolist()
            np.testing.assert_allclose(dist, want_dist, atol=1e-6)
        rows.go.set()
        assert acc.wait(TIMEOUT)
        assert acc.ready and acc.error is None and acc.build_seconds is not None
        assert acc.nbytes > 0
        hits = acc.search(x, queries, 10, metric="cosine")
        recall = np.mean(
            [
                len(set(g.tolist()) & set(w.tolist())) / 10
                for (g, _), (w, _) in zip(hits, exact, strict=True)
            ]
        )
        assert recall >= 0.95
    finally:
        rows.go.set()
        acc.close()


def test_writes_made_during_the_build_are_in_the_graph() -> None:
    n = BUILD_ROWS + 1000
    x = unit(n, 32, 3)
    q = unit(1, 32, 4)[0]
    rows = Rows(x.copy(), gate=1)  # the second read (rows BUILD_ROWS..) waits
    acc = background()
    acc.attach(rows)
    try:
        acc.update(np.arange(n), x)
        assert rows.entered.wait(TIMEOUT)
        # Row 17 was read already: only the replayed write can put the query there. Row
        # n - 5 is read after its write. Row n is new; then row 40 is removed.
        rows.write(acc, 17, q)
        rows.write(acc, n - 5, -q)
        rows.write(acc, n, q)
        acc.remove([40])
        rows.go.set()
        assert acc.wait(TIMEOUT)
        matrix = rows.matrix
        allowed = np.ones(n + 1, dtype=bool)
        allowed[40] = False
        found, dist = acc.search(matrix, q[None, :], 2, metric="cosine")[0]
        assert set(found.tolist()) == {17, n} and dist == pytest.approx([0.0, 0.0], abs=1e-5)
        far, _ = acc.search(matrix, -q[None, :], 1, metric="cosine")[0]
        assert far.tolist() == [n - 5]
        near_40, _ = acc.search(matrix, matrix[40:41], 5, metric="cosine")[0]
        assert 40 not in near_40.tolist()
        assert acc.ready
    finally:
        rows.go.set()
        acc.close()


def test_close_stops_a_build_under_way_and_joins_its_thread() -> None:
    x = unit(2 * BUILD_ROWS, 16, 5)
    rows = Rows(x, gate=1)
    acc = background()
    acc.attach(rows)
    acc.update(np.arange(x.shape[0]), x)
    assert rows.entered.wait(TIMEOUT)
    rows.go.set()
    acc.close()  # the worker finishes its step, sees the close and leaves; the fixture checks
    assert not acc.ready
    acc.update([0], x[:1])  # a write after close starts nothing
    assert not acc.wait(0)


def test_a_failed_build_is_logged_and_queries_stay_exact(
    caplog: pytest.LogCaptureFixture,
) -> None:
    x = unit(1000, 16, 6)
    queries = unit(5, 16, 7)
    rows = Rows(x, fail=True)
    rows.go.set()
    acc = background()
    acc.attach(rows)
    with caplog.at_level(logging.ERROR):
        acc.update(np.arange(1000), x)
        assert not acc.wait(TIMEOUT)
    assert isinstance(acc.error, OSError)
    assert any("background build failed" in r.getMessage() for r in caplog.records)
    for (got, _), (want, _) in zip(
        acc.search(x, queries, 10, metric="cosine"),
        exact_search(x, queries, 10, metric="cosine"),
        strict=True,
    ):
        assert got.tolist() == want.tolist()
    acc.update([1], x[1:2])  # no retry loop: a failed build stays failed until a reset
    assert not acc.wait(TIMEOUT) and isinstance(acc.error, OSError)
    rows.fail = False
    acc.invalidate()  # what reopening the store does: the next write rebuilds
    acc.update([1], x[1:2])
    assert acc.wait(TIMEOUT) and error_of(acc) is None
    acc.close()


def _records(x: Matrix, start: int = 0) -> list[VectorRecord]:
    return [
        VectorRecord(f"k{i}", x[i - start], {"b": i % 10}) for i in range(start, start + len(x))
    ]


def test_local_store_builds_in_the_background_and_stays_exact_meanwhile() -> None:
    x = unit(4000, 64, 8)
    queries = unit(10, 64, 9)
    acc = background()
    exact = LocalVectorStore(dimension=64)
    with LocalVectorStore(dimension=64, accelerator=acc) as store:
        for start in range(0, 4000, 1000):
            batch = _records(x[start : start + 1000], start)
            store.put(batch)  # returns at once: the graph is built on the worker thread
            exact.put(batch)
        assert acc.wait(TIMEOUT) and acc.ready
        scores = [
            len({m.key for m in store.query(q, top_k=10)} & {m.key for m in exact.query(q)}) / 10
            for q in queries
        ]
        assert np.mean(scores) >= 0.95
        # A write makes the graph stale: the very next query sees it (exact or graph)...
        store.put([VectorRecord("new", queries[0], {"b": 0})])
        store.delete(["k3"])
        assert store.query(queries[0], top_k=1)[0].key == "new"
        # ...and so does the graph once the worker has caught up.
        assert acc.wait(TIMEOUT) and acc.ready
        assert store.query(queries[0], top_k=1)[0].key == "new"
        assert "k3" not in {m.key for m in store.query(x[3], top_k=10)}
        assert store.query(x[3], top_k=10, filter={"b": 3})[0].key != "k3"
    assert not acc.ready  # closed: the worker has stopped, the fixture checks its thread


def test_one_background_accelerator_serves_one_open_store() -> None:
    acc = background()
    x = unit(1000, 8, 13)
    with (
        LocalVectorStore(dimension=8, accelerator=acc) as first,
        pytest.raises(ConfigurationError, match="one open store"),
    ):
        first.put(_records(x))
        LocalVectorStore(dimension=8, accelerator=acc)
    assert not ready(acc)
    # Once the first store is closed, the accelerator serves the next one, from scratch.
    with LocalVectorStore(dimension=8, accelerator=acc) as second:
        second.put(_records(-x[:600]))  # other vectors under the same keys
        assert acc.wait(TIMEOUT) and ready(acc)
        for i in (7, 70, 500):
            assert second.query(-x[i], top_k=1)[0].key == f"k{i}"


class Closed:
    """The RowSource of a store closed (or dropped) before its build read anything."""

    metric: DistanceMetric = "cosine"

    def __init__(self) -> None:
        self.reads = 0

    def read(self, start: int, stop: int) -> tuple[Matrix, int] | None:
        self.reads += 1
        return None


def test_a_build_whose_store_is_gone_stops() -> None:
    acc = background()
    source = Closed()
    acc.attach(source)
    acc.update([0, 1], unit(2, 8, 14))
    assert not acc.wait(TIMEOUT)  # the worker stopped: no graph, and no busy loop
    assert source.reads == 1
    assert not acc.ready


def test_reopened_store_rebuilds_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "s"
    x = unit(2000, 32, 10)
    with LocalVectorStore(path, dimension=32) as store:
        store.put(_records(x))
    acc = background()
    with LocalVectorStore(path, accelerator=acc) as store:
        assert acc.wait(TIMEOUT)
        assert store.query(x[7], top_k=1)[0].key == "k7"


def test_writes_the_build_reads_afterwards_are_not_replayed_and_not_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    n = BUILD_ROWS + 1000
    x = unit(n, 32, 11)
    q = unit(1, 32, 12)[0]
    rows = Rows(x.copy(), gate=0)  # the first read waits: writes to later rows come first
    acc = background()
    acc.attach(rows)
    try:
        with caplog.at_level(logging.INFO, logger="crossmodal_search.stores._ann_background"):
            acc.update(np.arange(n), x)
            assert rows.entered.wait(TIMEOUT)
            rows.write(acc, BUILD_ROWS + 7, q)  # read later by the second read, new value
            rows.write(acc, 3, -q)  # read by the first read (new value too), then replayed
            rows.go.set()
            assert acc.wait(TIMEOUT)
        found, dist = acc.search(rows.matrix, q[None, :], 1, metric="cosine")[0]
        assert found.tolist() == [BUILD_ROWS + 7] and dist[0] == pytest.approx(0.0, abs=1e-5)
        found, _ = acc.search(rows.matrix, -q[None, :], 1, metric="cosine")[0]
        assert found.tolist() == [3]
        built = [r.getMessage() for r in caplog.records if "built HNSW" in r.getMessage()]
        assert built and "1 of the 2 writes" in built[-1]
    finally:
        rows.go.set()
        acc.close()


def test_exiting_with_a_build_under_way_is_clean() -> None:
    """A store never closed, its worker (most likely) mid-build: the interpreter exits
    quietly, the worker stopped by the exit hook after its current block."""
    script = textwrap.dedent(
        """
        import numpy as np
        from crossmodal_search.stores import HnswAccelerator, LocalVectorStore, VectorRecord

        x = np.random.default_rng(0).standard_normal((20000, 64)).astype(np.float32)
        acc = HnswAccelerator(background=True)
        store = LocalVectorStore(dimension=64, accelerator=acc)
        store.put(VectorRecord(f"k{i}", v) for i, v in enumerate(x))
        print("done")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr
