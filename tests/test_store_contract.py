"""One contract, three stores: LocalVectorStore in memory, in a directory, and S3VectorsStore.

Every test runs on each store (parametrised ``store`` fixture) against an independent numpy
reference, and the congruence tests run the same records, queries and 150 generated filters on
all three at once and require identical results. The S3 store talks to ``FakeS3Vectors`` through
a real boto3 client, so botocore's serialisation and parsing sit in the middle.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossmodal_search._types import DistanceMetric
from crossmodal_search.errors import CrossmodalSearchError
from crossmodal_search.stores import (
    LocalVectorStore,
    QueryMatch,
    S3VectorsStore,
    VectorRecord,
    VectorStore,
)
from crossmodal_search.testing import FakeS3Vectors

KINDS = ("memory", "directory", "s3vectors")
DIM = 16
ATOL = 1e-5

StoreFactory = Callable[..., VectorStore]
#: kind -> ``open(dimension=..., **kw)``; the live suite adds a real S3 Vectors index as one more.
StoreOpeners = dict[str, Callable[..., VectorStore]]


def offline_store_openers(tmp_path: Path) -> StoreOpeners:
    """Openers of the three offline kinds (``KINDS``), stores under ``tmp_path``."""
    counter = itertools.count()

    def memory(*, dimension: int, **kw: Any) -> VectorStore:
        return LocalVectorStore(dimension=dimension, **kw)

    def directory(*, dimension: int, **kw: Any) -> VectorStore:
        return LocalVectorStore(tmp_path / f"store-{next(counter)}", dimension=dimension, **kw)

    def s3vectors(*, dimension: int, **kw: Any) -> VectorStore:
        return S3VectorsStore(
            "shop-vectors",
            f"index-{next(counter)}",
            client=FakeS3Vectors().client(),
            dimension=dimension,
            **kw,
        )

    return {"memory": memory, "directory": directory, "s3vectors": s3vectors}


@pytest.fixture
def store_openers(tmp_path: Path) -> StoreOpeners:
    """How to open each kind of store; every store in this module is opened through these."""
    return offline_store_openers(tmp_path)


@pytest.fixture
def open_store_of_kind(store_openers: StoreOpeners) -> Iterator[Callable[..., VectorStore]]:
    """``open(kind, dimension=..., **kw)`` for any kind in ``store_openers``; closes them after."""
    opened: list[Any] = []

    def open_(kind: str, *, dimension: int = DIM, **kw: Any) -> VectorStore:
        store = store_openers[kind](dimension=dimension, **kw)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture(params=KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The kind of store one parametrisation of the contract runs on."""
    kind: str = request.param
    return kind


@pytest.fixture
def make_store(store_kind: str, open_store_of_kind: Any) -> StoreFactory:
    """A factory for the store kind of this parametrisation."""

    def make(**kw: Any) -> VectorStore:
        store: VectorStore = open_store_of_kind(store_kind, **kw)
        return store

    return make


@pytest.fixture
def all_stores(
    open_store_of_kind: Any, store_openers: StoreOpeners
) -> Callable[..., list[tuple[str, VectorStore]]]:
    """One store of each kind in ``store_openers``, configured alike, with its kind."""

    def make(**kw: Any) -> list[tuple[str, VectorStore]]:
        return [(kind, open_store_of_kind(kind, **kw)) for kind in store_openers]

    return make


# -- data and an independent reference ----------------------------------------------------

COLORS = ("red", "blue", "green", "black", "white")
TAGS = ("sale", "new", "eco", "gift", "xl")
BRANDS = ("acme", "globex", "initech")


