"""The full-text and hybrid contract (``TextSearchStore``), on every store that implements it.

Rankings are checked against an independent Lucene BM25 and an exact Reciprocal Rank Fusion
written here from the formulas, on a corpus of distinct lowercase ASCII words that any reasonable
analyzer splits the same way. Order and membership are compared, never absolute scores across
stores. Local conventions the S3 Vectors documentation does not fix, and which every store here
shares: term statistics (IDF, average length) are the whole index's even under a filter (as in
Lucene), a full-text query over several keys ranks by the sum of BM25 scores, hybrid fuses the
top ``top_k`` of each ranking with ``k = 60``, and ties go by key.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossmodal_search.errors import (
    CrossmodalSearchError,
    DimensionMismatchError,
    InvalidFilterError,
    InvalidInputError,
)
from crossmodal_search.stores import (
    LocalVectorStore,
    S3VectorsStore,
    TextField,
    TextMatch,
    TextSearchStore,
    VectorRecord,
)
from crossmodal_search.testing import FakeS3Vectors

DIM = 8
K1, B, RRF = 1.2, 0.75, 60
#: Every store that implements TextSearchStore (the S3 Vectors one against FakeS3Vectors).
TEXT_KINDS = ("memory", "directory", "s3vectors")
FIELDS = (TextField("title"), TextField("brand"))

#: Made-up words: lowercase ASCII, no stop word, nothing any stemmer would touch the same way.
_SYLLABLES = ("ka", "lo", "mi", "nu", "pe", "ra", "si", "tu", "vo", "ze")
WORDS = tuple(a + b + "x" for a, b in itertools.product(_SYLLABLES, repeat=2))
BRANDS = ("acmex", "globx", "inix", "umbrx")
COLORS = ("red", "blue", "green")

TextOpener = Callable[..., TextSearchStore]


def text_store_openers(tmp_path: Path) -> dict[str, TextOpener]:
    """How to open each kind of text search store (the live suite adds a real index)."""
    counter = itertools.count()

    def s3vectors(**kw: Any) -> TextSearchStore:
        return S3VectorsStore(
            "shop-vectors", f"text-{next(counter)}", client=FakeS3Vectors().client(), **kw
        )

    def memory(**kw: Any) -> TextSearchStore:
        return LocalVectorStore(**kw)

    def directory(**kw: Any) -> TextSearchStore:
        return LocalVectorStore(tmp_path / f"text-{next(counter)}", **kw)

    return {"s3vectors": s3vectors, "memory": memory, "directory": directory}


@pytest.fixture
def text_openers(tmp_path: Path) -> dict[str, TextOpener]:
    openers = text_store_openers(tmp_path)
    return {kind: openers[kind] for kind in TEXT_KINDS}


@pytest.fixture
def open_text_store(
    text_openers: dict[str, TextOpener],
) -> Iterator[Callable[..., TextSearchStore]]:
    opened: list[TextSearchStore] = []

    def open_(kind: str, **kw: Any) -> TextSearchStore:
        kw.setdefault("dimension", DIM)
        kw.setdefault("text_fields", FIELDS)
        store = text_openers[kind](**kw)
        opened.append(store)
        settle(store)
        return store

    yield open_
    for store in opened:
        store.close()


def settle(store: TextSearchStore) -> None:
    """Wait for S3 Vectors to finish building text fields (at once offline)."""
    if isinstance(store, S3VectorsStore):
        assert store.wait_for_text_fields(timeout=600, poll_interval=2), store.text_fields


@pytest.fixture
def exact_scores() -> bool:
    """Whether the stores' absolute scores are ours to check (the live suite says no: AWS does
    not document its BM25 constants or RRF's ``k``), beyond order and membership."""
    return True


@pytest.fixture(params=TEXT_KINDS)
def text_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make_text_store(
    text_kind: str, open_text_store: Callable[..., TextSearchStore]
) -> Callable[..., TextSearchStore]:
    return lambda **kw: open_text_store(text_kind, **kw)


@pytest.fixture
def every_text_store(
    open_text_store: Callable[..., TextSearchStore], text_openers: dict[str, TextOpener]
) -> Callable[..., list[tuple[str, TextSearchStore]]]:
    return lambda **kw: [(kind, open_text_store(kind, **kw)) for kind in text_openers]


