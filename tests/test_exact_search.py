"""The local store's exact search: batches, near-ties, vectors far from unit length, scan copies.

A query is answered in two steps: a first pass (float32, float16 rows, or a 16-bit scan copy of
float32 rows) picks candidates within a bound of the k-th best, then candidates are ranked in
float64. These tests check the answers against a float64 brute force over the stored vectors,
where the first pass is most likely to go wrong.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from crossmodal_search.errors import ConfigurationError, InvalidInputError
from crossmodal_search.stores import LocalVectorStore, VectorRecord, open_store
from tests.exact_helpers import build, exact_reference, exact_references, near_ties, pairs

METRICS = ("cosine", "euclidean")
# How the first pass reads the rows: float32 rows, float16 rows, or a float32 store's copy.
DTYPES = ("float32", "float16", "float32+bfloat16", "float32+float16")


def near_tie_batch(
    n: int, d: int, queries: int, *, seed: int, equal_norms: bool
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Near-tie rows around one direction, and queries a hair away from it (each still faces
    rows whose distances differ by ~1e-5 at the top)."""
    rows, q = near_ties(n, d, seed=seed, equal_norms=equal_norms)
    rng = np.random.default_rng(seed + 100)
    batch = q[None, :] + 1e-4 * rng.standard_normal((queries, d)).astype(np.float32)
    return rows, batch.astype(np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_a_batch_returns_the_exact_top_k_on_near_ties(metric: str, dtype: str) -> None:
    # 20k rows: enough 128-row blocks for the batch's one-pass selection (4 x top_k blocks).
    rows, batch = near_tie_batch(20_000, 64, 6, seed=5, equal_norms=metric == "euclidean")
    store = build(rows, metric, dtype)
    keys = sorted(r.key for r in store.records())
    part1 = [k for i, k in enumerate(keys) if i % 3 == 1]
    # No filter and filters keeping 2/3 and 1/3 (every row multiplied, then selected; the
    # gathered plans are covered by tests/test_filter_selection.py).
    for flt, allowed in ((None, None), ({"part": {"$ne": 1}}, None), ({"part": 1}, part1)):
        many = store.query_many(batch, top_k=10, filter=flt)
        assert [pairs(m) for m in many] == [
            pairs(store.query(q, top_k=10, filter=flt)) for q in batch
        ]
        wanted = allowed
        if flt == {"part": {"$ne": 1}}:
            wanted = [k for i, k in enumerate(keys) if i % 3 != 1]
        assert [[m.key for m in ms] for ms in many] == exact_references(store, batch, 10, wanted)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("magnitude", [1e-35, 1e-20, 1e20, 1e35])
def test_vectors_far_from_unit_length_are_ranked_exactly(
    metric: str, dtype: str, magnitude: float
) -> None:
    # float32 products of such vectors overflow or underflow: the answer must not change.
    rng = np.random.default_rng(6)
    base = rng.standard_normal((6000, 16))
    rows = (base * magnitude).astype(np.float32)
    store = build(rows, metric, dtype)
    queries = (base[:3] * magnitude + 0.01 * magnitude * rng.standard_normal((3, 16))).astype(
        np.float32
    )
    many = store.query_many(queries, top_k=5)
    for q, matches in zip(queries, many, strict=True):
        assert [m.key for m in matches] == exact_reference(store, q, 5)
        assert pairs(store.query(q, top_k=5)) == pairs(matches)
        assert all(np.isfinite(m.distance) for m in matches)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_a_store_mixing_tiny_and_huge_vectors_is_ranked_exactly(metric: str, dtype: str) -> None:
    rng = np.random.default_rng(7)
    base = rng.standard_normal((6000, 16))
    scales = 10.0 ** rng.uniform(-30, 30, size=(6000, 1))
    rows = (base * scales).astype(np.float32)
    store = build(rows, metric, dtype)
    for i in (0, 1, 2, 3):
        q = (base[i] * scales[i] * (1 + 1e-3 * rng.standard_normal(16))).astype(np.float32)
        assert [m.key for m in store.query(q, top_k=5)] == exact_reference(store, q, 5)


SCANS = ("bfloat16", "float16")


@pytest.mark.parametrize("scan", SCANS)
@pytest.mark.parametrize("metric", METRICS)
def test_a_scan_copy_returns_what_the_float32_scan_returns(metric: str, scan: str) -> None:
    rows, batch = near_tie_batch(20_000, 64, 5, seed=8, equal_norms=metric == "euclidean")
    plain = build(rows, metric, "float32")
    fast = build(rows, metric, f"float32+{scan}")
    assert fast.scan_dtype == scan and plain.scan_dtype is None
    for flt in (None, {"part": {"$ne": 1}}, {"part": 1}):
        for top_k in (1, 10, 100):
            want = [pairs(m) for m in plain.query_many(batch, top_k=top_k, filter=flt)]
            assert [pairs(m) for m in fast.query_many(batch, top_k=top_k, filter=flt)] == want
            assert [pairs(fast.query(q, top_k=top_k, filter=flt)) for q in batch] == want


@pytest.mark.parametrize("scan", SCANS)
def test_a_scan_copy_follows_puts_deletes_and_growth(scan: str) -> None:
    rng = np.random.default_rng(9)
    rows = rng.standard_normal((3000, 32)).astype(np.float32)
    plain = build(rows, "cosine", "float32")
    fast = build(rows, "cosine", f"float32+{scan}")
    queries = rng.standard_normal((4, 32)).astype(np.float32)
    fast.query_many(queries)  # builds the copy; everything below must keep it in step

    def same() -> None:
        assert [pairs(m) for m in fast.query_many(queries, top_k=20)] == [
            pairs(m) for m in plain.query_many(queries, top_k=20)
        ]

    # New rows right at the queries (past the current capacity), overwritten rows, deletes
    # that move tail rows into the holes.
    fresh = [VectorRecord.create(f"new{i}", q * 3) for i, q in enumerate(queries)]
    fresh += [
        VectorRecord.create(f"more{i}", v)
        for i, v in enumerate(rng.standard_normal((2000, 32)).astype(np.float32))
    ]
    overwritten = [VectorRecord.create(f"k{i:05d}", -queries[i % 4]) for i in range(0, 60, 3)]
    for store in (plain, fast):
        store.put(fresh)
    same()
    for store in (plain, fast):
        store.put(overwritten)
    same()
    for store in (plain, fast):
        store.delete(["new0", "k00003", *(f"k{i:05d}" for i in range(100, 900, 7))])
    same()
    assert "new0" not in [m.key for m in fast.query(queries[0], top_k=5)]


@pytest.mark.parametrize("scan", SCANS)
def test_a_reopened_store_builds_its_copy_from_disk(tmp_path: Path, scan: str) -> None:
    rng = np.random.default_rng(10)
    rows = rng.standard_normal((2000, 16)).astype(np.float32)
    queries = rng.standard_normal((3, 16)).astype(np.float32)
    with LocalVectorStore(tmp_path / "s", dimension=16) as store:
        store.put([VectorRecord.create(f"k{i}", v) for i, v in enumerate(rows)])
        want = [pairs(m) for m in store.query_many(queries, top_k=8)]
    for read_only in (False, True):
        with LocalVectorStore(tmp_path / "s", scan_dtype=scan, read_only=read_only) as store:  # type: ignore[arg-type]
            assert store.scan_dtype == scan
            assert [pairs(m) for m in store.query_many(queries, top_k=8)] == want
    # Nothing about the copy is written: the directory opens as before without the option.
    with LocalVectorStore(tmp_path / "s") as store:
        assert store.scan_dtype is None
        assert [pairs(m) for m in store.query_many(queries, top_k=8)] == want


def test_scan_dtype_is_checked_before_the_directory_is_touched(tmp_path: Path) -> None:
    target = tmp_path / "never"
    with pytest.raises(InvalidInputError, match="scan_dtype must be None, 'bfloat16' or 'float16'"):
        LocalVectorStore(target, dimension=4, scan_dtype="int8")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="scan_dtype and accelerator"):
        LocalVectorStore(target, dimension=4, scan_dtype="bfloat16", accelerator="funnel")
    with pytest.raises(ConfigurationError, match="needs float32 storage"):
        LocalVectorStore(target, dimension=4, storage_dtype="float16", scan_dtype="bfloat16")
    assert not target.exists()
    # A float16 store is its own float16 scan: asking for one is not an error.
    kept = LocalVectorStore(dimension=4, storage_dtype="float16", scan_dtype="float16")
    assert kept.storage_dtype == "float16" and kept.scan_dtype is None
    opened = open_store("memory:", dimension=4, scan_dtype="bfloat16")
    assert isinstance(opened, LocalVectorStore) and opened.scan_dtype == "bfloat16"


def test_a_float16_directory_reopened_with_a_bfloat16_copy_is_refused_and_left_unlocked(
    tmp_path: Path,
) -> None:
    LocalVectorStore(tmp_path / "s", dimension=4, storage_dtype="float16").close()
    with pytest.raises(ConfigurationError, match="holds float16 vectors"):
        LocalVectorStore(tmp_path / "s", scan_dtype="bfloat16")
    with LocalVectorStore(tmp_path / "s") as store:  # the failed open released its lock
        store.put([VectorRecord.create("a", [1, 0, 0, 0])])


def test_a_scan_copy_without_numkong_is_a_clear_error() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["numkong"] = None
        from crossmodal_search.stores import LocalVectorStore
        from crossmodal_search.errors import ConfigurationError
        try:
            LocalVectorStore(dimension=4, scan_dtype="bfloat16")
        except ConfigurationError as exc:
            print(type(exc).__name__, exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.startswith("ConfigurationError scan_dtype='bfloat16' needs the numkong")
