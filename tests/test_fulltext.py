"""The local full-text pieces: analyzers, the BM25 index against an independent BM25, RRF and
the request checks both stores share."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest

from crossmodal_search.errors import InvalidInputError
from crossmodal_search.stores._fulltext import TextIndex, analyzer, standard
from crossmodal_search.stores._text import (
    TextField,
    TextQuery,
    reciprocal_rank_fusion,
    validate_text_fields,
    validate_text_queries,
)


@pytest.mark.parametrize(
    ("text", "tokens", "english"),
    [
        ("WH-1000XM5", ["wh", "1000xm5"], ["wh", "1000xm5"]),
        ("don't", ["don't"], ["don't"]),
        ("3.14", ["3.14"], ["3.14"]),
        ("foo_bar", ["foo_bar"], ["foo_bar"]),
        ("Café", ["café"], ["café"]),
        ("東京タワー", ["東", "京", "タワー"], ["東", "京", "タワー"]),
        ("running shoes", ["running", "shoes"], ["run", "shoe"]),
        ("The Carryall's handle", ["the", "carryall's", "handle"], ["carryal", "handl"]),
    ],
)
def test_the_analyzers_tokens(text: str, tokens: list[str], english: list[str]) -> None:
    assert standard(text) == tokens
    assert analyzer(None)(text) == tokens
    assert analyzer("en")(text) == english


def _reference(docs: dict[int, str], query: str, mask: set[int] | None = None) -> dict[int, float]:
    """Lucene BM25 (k1 1.2, b 0.75, OR semantics, idf ln(1 + (N - n + .5)/(n + .5))) written
    from the formula, over the rows holding any token."""
    tokens = {row: standard(text) for row, text in docs.items()}
    with_text = {row: t for row, t in tokens.items() if t}
    n_docs = len(with_text)
    if n_docs == 0:
        return {}
    avgdl = sum(len(t) for t in with_text.values()) / n_docs
    df = Counter(term for t in with_text.values() for term in set(t))
    scores: dict[int, float] = {}
    for row, t in with_text.items():
        if mask is not None and row not in mask:
            continue
        tf = Counter(t)
        score = 0.0
        for term in set(standard(query)):
            if tf[term]:
                idf = math.log(1 + (n_docs - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf[term] / (tf[term] + 1.2 * (1 - 0.75 + 0.75 * len(t) / avgdl))
        if score > 0:
            scores[row] = score
    return scores


def _assert_agrees(
    index: TextIndex, docs: dict[int, str], query: str, k: int, mask: set[int] | None
) -> None:
    array_mask = None
    if mask is not None:
        array_mask = np.zeros(index.n, dtype=bool)
        array_mask[sorted(mask)] = True
    rows, scores = index.search(query, k, array_mask)
    want = _reference(docs, query, mask)
    ranked = sorted(want.values(), reverse=True)
    kth = ranked[min(k, len(ranked)) - 1] if ranked else math.inf
    # Every row returned scores as the reference says; the best k (and rows tied with the
    # k-th) are all there.
    for row, score in zip(rows.tolist(), scores.tolist(), strict=True):
        assert score == pytest.approx(want[row], rel=1e-9)
    assert {r for r, s in want.items() if s > kth + 1e-9} <= set(rows.tolist())
    assert len(rows) >= min(k, len(want))


def test_the_index_agrees_with_an_independent_bm25_through_writes_and_deletes() -> None:
    rng = random.Random(4)
    words = [f"w{i}" for i in range(60)] + ["red", "mug", "dress", "carryall", "wh-1000xm5"]
    weights = [1.0 / (i + 1) for i in range(len(words))]
    index = TextIndex(standard)
    docs: dict[int, str] = {}

    def text() -> str:
        n = rng.randint(0, 12)
        return " ".join(rng.choices(words, weights, k=n))

    for step in range(7000):  # crosses the postings' rebuild threshold (4096 changed rows)
        if docs and rng.random() < 0.2:
            row = rng.randrange(len(docs))
            index.delete(row)
            last = len(docs) - 1
            docs[row] = docs[last]
            del docs[last]
        elif len(docs) > 8 and rng.random() < 0.05:
            # Several rows at once, as the store's swap-remove does them.
            n = len(docs)
            gone = sorted(rng.sample(range(n), rng.randint(2, 6)))
            new_n = n - len(gone)
            holes = [r for r in gone if r < new_n]
            movers = [r for r in range(new_n, n) if r not in gone]
            index.delete_rows(gone, holes, movers)
            for dst, src in zip(holes, movers, strict=True):
                docs[dst] = docs[src]
            for r in range(new_n, n):
                del docs[r]
        elif docs and rng.random() < 0.3:
            row = rng.randrange(len(docs))
            docs[row] = text()
            index.put(row, docs[row])
        elif rng.random() < 0.1:
            # Several rows appended at once (the bulk path), some of them equal.
            batch = [text() for _ in range(rng.randint(1, 8))]
            batch += batch[: rng.randint(0, 2)]
            for value in batch:
                docs[len(docs)] = value
            index.extend(batch)
        else:
            docs[len(docs)] = text()
            index.put(len(docs) - 1, docs[len(docs) - 1])
        if step % 700 == 699:
            assert index.n == len(docs)
            for query in ("red mug", "w0 w3 w59", "carryall", "WH-1000XM5 dress", "nothing"):
                _assert_agrees(index, docs, query, 10, None)
                mask = {r for r in docs if rng.random() < 0.3}
                _assert_agrees(index, docs, query, 5, mask)


def test_list_values_are_searched_and_other_values_are_not_text() -> None:
    index = TextIndex(standard)
    index.put(0, ["red", "summer"])
    index.put(1, 42)
    index.put(2, None)
    rows, _ = index.search("summer", 5)
    assert rows.tolist() == [0]


def test_reciprocal_rank_fusion() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], k=60)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["d"] == pytest.approx(1 / 62)
    assert max(fused, key=fused.__getitem__) == "b"


def test_text_requests_are_checked_before_any_call() -> None:
    fields = {"title": TextField("title"), "body": TextField("body", status="BUILDING")}
    ok = validate_text_queries({"title": "red dress"}, fields)
    assert ok == [TextQuery("title", "red dress")]
    many = {f"k{i}": "x" for i in range(11)}
    bad: list[tuple[Any, str]] = [
        ({}, "at least one"),
        ([("title", "x")], "a mapping"),
        (many, "at most 10"),
        ({"title": "  "}, "non-empty"),
        ({"title": None}, "non-empty"),
        ({"title": "x" * 1025}, "1024 characters"),
        ({"brand": "x"}, "not full-text searchable"),
        ({"body": "x"}, "BUILDING"),
    ]
    for queries, match in bad:
        with pytest.raises(InvalidInputError, match=match):
            validate_text_queries(queries, fields)
    with pytest.raises(InvalidInputError, match="at most 10"):
        validate_text_fields([TextField(f"k{i}") for i in range(11)])
    with pytest.raises(InvalidInputError, match="language"):
        validate_text_fields([TextField("k", language="xx")])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="has a text search configuration"):
        validate_text_fields([TextField("title")], existing=[TextField("title")])


def test_rrf_ties_do_not_depend_on_the_order_of_the_rankings() -> None:
    # "a" ranks 1, 2, 7 and "b" 7, 1, 2: the same terms, which a plain float sum adds in other
    # orders (and, for 4 of the 6 orders of the lists, to other values).
    lists = []
    for rank_a, rank_b in ((1, 7), (2, 1), (7, 2)):
        ranking = [f"f{i}" for i in range(10)]
        ranking[rank_a - 1], ranking[rank_b - 1] = "a", "b"
        lists.append(ranking)
    for order in itertools.permutations(lists):
        fused = reciprocal_rank_fusion(list(order))
        assert fused["a"] == fused["b"]