# -- corpus and independent references ------------------------------------------------------------


def corpus(n: int = 60, *, seed: int = 3) -> list[VectorRecord]:
    """Titles of 1-8 words drawn Zipf-like (so term frequencies and IDF vary), a brand, a color."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(WORDS) + 1) ** 0.9
    weights /= weights.sum()
    vectors = rng.normal(size=(n, DIM))
    out = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 9)), p=weights))
        metadata: dict[str, Any] = {"title": title, "color": COLORS[i % 3], "rank": i}
        if i % 7:
            metadata["brand"] = str(BRANDS[i % 4])
        out.append(VectorRecord.create(f"sku-{i:03d}", vectors[i], metadata))
    return out


def tokens(value: object) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [t for v in value if isinstance(v, str) for t in v.split()]
    return []


def ref_bm25(
    records: Sequence[VectorRecord], key: str, text: str, allowed: set[str] | None = None
) -> dict[str, float]:
    """Lucene BM25 (k1 1.2, b 0.75, idf ln(1 + (N - n + .5)/(n + .5)), OR semantics) of every
    record holding a query word; statistics over the whole index, candidates among ``allowed``."""
    docs = {r.key: tokens(r.metadata.get(key)) for r in records}
    docs = {k: t for k, t in docs.items() if t}
    if not docs:
        return {}
    n_docs = len(docs)
    avgdl = sum(len(t) for t in docs.values()) / n_docs
    df = Counter(term for t in docs.values() for term in set(t))
    out: dict[str, float] = {}
    for k, t in docs.items():
        if allowed is not None and k not in allowed:
            continue
        tf = Counter(t)
        score, hit = 0.0, False
        for term in set(text.split()):
            if tf[term]:
                hit = True
                idf = math.log(1 + (n_docs - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf[term] / (tf[term] + K1 * (1 - B + B * len(t) / avgdl))
        if hit:
            out[k] = score
    return out


def ref_distances(
    records: Sequence[VectorRecord], vector: np.ndarray[Any, Any], allowed: set[str] | None
) -> dict[str, float]:
    q = vector / np.linalg.norm(vector)
    return {
        r.key: 1.0 - float(np.dot(r.vector, q) / np.linalg.norm(r.vector))
        for r in records
        if allowed is None or r.key in allowed
    }


def ranking(scores: Mapping[str, float], *, higher_first: bool = True) -> list[str]:
    """Best first; scores equal to 9 decimals tie, and ties go by key."""
    sign = -1 if higher_first else 1
    return sorted(scores, key=lambda k: (sign * round(scores[k], 9), k))


def ref_rrf(rankings: Sequence[Sequence[str]]) -> dict[str, Fraction]:
    """Exact RRF: sum over rankings of 1 / (60 + rank), ranks from 1."""
    fused: dict[str, Fraction] = {}
    for r in rankings:
        for rank, key in enumerate(r, 1):
            fused[key] = fused.get(key, Fraction(0)) + Fraction(1, RRF + rank)
    return fused


def assert_ranked(got: Sequence[str], reference: Mapping[str, Any], top_k: int) -> None:
    """``got`` is the reference's top ``top_k``: the same score at every position (so the same
    order, up to ties) and only records the reference has."""
    expected = sorted(reference, key=lambda k: (-reference[k], k))[:top_k]
    assert len(got) == len(expected), (list(got), expected)
    assert set(got) <= set(reference), set(got) - set(reference)
    for position, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert math.isclose(reference[a], reference[b], rel_tol=1e-9), (position, a, b)


def query_text(store: TextSearchStore, texts: Mapping[str, str], **kw: Any) -> list[TextMatch]:
    matches = store.query_text(texts, **kw)
    assert all(isinstance(m, TextMatch) for m in matches)
    return matches


def queries(n: int, *, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS[:40], size=int(rng.integers(1, 4)))) for _ in range(n)]


# -- rankings -------------------------------------------------------------------------------------


def test_the_index_is_enhanced_and_reports_its_text_fields(
    make_text_store: Callable[..., TextSearchStore],
) -> None:
    store = make_text_store(text_fields=[TextField("title"), TextField("brand", "en")])
    assert store.index_mode == "ENHANCED"
    assert list(store.text_fields) == [TextField("title"), TextField("brand", "en")]


def test_full_text_ranks_by_bm25(
    make_text_store: Callable[..., TextSearchStore], exact_scores: bool
) -> None:
    store = make_text_store()
    records = corpus()
    store.put(records)
    for text in queries(25, seed=1):
        matches = query_text(store, {"title": text}, top_k=10)
        reference = ref_bm25(records, "title", text)
        assert_ranked([m.key for m in matches], reference, 10)
        for m in matches:
            assert m.fused is None and m.distance is None
            assert set(m.bm25) == {"title"}
            if exact_scores:
                assert m.score == pytest.approx(reference[m.key], rel=1e-6)
            assert m.metadata == next(r.metadata for r in records if r.key == m.key)


def test_full_text_over_several_keys_ranks_by_the_sum(
    make_text_store: Callable[..., TextSearchStore],
) -> None:
    store = make_text_store()
    records = corpus()
    store.put(records)
    for i, text in enumerate(queries(15, seed=2)):
        brand = BRANDS[i % 4]
        matches = query_text(store, {"title": text, "brand": brand}, top_k=12)
        title, by_brand = ref_bm25(records, "title", text), ref_bm25(records, "brand", brand)
        total = {k: title.get(k, 0.0) + by_brand.get(k, 0.0) for k in {*title, *by_brand}}
        assert_ranked([m.key for m in matches], total, 12)
        for m in matches:
            assert set(m.bm25) == {
                f for f, s in (("title", title), ("brand", by_brand)) if m.key in s
            }
            assert m.score == pytest.approx(sum(m.bm25.values()))


def test_full_text_returns_only_records_holding_a_query_word(
    make_text_store: Callable[..., TextSearchStore],
) -> None:
    store = make_text_store()
    records = corpus()
    store.put(records)
    rare = min(WORDS, key=lambda w: (len(ref_bm25(records, "title", w)) or 99, w))
    holders = ref_bm25(records, "title", rare)
    assert 0 < len(holders) < 10
    assert sorted(m.key for m in query_text(store, {"title": rare}, top_k=10)) == sorted(holders)
    assert query_text(store, {"title": "qqqx"}, top_k=10) == []
    assert query_text(store, {"title": "QQQX " + rare.upper()}, top_k=10)  # case folds


def test_hybrid_fuses_each_ranking_by_rrf(
    make_text_store: Callable[..., TextSearchStore], exact_scores: bool
) -> None:
    store = make_text_store()
    records = corpus()
    store.put(records)
    rng = np.random.default_rng(4)
    for i, text in enumerate(queries(12, seed=5)):
        vector = rng.normal(size=DIM)
        texts = {"title": text} if i % 2 else {"title": text, "brand": BRANDS[i % 4]}
        top_k = (5, 10, 20)[i % 3]
        matches = query_text(store, texts, vector=vector, top_k=top_k)
        lists = [ranking(ref_bm25(records, k, t))[:top_k] for k, t in texts.items()]
        distances = ref_distances(records, vector, None)
        nearest = ranking(distances, higher_first=False)[:top_k]
        fused = ref_rrf([*lists, nearest])
        assert_ranked([m.key for m in matches], fused, top_k)
        for m in matches:
            assert m.fused is not None and m.score == m.fused
            assert (m.distance is not None) == (m.key in nearest)
            if exact_scores:
                assert m.fused == pytest.approx(float(fused[m.key]), rel=1e-9)
            if m.distance is not None:
                assert m.distance == pytest.approx(distances[m.key], abs=1e-5)
            # bm25 names every queried key the record matched, in the top_k window or not.
            assert set(m.bm25) == {k for k, t in texts.items() if m.key in ref_bm25(records, k, t)}


def test_filters_apply_before_ranking(make_text_store: Callable[..., TextSearchStore]) -> None:
    store = make_text_store()
    records = corpus()
    store.put(records)
    flt = {"$and": [{"color": "red"}, {"rank": {"$lt": 36}}]}  # 12 of 60 records
    allowed = {r.key for r in records if r.metadata["color"] == "red" and int(r.key[4:]) < 36}
    assert len(allowed) == 12
    rng = np.random.default_rng(6)
    for text in queries(10, seed=7):
        text_only = query_text(store, {"title": text}, top_k=10, filter=flt)
        assert_ranked([m.key for m in text_only], ref_bm25(records, "title", text, allowed), 10)
        vector = rng.normal(size=DIM)
        hybrid = query_text(store, {"title": text}, vector=vector, top_k=10, filter=flt)
        assert len(hybrid) == 10  # a selective filter still gives top_k
        words = ranking(ref_bm25(records, "title", text, allowed))[:10]
        nearest = ranking(ref_distances(records, vector, allowed), higher_first=False)[:10]
        assert_ranked([m.key for m in hybrid], ref_rrf([words, nearest]), 10)
    assert query_text(store, {"title": WORDS[0]}, filter={"color": "none"}) == []


def test_starts_with_filters_text_queries(make_text_store: Callable[..., TextSearchStore]) -> None:
    store = make_text_store()
    records = corpus()
    store.put(records)
    word = WORDS[0]
    allowed = {r.key for r in records if str(r.metadata["title"]).startswith("ka")}
    got = query_text(store, {"title": word}, top_k=50, filter={"title": {"$startsWith": "ka"}})
    assert_ranked([m.key for m in got], ref_bm25(records, "title", word, allowed), 50)


# -- writes ---------------------------------------------------------------------------------------


def test_upsert_replaces_old_text_and_delete_removes_it(
    make_text_store: Callable[..., TextSearchStore],
) -> None:
    store = make_text_store()
    records = corpus()
    store.put(records)
    target = records[5]
    store.put([VectorRecord.create(target.key, target.vector, {"title": "brandnewx"})])
    assert [m.key for m in query_text(store, {"title": "brandnewx"})] == [target.key]
    for word in set(tokens(target.metadata["title"])):
        assert target.key not in [m.key for m in query_text(store, {"title": word}, top_k=60)]
    assert target.key not in [m.key for m in query_text(store, {"brand": BRANDS[5 % 4]}, top_k=60)]

    gone = [r.key for r in records[::4]]
    store.delete(gone)
    kept = [r for r in records if r.key not in set(gone) and r.key != target.key]
    now = [*kept, VectorRecord.create(target.key, target.vector, {"title": "brandnewx"})]
    for text in queries(10, seed=8):
        matches = query_text(store, {"title": text}, top_k=60)
        assert not set(gone) & {m.key for m in matches}
        assert_ranked([m.key for m in matches], ref_bm25(now, "title", text), 60)


def test_list_values_are_searchable_and_other_values_are_not_text(
    make_text_store: Callable[..., TextSearchStore],
) -> None:
    store = make_text_store()
    v = np.ones(DIM)
    store.put(
        [
            VectorRecord.create("list", v, {"title": ["alphax betax", "gammax"]}),
            VectorRecord.create("number", v, {"title": 42, "brand": True}),
            VectorRecord.create("plain", v, {"title": "gammax"}),
        ]
    )
    assert sorted(m.key for m in query_text(store, {"title": "gammax"})) == ["list", "plain"]
    assert [m.key for m in query_text(store, {"title": "betax 42"})] == ["list"]


def test_fields_added_later_index_the_records_already_stored(
    make_text_store: Callable[..., TextSearchStore],
) -> None:
    store = make_text_store(text_fields=[TextField("title")])
    records = corpus()
    store.put(records)
    with pytest.raises(InvalidInputError, match="not full-text searchable"):
        store.query_text({"brand": BRANDS[1]})
    store.add_text_fields([TextField("brand")])
    settle(store)
    assert [f.key for f in store.text_fields] == ["title", "brand"]
    matches = query_text(store, {"brand": BRANDS[1]}, top_k=60)
    assert_ranked([m.key for m in matches], ref_bm25(records, "brand", BRANDS[1]), 60)

    store.remove_text_fields(["brand"])
    assert [f.key for f in store.text_fields] == ["title"]
    with pytest.raises(InvalidInputError, match="not full-text searchable"):
        store.query_text({"brand": BRANDS[1]})
    assert store.get([records[1].key]).records[0].metadata["brand"] == BRANDS[1]


# -- refusals: the same on every store, and nothing changes ----------------------------------------

_LONG = "x" * 1025
_MANY = {"$or": [{"rank": i} for i in range(101)]}

BAD_QUERIES: list[tuple[str, Callable[[TextSearchStore], object], type[Exception], str]] = [
    ("no texts", lambda s: s.query_text({}), InvalidInputError, "at least one"),
    ("not a mapping", lambda s: s.query_text("red"), InvalidInputError, "mapping"),  # type: ignore[arg-type]
    (
        "eleven texts",
        lambda s: s.query_text({f"k{i}": "x" for i in range(11)}),
        InvalidInputError,
        "at most 10",
    ),
    ("1025 characters", lambda s: s.query_text({"title": _LONG}), InvalidInputError, "1024"),
    ("blank text", lambda s: s.query_text({"title": "  "}), InvalidInputError, "non-empty"),
    (
        "not searchable",
        lambda s: s.query_text({"color": "red"}),
        InvalidInputError,
        "not full-text searchable",
    ),
    ("top_k 0", lambda s: s.query_text({"title": "x"}, top_k=0), InvalidInputError, "top_k"),
    ("top_k 101", lambda s: s.query_text({"title": "x"}, top_k=101), InvalidInputError, "top_k"),
    (
        "vector length",
        lambda s: s.query_text({"title": "x"}, vector=[1.0, 2.0]),
        DimensionMismatchError,
        "dimension",
    ),
    (
        "vector NaN",
        lambda s: s.query_text({"title": "x"}, vector=[math.nan] * DIM),
        InvalidInputError,
        "NaN",
    ),
    (
        "101 constraints",
        lambda s: s.query_text({"title": "x"}, filter=_MANY),
        InvalidFilterError,
        "100",
    ),
    (
        "bad filter",
        lambda s: s.query_text({"title": "x"}, filter={"rank": {"$gt": "a"}}),
        InvalidFilterError,
        r"\$gt",
    ),
    (
        "eleven fields",
        lambda s: s.add_text_fields([TextField(f"k{i}") for i in range(9)]),
        InvalidInputError,
        "at most 10",
    ),
    (
        "field twice",
        lambda s: s.add_text_fields([TextField("title", "en")]),
        InvalidInputError,
        "title",
    ),
    (
        "bad language",
        lambda s: s.add_text_fields([TextField("color", "xx")]),  # type: ignore[arg-type]
        InvalidInputError,
        "language",
    ),
    (
        "remove unknown",
        lambda s: s.remove_text_fields(["color"]),
        InvalidInputError,
        "'color' is not full-text searchable",
    ),
    (
        "remove one string",
        lambda s: s.remove_text_fields("title"),
        InvalidInputError,
        "not a single string",
    ),
    (
        "NaN in a text record",
        lambda s: s.put([VectorRecord.create("z", np.ones(DIM), {"title": "newx", "n": math.nan})]),
        InvalidInputError,
        "(?i)nan",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "gist"),
    [case[1:] for case in BAD_QUERIES],
    ids=[case[0] for case in BAD_QUERIES],
)
def test_refusals_are_the_same_on_every_store_and_change_nothing(
    every_text_store: Callable[..., list[tuple[str, TextSearchStore]]],
    call: Callable[[TextSearchStore], object],
    error: type[Exception],
    gist: str,
) -> None:
    records = corpus(12)
    seen: dict[str, type[Exception]] = {}
    for kind, store in every_text_store():
        store.put(records)
        before = (sorted(store.keys()), store.text_fields, query_text(store, {"title": WORDS[0]}))
        with pytest.raises(CrossmodalSearchError) as info:
            call(store)
        assert isinstance(info.value, error), (kind, info.value)
        assert re.search(gist, str(info.value)), (kind, str(info.value))
        seen[kind] = type(info.value)
        after = (sorted(store.keys()), store.text_fields, query_text(store, {"title": WORDS[0]}))
        assert after == before, kind
        assert query_text(store, {"title": "newx"}) == []
    assert len(set(seen.values())) == 1, seen
