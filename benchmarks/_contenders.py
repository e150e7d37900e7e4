"""The search benchmark's contenders (numpy, faiss, LocalVectorStore) and its timing loop."""

from __future__ import annotations

import importlib
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks._data import Matrix
from benchmarks._harness import interleaved

K = 10


# --------------------------------------------------------------------------- contenders


@dataclass
class Contender:
    """One way to answer queries. ``single``/``batch``/``filtered`` return row numbers."""

    label: str
    kind: str  # "floor" | "baseline" | "sdk" | "fast"
    nbytes: int = 0
    single: Callable[[Matrix], list[int]] | None = None
    batch: Callable[[Matrix], list[list[int]]] | None = None
    filtered: Callable[[Matrix], list[int]] | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _top_rows(scores: npt.NDArray[np.float32], k: int) -> list[int]:
    top = np.argpartition(scores, scores.shape[0] - k)[-k:]
    return top[np.argsort(-scores[top])].tolist()  # type: ignore[no-any-return]


def numpy_contender(x: Matrix, category: npt.NDArray[np.int16]) -> Contender:
    def single(q: Matrix) -> list[int]:
        return _top_rows(x @ q, K)

    def batch(qs: Matrix) -> list[list[int]]:
        scores = qs @ x.T
        n = scores.shape[1]
        top = np.argpartition(scores, n - K, axis=1)[:, -K:]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1).tolist()  # type: ignore[no-any-return]

    def filtered(q: Matrix) -> list[int]:
        # The best case for numpy: the filter is a precomputed integer column.
        rows = np.flatnonzero(category == 7)
        return rows[_top_rows(x[rows] @ q, min(K, rows.size))].tolist()  # type: ignore[no-any-return]

    return Contender(
        "numpy matmul + argpartition",
        "baseline",
        x.nbytes,
        single,
        batch,
        filtered,
        note="filtered: precomputed int column",
    )


def faiss_contender(
    x: Matrix, category: npt.NDArray[np.int16], *, fp16: bool = False
) -> Contender | None:
    try:
        faiss: Any = importlib.import_module("faiss")
    except ImportError:
        return None
    d = x.shape[1]
    index: Any
    if fp16:
        index = faiss.IndexScalarQuantizer(
            d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        index.train(x[:1000])
        label, nbytes = "faiss IndexScalarQuantizer fp16", x.nbytes // 2
    else:
        index = faiss.IndexFlatIP(d)
        label, nbytes = "faiss IndexFlatIP", x.nbytes
    index.add(x)

    def single(q: Matrix) -> list[int]:
        _, ids = index.search(q[None, :], K)
        return ids[0].tolist()  # type: ignore[no-any-return]

    def batch(qs: Matrix) -> list[list[int]]:
        _, ids = index.search(qs, K)
        return ids.tolist()  # type: ignore[no-any-return]

    def filtered(q: Matrix) -> list[int]:
        rows = np.flatnonzero(category == 7).astype(np.int64)
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(rows))
        _, ids = index.search(q[None, :], K, params=params)
        return [int(i) for i in ids[0] if i >= 0]

    return Contender(
        f"{label} ({faiss.omp_get_max_threads()} threads)",
        "baseline",
        nbytes,
        single,
        batch,
        filtered,
        note="filtered: IDSelectorBatch",
    )


def store_class() -> Any:
    try:
        from crossmodal_search.stores import LocalVectorStore
    except ImportError:
        return None
    return LocalVectorStore


def store_metadata(category: npt.NDArray[np.int16]) -> list[dict[str, Any]]:
    """Each row's category (``c07`` keeps ~1 % of the rows) and ``half`` (~50 %)."""
    return [{"category": f"c{c:02d}", "half": c % 2 == 0} for c in category.tolist()]


def build_store(x: Matrix, metadata: list[dict[str, Any]], **options: Any) -> Any:
    """A LocalVectorStore (in memory) holding ``x`` under keys ``"<row>"``."""
    from crossmodal_search.stores import VectorRecord

    cls = store_class()
    store = cls(None, dimension=x.shape[1], **options)
    step = 10_000
    for start in range(0, x.shape[0], step):
        stop = min(x.shape[0], start + step)
        store.put(VectorRecord(str(i), x[i], metadata[i]) for i in range(start, stop))
    return store


def store_contender(
    label: str,
    kind: str,
    store: Any,
    nbytes: int,
    note: str = "",
    before: Callable[[], object] = lambda: None,
) -> Contender:
    flt = {"category": "c07"}

    def single(q: Matrix) -> list[int]:
        before()
        return [int(m.key) for m in store.query(q, top_k=K)]

    def batch(qs: Matrix) -> list[list[int]]:
        before()
        return [[int(m.key) for m in ms_] for ms_ in store.query_many(qs, top_k=K)]

    def filtered(q: Matrix) -> list[int]:
        before()
        return [int(m.key) for m in store.query(q, top_k=K, filter=flt)]

    return Contender(
        label, kind, nbytes, single, batch, filtered, note=note, extra={"store": store}
    )


# --------------------------------------------------------------------------- measurement


def cycling(fn: Callable[[Matrix], object], queries: Matrix) -> Callable[[], object]:
    """A no-argument call that answers the next query each time (all contenders see the same)."""
    it: Iterator[Matrix] = itertools.cycle(list(queries))
    return lambda: fn(next(it))


def _inner(fn: Callable[[], object], sample_seconds: float) -> int:
    """Back-to-back calls per sample so each sample lasts about ``sample_seconds``.

    Sized on a second call: a first call may fill a cache (a filter's rows, say) and take 20x
    longer. Sized on it, samples are a few calls long, and the first calls after another
    contender ran (slower on this shared machine, whatever ran before: measured 4x for the
    first call and 1.25x for the fifth) weigh 5x more than in a contender's long samples.
    """
    fn()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    return max(1, min(200, math.ceil(sample_seconds / max(elapsed, 1e-6))))


def timed(
    fns: dict[str, Callable[[], object]], *, repeats: int, sample_seconds: float
) -> dict[str, list[float]]:
    """Seconds per call of each of ``fns``, ``repeats`` samples each, interleaved."""
    inner = {name: _inner(fn, sample_seconds) for name, fn in fns.items()}

    def wrap(fn: Callable[[], object], n: int) -> Callable[[], object]:
        def many() -> None:
            for _ in range(n):
                fn()

        return many

    samples = interleaved({k: wrap(f, inner[k]) for k, f in fns.items()}, repeats=repeats)
    return {k: [s / inner[k] for s in v] for k, v in samples.items()}