def catalog(n: int, *, seed: int = 7, dim: int = DIM) -> list[VectorRecord]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    out = []
    for i in range(n):
        md: dict[str, Any] = {
            "color": str(rng.choice(COLORS)),
            "price": float(rng.integers(1, 40)) * 5.0,
            "in_stock": bool(rng.random() < 0.6),
        }
        if rng.random() < 0.8:
            md["tags"] = sorted({str(t) for t in rng.choice(TAGS, size=int(rng.integers(1, 4)))})
        if rng.random() < 0.7:
            md["rating"] = int(rng.integers(1, 6))
        if rng.random() < 0.5:
            # A field whose type varies between records: strings, numbers and booleans.
            md["code"] = [str(rng.choice(BRANDS)), int(rng.integers(0, 3)), True][i % 3]
        out.append(VectorRecord.create(f"sku-{i:04d}", vectors[i], md))
    return out


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _same(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return float(a) == float(b)  # type: ignore[arg-type]
    return isinstance(a, str) and isinstance(b, str) and a == b


_ORDER = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def _ref_op(field: str, op: str, operand: Any, md: Mapping[str, Any]) -> bool:
    if op == "$exists":
        return (field in md) is bool(operand)
    if op == "$ne":
        return not _ref_op(field, "$eq", operand, md)
    if op == "$nin":
        return not _ref_op(field, "$in", operand, md)
    if field not in md:
        return False
    values = md[field] if isinstance(md[field], list) else [md[field]]
    if op == "$eq":
        return any(_same(v, operand) for v in values)
    if op == "$in":
        return any(_same(v, o) for v in values for o in operand)
    return any(_is_number(v) and _ORDER[op](v, operand) for v in values)


def ref_matches(flt: Mapping[str, Any], md: Mapping[str, Any]) -> bool:
    """The documented S3 Vectors filter semantics, written independently of the library."""
    for key, value in flt.items():
        if key == "$and":
            ok = all(ref_matches(f, md) for f in value)
        elif key == "$or":
            ok = any(ref_matches(f, md) for f in value)
        elif isinstance(value, dict):
            ok = all(_ref_op(key, op, operand, md) for op, operand in value.items())
        else:
            ok = _ref_op(key, "$eq", value, md)
        if not ok:
            return False
    return True


def ref_query(
    recs: Sequence[VectorRecord],
    q: np.ndarray[Any, Any],
    top_k: int,
    metric: DistanceMetric,
    flt: Mapping[str, Any] | None = None,
) -> list[tuple[str, float]]:
    rows = [r for r in recs if flt is None or ref_matches(flt, r.metadata)]
    if not rows:
        return []
    x = np.stack([r.vector for r in rows]).astype(np.float64)
    q64 = np.asarray(q, dtype=np.float64)
    if metric == "cosine":
        d = 1.0 - (x @ q64) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q64))
    else:
        d = np.linalg.norm(x - q64, axis=1)
    ranked = sorted(zip(d.tolist(), (r.key for r in rows), strict=True))
    return [(k, dist) for dist, k in ranked[:top_k]]


def assert_matches_equal(
    got: Sequence[QueryMatch], expected: Sequence[tuple[str, float]], *, context: object = ""
) -> None:
    assert [m.key for m in got] == [k for k, _ in expected], context
    np.testing.assert_allclose(
        [m.distance for m in got], [d for _, d in expected], atol=ATOL, err_msg=str(context)
    )


# -- generated filters -----------------------------------------------------------------------


def _value_for(field: str, rng: np.random.Generator) -> Any:
    roll = rng.random()
    if roll < 0.1:  # a value of another type than the field usually holds
        return [1, "red", True, 2.5][int(rng.integers(0, 4))]
    if field == "color":
        return str(rng.choice(COLORS))
    if field == "tags":
        return str(rng.choice(TAGS))
    if field == "price":
        # Prices are stored as floats; an int operand must still match (JSON numbers: 25 == 25.0).
        return (
            int(rng.integers(1, 40)) * 5 if rng.random() < 0.5 else float(rng.integers(1, 40)) * 5
        )

    if field == "rating":
        return int(rng.integers(0, 7))
    if field == "in_stock":
        return bool(rng.random() < 0.5)
    return [str(rng.choice(BRANDS)), int(rng.integers(0, 3)), bool(rng.random() < 0.5)][
        int(rng.integers(0, 3))
    ]


FIELDS = ("color", "tags", "price", "rating", "in_stock", "code", "missing_field")
FIELD_WEIGHTS = np.array([3, 3, 4, 4, 2, 3, 0.5]) / 19.5
NUMERIC_FIELDS = ("price", "rating", "code")
OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "shorthand")


