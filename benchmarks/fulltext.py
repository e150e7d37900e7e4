"""Full-text and hybrid queries on the local store, beside vector-only queries and SQLite FTS5.

Synthetic product listings: a brand, a title of Zipf-distributed words, a model number
(``HMU-7286Q``), a size and a 50-70-word description, over a 40k-word vocabulary; a unit vector
per product. Queries mix model numbers (one product holds them) and two or three title words
(many do), each with the vector of the product it came from plus noise. Every contender answers
the same queries in one process, interleaved in each repeat:

* ``vectors``: ``LocalVectorStore.query`` (exact search, the baseline of the hybrid target);
* ``words``: ``query_text`` over the ``title`` and ``text`` fields (BM25, summed);
* ``hybrid``: ``query_text`` with the vector too (BM25 per field and the vector, fused by RRF);
* ``SQLite FTS5``: the standard library's full-text engine used directly: the same words, in
  an FTS5 table over both fields, ranked by its ``bm25()`` (OR of the quoted words), top 10.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks._data import random_unit
from benchmarks._harness import (
    Section,
    Table,
    interleaved,
    median,
    mib,
    ms,
    paired_ratio,
    rss_bytes,
)

log = logging.getLogger("benchmarks.fulltext")

K = 10
_VOCABULARY = 40_000
_BRANDS = 400


@dataclass(frozen=True)
class Case:
    n: int
    d: int
    repeats: int
    queries: int = 200


FULL = (Case(100_000, 1024, repeats=9), Case(1_000_000, 256, repeats=5))
QUICK = (Case(5_000, 64, repeats=3, queries=40),)


# --------------------------------------------------------------------------- data


def _words(rng: np.random.Generator) -> list[str]:
    """A pronounceable pseudo-vocabulary (stable for a seed)."""
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    out: set[str] = set()
    while len(out) < _VOCABULARY:
        size = int(rng.integers(2, 5))
        syllables = rng.integers(0, 16, size), rng.integers(0, 5, size)
        out.add("".join(consonants[c] + vowels[v] for c, v in zip(*syllables, strict=True)))
    return sorted(out)


def listings(n: int, seed: int) -> tuple[list[dict[str, str]], list[str]]:
    """``n`` product listings (``title``, ``text``, ``model``) and their model numbers."""
    rng = np.random.default_rng(seed)
    vocab = np.asarray(_words(rng))
    ranks = np.arange(1, _VOCABULARY + 1, dtype=np.float64)
    weights = 1.0 / (ranks + 2.7)  # Zipf-Mandelbrot: a few very common words, a long tail
    weights /= weights.sum()
    brands = vocab[rng.choice(_VOCABULARY, _BRANDS, replace=False)]
    title_len = rng.integers(4, 9, n)
    text_len = rng.integers(50, 71, n)
    words = vocab[rng.choice(_VOCABULARY, int(title_len.sum() + text_len.sum()), p=weights)]
    letters = np.asarray(list("ABCDEFGHJKLMNPQRSTUVWXYZ"))
    out, models, at = [], [], 0
    for i in range(n):
        title = " ".join(words[at : at + title_len[i]])
        at += title_len[i]
        text = " ".join(words[at : at + text_len[i]])
        at += text_len[i]
        model = (
            "".join(rng.choice(letters, 3))
            + f"-{int(rng.integers(1000, 9999))}"
            + str(rng.choice(letters))
        )
        size = f"{int(rng.integers(6, 48))} {rng.choice(['oz', 'cm', 'in', 'mm'])}"
        brand = str(brands[i % _BRANDS])
        out.append({"title": f"{brand} {title} {model} {size}", "text": text})
        models.append(model)
    return out, models


# --------------------------------------------------------------------------- contenders


def _fts5(docs: list[dict[str, str]]) -> tuple[sqlite3.Connection, float]:
    """An in-memory FTS5 index of the same analysed words; its build seconds."""
    from crossmodal_search.stores import analyze_text  # the words the store indexes

    db = sqlite3.connect(":memory:")
    # The words arrive analysed: FTS5's own tokenizer must split them only at spaces.
    db.execute(
        "CREATE VIRTUAL TABLE docs USING fts5(title, text, tokenize=\"ascii separators ' '\")"
    )
    start = time.perf_counter()
    rows = (
        (i, " ".join(analyze_text(d["title"])), " ".join(analyze_text(d["text"])))
        for i, d in enumerate(docs)
    )
    db.executemany("INSERT INTO docs(rowid, title, text) VALUES (?, ?, ?)", rows)
    db.commit()
    return db, time.perf_counter() - start


def _fts5_query(db: sqlite3.Connection, words: str) -> list[int]:
    from crossmodal_search.stores import analyze_text

    terms = dict.fromkeys(analyze_text(words))
    match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
    sql = "SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT ?"
    return [row[0] for row in db.execute(sql, (match, K))]


def _build_store(docs: list[dict[str, str]], x: np.ndarray[Any, Any]) -> tuple[Any, float, float]:
    """The local store with the listings; put seconds and first-text-query (index) seconds."""
    from crossmodal_search.stores import LocalVectorStore, StoreLimits, TextField, VectorRecord

    store = LocalVectorStore(
        dimension=x.shape[1],
        limits=StoreLimits.relaxed(),
        text_fields=[TextField("title"), TextField("text")],
    )
    start = time.perf_counter()
    for lo in range(0, len(docs), 20_000):
        hi = min(len(docs), lo + 20_000)
        store.put(VectorRecord(str(i), x[i], docs[i]) for i in range(lo, hi))
    put = time.perf_counter() - start
    start = time.perf_counter()
    store.query_text({"title": "warm", "text": "warm"}, top_k=1)  # builds both BM25 indexes
    return store, put, time.perf_counter() - start


def _cycling(fn: Callable[[int], object], count: int) -> Callable[[], object]:
    it = itertools.cycle(range(count))
    return lambda: fn(next(it))


# --------------------------------------------------------------------------- run


def run_case(case: Case, section: Section) -> None:
    name = f"{case.n:,} products x {case.d}"
    log.info("fulltext: %s: generating", name)
    docs, models = listings(case.n, seed=5)
    x = random_unit(case.n, case.d, seed=6)
    rng = np.random.default_rng(8)
    picks = rng.choice(case.n, case.queries, replace=False)
    texts: list[str] = []
    for j, row in enumerate(picks.tolist()):
        if j % 2 == 0:
            texts.append(models[row])  # an exact term
        else:
            title = docs[row]["title"].split()[1:-3]  # words of the title, not brand/model/size
            texts.append(" ".join(rng.choice(title, min(len(title), 2 + j % 2), replace=False)))
    noise = random_unit(case.queries, case.d, seed=9)
    qvec = x[picks] + 0.6 * noise
    qvec /= np.linalg.norm(qvec, axis=1, keepdims=True)

    rss0 = rss_bytes()
    store, put_s, index_s = _build_store(docs, x)
    rss_store = rss_bytes() - rss0
    db, fts_s = _fts5(docs)

    def by_words(i: int) -> list[Any]:
        found: list[Any] = store.query_text({"title": texts[i], "text": texts[i]}, top_k=K)
        return found

    def hybrid(i: int) -> list[Any]:
        words = {"title": texts[i], "text": texts[i]}
        found: list[Any] = store.query_text(words, vector=qvec[i], top_k=K)
        return found

    contenders = {
        "vectors": _cycling(lambda i: store.query(qvec[i], top_k=K), case.queries),
        "words": _cycling(by_words, case.queries),
        "hybrid": _cycling(hybrid, case.queries),
        "SQLite FTS5": _cycling(lambda i: _fts5_query(db, texts[i]), case.queries),
    }
    log.info("fulltext: %s: timing", name)
    samples = interleaved(_per_query(contenders, case.queries), repeats=case.repeats)
    per_query = {k: [s / case.queries for s in v] for k, v in samples.items()}

    # Smoke checks: a model number finds its product first, by words and in a hybrid query.
    exact = [j for j in range(case.queries) if j % 2 == 0]
    found_words = sum(int(by_words(j)[0].key) == picks[j] for j in exact)
    found_hybrid = sum(int(hybrid(j)[0].key) == picks[j] for j in exact)
    found_fts = sum(_fts5_query(db, texts[j])[:1] == [picks[j]] for j in exact)
    section.check(
        f"{name}: model numbers found first",
        "smoke",
        found_words == found_hybrid == len(exact),
        f"words {found_words}/{len(exact)}, hybrid {found_hybrid}/{len(exact)}, "
        f"FTS5 {found_fts}/{len(exact)}",
    )
    ratio = paired_ratio(per_query["hybrid"], per_query["vectors"])
    if case.n == 100_000 and case.d == 1024:
        section.check(
            "hybrid query <= 1.5x a vector query at 100k x 1024",
            "target",
            ratio <= 1.5,
            f"{ratio:.2f}x ({ms(median(per_query['hybrid']))} vs "
            f"{ms(median(per_query['vectors']))})",
        )
    rows = [
        [
            label,
            ms(median(per_query[label])),
            f"{paired_ratio(per_query[label], per_query['vectors']):.2f}x",
        ]
        for label in contenders
    ]
    section.tables.append(
        Table(
            f"Full-text and hybrid queries, {name} (top {K}, median of {case.repeats} repeats of "
            f"{case.queries} queries)",
            ["contender", "ms per query", "vs vectors"],
            rows,
            note=(
                f"Store: {put_s:.1f} s to put, {index_s:.1f} s to build both BM25 indexes (first "
                f"text query), {mib(rss_store)} resident for vectors, metadata and indexes. "
                f"FTS5: {fts_s:.1f} s to build. Half the queries are model numbers, half two or "
                f"three title words; words are queried in `title` and `text`."
            ),
        )
    )
    section.data.setdefault("cases", {})[name] = {
        "seconds_per_query": {k: median(v) for k, v in per_query.items()},
        "hybrid_vs_vectors": ratio,
        "put_seconds": put_s,
        "index_seconds": index_s,
        "fts5_build_seconds": fts_s,
        "store_rss_bytes": rss_store,
        "model_numbers_first": {"words": found_words, "hybrid": found_hybrid, "fts5": found_fts},
    }
    db.close()
    store.close()


def _per_query(
    contenders: dict[str, Callable[[], object]], count: int
) -> dict[str, Callable[[], object]]:
    """Each sample answers every query once (so every contender sees the same mix)."""

    def all_of(fn: Callable[[], object]) -> Callable[[], object]:
        def many() -> None:
            for _ in range(count):
                fn()

        return many

    return {k: all_of(f) for k, f in contenders.items()}


def run(*, quick: bool, scale: float = 1.0) -> Section:
    """Run the full-text benchmark and return its report section."""
    section = Section(
        "Full-text and hybrid search (local store)",
        quick=quick,
        intro=(__doc__ or "").split("\n\n", 1)[1].strip(),
    )
    for case in QUICK if quick else FULL:
        n = max(1_000, int(case.n * scale))
        run_case(Case(n, case.d, case.repeats, case.queries), section)
    return section
