"""The per-key metadata indexes answer exactly what evaluating the filter over every row does,
through every kind of write: inserts, overwrites (values changing kind, lists growing), deletes
(which move rows), reopening and a reader catching up.

A selective filter is served from the indexes of its keys once two queries have used them, and
they are kept in step with writes rather than rebuilt; these tests run many random writes
between queries so that an index that missed a changed, moved or truncated row returns a
different answer than the brute force.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossmodal_search.errors import InvalidFilterError
from crossmodal_search.stores import LocalVectorStore, StoreLimits, VectorRecord
from crossmodal_search.stores._filter import MetadataColumns, compile_filter, matches
from tests.test_filter_selection import CATEGORIES, brute_force, random_filter

D = 16
WORDS = ["alpha", "alps", "beta", "bet", "gamma"]


def _metadata(rng: np.random.Generator) -> dict[str, Any]:
    """Mostly selective keys, some values of odd kinds and lists of growing width."""
    md: dict[str, Any] = {"cat": CATEGORIES[min(len(CATEGORIES) - 1, int(rng.exponential(6)))]}
    roll = rng.random()
    if roll < 0.8:
        md["num"] = int(rng.integers(0, 100))
    elif roll < 0.9:  # the same key holding a string, a list of numbers or a bool
        md["num"] = [float(v) for v in rng.integers(0, 100, int(rng.integers(1, 6)))]
    elif roll < 0.95:
        md["num"] = "n/a"
    if rng.random() < 0.5:
        md["tags"] = [str(t) for t in rng.choice(["a", "b", "c", "d", "e"], rng.integers(1, 4))]
    if rng.random() < 0.7:
        md["flag"] = bool(rng.random() < 0.2) if rng.random() < 0.9 else [True, "x"]
    if rng.random() < 0.3:
        md["word"] = str(rng.choice(WORDS))
    if rng.random() < 0.95:  # always a scalar: a one-element-wide column
        md["price"] = round(float(rng.uniform(0, 50)), 1)
    return md


def _filter(rng: np.random.Generator) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.15:
        lo = float(rng.uniform(0, 50))
        return {"price": {"$gte": lo, "$lt": lo + float(rng.uniform(0.5, 4))}}
    if roll < 0.2:
        return {"price": {str(rng.choice(["$gt", "$lte"])): float(rng.uniform(0, 6))}}
    if roll < 0.3:
        return {"word": {"$startsWith": str(rng.choice(["al", "be", "gam", "z"]))}}
    if roll < 0.4:
        return {"num": {"$in": [float(v) for v in rng.integers(0, 100, 3)] + ["n/a"]}}
    if roll < 0.5:
        return {"$and": [{"num": {"$lt": float(rng.integers(0, 30))}}, random_filter(rng, 1)]}
    return random_filter(rng)


def _check_columns(
    columns: MetadataColumns, metadata: list[dict[str, Any]], filters: list[Any]
) -> None:
    for flt in filters:
        compiled = compile_filter(flt)
        want = [i for i, md in enumerate(metadata) if matches(compiled, md)]
        # fraction 1.0: every filter whose keys have indexes is served from them.
        for _ in range(2):
            got = compiled.select(columns, 1.0)
            assert got.tolist() == want, flt
        assert np.flatnonzero(compiled.mask(columns)).tolist() == want


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_indexes_follow_every_column_change(seed: int) -> None:
    """Rows set, cleared, moved (the compaction after deletes), truncated and appended."""
    rng = np.random.default_rng(seed)
    metadata = [_metadata(rng) for _ in range(600)]
    columns = MetadataColumns.from_metadata(metadata)
    filters = [_filter(rng) for _ in range(25)]
    _check_columns(columns, metadata, filters)  # builds the indexes
    for _ in range(12):
        n = len(metadata)
        for row in rng.choice(n, 20, replace=False).tolist():  # overwrites
            metadata[row] = _metadata(rng)
            columns.set_row(row, metadata[row])
        holes = np.sort(rng.choice(n - 40, 15, replace=False))  # deletes: the tail fills holes
        movers = np.arange(n - 15, n)
        columns.move_rows(movers, holes)
        for dst, src in zip(holes.tolist(), movers.tolist(), strict=True):
            metadata[dst] = metadata[src]
        del metadata[n - 15 :]
        columns.resize(n - 15)
        grow = int(rng.integers(5, 40))  # appends, some without a key the old rows had
        columns.resize(len(metadata) + grow)
        for _ in range(grow):
            metadata.append(_metadata(rng))
            columns.set_row(len(metadata) - 1, metadata[-1], fresh=True)
        _check_columns(columns, metadata, filters)


def _nearest(vectors: dict[str, Any], q: Any, top_k: int) -> list[str]:
    """The keys of the ``top_k`` nearest ``vectors`` by float64 cosine distance, ties by key."""
    if not vectors:
        return []
    keys = sorted(vectors)
    x = np.stack([vectors[k] for k in keys]).astype(np.float64)
    q64 = q.astype(np.float64)
    dist = 1 - (x @ q64) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q64))
    return [k for _, k in sorted(zip(dist.tolist(), keys, strict=True))[:top_k]]


def _store(path: Path | None, **options: Any) -> LocalVectorStore:
    if path is None:
        return LocalVectorStore(dimension=D, limits=StoreLimits.relaxed(), **options)
    return LocalVectorStore(path, dimension=D, limits=StoreLimits.relaxed(), **options)


@pytest.mark.parametrize("persisted", [False, True])
def test_store_answers_match_brute_force_through_writes_and_reopen(
    tmp_path: Path, persisted: bool
) -> None:
    rng = np.random.default_rng(21 if persisted else 22)
    path = tmp_path / "store" if persisted else None
    store = _store(path)
    vectors: dict[str, Any] = {}
    metadata: dict[str, dict[str, Any]] = {}
    serial = 0

    def put(count: int, overwrite: int) -> None:
        nonlocal serial
        keys = [f"k{serial + i:05d}" for i in range(count)]
        serial += count
        if vectors and overwrite:
            keys += [str(k) for k in rng.choice(sorted(vectors), overwrite, replace=False)]
        records = []
        for key in dict.fromkeys(keys):
            vec = rng.standard_normal(D).astype(np.float32)
            md = _metadata(rng)
            vectors[key], metadata[key] = vec, md
            records.append(VectorRecord.create(key, vec, md))
        store.put(records)

    put(2000, 0)
    filters = [_filter(rng) for _ in range(24)]
    queries = rng.standard_normal((2, D)).astype(np.float32)
    selective = 0
    for round_ in range(8):
        for flt in filters:
            kept = {k: v for k, v in vectors.items() if matches(flt, metadata[k])}
            selective += 0 < len(kept) <= 0.12 * len(metadata)
            for q in queries:
                want = _nearest(kept, q, 10)
                assert [m.key for m in store.query(q, top_k=10, filter=flt)] == want, flt
        put(int(rng.integers(1, 60)), int(rng.integers(0, 60)))
        gone = [str(k) for k in rng.choice(sorted(vectors), int(rng.integers(1, 80)), False)]
        store.delete(gone)
        for key in gone:
            del vectors[key], metadata[key]
        if persisted and round_ % 3 == 2:
            store.close()
            store = _store(path)
    store.close()
    assert selective >= 50  # most rounds exercised the index-served plan


def test_a_reader_catching_up_keeps_index_served_answers_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    writer = _store(tmp_path / "s")
    vectors = {f"k{i:04d}": rng.standard_normal(D).astype(np.float32) for i in range(2000)}
    metadata = {k: _metadata(rng) for k in vectors}
    writer.put(VectorRecord.create(k, v, metadata[k]) for k, v in vectors.items())
    reader = LocalVectorStore(tmp_path / "s", read_only=True, limits=StoreLimits.relaxed())
    flt = {"cat": {"$in": ["c20", "c21", "c22"]}}
    q = rng.standard_normal(D).astype(np.float32)
    for _ in range(3):
        for _ in range(2):
            want = brute_force(vectors, metadata, q, flt, "cosine", 5)
            assert [m.key for m in reader.query(q, top_k=5, filter=flt)] == want
        changed = [str(k) for k in rng.choice(sorted(vectors), 50, replace=False)]
        for key in changed:
            metadata[key] = {"cat": "c21"} if rng.random() < 0.5 else _metadata(rng)
        writer.put(VectorRecord.create(k, vectors[k], metadata[k]) for k in changed)
        writer.delete(changed[:10])
        for key in changed[:10]:
            del vectors[key], metadata[key]
    reader.close()
    writer.close()


def test_a_repeated_filter_is_told_apart_by_type_and_read_afresh_when_changed() -> None:
    """The store remembers compiled filters: ``True``, ``1`` and ``1.0`` stay different filters,
    and a filter dict changed after a query means its new content."""
    store = _store(None)
    vec = np.ones(D, dtype=np.float32)
    store.put(
        [
            VectorRecord.create("bool", vec, {"v": True}),
            VectorRecord.create("int", vec, {"v": 1}),
            VectorRecord.create("str", vec, {"v": "1"}),
        ]
    )
    flt: dict[str, Any] = {"v": True}
    for _ in range(2):
        assert [m.key for m in store.query(vec, top_k=3, filter=flt)] == ["bool"]
        assert [m.key for m in store.query(vec, top_k=3, filter={"v": 1})] == ["int"]
        assert [m.key for m in store.query(vec, top_k=3, filter={"v": 1.0})] == ["int"]
        assert [m.key for m in store.query(vec, top_k=3, filter={"v": "1"})] == ["str"]
    flt["v"] = "1"
    assert [m.key for m in store.query(vec, top_k=3, filter=flt)] == ["str"]
    flt["v"] = {"$in": [1, "1"]}
    assert [m.key for m in store.query(vec, top_k=3, filter=flt)] == ["int", "str"]
    with pytest.raises(InvalidFilterError):
        store.query(vec, top_k=3, filter={"v": {"$in": [1, None]}})