def _operand(op: str, field: str, rng: np.random.Generator) -> Any:
    if op in _ORDER:
        return round(float(rng.uniform(0, 210)), 2) if field == "price" else int(rng.integers(0, 7))
    if op in ("$in", "$nin"):
        return [_value_for(field, rng) for _ in range(int(rng.integers(1, 4)))]
    if op == "$exists":
        return bool(rng.random() < 0.5)
    return _value_for(field, rng)


def _field_clause(rng: np.random.Generator) -> dict[str, Any]:
    field = str(rng.choice(FIELDS, p=FIELD_WEIGHTS))
    op = str(rng.choice(OPS))
    if op in _ORDER and rng.random() < 0.85:  # mostly on numbers, sometimes on other types
        field = str(rng.choice(NUMERIC_FIELDS))
    if op == "shorthand":
        return {field: _value_for(field, rng)}
    ops = {op: _operand(op, field, rng)}
    if op in _ORDER and rng.random() < 0.3:  # a range: two operators on one field
        other = {"$gt": "$lt", "$gte": "$lte", "$lt": "$gt", "$lte": "$gte"}[op]
        ops[other] = _operand(other, field, rng)
    return {field: ops}


def random_filter(rng: np.random.Generator, depth: int = 0) -> dict[str, Any]:
    roll = rng.random()
    if depth < 2 and roll < 0.3:
        logical = "$and" if rng.random() < 0.5 else "$or"
        return {logical: [random_filter(rng, depth + 1) for _ in range(int(rng.integers(1, 4)))]}
    if depth < 2 and roll < 0.4:  # implicit AND of two different fields
        first, second = _field_clause(rng), _field_clause(rng)
        if set(first) != set(second):
            return {**first, **second}
    return _field_clause(rng)


GENERATED_FILTERS = [random_filter(np.random.default_rng(1000 + i)) for i in range(150)]


# -- the contract, on each store ---------------------------------------------------------------


def test_properties(make_store: StoreFactory) -> None:
    store = make_store(
        dimension=12, distance_metric="euclidean", non_filterable_metadata_keys=["body"]
    )
    assert store.dimension == 12
    assert store.distance_metric == "euclidean"
    assert store.non_filterable_metadata_keys == frozenset({"body"})
    assert isinstance(store, VectorStore)


def test_put_is_an_upsert(make_store: StoreFactory) -> None:
    store = make_store()
    store.put([VectorRecord.create("a", np.ones(DIM), {"v": 1})])
    store.put([VectorRecord.create("a", np.arange(1, DIM + 1), {"v": 2, "tags": ["x", "y"]})])

    got = store.get(["a"])
    assert list(store.keys()) == ["a"]
    np.testing.assert_array_equal(got.records[0].vector, np.arange(1, DIM + 1, dtype=np.float32))
    assert got.records[0].metadata == {"v": 2, "tags": ["x", "y"]}


def test_get_keeps_the_order_asked_and_reports_missing(make_store: StoreFactory) -> None:
    store = make_store()
    recs = catalog(30)
    store.put(recs)
    asked = ["sku-0020", "nope", "sku-0003", "sku-0020", "", "sku-0029"]

    got = store.get(asked)

    assert [r.key for r in got.records] == ["sku-0020", "sku-0003", "sku-0020", "sku-0029"]
    assert got.missing == ("nope", "")
    by_key = {r.key: r for r in recs}
    for r in got.records:
        np.testing.assert_array_equal(r.vector, by_key[r.key].vector)
        assert r.metadata == by_key[r.key].metadata


def test_delete_removes_records_and_ignores_unknown_keys(make_store: StoreFactory) -> None:
    store = make_store()
    recs = catalog(20)
    store.put(recs)

    store.delete(["sku-0001", "sku-0005", "never-stored"])

    assert sorted(store.keys()) == sorted(
        r.key for r in recs if r.key not in ("sku-0001", "sku-0005")
    )
    assert store.get(["sku-0001"]).missing == ("sku-0001",)
    hits = store.query(recs[1].vector, top_k=100)
    assert "sku-0001" not in {m.key for m in hits}


