"""The fast paths of the local store: Matryoshka funnel and HNSW, exactness of filters."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest

from crossmodal_search.errors import ConfigurationError
from crossmodal_search.stores import LocalVectorStore, VectorRecord
from crossmodal_search.stores._ann import (
    Accelerator,
    FunnelAccelerator,
    HnswAccelerator,
    exact_search,
    make_accelerator,
)

Matrix = npt.NDArray[np.float32]


def structured(n: int, d: int, seed: int = 0, clusters: int = 20) -> Matrix:
    """Unit vectors whose leading dimensions carry most of the variance, in clusters."""
    rng = np.random.default_rng(seed)
    scale = (1.0 / np.sqrt(np.arange(d) + 1.0)).astype(np.float32)
    centers = rng.standard_normal((clusters, d), dtype=np.float32) * scale
    x: Matrix = centers[rng.integers(0, clusters, n)]
    x += 0.5 * rng.standard_normal((n, d), dtype=np.float32) * scale
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def brute_force(
    matrix: Matrix, query: Matrix, k: int, metric: str, allowed: npt.NDArray[np.bool_] | None
) -> list[int]:
    if metric == "cosine":
        q = query / np.linalg.norm(query)
        rows = matrix.astype(np.float64)
        dist = 1.0 - rows @ q / np.linalg.norm(rows, axis=1)
    else:
        dist = np.linalg.norm(matrix.astype(np.float64) - query, axis=1)
    if allowed is not None:
        dist[~allowed] = np.inf
    order = [int(i) for i in np.argsort(dist, kind="stable") if np.isfinite(dist[i])]
    return order[:k]


def recall(got: npt.NDArray[np.intp], truth: list[int]) -> float:
    return len(set(got.tolist()) & set(truth)) / len(truth)


@pytest.fixture(scope="module")
def data() -> tuple[Matrix, Matrix]:
    x = structured(3000 + 40, 64, seed=1)
    return x[:3000], x[3000:]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_search_matches_brute_force_with_and_without_filter(
    data: tuple[Matrix, Matrix], metric: str
) -> None:
    matrix, queries = data
    allowed = np.zeros(len(matrix), dtype=bool)
    allowed[::7] = True
    for mask in (None, allowed):
        hits = exact_search(matrix, queries[:5], 10, metric=metric, allowed=mask)  # type: ignore[arg-type]
        for (rows, dist), q in zip(hits, queries[:5], strict=True):
            assert rows.tolist() == brute_force(matrix, q, 10, metric, mask)
            expected = brute_force(matrix, q, 1, metric, mask)[0]
            ref = (
                1 - matrix[expected] @ (q / np.linalg.norm(q))
                if metric == "cosine"
                else np.linalg.norm(matrix[expected] - q)
            )
            assert dist[0] == pytest.approx(ref, abs=1e-5)
            assert np.all(np.diff(dist) >= -1e-6)


def test_exact_search_with_empty_filter_returns_nothing(data: tuple[Matrix, Matrix]) -> None:
    matrix, queries = data
    hits = exact_search(
        matrix, queries[:2], 10, metric="cosine", allowed=np.zeros(len(matrix), bool)
    )
    assert [h[0].size for h in hits] == [0, 0]


def accelerators() -> list[Accelerator]:
    return [
        FunnelAccelerator(prefix_dim=16, candidates=64, prefix_dtype="float32"),
        FunnelAccelerator(prefix_dim=16, candidates=64, prefix_dtype="float16"),
        HnswAccelerator(m=8, ef_construction=64, ef_search=32, num_threads=1, seed=3),
        HnswAccelerator(
            m=8, ef_construction=64, ef_search=64, num_threads=1, seed=3, prefix_dim=16, rerank=40
        ),
    ]


def acc_id(acc: Accelerator) -> str:
    return acc.name + (f"-{acc.prefix_dtype}" if isinstance(acc, FunnelAccelerator) else "")


@pytest.mark.parametrize("acc", accelerators(), ids=acc_id)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_recall_at_10_on_structured_vectors(
    data: tuple[Matrix, Matrix], acc: Accelerator, metric: str
) -> None:
    matrix, queries = data
    hits = acc.search(matrix, queries, 10, metric=metric)  # type: ignore[arg-type]
    scores = [
        recall(rows, brute_force(matrix, q, 10, metric, None))
        for (rows, _), q in zip(hits, queries, strict=True)
    ]
    assert np.mean(scores) >= 0.95
    for rows, dist in hits:
        assert rows.size == 10
        assert len(set(rows.tolist())) == 10
        assert np.all(np.diff(dist) >= -1e-5)


@pytest.mark.parametrize("acc", accelerators(), ids=acc_id)
@pytest.mark.parametrize("fraction", [0.01, 0.3])
def test_filters_are_honoured_exactly(
    data: tuple[Matrix, Matrix], acc: Accelerator, fraction: float
) -> None:
    matrix, queries = data
    rng = np.random.default_rng(5)
    allowed = rng.random(len(matrix)) < fraction
    hits = acc.search(matrix, queries, 10, metric="cosine", allowed=allowed)
    scores = []
    for (rows, _), q in zip(hits, queries, strict=True):
        assert rows.size == min(10, int(allowed.sum()))
        assert allowed[rows].all(), "a row outside the filter came back"
        truth = brute_force(matrix, q, 10, "cosine", allowed)
        scores.append(recall(rows, truth))
        if fraction == 0.01:
            # a selective filter is answered by the exact scan of the allowed rows
            assert rows.tolist() == truth
    assert np.mean(scores) >= 0.95


@pytest.mark.parametrize("acc", accelerators(), ids=acc_id)
def test_updates_and_removals_are_seen_by_the_next_query(
    data: tuple[Matrix, Matrix], acc: Accelerator
) -> None:
    matrix, queries = data
    matrix = matrix.copy()
    acc.search(matrix, queries[:1], 10, metric="cosine")  # builds derived state
    target = queries[0] / np.linalg.norm(queries[0])
    # overwrite row 17 with the query itself: it must now come first
    matrix[17] = target
    acc.update([17], matrix[17:18])
    rows, dist = acc.search(matrix, queries[:1], 10, metric="cosine")[0]
    assert rows[0] == 17 and dist[0] == pytest.approx(0.0, abs=1e-5)
    # append a row past the end (the store grew)
    grown = np.vstack([matrix, -target[None, :], target[None, :]]).astype(np.float32)
    acc.update([3000, 3001], grown[3000:])
    rows, _ = acc.search(grown, queries[:1], 3, metric="cosine")[0]
    assert set(rows[:2].tolist()) == {17, 3001}
    # remove row 17: the store excludes it from `allowed`; HNSW also drops it from its graph
    acc.remove([17])
    allowed = np.ones(len(grown), dtype=bool)
    allowed[17] = False
    rows, _ = acc.search(grown, queries[:1], 10, metric="cosine", allowed=allowed)[0]
    assert 17 not in rows.tolist() and rows[0] == 3001


def test_hnsw_removed_rows_never_come_back_even_unfiltered(data: tuple[Matrix, Matrix]) -> None:
    matrix, queries = data
    acc = HnswAccelerator(m=8, ef_construction=64, num_threads=1)
    first = acc.search(matrix, queries[:1], 10, metric="cosine")[0][0]
    acc.remove(first[:5])
    again = acc.search(matrix, queries[:1], 10, metric="cosine")[0][0]
    assert not set(again.tolist()) & set(first[:5].tolist())
    assert again.size == 10


def test_invalidate_rebuilds_from_the_current_matrix(data: tuple[Matrix, Matrix]) -> None:
    matrix, queries = data
    for acc in accelerators():
        acc.search(matrix, queries[:1], 10, metric="cosine")
        changed = matrix.copy()
        changed[42] = queries[0] / np.linalg.norm(queries[0])
        acc.invalidate()
        assert acc.search(changed, queries[:1], 1, metric="cosine")[0][0].tolist() == [42]


def test_funnel_works_on_float16_storage(data: tuple[Matrix, Matrix]) -> None:
    matrix, queries = data
    half = matrix.astype(np.float16)
    hits = FunnelAccelerator(prefix_dim=16, candidates=64).search(
        half, queries, 10, metric="cosine"
    )
    scores = [
        recall(rows, brute_force(matrix, q, 10, "cosine", None))
        for (rows, _), q in zip(hits, queries, strict=True)
    ]
    assert np.mean(scores) >= 0.95


def test_float16_prefix_takes_half_the_memory_and_finds_the_same_rows(
    data: tuple[Matrix, Matrix],
) -> None:
    matrix, queries = data
    wide = FunnelAccelerator(prefix_dim=16, candidates=64, prefix_dtype="float32")
    half = FunnelAccelerator(prefix_dim=16, candidates=64, prefix_dtype="float16")
    assert FunnelAccelerator().prefix_dtype == "auto"
    assert wide.prefix_storage is None  # built by the first query
    found = [acc.search(matrix, queries, 10, metric="cosine") for acc in (wide, half)]
    assert [acc.prefix_storage for acc in (wide, half)] == ["float32", "float16"]
    assert half.nbytes * 2 == wide.nbytes == matrix.shape[0] * 16 * 4
    same = [
        len(set(a.tolist()) & set(b.tolist())) / 10
        for (a, _), (b, _) in zip(found[0], found[1], strict=True)
    ]
    assert np.mean(same) >= 0.99


@pytest.mark.parametrize("prefix_dtype", ["float32", "float16"])
def test_funnel_prefix_grows_geometrically(
    data: tuple[Matrix, Matrix], prefix_dtype: Literal["float32", "float16"]
) -> None:
    # Appending rows one put at a time must not copy the whole prefix on every put.
    matrix, queries = data
    acc = FunnelAccelerator(prefix_dim=16, candidates=64, prefix_dtype=prefix_dtype)
    acc.search(matrix, queries[:1], 10, metric="cosine")
    built = acc.nbytes
    n = matrix.shape[0]
    acc.update([n], matrix[:1])
    assert acc.nbytes == 2 * built  # room for n more rows, not just the one added
    acc.update([n + 1], matrix[1:2])
    assert acc.nbytes == 2 * built


def test_make_accelerator_resolves_names_and_rejects_unknown() -> None:
    assert make_accelerator(None) is None
    assert isinstance(make_accelerator("funnel"), FunnelAccelerator)
    assert isinstance(make_accelerator("hnsw"), HnswAccelerator)
    custom = FunnelAccelerator(prefix_dim=8)
    assert make_accelerator(custom) is custom
    with pytest.raises(ConfigurationError, match="unknown accelerator"):
        make_accelerator("ivf")  # type: ignore[arg-type]


def test_hnsw_without_the_extra_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hnswlib", None)
    with pytest.raises(ConfigurationError, match=r"crossmodal-search\[ann\]"):
        make_accelerator("hnsw")


def test_bad_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        FunnelAccelerator(prefix_dim=0)
    with pytest.raises(ConfigurationError, match="prefix_dtype"):
        FunnelAccelerator(prefix_dtype="float8")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        HnswAccelerator(m=1)


@pytest.mark.parametrize("acc", accelerators(), ids=acc_id)
def test_raw_rows_and_float16_unit_rows_as_the_local_store_keeps_them(
    data: tuple[Matrix, Matrix], acc: Accelerator
) -> None:
    """Rows may be unnormalised (cosine) or unit float16 rows plus norms (any metric)."""
    unit, queries = data
    norms = np.random.default_rng(9).uniform(0.5, 2.0, len(unit)).astype(np.float32)
    raw = unit * norms[:, None]
    for metric in ("cosine", "euclidean"):
        truth = [brute_force(raw, q, 10, metric, None) for q in queries]
        layouts: list[tuple[npt.NDArray[np.floating[Any]], Matrix | None, bool]] = [
            (raw, None, False),
            (raw, norms, False),
            (unit.astype(np.float16), norms, True),
        ]
        for matrix, row_norms, unit_rows in layouts:
            acc.invalidate()
            hits = acc.search(
                matrix,
                queries,
                10,
                metric=metric,
                norms=row_norms,
                unit_rows=unit_rows,
            )
            scores = [recall(rows, t) for (rows, _), t in zip(hits, truth, strict=True)]
            assert np.mean(scores) >= 0.95, (metric, unit_rows)
            rows, dist = hits[0]
            q = queries[0]
            expected = (
                1 - raw[rows[0]] @ q / (np.linalg.norm(raw[rows[0]]) * np.linalg.norm(q))
                if metric == "cosine"
                else np.linalg.norm(raw[rows[0]] - q)
            )
            assert dist[0] == pytest.approx(expected, abs=2e-3)
        exact = exact_search(raw, queries, 10, metric=metric, norms=norms)
        assert [h[0].tolist() for h in exact] == truth


# --------------------------------------------------------------------------- LocalVectorStore


def small(name: str) -> Accelerator:
    """The named accelerator sized for 64-d test data (the default funnel scans 256 dims);
    ``funnel`` keeps its prefix in float16 (NumKong), ``funnel-float32`` in float32."""
    if name.startswith("funnel"):
        dtype: Any = "float32" if name == "funnel-float32" else "float16"
        return FunnelAccelerator(prefix_dim=16, candidates=64, prefix_dtype=dtype)
    acc = make_accelerator(name)  # type: ignore[arg-type]
    assert acc is not None
    return acc


def _records(matrix: Matrix, start: int = 0) -> list[VectorRecord]:
    return [
        VectorRecord(f"k{i}", matrix[i - start], {"bucket": i % 10})
        for i in range(start, start + len(matrix))
    ]


@pytest.mark.parametrize("name", ["funnel", "funnel-float32", "hnsw"])  # funnel: 16 of 64 dims
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_local_store_with_an_accelerator_answers_like_the_exact_store(
    data: tuple[Matrix, Matrix], name: str, dtype: str, metric: str
) -> None:
    matrix, queries = data
    raw = matrix * np.random.default_rng(3).uniform(0.5, 2.0, len(matrix))[:, None]
    kw: dict[str, Any] = {"dimension": 64, "distance_metric": metric, "storage_dtype": dtype}
    exact = LocalVectorStore(**kw)
    fast = LocalVectorStore(**kw, accelerator=small(name))
    for store in (exact, fast):
        store.put(_records(raw.astype(np.float32)))
    scores = []
    for q in queries:
        want = exact.query(q, top_k=10)
        got = fast.query(q, top_k=10)
        scores.append(len({m.key for m in want} & {m.key for m in got}) / 10)
        by_key = {m.key: m.distance for m in want}
        for m in got:  # matches found by both carry the same exact distance
            if m.key in by_key:
                assert m.distance == pytest.approx(by_key[m.key], abs=1e-9)
        assert [m.distance for m in got] == sorted(m.distance for m in got)
    assert np.mean(scores) >= 0.95
    many = fast.query_many(queries[:4], top_k=10)
    assert [[m.key for m in ms] for ms in many] == [
        [m.key for m in fast.query(q, top_k=10)] for q in queries[:4]
    ]


@pytest.mark.parametrize("name", ["funnel", "funnel-float32", "hnsw"])  # funnel: 16 of 64 dims
def test_local_store_accelerator_honours_filters_deletes_and_overwrites(
    data: tuple[Matrix, Matrix], name: str
) -> None:
    matrix, queries = data
    store = LocalVectorStore(dimension=64, accelerator=small(name))
    store.put(_records(matrix))
    q = queries[0]
    for flt in ({"bucket": 3}, {"bucket": {"$in": [1, 2, 3, 4, 5]}}):
        hits = store.query(q, top_k=10, filter=flt)
        assert len(hits) == 10
        allowed = {3} if flt == {"bucket": 3} else {1, 2, 3, 4, 5}
        assert all(m.metadata["bucket"] in allowed for m in hits)
    store.put([VectorRecord("k1234", -q, {"bucket": 0})])  # overwrite in place
    assert store.query(-q, top_k=1)[0].key == "k1234"
    first = [m.key for m in store.query(q, top_k=5)]
    store.delete(first[:3])  # swap-remove moves tail rows into the holes
    after = [m.key for m in store.query(q, top_k=5)]
    assert not set(after) & set(first[:3])
    assert after[:2] == first[3:5]
    store.put([VectorRecord("k2999", q, {"bucket": 0})])  # overwrite a moved row's record
    top = store.query(q, top_k=1)[0]
    assert top.key == "k2999" and top.distance == pytest.approx(0.0, abs=1e-6)
    store.put([VectorRecord("new", 2 * q, {"bucket": 0})])
    assert {m.key for m in store.query(q, top_k=2)} == {"new", "k2999"}
    assert len(store) == 3000 - 3 + 1


def test_local_store_accelerator_after_reopening_from_disk(
    tmp_path: Path, data: tuple[Matrix, Matrix]
) -> None:
    matrix, queries = data
    with LocalVectorStore(tmp_path / "s", dimension=64) as store:
        store.put(_records(matrix))
        want = [m.key for m in store.query(queries[1], top_k=10)]
    with LocalVectorStore(tmp_path / "s", accelerator="hnsw") as store:
        got = [m.key for m in store.query(queries[1], top_k=10)]
    assert len(set(want) & set(got)) >= 9


def test_local_store_rejects_an_unknown_accelerator() -> None:
    with pytest.raises(ConfigurationError, match="unknown accelerator"):
        LocalVectorStore(dimension=4, accelerator="ivf")  # type: ignore[arg-type]


def test_hnsw_prefix_graph_links_rows_by_their_leading_dimensions(
    data: tuple[Matrix, Matrix],
) -> None:
    matrix, queries = data
    full = HnswAccelerator(m=8, ef_construction=64, num_threads=1)
    prefix = HnswAccelerator(m=8, ef_construction=64, num_threads=1, prefix_dim=16, rerank=40)
    wider = HnswAccelerator(m=8, ef_construction=64, num_threads=1, prefix_dim=64)
    for acc in (full, prefix, wider):
        acc.build(matrix, metric="cosine")
    # The graph keeps 16 of the 64 dimensions (a prefix as wide as the rows is the full graph).
    assert prefix.nbytes < 0.6 * full.nbytes
    assert wider.nbytes == full.nbytes
    # Its hits are re-ranked at full dimension: exact distances, best first.
    hits = prefix.search(matrix, queries, 10, metric="cosine")
    for (rows, dist), q in zip(hits, queries, strict=True):
        unit = q / np.linalg.norm(q)
        want = 1.0 - matrix[rows].astype(np.float64) @ unit
        np.testing.assert_allclose(dist, want, atol=1e-5)
        assert np.all(np.diff(dist) >= -1e-6)


def test_local_store_with_a_prefix_graph_answers_like_the_exact_store(
    data: tuple[Matrix, Matrix],
) -> None:
    matrix, queries = data
    exact = LocalVectorStore(dimension=64)
    fast = LocalVectorStore(
        dimension=64, accelerator=HnswAccelerator(m=8, num_threads=1, prefix_dim=16, rerank=40)
    )
    for store in (exact, fast):
        store.put(_records(matrix))
    found = [
        len({m.key for m in exact.query(q, top_k=10)} & {m.key for m in fast.query(q, top_k=10)})
        for q in queries
    ]
    assert np.mean(found) >= 9.5


def test_bad_hnsw_prefix_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="prefix_dim"):
        HnswAccelerator(prefix_dim=0)
    with pytest.raises(ConfigurationError, match="rerank"):
        HnswAccelerator(prefix_dim=16, rerank=0)
