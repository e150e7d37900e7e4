"""Matryoshka truncation: smaller stores from larger Nova-dimension vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossmodal_search.errors import InvalidInputError
from crossmodal_search.stores import (
    LocalVectorStore,
    VectorRecord,
    copy_truncated,
    truncate_dimension,
)
from crossmodal_search.stores._matryoshka import truncated_records


def test_truncates_and_renormalises_one_vector() -> None:
    out = truncate_dimension([3.0, 4.0, 100.0, -7.0], 2)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.6, 0.8], rtol=1e-7)


def test_truncates_a_matrix_row_by_row() -> None:
    rng = np.random.default_rng(0)
    full = rng.normal(size=(20, 3072))
    for dim in (256, 384, 1024, 3072):
        out = truncate_dimension(full, dim)
        assert out.shape == (20, dim)
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
        expected = full[:, :dim] / np.linalg.norm(full[:, :dim], axis=1, keepdims=True)
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def test_truncation_preserves_order_when_the_prefix_carries_the_signal() -> None:
    # Matryoshka-style vectors: most energy in the leading components.
    rng = np.random.default_rng(1)
    weights = 1.0 / np.arange(1, 513)
    base = rng.normal(size=(200, 512)) * weights
    query = base[7] + rng.normal(size=512) * weights * 0.05
    full = np.linalg.norm(base - query, axis=1).argsort()[:5]
    small = truncate_dimension(base, 64)
    q = truncate_dimension(query, 64)
    short = np.linalg.norm(small - q, axis=1).argsort()[:5]
    assert full[0] == short[0] == 7


@pytest.mark.parametrize(
    ("vectors", "dim", "fragment"),
    [
        ([1.0, 2.0], 3, "dim must be an int in 1..2"),
        ([1.0, 2.0], 0, "dim must be"),
        ([1.0, 2.0], True, "dim must be"),
        ([[[1.0]]], 1, "shape"),
        ([0.0, 0.0, 1.0], 2, "all zero"),
        ([float("nan"), 1.0], 1, "NaN"),
        (["a"], 1, "not numeric"),
    ],
)
def test_bad_input(vectors: Any, dim: Any, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        truncate_dimension(vectors, dim)


def test_truncated_records_keep_keys_and_metadata() -> None:
    records = [VectorRecord.create(f"k{i}", [i + 1, 1, 5, 5], {"i": i}) for i in range(10)]
    out = list(truncated_records(records, 2, batch_size=3))
    assert [r.key for r in out] == [r.key for r in records]
    assert [r.metadata for r in out] == [r.metadata for r in records]
    assert all(r.vector.shape == (2,) for r in out)


def test_copy_truncated_builds_a_smaller_store(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    big = LocalVectorStore(dimension=48)
    big.put(
        [
            VectorRecord(f"k{i}", rng.normal(size=48).astype(np.float32), {"i": i})
            for i in range(1200)
        ]
    )
    with LocalVectorStore(tmp_path / "small", dimension=16) as small:
        assert copy_truncated(big, small, batch_size=500) is small
        assert len(small) == 1200
        rec = small.get(["k3"]).records[0]
        np.testing.assert_allclose(
            rec.vector, truncate_dimension(big.get(["k3"]).records[0].vector, 16), rtol=1e-6
        )
        assert rec.metadata == {"i": 3}
    built = copy_truncated(big, lambda d: LocalVectorStore(dimension=d), 8)
    assert (built.dimension, len(built)) == (8, 1200)
    with pytest.raises(InvalidInputError, match="dim is required"):
        copy_truncated(big, lambda d: LocalVectorStore(dimension=d))
    with pytest.raises(InvalidInputError, match=r"dim must be in 1\.\.48"):
        copy_truncated(big, lambda d: LocalVectorStore(dimension=d), 64)
    with pytest.raises(InvalidInputError, match="has dimension 8, expected 4"):
        copy_truncated(big, LocalVectorStore(dimension=8), 4)