def test_records_iterates_everything(make_store: StoreFactory) -> None:
    store = make_store()
    recs = {r.key: r for r in catalog(50)}
    store.put(recs.values())
    listed = {r.key: r for r in store.records()}
    assert listed.keys() == recs.keys()
    for key, r in listed.items():
        np.testing.assert_array_equal(r.vector, recs[key].vector)
        assert r.metadata == recs[key].metadata


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_query_orders_best_first_with_the_metric_distance(
    make_store: StoreFactory, metric: DistanceMetric
) -> None:
    store = make_store(distance_metric=metric)
    recs = catalog(120)
    store.put(recs)
    rng = np.random.default_rng(3)
    for _ in range(5):
        q = rng.normal(size=DIM).astype(np.float32)
        for top_k in (1, 10, 100):
            assert_matches_equal(
                store.query(q, top_k=top_k), ref_query(recs, q, top_k, metric), context=top_k
            )


def test_query_many_equals_one_query_per_row(make_store: StoreFactory) -> None:
    store: Any = make_store()
    recs = catalog(60)
    store.put(recs)
    queries = np.random.default_rng(4).normal(size=(5, DIM)).astype(np.float32)
    flt = {"in_stock": True}
    assert store.query_many(queries, top_k=7, filter=flt) == [
        store.query(q, top_k=7, filter=flt) for q in queries
    ]


def test_query_returns_metadata_including_lists(make_store: StoreFactory) -> None:
    store = make_store()
    store.put([VectorRecord.create("a", np.ones(DIM), {"tags": ["red", "xl"], "n": 3, "f": 2.5})])
    (match,) = store.query(np.ones(DIM), top_k=1)
    assert match.metadata == {"tags": ["red", "xl"], "n": 3, "f": 2.5}
    assert abs(match.distance) < ATOL


def test_list_valued_fields_match_any_element(make_store: StoreFactory) -> None:
    store = make_store()
    store.put(
        [
            VectorRecord.create("a", np.ones(DIM), {"tags": ["documentary", "romance"]}),
            VectorRecord.create("b", np.ones(DIM), {"tags": ["comedy"]}),
            VectorRecord.create("c", np.ones(DIM), {"tags": "documentary"}),
        ]
    )

    def keys(flt: dict[str, Any]) -> list[str]:
        return sorted(m.key for m in store.query(np.ones(DIM), top_k=10, filter=flt))

    assert keys({"tags": {"$eq": "documentary"}}) == ["a", "c"]
    assert keys({"tags": "romance"}) == ["a"]
    assert keys({"tags": {"$in": ["comedy", "romance"]}}) == ["a", "b"]
    assert keys({"tags": {"$nin": ["documentary"]}}) == ["b"]


