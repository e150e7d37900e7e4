"""Filtered search planned by selectivity returns what a float64 brute force over the matching
records returns: randomized filters, near-ties and exact ties, every first-pass dtype.

The local store remembers which rows a filter keeps (and, for a selective filter, a copy of
their scan rows) until the next write; these tests check the first query with a filter (which
evaluates it), the repeated one (which reuses the selection), a batch, and that every write
makes the store evaluate the filter again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from crossmodal_search.stores import LocalVectorStore, StoreLimits, VectorRecord
from crossmodal_search.stores._filter import matches
from tests.exact_helpers import near_ties, options_for, pairs

N = 3000
D = 48
CATEGORIES = [f"c{i:02d}" for i in range(40)]
DTYPES = ("float32", "float16", "float32+bfloat16")


def _metadata(rng: np.random.Generator, i: int) -> dict[str, Any]:
    md: dict[str, Any] = {}
    # Skewed categories: c00 keeps ~1/3 of the rows, the last ones a handful.
    md["cat"] = CATEGORIES[min(len(CATEGORIES) - 1, int(rng.exponential(6)))]
    if rng.random() < 0.9:
        md["num"] = int(rng.integers(0, 100))
    if rng.random() < 0.5:
        md["tags"] = [str(t) for t in rng.choice(["a", "b", "c", "d", "e"], rng.integers(1, 4))]
    if rng.random() < 0.7:
        md["flag"] = bool(rng.random() < 0.2)
    return md


def _leaf(rng: np.random.Generator) -> dict[str, Any]:
    kind = int(rng.integers(0, 8))
    cat = CATEGORIES[int(rng.integers(0, len(CATEGORIES)))]
    if kind == 0:
        return {"cat": cat}
    if kind == 1:
        picked = rng.choice(CATEGORIES, int(rng.integers(1, 5)), replace=False)
        return {"cat": {"$in" if rng.random() < 0.7 else "$nin": [str(c) for c in picked]}}
    if kind == 2:
        lo = int(rng.integers(0, 100))
        return {"num": {"$gte": lo, "$lt": lo + int(rng.integers(1, 30))}}
    if kind == 3:
        op = str(rng.choice(["$gt", "$gte", "$lt", "$lte"]))
        return {"num": {op: float(rng.integers(0, 100)) + 0.5 * float(rng.integers(0, 2))}}
    if kind == 4:
        return {str(rng.choice(["num", "tags", "flag"])): {"$exists": bool(rng.random() < 0.5)}}
    if kind == 5:
        return {"tags": str(rng.choice(["a", "b", "e"]))}
    if kind == 6:
        return {"flag": bool(rng.random() < 0.5)}
    return {"cat": {"$ne": cat}}


def random_filter(rng: np.random.Generator, depth: int = 0) -> dict[str, Any]:
    roll = rng.random()
    if depth < 2 and roll < 0.3:
        op = "$and" if rng.random() < 0.5 else "$or"
        return {op: [random_filter(rng, depth + 1) for _ in range(int(rng.integers(2, 4)))]}
    return _leaf(rng)


def dataset(
    seed: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], list[dict[str, Any]]]:
    """Near-tie rows (cosines within ~1e-5 at the top), every 7th one an exact copy of an earlier
    row (equal distances: ties go to the smaller key), and random metadata."""
    rows, q = near_ties(N, D, seed=seed)
    rng = np.random.default_rng(seed)
    for i in range(7, N, 7):
        rows[i] = rows[int(rng.integers(0, i))]
    queries = np.stack([q, q + 1e-4 * rng.standard_normal(D).astype(np.float32)])
    return rows, queries.astype(np.float32), [_metadata(rng, i) for i in range(N)]


def brute_force(
    vectors: dict[str, npt.NDArray[np.float32]],
    metadata: dict[str, dict[str, Any]],
    q: npt.NDArray[np.float32],
    flt: dict[str, Any],
    metric: str,
    top_k: int,
) -> list[str]:
    keys = sorted(k for k in vectors if matches(flt, metadata[k]))
    if not keys:
        return []
    x = np.stack([vectors[k] for k in keys]).astype(np.float64)
    q64 = q.astype(np.float64)
    if metric == "cosine":
        dist = 1 - (x @ q64) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q64))
    else:
        dist = np.linalg.norm(x - q64, axis=1)
    return [k for _, k in sorted(zip(dist.tolist(), keys, strict=True))[:top_k]]


def stored_vectors(store: LocalVectorStore) -> dict[str, npt.NDArray[np.float32]]:
    """What the store holds (float16 storage rounds): the vectors the answers are about."""
    return {r.key: r.vector for r in store.records()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_randomized_filters_return_the_brute_force_answer(metric: str, dtype: str) -> None:
    rows, queries, metadata = dataset(seed=3 if metric == "cosine" else 4)
    store = LocalVectorStore(
        dimension=D,
        distance_metric=metric,  # type: ignore[arg-type]
        limits=StoreLimits.relaxed(),
        **options_for(dtype),  # type: ignore[arg-type]
    )
    keys = [f"k{i:05d}" for i in range(N)]
    store.put(VectorRecord.create(k, v, m) for k, v, m in zip(keys, rows, metadata, strict=True))
    vectors = stored_vectors(store)
    by_key = dict(zip(keys, metadata, strict=True))
    rng = np.random.default_rng(11)
    fractions = []
    fixed: list[dict[str, Any]] = [{"cat": {"$exists": True}}, {"cat": "none"}]
    for flt in fixed + [random_filter(rng) for _ in range(40)]:
        fractions.append(sum(matches(flt, m) for m in metadata) / N)
        for q in queries:
            first = store.query(q, top_k=10, filter=flt)
            again = store.query(q, top_k=10, filter=flt)
            assert pairs(again) == pairs(first)
            assert [m.key for m in first] == brute_force(vectors, by_key, q, flt, metric, 10)
        many = store.query_many(queries, top_k=10, filter=flt)
        assert [pairs(m) for m in many] == [
            pairs(store.query(q, top_k=10, filter=flt)) for q in queries
        ]
    # The random filters covered every plan: nothing kept, selective, gathered, scanned, all.
    assert min(fractions) == 0.0 and max(fractions) == 1.0
    assert any(0 < f <= 0.05 for f in fractions)
    assert any(0.05 < f < 0.12 for f in fractions)
    assert any(0.12 <= f < 1 for f in fractions)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_write_makes_a_remembered_filter_see_the_new_rows(dtype: str) -> None:
    rows, queries, metadata = dataset(seed=5)
    store = LocalVectorStore(dimension=D, limits=StoreLimits.relaxed(), **options_for(dtype))  # type: ignore[arg-type]
    store.put(
        VectorRecord.create(f"k{i:05d}", v, m)
        for i, (v, m) in enumerate(zip(rows, metadata, strict=True))
    )
    q = queries[0]
    flt = {"cat": "c39"}  # a rare category: the selective plan, with its copied rows
    before = [m.key for m in store.query(q, top_k=5, filter=flt)]
    store.query(q, top_k=5, filter=flt)  # remembered now
    # A new best row in the category, then an existing row moved into it, then deletes.
    store.put([VectorRecord.create("best", q * 2, {"cat": "c39"})])
    assert store.query(q, top_k=5, filter=flt)[0].key == "best"
    store.put([VectorRecord.create("k00001", rows[1], {"cat": "c39"})])
    assert "k00001" in [m.key for m in store.query(q, top_k=len(before) + 2, filter=flt)]
    store.delete(["best", "k00001"])
    assert [m.key for m in store.query(q, top_k=5, filter=flt)] == before
    # Metadata rewritten out of the category: the row leaves the answer.
    if before:
        gone = before[0]
        record = store.get([gone]).records[0]
        store.put([VectorRecord.create(gone, record.vector, {"cat": "c00"})])
        assert gone not in [m.key for m in store.query(q, top_k=5, filter=flt)]


def test_a_reader_sees_a_remembered_filter_change_with_the_writer(tmp_path: Any) -> None:
    rows, queries, metadata = dataset(seed=6)
    writer = LocalVectorStore(tmp_path / "s", dimension=D, limits=StoreLimits.relaxed())
    writer.put(
        VectorRecord.create(f"k{i:05d}", v, m)
        for i, (v, m) in enumerate(zip(rows[:500], metadata[:500], strict=True))
    )
    reader = LocalVectorStore(tmp_path / "s", read_only=True, limits=StoreLimits.relaxed())
    flt = {"cat": "c01"}
    q = queries[0]
    reader.query(q, top_k=3, filter=flt)
    reader.query(q, top_k=3, filter=flt)
    writer.put([VectorRecord.create("new", q, {"cat": "c01"})])
    assert reader.query(q, top_k=3, filter=flt)[0].key == "new"
    reader.close()
    writer.close()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_rows_gathered_block_by_block_give_the_brute_force_answer(metric: str, dtype: str) -> None:
    # 1024 dimensions: a filter keeping ~10 % (more than a selection copies, fewer than a scan
    # multiplies) is gathered a few hundred KiB at a time, over several blocks.
    n, d = 2400, 1024
    rows, q = near_ties(n, d, seed=5)
    store = LocalVectorStore(
        dimension=d,
        distance_metric=metric,  # type: ignore[arg-type]
        limits=StoreLimits.relaxed(),
        **options_for(dtype),  # type: ignore[arg-type]
    )
    keys = [f"k{i:05d}" for i in range(n)]
    metadata = [{"b": i % 10, "odd": i % 2 == 1} for i in range(n)]
    store.put(VectorRecord.create(k, v, m) for k, v, m in zip(keys, rows, metadata, strict=True))
    vectors = stored_vectors(store)
    by_key = dict(zip(keys, metadata, strict=True))
    queries = [q, -q, rows[17] + 1e-3 * q]
    for flt in ({"b": 3}, {"b": {"$in": [3, 4]}, "odd": True}):
        for query in queries:
            got = [m.key for m in store.query(query, top_k=10, filter=flt)]
            assert got == brute_force(vectors, by_key, query, flt, metric, 10)
        many = store.query_many(np.stack(queries), top_k=10, filter=flt)
        assert [[m.key for m in ms] for ms in many] == [
            brute_force(vectors, by_key, query, flt, metric, 10) for query in queries
        ]
