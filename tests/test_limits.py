"""S3 Vectors limits, checked byte-accurately before any write."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from crossmodal_search.errors import (
    DimensionMismatchError,
    InvalidInputError,
    MetadataLimitError,
)
from crossmodal_search.stores import DEFAULT_NON_FILTERABLE_KEYS, StoreLimits, VectorRecord
from crossmodal_search.stores._limits import (
    json_size,
    validate_batch,
    validate_bucket_name,
    validate_dimension,
    validate_index_name,
    validate_non_filterable_keys,
    validate_query,
    validate_query_matrix,
    validate_records,
    validate_top_k,
)

NON_FILTERABLE = frozenset(DEFAULT_NON_FILTERABLE_KEYS)


def check(metadata: dict[str, Any], *, key: str = "rec-1", **kw: Any) -> list[VectorRecord]:
    kw.setdefault("non_filterable", NON_FILTERABLE)
    return validate_records(
        [VectorRecord.create(key, [1.0, 0.0], metadata)],
        dimension=2,
        distance_metric="cosine",
        **kw,
    )


def test_defaults_are_the_s3_vectors_limits() -> None:
    limits = StoreLimits()
    assert (limits.max_dimension, limits.max_key_chars, limits.max_top_k) == (4096, 1024, 100)
    assert (limits.max_filterable_bytes, limits.max_total_metadata_bytes) == (2048, 40960)
    assert (limits.max_metadata_keys, limits.max_non_filterable_keys) == (50, 10)
    assert DEFAULT_NON_FILTERABLE_KEYS == ("text", "description", "image_path", "source_uri")


def test_json_size_is_compact_utf8() -> None:
    assert json_size({"a": "é"}) == len('{"a":"é"}'.encode()) == 10
    assert json_size({"a": [1, 2.5, True]}) == len(b'{"a":[1,2.5,true]}')


# ---------------------------------------------------------------- filterable 2 KB


def test_filterable_limit_is_exactly_2048_bytes() -> None:
    # {"k":"<n chars>"} is 8 + n bytes
    check({"k": "x" * 2040})
    with pytest.raises(MetadataLimitError) as info:
        check({"k": "x" * 2041})
    err = info.value
    assert (err.record_key, err.metadata_key) == ("rec-1", "k")
    assert "2049 bytes" in str(err) and "'rec-1'" in str(err) and "'k'" in str(err)
    assert "non_filterable_metadata_keys" in str(err)


def test_filterable_limit_counts_utf8_bytes_not_characters() -> None:
    check({"k": "é" * 1020})  # 1020 characters, 2040 bytes -> 2048 with the JSON
    with pytest.raises(MetadataLimitError, match="2049 bytes"):
        check({"k": "é" * 1020 + "x"})  # 1021 characters only
    with pytest.raises(MetadataLimitError, match="2052 bytes"):
        check({"k": "😀" * 511})  # 4-byte characters: 2044 + 8


def test_filterable_error_names_the_largest_filterable_key() -> None:
    metadata = {"title": "t" * 900, "notes": "n" * 1500, "description": "d" * 30000}
    with pytest.raises(MetadataLimitError) as info:
        check(metadata)
    assert info.value.metadata_key == "notes"


def test_non_filterable_keys_do_not_count_against_2kb() -> None:
    # The product description that breaks other libraries' writes: fine here by default.
    records = check({"description": "long text " * 3000, "colour": "red"})
    assert records[0].metadata["colour"] == "red"
    with pytest.raises(MetadataLimitError):
        check({"description": "long text " * 300}, non_filterable=frozenset())


# ---------------------------------------------------------------- total 40 KB


def test_total_metadata_limit_is_exactly_40960_bytes() -> None:
    # {"description":"<n>"} is 18 + n bytes
    check({"description": "x" * (40960 - 18)})
    with pytest.raises(MetadataLimitError) as info:
        check({"description": "x" * (40960 - 17)})
    assert (info.value.record_key, info.value.metadata_key) == ("rec-1", "description")
    assert "40961 bytes" in str(info.value)


def test_total_limit_includes_filterable_keys_and_multibyte_text() -> None:
    # 2-byte characters in non-filterable keys plus one small filterable key:
    # {"description":"<38000 B>","text":"<2924 B>","c":"x"} = 40960 bytes exactly.
    meta = {"description": "ü" * 19000, "text": "ß" * 1462, "c": "x"}
    assert json_size(meta) == 40960
    check(meta)
    meta["c"] = "xé"  # one more character, two more bytes
    with pytest.raises(MetadataLimitError, match="40962 bytes") as info:
        check(meta)
    assert info.value.metadata_key == "description"  # the largest key, the one to shrink


# ---------------------------------------------------------------- keys


def test_fifty_metadata_keys_allowed_fifty_one_rejected() -> None:
    check({f"k{i:02d}": i for i in range(50)})
    with pytest.raises(MetadataLimitError, match="51 metadata keys") as info:
        check({f"k{i:02d}": i for i in range(51)})
    assert info.value.record_key == "rec-1"
    assert info.value.metadata_key == "k50"


def test_ten_non_filterable_keys_per_index() -> None:
    assert len(validate_non_filterable_keys([f"n{i}" for i in range(10)])) == 10
    with pytest.raises(MetadataLimitError, match="11 non-filterable"):
        validate_non_filterable_keys([f"n{i}" for i in range(11)])
    with pytest.raises(MetadataLimitError):
        check({}, non_filterable=frozenset(f"n{i}" for i in range(11)))
    with pytest.raises(InvalidInputError, match="not a single string"):
        validate_non_filterable_keys("description")
    assert (
        len(validate_non_filterable_keys([f"n{i}" for i in range(20)], StoreLimits.relaxed())) == 20
    )


def test_metadata_key_names_are_1_to_63_characters() -> None:
    check({"k" * 63: 1})
    with pytest.raises(MetadataLimitError) as info:
        check({"k" * 64: 1})
    assert info.value.metadata_key == "k" * 64
    with pytest.raises(MetadataLimitError):
        check({"": 1})
    with pytest.raises(MetadataLimitError, match="must be a string"):
        check({1: 1})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "holds None"),
        (float("nan"), "holds nan"),
        (float("inf"), "holds inf"),
        (np.float64("nan"), "holds nan"),
        ({"nested": 1}, "holds a dict"),
        ([1, {"a": 1}], "holds a dict"),
        ([1, None], "holds None"),
        ([[1, 2]], "holds a list"),
        (b"bytes", "holds a bytes"),
        ({1, 2}, "holds a set"),
        (np.zeros((2, 2)), "2-D array"),
        ("\udcff", "not valid UTF-8"),
        (10**400, "beyond the range"),
    ],
)
def test_invalid_metadata_values_name_record_and_key(value: Any, fragment: str) -> None:
    with pytest.raises(MetadataLimitError) as info:
        check({"ok": 1, "bad": value})
    assert fragment in str(info.value)
    assert (info.value.record_key, info.value.metadata_key) == ("rec-1", "bad")


def test_metadata_is_converted_to_plain_python() -> None:
    [rec] = check(
        {
            "i": np.int64(3),
            "f": np.float32(1.5),
            "b": np.bool_(True),
            "s": np.str_("x"),
            "l": (np.int32(1), "a", np.float64(2.0)),
            "a": np.array([1, 2]),
        }
    )
    md = rec.metadata
    assert md == {"i": 3, "f": 1.5, "b": True, "s": "x", "l": [1, "a", 2.0], "a": [1, 2]}
    assert [type(md[k]) for k in ("i", "f", "b", "s", "l")] == [int, float, bool, str, list]
    assert [type(v) for v in md["a"]] == [int, int]  # type: ignore[union-attr]
    json.dumps(md)  # plain JSON, as boto3 needs


# ---------------------------------------------------------------- record keys and vectors


def test_vector_keys() -> None:
    check({}, key="k" * 1024)
    check({}, key="é" * 1024)  # characters, not bytes
    with pytest.raises(InvalidInputError, match="1025 characters"):
        check({}, key="k" * 1025)
    with pytest.raises(InvalidInputError, match="must not be empty"):
        check({}, key="")
    with pytest.raises(InvalidInputError, match="must be a string"):
        check({}, key=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="UTF-8"):
        check({}, key="a\ud800")
    check({}, key="k" * 5000, limits=StoreLimits.relaxed())


def test_duplicate_keys_in_one_write_are_rejected() -> None:
    recs = [VectorRecord.create("a", [1, 0]), VectorRecord.create("a", [0, 1])]
    with pytest.raises(InvalidInputError, match="'a' appears twice"):
        validate_records(recs, dimension=2, distance_metric="cosine")


@pytest.mark.parametrize(
    ("vector", "error", "fragment"),
    [
        ([1.0, float("nan")], InvalidInputError, "NaN or infinity"),
        ([float("-inf"), 1.0], InvalidInputError, "NaN or infinity"),
        ([1e39, 1.0], InvalidInputError, "beyond float32"),  # overflows float32
        ([0.0, 0.0], InvalidInputError, "all-zero"),
        ([1.0, 0.0, 0.0], DimensionMismatchError, "3 dimensions, the index has 2"),
        ([[1.0, 0.0]], InvalidInputError, "must be 1-D"),
        (["a", "b"], InvalidInputError, "not numeric"),
    ],
)
def test_bad_vectors(vector: Any, error: type[Exception], fragment: str) -> None:
    recs = [
        VectorRecord.create("good", [1, 1]),
        VectorRecord("bad", vector, {}),
    ]
    with pytest.raises(error) as info:
        validate_records(recs, dimension=2, distance_metric="cosine")
    assert fragment in str(info.value)
    assert "'bad'" in str(info.value)


def test_dimension_mismatch_carries_expected_and_actual() -> None:
    with pytest.raises(DimensionMismatchError) as info:
        validate_records([VectorRecord.create("a", [1] * 5)], dimension=4, distance_metric="cosine")
    assert (info.value.expected, info.value.actual) == (4, 5)


def test_zero_vector_allowed_on_euclidean() -> None:
    [rec] = validate_records(
        [VectorRecord.create("z", [0, 0])], dimension=2, distance_metric="euclidean"
    )
    assert rec.vector.dtype == np.float32 and rec.vector.shape == (2,)


def test_not_a_record_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="expected VectorRecord"):
        validate_records([("a", [1, 0])], dimension=2, distance_metric="cosine")  # type: ignore[list-item]


def test_validate_batch_returns_one_float32_matrix() -> None:
    batch = validate_batch(
        [VectorRecord.create(str(i), np.arange(3, dtype=np.float64) + i) for i in range(4)],
        dimension=3,
        distance_metric="euclidean",
    )
    assert batch.keys == ["0", "1", "2", "3"]
    assert batch.vectors.dtype == np.float32 and batch.vectors.shape == (4, 3)
    assert [r.key for r in batch.records()] == batch.keys


def test_relaxed_limits_lift_sizes_but_not_validity() -> None:
    relaxed = StoreLimits.relaxed()
    check({f"k{i}": "x" * 3000 for i in range(60)}, limits=relaxed)
    with pytest.raises(MetadataLimitError):
        check({"k": None}, limits=relaxed)
    with pytest.raises(InvalidInputError):
        validate_records(
            [VectorRecord.create("a", [0, 0])],
            dimension=2,
            distance_metric="cosine",
            limits=relaxed,
        )


# ---------------------------------------------------------------- queries and configuration


@pytest.mark.parametrize("top_k", [0, -1, 101, True, 1.5, "10", None])
def test_bad_top_k(top_k: Any) -> None:
    with pytest.raises(InvalidInputError, match="top_k"):
        validate_query([1.0, 0.0], top_k, 2)


def test_query_validation() -> None:
    vec = validate_query([1, 2], 100, 2)
    assert vec.dtype == np.float32 and vec.tolist() == [1.0, 2.0]
    assert validate_top_k(5000, StoreLimits.relaxed()) == 5000
    with pytest.raises(DimensionMismatchError):
        validate_query([1, 2, 3], 1, 2)
    with pytest.raises(InvalidInputError, match="NaN"):
        validate_query([1, float("nan")], 1, 2)
    with pytest.raises(InvalidInputError, match="all-zero"):
        validate_query([0, 0], 1, 2, distance_metric="cosine")
    validate_query([0, 0], 1, 2, distance_metric="euclidean")
    mat = validate_query_matrix([[1, 2], [3, 4]], 1, 2)
    assert mat.shape == (2, 2)
    with pytest.raises(InvalidInputError, match="query 1"):
        validate_query_matrix([[1, 2], [0, 0]], 1, 2, distance_metric="cosine")
    with pytest.raises(InvalidInputError, match="2-D"):
        validate_query_matrix([1, 2], 1, 2)


@pytest.mark.parametrize("dimension", [0, 4097, True, 2.0, "8"])
def test_bad_dimension(dimension: Any) -> None:
    with pytest.raises(InvalidInputError, match="dimension"):
        validate_dimension(dimension)


def test_dimension_bounds() -> None:
    assert validate_dimension(1) == 1 and validate_dimension(np.int64(4096)) == 4096
    assert validate_dimension(10_000, StoreLimits.relaxed()) == 10_000


@pytest.mark.parametrize("name", ["abc", "shop-vectors", "a" * 63, "0-9"])
def test_valid_bucket_names(name: str) -> None:
    assert validate_bucket_name(name) == name


@pytest.mark.parametrize(
    "name", ["ab", "a" * 64, "Shop", "shop_vectors", "-shop", "shop-", "shop.vectors", "", 5]
)
def test_invalid_bucket_names(name: Any) -> None:
    with pytest.raises(InvalidInputError, match="bucket name"):
        validate_bucket_name(name)


@pytest.mark.parametrize("name", ["products", "v1.products", "a-b.c"])
def test_valid_index_names(name: str) -> None:
    assert validate_index_name(name) == name


@pytest.mark.parametrize("name", ["pr", "Products", "products.", ".products", "a_b", "a" * 64])
def test_invalid_index_names(name: str) -> None:
    with pytest.raises(InvalidInputError, match="index name"):
        validate_index_name(name)
