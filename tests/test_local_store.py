"""LocalVectorStore: in memory and in a directory."""

from __future__ import annotations

import doctest
import json
import math
import os
import random
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossmodal_search.errors import (
    ConfigurationError,
    DimensionMismatchError,
    IndexMismatchError,
    InvalidFilterError,
    InvalidInputError,
    MetadataLimitError,
    StoreCorruptedError,
    StoreLockedError,
)
from crossmodal_search.stores import (
    LocalVectorStore,
    StoreLimits,
    VectorRecord,
    VectorStore,
    _filter,
    _limits,
    _local,
    _matryoshka,
    matches,
)


@pytest.fixture(params=["memory", "directory"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Factory for stores of the parametrised kind; closes them after the test."""
    opened: list[LocalVectorStore] = []

    def make(**kw: Any) -> LocalVectorStore:
        path = tmp_path / "store" if request.param == "directory" else None
        store = LocalVectorStore(path, **kw)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def rec(key: str, vector: Any, **metadata: Any) -> VectorRecord:
    return VectorRecord.create(key, vector, metadata)


def brute_force(
    model: dict[str, tuple[np.ndarray, dict[str, Any]]],
    q: np.ndarray,
    metric: str,
    top_k: int,
    filter: dict[str, Any] | None = None,
) -> list[tuple[str, float]]:
    """Reference search in float64 over a dict model, ties by key."""
    q64 = np.asarray(q, dtype=np.float64)
    scored: list[tuple[float, str]] = []
    for key, (vec, md) in model.items():
        if filter is not None and not matches(filter, md):
            continue
        x = vec.astype(np.float64)
        if metric == "cosine":
            d = 1 - float(x @ q64) / float(np.linalg.norm(x) * np.linalg.norm(q64))
        else:
            d = float(np.linalg.norm(x - q64))
        scored.append((d, key))
    scored.sort()
    return [(k, d) for d, k in scored[:top_k]]


# ---------------------------------------------------------------- basic contract


def test_is_a_vector_store(make_store: Any) -> None:
    store: LocalVectorStore = make_store(dimension=3)
    assert isinstance(store, VectorStore)
    assert (store.dimension, store.distance_metric, len(store)) == (3, "cosine", 0)
    assert store.non_filterable_metadata_keys == {"text", "description", "image_path", "source_uri"}


def test_get_returns_records_in_order_asked_and_reports_missing(make_store: Any) -> None:
    store = make_store(dimension=3)
    store.put([rec("a", [1, 2, 3], colour="red"), rec("b", [0.1, 0.2, 0.3], tags=["x", "y"])])
    result = store.get(["b", "nope", "a", "b"])
    assert [r.key for r in result.records] == ["b", "a", "b"]
    assert result.missing == ("nope",)
    a = result.records[1]
    assert a.vector.dtype == np.float32
    np.testing.assert_array_equal(a.vector, np.array([1, 2, 3], dtype=np.float32))
    assert a.metadata == {"colour": "red"}
    assert result.records[0].metadata == {"tags": ["x", "y"]}
    assert store.get([]).records == ()


def test_returned_records_are_copies(make_store: Any) -> None:
    store = make_store(dimension=2)
    store.put([rec("a", [1, 0], tags=["x"])])
    got = store.get(["a"]).records[0]
    got.vector[0] = 99
    got.metadata["tags"].append("mutated")
    again = store.get(["a"]).records[0]
    assert again.vector.tolist() == [1, 0] and again.metadata == {"tags": ["x"]}
    assert store.query([0, 1], top_k=1, filter={"tags": "mutated"}) == []


def test_query_results_carry_copies_of_the_metadata() -> None:
    """Changing a result's metadata (its lists too, in filterable and non-filterable keys,
    whether or not the store held lists before) never changes the store."""
    for name in ("notes", "tags"):
        store = LocalVectorStore(dimension=2, non_filterable_metadata_keys=["notes"])
        store.put([rec("a", [1, 0], colour="red")])
        first = store.query([1, 0], top_k=1)[0]
        first.metadata["colour"] = "blue"  # type: ignore[index]
        assert store.query([1, 0], top_k=1)[0].metadata == {"colour": "red"}
        store.put([rec("b", [0, 1], **{name: ["x"]})])
        got = store.query([0, 1], top_k=1)[0]
        assert got.key == "b"
        got.metadata[name].append("mutated")  # type: ignore[union-attr]
        assert store.get(["b"]).records[0].metadata == {name: ["x"]}


def test_upsert_overwrites_vector_and_metadata(make_store: Any) -> None:
    store = make_store(dimension=2)
    store.put([rec("a", [1, 0], colour="red", size="xl"), rec("b", [0, 1], colour="blue")])
    store.put([rec("a", [0, 1], colour="green")])
    assert len(store) == 2
    a = store.get(["a"]).records[0]
    assert a.vector.tolist() == [0, 1] and a.metadata == {"colour": "green"}
    assert store.query([0, 1], filter={"size": "xl"}) == []  # old metadata gone from filters
    assert [m.key for m in store.query([0, 1], filter={"colour": "green"})] == ["a"]


def test_delete_ignores_unknown_keys_and_keeps_the_rest(make_store: Any) -> None:
    store = make_store(dimension=2)
    store.put([rec(k, [i + 1, 1], i=i) for i, k in enumerate("abcdef")])
    store.delete(["b", "zz", "e", "b"])
    store.delete([])
    store.delete(["never"])
    assert len(store) == 4
    assert sorted(store.keys()) == ["a", "c", "d", "f"]
    assert store.get(["b", "c"]).missing == ("b",)
    assert {m.key for m in store.query([1, 1], top_k=10)} == {"a", "c", "d", "f"}
    assert [m.metadata["i"] for m in store.query([1, 1], filter={"i": {"$gte": 3}})] == [3, 5]
    store.put([rec("b", [5, 5], i=99)])
    assert store.get(["b"]).records[0].metadata == {"i": 99}


def test_keys_and_records_iterate_everything(make_store: Any) -> None:
    store = make_store(dimension=2)
    store.put([rec(f"k{i}", [i, 1], i=i) for i in range(2500)])
    assert sorted(store.keys()) == sorted(f"k{i}" for i in range(2500))
    records = {r.key: r for r in store.records()}
    assert len(records) == 2500
    assert records["k7"].vector.tolist() == [7, 1] and records["k7"].metadata == {"i": 7}


def test_string_instead_of_key_list_is_an_error(make_store: Any) -> None:
    store = make_store(dimension=2)
    with pytest.raises(InvalidInputError, match="not a single string"):
        store.get("abc")
    with pytest.raises(InvalidInputError, match="not a single string"):
        store.delete("abc")
    with pytest.raises(InvalidInputError, match="must be strings"):
        store.get([1])


# ---------------------------------------------------------------- distances and ordering


def test_cosine_distances_match_hand_computation(make_store: Any) -> None:
    store = make_store(dimension=2)
    store.put([rec("x", [2, 0]), rec("y", [0, 3]), rec("xy", [1, 1]), rec("neg", [-1, 0])])
    got = [(m.key, m.distance) for m in store.query([1, 0], top_k=4)]
    assert [k for k, _ in got] == ["x", "xy", "y", "neg"]
    expected = [0.0, 1 - 1 / math.sqrt(2), 1.0, 2.0]
    assert [d for _, d in got] == pytest.approx(expected, abs=1e-12)
    assert got[0][1] == 0.0  # identical direction is exactly 0, never negative


def test_euclidean_distances_are_plain_l2(make_store: Any) -> None:
    store = make_store(dimension=2, distance_metric="euclidean")
    store.put([rec("o", [0, 0]), rec("p", [3, 4]), rec("q", [1, 1]), rec("r", [-6, -8])])
    got = [(m.key, m.distance) for m in store.query([0, 0], top_k=4)]
    assert got == [("o", 0.0), ("q", pytest.approx(math.sqrt(2))), ("p", 5.0), ("r", 10.0)]
    near = store.query([3, 4], top_k=1)[0]
    assert (near.key, near.distance) == ("p", 0.0)  # exact re-scoring: no cancellation error


def test_ties_are_broken_by_key(make_store: Any) -> None:
    store = make_store(dimension=2)
    store.put([rec(k, [1, 1]) for k in ["d", "b", "e", "a", "c"]] + [rec("far", [1, -1])])
    assert [m.key for m in store.query([1, 1], top_k=3)] == ["a", "b", "c"]
    assert [m.key for m in store.query([2, 2], top_k=6)] == ["a", "b", "c", "d", "e", "far"]


def test_top_k_limits(make_store: Any) -> None:
    store = make_store(dimension=2)
    store.put([rec(f"k{i}", [1, i]) for i in range(150)])
    assert len(store.query([1, 0], top_k=100)) == 100
    with pytest.raises(InvalidInputError, match="top_k"):
        store.query([1, 0], top_k=101)
    relaxed = LocalVectorStore(dimension=2, limits=StoreLimits.relaxed())
    relaxed.put(list(store.records()))
    assert len(relaxed.query([1, 0], top_k=500)) == 150
    assert len(store.query([1, 0], top_k=1)) == 1


def test_query_on_empty_store_and_filter_matching_nothing(make_store: Any) -> None:
    store = make_store(dimension=2)
    assert store.query([1, 0]) == []
    store.put([rec("a", [1, 0], colour="red")])
    assert store.query([1, 0], filter={"colour": "blue"}) == []
    assert store.query_many([[1, 0], [0, 1]], filter={"colour": "blue"}) == [[], []]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_search_matches_brute_force_with_filters(make_store: Any, metric: str) -> None:
    rng = np.random.default_rng(7)
    store = make_store(dimension=16, distance_metric=metric)
    model: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    records = []
    for i in range(600):
        vec = rng.normal(size=16).astype(np.float32)
        md: dict[str, Any] = {
            "shard": i % 5,
            "colour": ["red", "green", "blue"][i % 3],
            "price": float(i % 97),
        }
        if i % 4 == 0:
            md["tags"] = ["sale", f"t{i % 6}"]
        model[f"p{i:04d}"] = (vec, md)
        records.append(VectorRecord(f"p{i:04d}", vec, md))
    store.put(records)
    filters: list[dict[str, Any] | None] = [
        None,
        {"colour": "red"},  # a third of the rows
        {"shard": 3, "price": {"$lt": 20}},  # selective: the gather path
        {"tags": {"$in": ["t2", "t4"]}},
        {"colour": {"$ne": "blue"}},  # most rows: the full-product path
        {"$or": [{"price": {"$gte": 90}}, {"tags": {"$exists": True}}]},
    ]
    for q in rng.normal(size=(5, 16)).astype(np.float32):
        for f in filters:
            got = [(m.key, m.distance) for m in store.query(q, top_k=10, filter=f)]
            want = brute_force(model, q, metric, 10, f)
            assert [k for k, _ in got] == [k for k, _ in want]
            assert [d for _, d in got] == pytest.approx([d for _, d in want], abs=1e-9)
            for m in store.query(q, top_k=3, filter=f):
                assert m.metadata == model[m.key][1]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_query_many_equals_query(make_store: Any, metric: str, dtype: str) -> None:
    rng = np.random.default_rng(1)
    store = make_store(dimension=24, distance_metric=metric, storage_dtype=dtype)
    store.put(
        [
            VectorRecord(f"k{i}", rng.normal(size=24).astype(np.float32), {"g": i % 4})
            for i in range(800)
        ]
    )
    queries = rng.normal(size=(7, 24)).astype(np.float32)
    for f in (None, {"g": 1}, {"g": {"$ne": 1}}):
        assert store.query_many(queries, top_k=12, filter=f) == [
            store.query(q, top_k=12, filter=f) for q in queries
        ]
    assert store.query_many(np.empty((0, 24)), top_k=3) == []


def test_float16_storage_keeps_recall(make_store: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(3000, 64)).astype(np.float32)
    records = [VectorRecord(f"k{i}", v, {}) for i, v in enumerate(vectors)]
    exact = make_store(dimension=64, storage_dtype="float32")
    exact.put(records)
    half = LocalVectorStore(tmp_path / "half", dimension=64, storage_dtype="float16")
    half.put(records)
    assert half.storage_dtype == "float16"
    with LocalVectorStore(tmp_path / "full", dimension=64) as full:
        full.put(records)
    vector_bytes = {
        name: sum(f.stat().st_size for f in (tmp_path / name).glob("*.npy"))
        for name in ("half", "full")
    }
    assert vector_bytes["half"] < 0.51 * vector_bytes["full"]  # half the bytes per vector
    queries = rng.normal(size=(40, 64)).astype(np.float32)
    hits = 0
    for q in queries:
        want = {m.key for m in exact.query(q, top_k=10)}
        got = half.query(q, top_k=10)
        hits += len(want & {m.key for m in got})
        assert [m.distance for m in got] == sorted(m.distance for m in got)
    assert hits / (40 * 10) >= 0.95
    back = half.get(["k5"]).records[0].vector
    np.testing.assert_allclose(back, vectors[5], rtol=0, atol=2e-3 * np.abs(vectors[5]).max())


def test_float16_handles_values_beyond_float16_range(make_store: Any) -> None:
    store = make_store(dimension=2, storage_dtype="float16", distance_metric="euclidean")
    store.put([rec("big", [1e6, 2e6]), rec("small", [1e-3, 0])])
    np.testing.assert_allclose(store.get(["big"]).records[0].vector, [1e6, 2e6], rtol=1e-3)
    assert store.query([1e6, 2e6], top_k=1)[0].key == "big"


# ---------------------------------------------------------------- bad input writes nothing


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (rec("bad", [1, 0, 0]), DimensionMismatchError),
        (rec("bad", [1, float("nan")]), InvalidInputError),
        (rec("bad", [float("inf"), 1]), InvalidInputError),
        (rec("bad", [0, 0]), InvalidInputError),
        (rec("bad", [1, 1], colour="x" * 3000), MetadataLimitError),
        (rec("bad", [1, 1], description="x" * 41000), MetadataLimitError),
        (rec("bad", [1, 1], nested={"a": 1}), MetadataLimitError),
        (rec("", [1, 1]), InvalidInputError),
        (rec("k" * 1025, [1, 1]), InvalidInputError),
        (rec("good", [1, 1]), InvalidInputError),  # duplicate key in one call
    ],
)
def test_bad_input_raises_and_writes_nothing(
    make_store: Any, bad: VectorRecord, error: Any
) -> None:
    store = make_store(dimension=2)
    store.put([rec("before", [1, 0], colour="red")])
    path = store.path
    files_before = sorted(os.listdir(path)) if path else None
    with pytest.raises(error):
        store.put([rec("good", [0, 1]), bad])
    assert len(store) == 1
    assert store.get(["good"]).missing == ("good",)
    if path is not None:
        assert sorted(os.listdir(path)) == files_before
        store.close()
        with LocalVectorStore(path) as reopened:
            assert list(reopened.keys()) == ["before"]


def test_bad_queries(make_store: Any) -> None:
    store = make_store(dimension=2, non_filterable_metadata_keys=["notes"])
    store.put([rec("a", [1, 0], notes="n")])
    with pytest.raises(DimensionMismatchError):
        store.query([1, 0, 0])
    with pytest.raises(InvalidInputError, match="all-zero"):
        store.query([0, 0])
    with pytest.raises(InvalidFilterError, match="non-filterable"):
        store.query([1, 0], filter={"notes": "n"})
    with pytest.raises(InvalidFilterError):
        store.query([1, 0], filter={"a": {"$gt": "x"}})
    with pytest.raises(DimensionMismatchError):
        store.query_many([[1, 0, 0]])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dimension": 0},
        {"dimension": 4097},
        {"dimension": 2, "distance_metric": "dot"},
        {"dimension": 2, "storage_dtype": "int8"},
        {"dimension": 2, "non_filterable_metadata_keys": [f"k{i}" for i in range(11)]},
    ],
)
def test_bad_configuration(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        LocalVectorStore(**kwargs)


def test_dimension_required_for_a_new_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="dimension is required"):
        LocalVectorStore()
    with pytest.raises(ConfigurationError, match="dimension is required"):
        LocalVectorStore(tmp_path / "new")


def test_relaxed_limits_for_local_use() -> None:
    store = LocalVectorStore(dimension=8000, limits=StoreLimits.relaxed())
    store.put([VectorRecord.create("k" * 2000, np.ones(8000), {"big": "x" * 100_000})])
    assert len(store.query(np.ones(8000), top_k=1000)) == 1


# ---------------------------------------------------------------- persistence


def test_reopen_restores_everything(tmp_path: Path) -> None:
    path = tmp_path / "s"
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    with LocalVectorStore(path, dimension=8, non_filterable_metadata_keys=["blob"]) as store:
        store.put([VectorRecord(f"k{i}", vecs[i], {"i": i, "blob": "b" * i}) for i in range(50)])
        store.delete([f"k{i}" for i in range(0, 50, 3)])
        store.put([VectorRecord("k1", vecs[0], {"i": -1, "tags": ["é", "ü"]})])
        before = {r.key: (r.vector.tolist(), r.metadata) for r in store.records()}
        q = rng.normal(size=8)
        results = store.query(q, top_k=10, filter={"i": {"$lt": 30}})
    assert set(os.listdir(path)) >= {"manifest.json", ".lock"}
    with LocalVectorStore(path) as store:  # dimension and settings come from the manifest
        assert (store.dimension, store.distance_metric, store.storage_dtype) == (
            8,
            "cosine",
            "float32",
        )
        assert store.non_filterable_metadata_keys == {"blob"}
        assert {r.key: (r.vector.tolist(), r.metadata) for r in store.records()} == before
        assert store.query(q, top_k=10, filter={"i": {"$lt": 30}}) == results
        with pytest.raises(InvalidFilterError):
            store.query(q, filter={"blob": "b"})


def test_manifest_is_versioned_json_and_vectors_are_plain_npy(tmp_path: Path) -> None:
    with LocalVectorStore(tmp_path, dimension=3, distance_metric="euclidean") as store:
        store.put([rec("a", [1, 2, 3], n=1)])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == "crossmodal-search/local-vector-store"
    assert manifest["version"] == 2
    assert (manifest["dimension"], manifest["distance_metric"]) == (3, "euclidean")
    [seg] = manifest["segments"]
    npy = tmp_path / f"seg-{seg['id']:08d}.npy"
    vectors = np.load(npy, allow_pickle=False)
    assert vectors.tolist() == [[1, 2, 3]]
    jsonl = tmp_path / f"seg-{seg['id']:08d}.jsonl"
    record, end = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert record["k"] == "a" and record["m"] == {"n": 1}
    # The segment describes itself (a lost manifest can be rebuilt) and carries checksums.
    trailer = end["end"]
    assert (trailer["id"], trailer["puts"], trailer["deletes"], trailer["base"]) == (
        seg["id"],
        1,
        0,
        True,
    )
    assert trailer["store"]["distance_metric"] == "euclidean"
    assert trailer["vectors_crc"] == seg["vectors_crc"] == zlib.crc32(npy.read_bytes())
    assert seg["records_crc"] == zlib.crc32(jsonl.read_bytes())


def test_many_small_writes_keep_few_segments(tmp_path: Path) -> None:
    with LocalVectorStore(tmp_path, dimension=2, distance_metric="euclidean") as store:
        for i in range(300):
            store.put([rec(f"k{i}", [i, 0])])
            if i % 10 == 0:
                store.delete([f"k{i - 5}"])
        n = len(store)
    segments = [p for p in os.listdir(tmp_path) if p.endswith(".npy")]
    assert len(segments) <= 2 * math.ceil(math.log2(300))
    with LocalVectorStore(tmp_path, distance_metric="euclidean") as store:
        assert len(store) == n
        assert store.get(["k5", "k6", "k299"]).missing == ("k5",)


def test_writes_are_visible_to_a_new_reader_immediately(tmp_path: Path) -> None:
    with LocalVectorStore(tmp_path, dimension=2) as writer:
        writer.put([rec("a", [1, 0])])
        with LocalVectorStore(tmp_path, read_only=True) as reader:
            assert list(reader.keys()) == ["a"]
            with pytest.raises(ConfigurationError, match="read_only"):
                reader.put([rec("b", [0, 1])])
            with pytest.raises(ConfigurationError, match="read_only"):
                reader.delete(["a"])
        writer.delete(["a"])
        with LocalVectorStore(tmp_path, read_only=True) as reader:
            assert len(reader) == 0


def test_second_writer_in_process_is_refused_until_close(tmp_path: Path) -> None:
    first = LocalVectorStore(tmp_path, dimension=2)
    with pytest.raises(StoreLockedError, match="read_only=True"):
        LocalVectorStore(tmp_path, dimension=2)
    first.close()
    with pytest.raises(ConfigurationError, match="closed"):
        first.put([rec("a", [1, 0])])
    with LocalVectorStore(tmp_path, dimension=2) as second:
        second.put([rec("a", [1, 0])])


def test_second_writer_in_another_process_gets_store_locked_error(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from crossmodal_search.stores import LocalVectorStore
        store = LocalVectorStore({str(tmp_path)!r}, dimension=2)
        print("locked", flush=True)
        sys.stdin.readline()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLockedError):
            LocalVectorStore(tmp_path, dimension=2)
        with LocalVectorStore(tmp_path, read_only=True) as reader:  # readers are not blocked
            assert len(reader) == 0
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    with LocalVectorStore(tmp_path, dimension=2) as store:  # lock released with the process
        assert len(store) == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"dimension": 4}, "dimension 3, not 4"),
        ({"dimension": 3, "distance_metric": "euclidean"}, "'cosine', not 'euclidean'"),
        ({"dimension": 3, "storage_dtype": "float16"}, "float32, not float16"),
        ({"dimension": 3, "non_filterable_metadata_keys": ["other"]}, "non-filterable keys"),
    ],
)
def test_reopen_with_other_settings_is_a_mismatch(
    tmp_path: Path, kwargs: dict[str, Any], fragment: str
) -> None:
    LocalVectorStore(tmp_path, dimension=3).close()
    with pytest.raises(IndexMismatchError, match=fragment):
        LocalVectorStore(tmp_path, **kwargs)
    with LocalVectorStore(tmp_path, dimension=3) as store:  # and the lock was released
        assert len(store) == 0


def test_refuses_foreign_directories_and_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigurationError, match="not empty"):
        LocalVectorStore(tmp_path, dimension=2)
    with pytest.raises(ConfigurationError, match="not a directory"):
        LocalVectorStore(tmp_path / "notes.txt", dimension=2)
    with pytest.raises(ConfigurationError, match="no local vector store"):
        LocalVectorStore(tmp_path / "missing", read_only=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_corrupt_directories_are_clear_errors(tmp_path: Path) -> None:
    with LocalVectorStore(tmp_path, dimension=2) as store:
        store.put([rec("a", [1, 0])])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    [seg] = manifest["segments"]
    npy = tmp_path / f"seg-{seg['id']:08d}.npy"
    data = npy.read_bytes()
    npy.write_bytes(data[:-4])
    with pytest.raises(StoreCorruptedError, match="bytes, expected"):
        LocalVectorStore(tmp_path)
    npy.write_bytes(data)
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(StoreCorruptedError, match="version 99"):
        LocalVectorStore(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(StoreCorruptedError, match="cannot read"):
        LocalVectorStore(tmp_path)


def test_a_lost_manifest_is_an_error_that_deletes_nothing(tmp_path: Path) -> None:
    with LocalVectorStore(tmp_path, dimension=8) as store:
        for start in range(0, 300, 50):
            store.put([rec(f"k{i}", np.eye(8)[i % 8] + 0.1) for i in range(start, start + 50)])
    files = sorted(p.name for p in tmp_path.iterdir())
    (tmp_path / "manifest.json").unlink()
    for read_only in (False, True):
        with pytest.raises(StoreCorruptedError, match="crossmodal store recover") as info:
            LocalVectorStore(tmp_path, dimension=8, read_only=read_only)
        assert info.value.path == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f for f in files if f != "manifest.json"]


def test_orphans_from_an_interrupted_write_are_removed(tmp_path: Path) -> None:
    with LocalVectorStore(tmp_path, dimension=2) as store:
        store.put([rec("a", [1, 0])])
    (tmp_path / "seg-99999999.npy").write_bytes(b"partial")
    (tmp_path / "manifest.json.tmp").write_text("{")
    with LocalVectorStore(tmp_path) as store:
        assert list(store.keys()) == ["a"]
    assert not (tmp_path / "seg-99999999.npy").exists()
    assert not (tmp_path / "manifest.json.tmp").exists()


# ---------------------------------------------------------------- randomised model check


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_random_operations_match_a_dict_model(tmp_path: Path, dtype: Any) -> None:
    rng = random.Random(11)
    nrng = np.random.default_rng(11)
    model: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    path = tmp_path / "s"
    store = LocalVectorStore(path, dimension=6, distance_metric="euclidean", storage_dtype=dtype)
    try:
        for step in range(120):
            if rng.random() < 0.7 or not model:
                batch = {}
                for _ in range(rng.randint(1, 30)):
                    key = f"k{rng.randrange(200)}"
                    md: dict[str, Any] = {"g": rng.randrange(4)}
                    if rng.random() < 0.5:
                        md["tags"] = [f"t{rng.randrange(5)}" for _ in range(rng.randrange(4))]
                    batch[key] = (nrng.normal(size=6).astype(np.float32), md)
                store.put([VectorRecord(k, v, m) for k, (v, m) in batch.items()])
                model.update(batch)
            else:
                doomed = rng.sample(sorted(model), k=min(len(model), rng.randint(1, 20)))
                store.delete([*doomed, "absent"])
                for k in doomed:
                    del model[k]
            if step % 40 == 39:
                store.close()
                store = LocalVectorStore(path, distance_metric="euclidean")
            assert len(store) == len(model)
        assert sorted(store.keys()) == sorted(model)
        for key, (vec, md) in model.items():
            found = store.get([key]).records[0]
            assert found.metadata == md
            tol = 0 if dtype == "float32" else 2e-3 * float(np.abs(vec).max())
            np.testing.assert_allclose(found.vector, vec, rtol=0, atol=tol)
        if dtype == "float32":
            for f in (None, {"g": 2}, {"tags": "t1"}, {"tags": {"$nin": ["t0", "t1"]}}):
                q = nrng.normal(size=6).astype(np.float32)
                got = [(m.key, m.distance) for m in store.query(q, top_k=15, filter=f)]
                want = brute_force(model, q, "euclidean", 15, f)
                assert [k for k, _ in got] == [k for k, _ in want]
                assert [d for _, d in got] == pytest.approx([d for _, d in want], abs=1e-9)
    finally:
        store.close()


def test_read_only_snapshots_stay_consistent_while_a_writer_merges(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            with LocalVectorStore(tmp_path, dimension=2, distance_metric="euclidean") as store:
                for i in range(300):
                    store.put([rec(f"k{i:04d}", [i, 1], i=i)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    LocalVectorStore(tmp_path, dimension=2, distance_metric="euclidean").close()
    writer = threading.Thread(target=write)
    writer.start()
    snapshots = 0
    while not done.is_set() or snapshots == 0:
        with LocalVectorStore(tmp_path, read_only=True) as reader:
            keys = sorted(reader.keys())
            # puts are sequential, so every snapshot is exactly a prefix of the sequence
            assert keys == [f"k{i:04d}" for i in range(len(keys))]
            assert all(r.metadata["i"] == int(r.key[1:]) for r in reader.records())
        snapshots += 1
    writer.join()
    assert not errors
    with LocalVectorStore(tmp_path, read_only=True) as reader:
        assert len(reader) == 300


@pytest.mark.parametrize("module", [_filter, _limits, _local, _matryoshka])
def test_docstring_examples_run(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
