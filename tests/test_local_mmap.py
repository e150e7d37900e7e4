"""A local store opened with ``memory_map``: its segment files are mapped, not read, and it
answers exactly what the same store read into memory answers, through writes, deletes, readers
and damage."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossmodal_search.errors import (
    ConfigurationError,
    InvalidInputError,
    StoreCorruptedError,
)
from crossmodal_search.stores import (
    LocalVectorStore,
    StoreLimits,
    VectorRecord,
    check_local_store,
)
from tests.exact_helpers import near_ties, pairs

D = 24


def _records(start: int, stop: int, seed: int = 0) -> list[VectorRecord]:
    rows, _ = near_ties(stop - start, D, seed=seed + start)
    return [
        VectorRecord(f"k{i:05d}", rows[i - start], {"part": i % 5, "tags": [f"t{i % 3}"]})
        for i in range(start, stop)
    ]


def _build(path: Path, **options: Any) -> None:
    """Several segments (a base, later puts, an overwrite and deletes), as writes leave them."""
    with LocalVectorStore(path, dimension=D, limits=StoreLimits.relaxed(), **options) as store:
        store.put(_records(0, 2000))
        store.put(_records(2000, 2300))
        store.put(_records(10, 20, seed=99))  # overwrites keys of the base
        store.delete(["k00005", "k02100"])
        store.put(_records(2300, 2350))


def _answers(store: LocalVectorStore, queries: np.ndarray) -> list[Any]:
    out: list[Any] = []
    for flt in (None, {"part": 1}, {"part": {"$ne": 3}}, {"tags": "t2"}):
        out.append([pairs(m) for m in store.query_many(queries, top_k=10, filter=flt)])
        out.append([pairs(store.query(q, top_k=7, filter=flt)) for q in queries])
    return out


def _snapshot(store: LocalVectorStore) -> dict[str, Any]:
    return {r.key: (r.vector.tolist(), dict(r.metadata)) for r in store.records()}


def _queries() -> np.ndarray:
    _, q = near_ties(10, D, seed=0)
    rng = np.random.default_rng(1)
    return (q[None, :] + 1e-3 * rng.standard_normal((4, D))).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_mapped_store_answers_what_the_store_in_memory_answers(
    tmp_path: Path, metric: str, dtype: str
) -> None:
    _build(tmp_path, distance_metric=metric, storage_dtype=dtype)
    queries = _queries()
    opts: dict[str, Any] = {"read_only": True, "limits": StoreLimits.relaxed()}
    with LocalVectorStore(tmp_path, memory_map=False, **opts) as read:
        want, snap, size = _answers(read, queries), _snapshot(read), len(read)
    with LocalVectorStore(tmp_path, memory_map=True, **opts) as mapped:
        assert "(not read yet)" in repr(mapped)
        assert _answers(mapped, queries) == want
        assert _snapshot(mapped) == snap and len(mapped) == size == 2348


def test_writes_to_a_mapped_store_never_touch_its_mapped_files(tmp_path: Path) -> None:
    with LocalVectorStore(tmp_path, dimension=D, limits=StoreLimits.relaxed()) as store:
        store.put(_records(0, 3000))
    base = next(tmp_path.glob("seg-*.npy"))
    crc = zlib.crc32(base.read_bytes())
    reference = LocalVectorStore(dimension=D, limits=StoreLimits.relaxed())
    reference.put(_records(0, 3000))
    with LocalVectorStore(tmp_path, memory_map=True, limits=StoreLimits.relaxed()) as store:
        for target in (store, reference):
            target.put(_records(100, 110, seed=7))  # overwrite mapped rows
            target.put(_records(3000, 3020))  # new rows after the mapped ones
            target.delete([f"k{i:05d}" for i in range(0, 3020, 97)])  # holes filled by moves
            target.put(_records(5000, 5003))
        assert _answers(store, _queries()) == _answers(reference, _queries())
        assert _snapshot(store) == _snapshot(reference)
        assert zlib.crc32(base.read_bytes()) == crc  # copy-on-write: the file is as written
    assert check_local_store(tmp_path).ok
    with LocalVectorStore(tmp_path, memory_map=True, limits=StoreLimits.relaxed()) as again:
        assert _snapshot(again) == _snapshot(reference)


def test_a_mapped_reader_follows_the_writer_through_merges(tmp_path: Path) -> None:
    writer = LocalVectorStore(tmp_path, dimension=D, limits=StoreLimits.relaxed())
    writer.put(_records(0, 1000))
    reader = LocalVectorStore(
        tmp_path, read_only=True, memory_map=True, limits=StoreLimits.relaxed()
    )
    assert len(reader) == 1000
    for start in range(1000, 4000, 500):  # enough puts for a merge into a new base
        writer.put(_records(start, start + 500))
        writer.delete([f"k{start - 1:05d}"])
        assert _snapshot(reader) == _snapshot(writer)
    assert len(json.loads((tmp_path / "manifest.json").read_text())["segments"]) < 7
    reader.close()
    writer.close()


def test_a_mapped_open_checks_sizes_and_leaves_checksums_to_store_check(tmp_path: Path) -> None:
    _build(tmp_path)
    segments = json.loads((tmp_path / "manifest.json").read_text())["segments"]
    vectors = tmp_path / f"seg-{segments[0]['id']:08d}.npy"
    data = bytearray(vectors.read_bytes())
    data[-3] ^= 0x40  # a flipped bit in a vector: same size
    vectors.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptedError, match="checksum"):
        LocalVectorStore(tmp_path, memory_map=False)
    with LocalVectorStore(tmp_path, read_only=True, memory_map=True) as mapped:
        assert len(mapped) == 2348  # opened: vector checksums are not read on open
    report = check_local_store(tmp_path)
    assert not report.ok and "checksum" in report.summary()
    # A truncated file changes its size: refused on open, before anything is read.
    vectors.write_bytes(bytes(data[:-8]))
    with pytest.raises(StoreCorruptedError, match="bytes, expected"):
        LocalVectorStore(tmp_path, read_only=True, memory_map=True)


def test_damaged_records_of_a_mapped_store_fail_its_first_call(tmp_path: Path) -> None:
    _build(tmp_path)
    segments = json.loads((tmp_path / "manifest.json").read_text())["segments"]
    records = tmp_path / f"seg-{segments[0]['id']:08d}.jsonl"
    data = bytearray(records.read_bytes())
    data[40] ^= 0x01
    records.write_bytes(bytes(data))
    store = LocalVectorStore(tmp_path, read_only=True, memory_map=True)
    for _ in range(2):  # and every call after it: nothing half-read is served
        with pytest.raises(StoreCorruptedError):
            store.query(np.ones(D, dtype=np.float32))
    store.close()


def test_memory_map_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="directory"):
        LocalVectorStore(dimension=D, memory_map=True)
    with pytest.raises(ConfigurationError, match="accelerator"):
        LocalVectorStore(tmp_path, dimension=D, memory_map=True, accelerator="funnel")
    with pytest.raises(InvalidInputError, match="memory_map"):
        LocalVectorStore(tmp_path, dimension=D, memory_map="yes")  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())  # refused before the directory was touched


def test_a_mapped_writer_merges_its_mapped_rows_into_a_new_base(tmp_path: Path) -> None:
    with LocalVectorStore(tmp_path, dimension=D, limits=StoreLimits.relaxed()) as store:
        store.put(_records(0, 1000))
    reference = LocalVectorStore(dimension=D, limits=StoreLimits.relaxed())
    reference.put(_records(0, 1000))
    with LocalVectorStore(tmp_path, memory_map=True, limits=StoreLimits.relaxed()) as store:
        for start in range(1000, 3000, 250):  # the merges reach the mapped base
            for target in (store, reference):
                target.put(_records(start, start + 250))
                target.delete([f"k{start - 500:05d}"])
        segments = json.loads((tmp_path / "manifest.json").read_text())["segments"]
        assert segments[0]["id"] > 1  # the first segment was rewritten
        assert _snapshot(store) == _snapshot(reference)
    assert check_local_store(tmp_path).ok
    with LocalVectorStore(tmp_path, memory_map=True, read_only=True) as again:
        assert _snapshot(again) == _snapshot(reference)
        assert _answers(again, _queries()) == _answers(reference, _queries())
