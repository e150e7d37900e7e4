"""The S3 Vectors filter language: validation, per-record evaluation, vectorised masks."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossmodal_search.errors import InvalidFilterError, InvalidInputError
from crossmodal_search.stores import (
    MetadataColumns,
    compile_filter,
    filter_mask,
    matches,
    validate_filter,
)
from crossmodal_search.stores._filter import normalize_filter

CATALOG: list[dict[str, Any]] = [
    {"genre": "drama", "year": 2019, "tags": ["red", "xl"], "stock": True},  # 0
    {"genre": "comedy", "year": 2021, "tags": ["blue"], "stock": False},  # 1
    {"genre": "drama", "year": 2023.5, "tags": [], "price": 10},  # 2
    {"genre": "documentary", "year": "2020", "tags": "red"},  # 3 year is a string
    {},  # 4 nothing at all
    {"genre": "Drama", "year": 1, "tags": [1, "red", True], "stock": 1},  # 5 mixed kinds
]


def evaluate(filter: dict[str, Any], catalog: list[dict[str, Any]] = CATALOG) -> list[int]:
    """Rows matching ``filter``; asserts both evaluators agree."""
    per_record = [i for i, md in enumerate(catalog) if matches(filter, md)]
    mask = filter_mask(filter, catalog)
    assert mask.dtype == np.bool_
    assert mask.shape == (len(catalog),)
    assert np.flatnonzero(mask).tolist() == per_record
    return per_record


# ---------------------------------------------------------------- every operator


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ({"genre": "drama"}, [0, 2]),  # shorthand, case-sensitive
        ({"genre": {"$eq": "drama"}}, [0, 2]),
        ({"genre": {"$ne": "drama"}}, [1, 3, 4, 5]),  # missing field: $ne is true
        ({"year": {"$gt": 2019}}, [1, 2]),  # the string "2020" never compares
        ({"year": {"$gte": 2019}}, [0, 1, 2]),
        ({"year": {"$lt": 2021}}, [0, 5]),
        ({"year": {"$lte": 2021}}, [0, 1, 5]),
        ({"year": {"$gte": 2021.0, "$lt": 2023.5}}, [1]),  # several operators: AND
        ({"genre": {"$in": ["comedy", "documentary"]}}, [1, 3]),
        ({"genre": {"$nin": ["comedy", "documentary"]}}, [0, 2, 4, 5]),
        ({"price": {"$exists": True}}, [2]),
        ({"price": {"$exists": False}}, [0, 1, 3, 4, 5]),
        ({"stock": True}, [0]),  # True is not 1
        ({"stock": 1}, [5]),  # and 1 is not True
        ({"year": 2019.0}, [0]),  # numbers compare as doubles
        ({"year": "2020"}, [3]),  # strings never equal numbers
        ({"year": 2020}, []),
    ],
)
def test_operators_on_scalar_fields(filter: dict[str, Any], expected: list[int]) -> None:
    assert evaluate(filter) == expected


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ({"tags": "red"}, [0, 3, 5]),  # any element matches
        ({"tags": {"$eq": "blue"}}, [1]),
        ({"tags": {"$in": ["blue", "xl"]}}, [0, 1]),
        ({"tags": {"$ne": "red"}}, [1, 2, 4]),  # no element equal (and missing)
        ({"tags": {"$nin": ["red", "blue"]}}, [2, 4]),
        ({"tags": {"$exists": True}}, [0, 1, 2, 3, 5]),  # an empty list exists
        ({"tags": True}, [5]),
        ({"tags": 1}, [5]),
        ({"tags": {"$gt": 0}}, [5]),  # ordering looks at numeric elements only
    ],
)
def test_list_fields_match_any_element(filter: dict[str, Any], expected: list[int]) -> None:
    assert evaluate(filter) == expected


def test_missing_field_fails_everything_but_negations() -> None:
    empty: dict[str, Any] = {}
    assert not matches({"x": "a"}, empty)
    assert not matches({"x": {"$in": ["a"]}}, empty)
    assert not matches({"x": {"$gt": 0}}, empty)
    assert not matches({"x": {"$lte": 0}}, empty)
    assert not matches({"x": {"$exists": True}}, empty)
    assert matches({"x": {"$ne": "a"}}, empty)
    assert matches({"x": {"$nin": ["a"]}}, empty)
    assert matches({"x": {"$exists": False}}, empty)


def test_logical_operators_and_implicit_and() -> None:
    assert evaluate({"$and": [{"genre": "drama"}, {"year": {"$gte": 2020}}]}) == [2]
    assert evaluate({"genre": "drama", "year": {"$gte": 2020}}) == [2]  # implicit AND
    assert evaluate({"$or": [{"genre": "comedy"}, {"price": {"$exists": True}}]}) == [1, 2]
    nested = {"$or": [{"$and": [{"genre": "drama"}, {"tags": "red"}]}, {"stock": False}]}
    assert evaluate(nested) == [0, 1]
    assert evaluate({"$and": [{"genre": "drama"}], "$or": [{"tags": "xl"}, {"price": 10}]}) == [
        0,
        2,
    ]


def test_numeric_equality_uses_doubles_on_both_paths() -> None:
    catalog = [{"n": 2**53}, {"n": 2**53 + 1}, {"n": 3}]
    # 2**53 + 1 is not representable as a double: both evaluators see it as 2**53.
    assert evaluate({"n": 2**53}, catalog) == [0, 1]
    assert evaluate({"n": {"$in": [3, 4.0]}}, catalog) == [2]


def test_long_lists_match_any_element() -> None:
    catalog: list[dict[str, Any]] = [
        {"t": [f"w{j}" for j in range(40)]},
        {"t": "w3"},
        {"t": list(range(25))},
    ]
    assert evaluate({"t": "w39"}, catalog) == [0]
    assert evaluate({"t": {"$in": ["w3", 24]}}, catalog) == [0, 1, 2]
    assert evaluate({"t": {"$nin": ["w0"]}}, catalog) == [1, 2]
    assert evaluate({"t": {"$gte": 24}}, catalog) == [2]


def test_integers_beyond_double_range_never_match() -> None:
    catalog = [{"n": 10**400}, {"n": 5}]
    assert evaluate({"n": {"$gt": 0}}, catalog) == [1]
    assert evaluate({"n": {"$ne": 5}}, catalog) == [0]
    with pytest.raises(InvalidFilterError):
        validate_filter({"n": 10**400})


def test_compiled_filter_reports_fields_and_is_reusable() -> None:
    compiled = compile_filter({"$or": [{"a": 1}, {"b": {"$exists": False}}]})
    assert compiled.fields == {"a", "b"}
    assert compiled.matches({"a": 1}) and compiled.matches({}) and not compiled.matches({"b": 2})
    columns = MetadataColumns.from_metadata([{"a": 1}, {"b": 2}, {}])
    assert compiled.mask(columns).tolist() == [True, False, True]
    assert filter_mask(compiled, columns).tolist() == [True, False, True]


def test_numpy_scalars_accepted_and_normalised_for_boto3() -> None:
    raw = {"year": {"$gte": np.int64(2020)}, "tags": {"$in": [np.str_("red"), np.float32(1.5)]}}
    assert matches(raw, {"year": 2021, "tags": ["red"]})
    plain = normalize_filter(raw)
    assert plain == {"year": {"$gte": 2020}, "tags": {"$in": ["red", 1.5]}}
    assert type(plain["year"]["$gte"]) is int
    assert type(plain["tags"]["$in"][1]) is float


# ---------------------------------------------------------------- invalid filters


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ({}, "empty filter"),
        ({"a": {}}, "empty operator"),
        ({"a": {"$regex": "x"}}, "unknown operator"),
        ({"a": {"$startswith": "x"}}, "unknown operator"),
        ({"a": {"$gt": "2020"}}, "$gt takes a finite number"),
        ({"a": {"$lte": True}}, "$lte takes a finite number"),
        ({"a": {"$lt": float("nan")}}, "finite number"),
        ({"a": {"$gte": None}}, "finite number"),
        ({"a": {"$eq": [1, 2]}}, "$eq takes a string, number or boolean"),
        ({"a": {"$ne": None}}, "$ne takes"),
        ({"a": {"$eq": {"b": 1}}}, "$eq takes"),
        ({"a": {"$eq": float("inf")}}, "finite"),
        ({"a": {"$in": []}}, "non-empty list"),
        ({"a": {"$in": "red"}}, "non-empty list"),
        ({"a": {"$nin": [["x"]]}}, "$nin takes a string, number or boolean"),
        ({"a": {"$in": [None]}}, "$in takes"),
        ({"a": {"$exists": 1}}, "$exists takes true or false"),
        ({"a": {"$exists": "yes"}}, "$exists"),
        ({"$and": []}, "non-empty list of filters"),
        ({"$or": {"a": 1}}, "non-empty list of filters"),
        ({"$and": ["a"]}, "must be filter objects"),
        ({"$and": [{}]}, "empty filter"),
        ({"$or": [{"a": {"$bad": 1}}]}, "unknown operator"),
        ({"$eq": 1}, "not allowed here"),
        ({"$not": {"a": 1}}, "not allowed here"),
        ({"a": {"$and": [{"b": 1}]}}, "cannot be used inside a field"),
        ({"a": {"b": 1}}, "nested objects"),
        ({"a": {"$eq": 1, "b": 2}}, "nested objects"),
        ({"a": [1, 2]}, "use {'a': {'$in'"),
        ({"a": None}, "got null"),
        ({"": 1}, "must not be empty"),
        ({1: 2}, "keys must be strings"),
    ],
)
def test_invalid_filters_raise(filter: Any, message: str) -> None:
    with pytest.raises(InvalidFilterError) as info:
        validate_filter(filter)
    assert message in str(info.value)
    assert isinstance(info.value, InvalidInputError)  # catchable as bad input / ValueError
    with pytest.raises(InvalidFilterError):
        matches(filter, {"a": 1})
    with pytest.raises(InvalidFilterError):
        filter_mask(filter, [{"a": 1}])


@pytest.mark.parametrize("filter", [None, "genre=drama", [{"a": 1}], 42])
def test_non_mapping_filter_raises(filter: Any) -> None:
    with pytest.raises(InvalidFilterError, match="must be an object"):
        validate_filter(filter)


def test_non_filterable_keys_cannot_be_filtered() -> None:
    validate_filter({"description": "x"})
    for filter in (
        {"description": "x"},
        {"description": {"$exists": True}},
        {"$or": [{"a": 1}, {"description": {"$ne": "x"}}]},
    ):
        with pytest.raises(InvalidFilterError, match="'description' is declared non-filterable"):
            validate_filter(filter, non_filterable=frozenset({"description"}))


def test_deeply_nested_filter_is_rejected_not_a_recursion_error() -> None:
    filter: dict[str, Any] = {"a": 1}
    for _ in range(200):
        filter = {"$and": [filter]}
    with pytest.raises(InvalidFilterError, match="nested deeper"):
        validate_filter(filter)


def test_error_names_the_path_to_the_bad_part() -> None:
    with pytest.raises(InvalidFilterError, match=r"\$or\[1\]\.price\.\$gt"):
        validate_filter({"$or": [{"a": 1}, {"price": {"$gt": "cheap"}}]})


# ---------------------------------------------------------------- columns under mutation


def test_columns_stay_correct_under_set_move_and_resize() -> None:
    rows = [{"k": i % 3, "t": [f"t{i}", "all"] * (i % 4)} for i in range(20)]
    cols = MetadataColumns(non_filterable={"ignored"})
    cols.resize(len(rows))
    for i, md in enumerate(rows):
        cols.set_row(i, {**md, "ignored": "x" * 100})
    # overwrite a row with a longer list (widens the column) and one dropping a key
    rows[3] = {"k": 7, "t": [f"w{j}" for j in range(9)]}
    rows[4] = {"t": "solo"}
    cols.set_row(3, rows[3])
    cols.set_row(4, rows[4])
    # swap-remove rows 0 and 5 using the last two rows, then shrink
    cols.move_rows([18, 19], [0, 5])
    rows[0], rows[5] = rows[18], rows[19]
    del rows[18:]
    cols.resize(18)
    assert cols.column("ignored") is None
    for filter in (
        {"k": 0},
        {"k": {"$ne": 1}},
        {"t": "all"},
        {"t": {"$in": ["w8", "solo"]}},
        {"t": {"$nin": ["all"]}},
        {"k": {"$exists": False}},
        {"k": {"$gte": 2}},
    ):
        expected = [i for i, md in enumerate(rows) if matches(filter, md)]
        assert np.flatnonzero(filter_mask(filter, cols)).tolist() == expected, filter


# ---------------------------------------------------------------- generated cross-check

FIELDS = ["a", "b", "c", "d", "e", "f"]
STRINGS = ["x", "y", "z", "", "é", "1"]


def _random_value(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(STRINGS)
    if kind == 1:
        return rng.randint(-3, 3)
    if kind == 2:
        return rng.choice([-1.5, 0.0, 0.5, 2.0, 3.0])
    if kind == 3:
        return rng.choice([True, False])
    return [rng.choice([*STRINGS[:3], 1, 2, 2.5, True, False]) for _ in range(rng.randrange(0, 4))]


def _random_catalog(seed: int, n: int = 80) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{f: _random_value(rng) for f in FIELDS if rng.random() < 0.7} for _ in range(n)]


scalars = st.one_of(
    st.sampled_from(STRINGS),
    st.integers(-3, 3),
    st.sampled_from([-1.5, 0.0, 0.5, 2.0, 2.5]),
    st.booleans(),
)
numbers = st.one_of(st.integers(-3, 3), st.sampled_from([-1.5, 0.0, 0.5, 2.0, 2.5]))
field_names = st.sampled_from([*FIELDS, "missing"])
operator_specs = st.one_of(
    st.builds(lambda v: {"$eq": v}, scalars),
    st.builds(lambda v: {"$ne": v}, scalars),
    st.builds(lambda op, v: {op: v}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), numbers),
    st.builds(lambda v: {"$in": v}, st.lists(scalars, min_size=1, max_size=4)),
    st.builds(lambda v: {"$nin": v}, st.lists(scalars, min_size=1, max_size=4)),
    st.builds(lambda v: {"$exists": v}, st.booleans()),
    st.builds(lambda lo, hi: {"$gte": lo, "$lte": hi}, numbers, numbers),
    st.builds(lambda v: {"$startsWith": v}, st.sampled_from([s[:2] for s in STRINGS if s])),
)
leaf_filters = st.one_of(
    st.builds(lambda f, v: {f: v}, field_names, scalars),
    st.builds(lambda f, spec: {f: spec}, field_names, operator_specs),
    st.dictionaries(field_names, st.one_of(scalars, operator_specs), min_size=2, max_size=3),
)
filters = st.recursive(
    leaf_filters,
    lambda children: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(children, min_size=1, max_size=3)),
    ),
    max_leaves=8,
)

_CATALOGS = [_random_catalog(seed) for seed in range(3)]
_COLUMNS = [MetadataColumns.from_metadata(c) for c in _CATALOGS]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(filter=filters, which=st.integers(0, len(_CATALOGS) - 1))
def test_vectorised_mask_agrees_with_matches(filter: dict[str, Any], which: int) -> None:
    catalog = _CATALOGS[which]
    expected = [matches(filter, md) for md in catalog]
    assert filter_mask(filter, _COLUMNS[which]).tolist() == expected


def test_starts_with_is_a_case_sensitive_prefix_on_string_elements() -> None:
    catalog: list[dict[str, Any]] = [
        {"sku": "WH-1000XM5"},  # 0
        {"sku": "wh-1000xm4"},  # 1 other case
        {"sku": ["AB-1", "WH-2"]},  # 2 any element
        {"sku": 1000},  # 3 a number never matches
        {},  # 4 missing
        {"sku": "XWH-1"},  # 5 not a prefix
    ]
    assert evaluate({"sku": {"$startsWith": "WH-"}}, catalog) == [0, 2]
    assert evaluate({"sku": {"$startsWith": "WH-1000"}}, catalog) == [0]
    assert evaluate({"sku": {"$startsWith": "ZZ"}}, catalog) == []
    assert evaluate({"$or": [{"sku": {"$startsWith": "wh"}}, {"sku": 1000}]}, catalog) == [1, 3]


@pytest.mark.parametrize("operand", ["", 5, None, ["WH"], True])
def test_starts_with_takes_a_non_empty_string(operand: object) -> None:
    with pytest.raises(InvalidFilterError, match=r"\$startsWith takes a non-empty string"):
        validate_filter({"sku": {"$startsWith": operand}})


def test_starts_with_is_refused_for_classic_indexes_before_any_call() -> None:
    validate_filter({"sku": {"$startsWith": "WH"}}, index_mode="ENHANCED")
    with pytest.raises(InvalidFilterError, match=r"needs an ENHANCED index.*update_index_mode"):
        validate_filter({"$and": [{"a": 1}, {"sku": {"$startsWith": "WH"}}]}, index_mode="CLASSIC")


def test_enhanced_indexes_take_at_most_100_constraints() -> None:
    assert compile_filter({"a": 1, "b": {"$gte": 1, "$lt": 5}}).constraints == 3
    assert compile_filter({"$or": [{"a": 1}, {"$and": [{"b": 2}, {"c": 3}]}]}).constraints == 3
    assert compile_filter({"a": {"$in": list(range(500))}}).constraints == 1
    compile_filter({"$or": [{"k": i} for i in range(100)]})
    many = {"$or": [{"k": i} for i in range(101)]}
    with pytest.raises(InvalidFilterError, match=r"101 constraints.*at most 100"):
        compile_filter(many)
    # CLASSIC indexes filter during the search and are not documented to cap the count.
    assert compile_filter(many, index_mode="CLASSIC").constraints == 101