def test_query_on_an_empty_store_and_top_k_above_count(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.query(np.ones(DIM), top_k=5) == []
    store.put(catalog(3))
    assert len(store.query(np.ones(DIM), top_k=100)) == 3


# -- congruence: the same answers from all three stores -----------------------------------------


def test_generated_filters_cover_the_language() -> None:
    """The generator is not degenerate: every operator appears and results vary."""
    text = repr(GENERATED_FILTERS)
    for op in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$and", "$or"):
        assert f"'{op}'" in text, op
    recs = catalog(300)
    counts = [sum(ref_matches(f, r.metadata) for r in recs) for f in GENERATED_FILTERS]
    assert sum(c == 0 for c in counts) >= 5
    assert sum(0 < c < len(recs) for c in counts) >= 90
    assert sum(c > 100 for c in counts) >= 40  # top-k ranking matters under the filter


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_generated_filters_give_identical_results_on_every_store(
    all_stores: Callable[..., list[tuple[str, VectorStore]]], metric: DistanceMetric
) -> None:
    recs = catalog(300)
    stores = all_stores(distance_metric=metric)
    for _, store in stores:
        store.put(recs)
    rng = np.random.default_rng(11)
    for i, flt in enumerate(GENERATED_FILTERS):
        q = rng.normal(size=DIM).astype(np.float32)
        expected = ref_query(recs, q, 100, metric, flt)
        results = [(kind, store.query(q, top_k=100, filter=flt)) for kind, store in stores]
        for kind, got in results:
            assert_matches_equal(got, expected, context=(i, kind, flt))
            # Metadata comes back identically too (types included: JSON keeps int vs float).
            assert [m.metadata for m in got] == [m.metadata for m in results[0][1]], (kind, flt)


def _put_nan(s: VectorStore) -> None:
    s.put([VectorRecord.create("a", [np.nan] * DIM)])


BAD_CALLS: list[tuple[str, Callable[[VectorStore], object]]] = [
    ("wrong dimension", lambda s: s.put([VectorRecord.create("a", np.ones(DIM + 1))])),
    ("NaN", _put_nan),
    ("zero vector", lambda s: s.put([VectorRecord.create("a", np.zeros(DIM))])),
    ("empty key", lambda s: s.put([VectorRecord.create("", np.ones(DIM))])),
    ("key too long", lambda s: s.put([VectorRecord.create("k" * 1025, np.ones(DIM))])),
    (
        "filterable metadata over 2 KB",
        lambda s: s.put([VectorRecord.create("a", np.ones(DIM), {"title": "x" * 2100})]),
    ),
    (
        "None in metadata",
        lambda s: s.put([VectorRecord.create("a", np.ones(DIM), {"x": None})]),  # type: ignore[dict-item]
    ),
    ("query dimension", lambda s: s.query(np.ones(DIM - 1))),
    ("query zero", lambda s: s.query(np.zeros(DIM))),
    ("top_k 0", lambda s: s.query(np.ones(DIM), top_k=0)),
    ("top_k 101", lambda s: s.query(np.ones(DIM), top_k=101)),
    ("unknown operator", lambda s: s.query(np.ones(DIM), filter={"a": {"$regex": "x"}})),
    ("empty $in", lambda s: s.query(np.ones(DIM), filter={"a": {"$in": []}})),
    ("$gt on a string", lambda s: s.query(np.ones(DIM), filter={"a": {"$gt": "b"}})),
    ("empty filter", lambda s: s.query(np.ones(DIM), filter={})),
    ("non-filterable key", lambda s: s.query(np.ones(DIM), filter={"description": "x"})),
    ("get with a string", lambda s: s.get("sku-0001")),
    ("get with a number", lambda s: s.get([1])),  # type: ignore[list-item]
    ("delete with a number", lambda s: s.delete([1])),  # type: ignore[list-item]
]


@pytest.mark.parametrize("call", [c[1] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_gives_the_same_error_on_every_store_and_changes_nothing(
    all_stores: Callable[..., list[tuple[str, VectorStore]]], call: Callable[[VectorStore], object]
) -> None:
    stores = all_stores()
    recs = catalog(5)
    errors = {}
    for kind, store in stores:
        store.put(recs)
        with pytest.raises(CrossmodalSearchError) as info:
            call(store)
        errors[kind] = (type(info.value), str(info.value))
        assert sorted(store.keys()) == sorted(r.key for r in recs)
    assert len(set(errors.values())) == 1, errors


def test_code_outside_the_project_gets_identical_results_from_both_stores() -> None:
    """The issue's 'done when': an injected s3vectors client and a local store, same answers."""
    import boto3

    from crossmodal_search.stores import LocalVectorStore as Local
    from crossmodal_search.stores import S3VectorsStore as S3

    c = boto3.client(
        "s3vectors",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="example",
    )
    FakeS3Vectors().attach(c)
    s3 = S3("shop-vectors", "products", client=c, dimension=8)
    local = Local(dimension=8)
    rng = np.random.default_rng(5)
    recs = [
        VectorRecord.create(
            f"p{i}", rng.normal(size=8), {"color": COLORS[i % 5], "price": float(i)}
        )
        for i in range(40)
    ]
    s3.put(recs)
    local.put(recs)
    for flt in (
        None,
        {"color": "red"},
        {"price": {"$lt": 20}},
        {"$or": [{"color": "blue"}, {"price": {"$gte": 35}}]},
    ):
        q = rng.normal(size=8)
        a, b = s3.query(q, top_k=10, filter=flt), local.query(q, top_k=10, filter=flt)
        assert [m.key for m in a] == [m.key for m in b]
        np.testing.assert_allclose([m.distance for m in a], [m.distance for m in b], atol=ATOL)
        assert [m.metadata for m in a] == [m.metadata for m in b]
    local.close()
