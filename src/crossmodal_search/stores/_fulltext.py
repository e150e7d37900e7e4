"""Analyzers and a BM25 index: the local side of full-text search.

Why our own index rather than an engine (measured in docs/stores.md, "Full-text search on the
local store"): none of SQLite FTS5, tantivy or bm25s has the analyzer S3 Vectors is assumed to
use, so every option means passing our own tokens anyway; an index derived from the store's rows
needs no second commit to stay consistent with the vectors after a crash; it ranks exactly as
Lucene's BM25 formula with OR semantics, and applies the store's filter mask to the postings.

Analyzers (local emulation; S3 Vectors documents only their names):

* standard (no ``language``): Unicode word segmentation (UAX #29, the ``regex`` module's
  ``(?w)`` boundaries: ``WH-1000XM5`` -> ``wh``, ``1000xm5``; ``don't``, ``3.14`` and
  ``foo_bar`` stay whole; each Han ideograph is a token), lower case, no stop words, no stemming;
* ``en``: standard, then possessive ``'s`` removed, Lucene's English stop words, Porter stemming;
* ``fr es pt it de nl``: standard, elisions removed (``l'``), Snowball stemming (extra
  ``fulltext``: PyStemmer); ``zh ja ko``: the standard analyzer.

Scoring: Lucene BM25 with OR semantics (a record matches when it holds any query term),
``idf = ln(1 + (N - n + 0.5) / (n + 0.5))``, ``k1 = 1.2``, ``b = 0.75``, exact document
lengths, ``N`` the records with a value for the key; a term repeated in the query counts once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import regex

from crossmodal_search.errors import ConfigurationError
from crossmodal_search.stores._text import Language

__all__ = [
    "BM25_B",
    "BM25_K1",
    "ENGLISH_STOP_WORDS",
    "TextIndex",
    "analyze_text",
    "analyzer",
    "best",
    "field_text",
    "matched_words",
    "sum_by_row",
]

BM25_K1 = 1.2
BM25_B = 0.75

# A word: from a UAX #29 word boundary, a word character, to the next boundary.
_WORD = regex.compile(r"(?wV1)\b\w.*?\b", regex.S)

#: Lucene's English stop set (what OpenSearch's ``english`` analyzer removes).
ENGLISH_STOP_WORDS = _ENGLISH_STOP = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    )
)
_SNOWBALL = {
    "en": "porter",
    "fr": "french",
    "es": "spanish",
    "pt": "portuguese",
    "it": "italian",
    "de": "german",
    "nl": "dutch",
}
_ELISION = regex.compile(r"^(?:l|d|j|m|n|s|t|c|qu|jusqu|lorsqu|puisqu|dell|all|dall|nell)['’]")


def standard(text: str) -> list[str]:
    """The standard analyzer's tokens of ``text``."""
    # Lower-casing the whole text first is the same (case never moves a word boundary) and
    # twice as fast as lower-casing each word.
    words: list[str] = _WORD.findall(text.lower())
    if "_" in text:  # a run of underscores alone is no word
        return [t for t in words if t.strip("_")]
    return words


@functools.cache
def analyzer(language: Language | None) -> Callable[[str], list[str]]:
    """The analyzer of a text field's ``language`` (None: standard).

    Raises:
        ConfigurationError: A language that stems, without PyStemmer (extra ``fulltext``).
    """
    algorithm = _SNOWBALL.get(language or "")
    if algorithm is None:
        return standard
    try:
        import Stemmer
    except ImportError as exc:
        raise ConfigurationError(
            f"the {language!r} analyzer stems words with PyStemmer: "
            "pip install 'crossmodal-search[fulltext]' (or use the standard analyzer)"
        ) from exc
    stemmer = Stemmer.Stemmer(algorithm)

    def analyze(text: str) -> list[str]:
        words = []
        for token in standard(text):
            if language == "en" and token.endswith(("'s", "’s")):
                token = token[:-2]
            elif language in ("fr", "it"):
                token = _ELISION.sub("", token)
            if token and not (language == "en" and token in _ENGLISH_STOP):
                words.append(token)
        stemmed: list[str] = stemmer.stemWords(words)
        return stemmed

    return analyze


def field_text(value: object) -> str | None:
    """The searchable text of a metadata value: a string, or the strings of a list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [v for v in value if isinstance(v, str)]
        return "\n".join(parts) if parts else None
    return None


def analyze_text(text: str, language: Language | None = None) -> list[str]:
    """The words full-text search indexes and matches for ``text``, with the analyzer of
    ``language`` (None: standard): what a query must share with a value to match it.

    Example:
        >>> analyze_text("Sony WH-1000XM5, 30h battery")
        ['sony', 'wh', '1000xm5', '30h', 'battery']
    """
    return analyzer(language)(text)


def matched_words(query: str, value: object, language: Language | None = None) -> list[str]:
    """The words of ``query`` found in ``value`` (a metadata value) by the analyzer of
    ``language``: each once, in query order, as the query wrote them.

    Example:
        >>> matched_words("Sony wh-1000XM5 case", "Sony WH-1000XM5 headphones")
        ['Sony', 'wh', '1000XM5']
    """
    text = field_text(value)
    if not text:
        return []
    analyze = analyzer(language)
    held = set(analyze(text))
    out: list[str] = []
    for word in _WORD.findall(query):
        if word.strip("_") and word not in out and held.intersection(analyze(word)):
            out.append(word)
    return out


class TextIndex:
    """BM25 postings of one searchable key, row-aligned with the store's rows.

    Row ``i`` holds the tokens of record ``i``'s value (none when it has no value). ``delete``
    swap-removes like the store's rows: the last row moves into the hole. Updates go to a
    per-row forward index at once; the term -> rows postings are rebuilt when more than
    max(4096, 5 %) of the rows changed since, the changed rows being scored from the forward
    index meanwhile. Statistics (document frequencies, lengths) are exact at every moment.
    """

    def __init__(self, analyze: Callable[[str], list[str]]) -> None:
        self._analyze = analyze
        self._vocab: dict[str, int] = {}
        self.n = 0  # rows
        self._docs = 0  # rows with at least one token
        self._sum_dl = 0
        self._df = np.zeros(1024, dtype=np.int64)
        self._dl = np.zeros(1024, dtype=np.int64)
        self._off = np.zeros(1024, dtype=np.int64)  # row -> start of its terms in the arena
        self._cnt = np.zeros(1024, dtype=np.int64)  # row -> distinct terms
        self._terms = np.zeros(1 << 12, dtype=np.int32)  # the arena: term ids and counts
        self._tf = np.zeros(1 << 12, dtype=np.int32)
        self._used = 0
        self._stale = np.zeros(1024, dtype=bool)
        self._n_stale = 0
        self._ptr = np.zeros(2, dtype=np.int64)  # postings: term -> [ptr[t], ptr[t+1])
        self._rows = np.zeros(0, dtype=np.int32)
        self._ptf = np.zeros(0, dtype=np.float64)

    def __len__(self) -> int:
        return self.n

    # ------------------------------------------------------------------ writes

    def put(self, row: int, value: object) -> None:
        """Set row ``row`` (``row == len(self)`` appends) to the tokens of ``value``."""
        text = field_text(value)
        ids = self._ids(self._analyze(text) if text else [])
        if row == self.n:
            self._grow_rows(row + 1)
            self._cnt[row] = self._dl[row] = 0
            self.n += 1
        else:
            self._unstat(row)
        terms, counts = np.unique(ids, return_counts=True)
        self._grow_arena(terms.shape[0])
        start = self._used
        self._terms[start : start + terms.shape[0]] = terms
        self._tf[start : start + terms.shape[0]] = counts
        self._used += terms.shape[0]
        self._off[row], self._cnt[row], self._dl[row] = start, terms.shape[0], ids.shape[0]
        self._df[terms] += 1
        self._sum_dl += ids.shape[0]
        self._docs += int(ids.shape[0] > 0)
        self._mark(row)

    def extend(self, values: Sequence[object]) -> None:
        """Append one row per value, in one pass: the bulk path of :meth:`put` (building an
        index over a whole store, a large write). Equal values are analysed once."""
        m = len(values)
        if m == 0:
            return
        memo: dict[str, npt.NDArray[np.int64]] = {}
        empty = np.zeros(0, dtype=np.int64)
        parts: list[npt.NDArray[np.int64]] = []
        lengths = np.empty(m, dtype=np.int64)
        for i, value in enumerate(values):
            text = field_text(value)
            ids = empty
            if text:
                found = memo.get(text)
                if found is None:
                    if len(memo) >= 4096:  # neighbours repeat (a product's vectors): keep few
                        memo.clear()
                    found = memo[text] = self._ids(self._analyze(text))
                ids = found
            parts.append(ids)
            lengths[i] = ids.shape[0]
        tokens = np.concatenate(parts) if parts else empty
        width = max(len(self._vocab), 1)
        owner = np.repeat(np.arange(m, dtype=np.int64), lengths)
        pairs, tf = np.unique(owner * width + tokens, return_counts=True)  # by row, then term
        rows, terms = pairs // width, pairs % width
        counts = np.bincount(rows, minlength=m).astype(np.int64)
        n = self.n
        self._grow_rows(n + m)
        self._grow_arena(pairs.shape[0])
        start = self._used
        self._terms[start : start + pairs.shape[0]] = terms
        self._tf[start : start + pairs.shape[0]] = tf
        self._off[n : n + m] = start + np.cumsum(counts) - counts
        self._cnt[n : n + m] = counts
        self._dl[n : n + m] = lengths
        self._used += pairs.shape[0]
        self._df[: len(self._vocab)] += np.bincount(terms, minlength=len(self._vocab))
        self._sum_dl += int(lengths.sum())
        self._docs += int(np.count_nonzero(lengths))
        fresh = ~self._stale[n : n + m]
        self._stale[n : n + m] = True
        self._n_stale += int(np.count_nonzero(fresh))
        self.n += m

    def delete(self, row: int) -> None:
        """Remove row ``row``; the last row moves into it."""
        last = self.n - 1
        self.delete_rows([row], [row] if row != last else [], [last] if row != last else [])

    def delete_rows(
        self, deleted: Sequence[int], holes: Sequence[int], movers: Sequence[int]
    ) -> None:
        """Remove the distinct rows ``deleted``; row ``movers[i]`` then moves into
        ``holes[i]`` and the table ends ``len(deleted)`` rows shorter (the store's swap-remove:
        ``holes`` are the deleted rows below the new end, ``movers`` the kept rows past it)."""
        for row in deleted:
            self._unstat(row)
        for dst, src in zip(holes, movers, strict=True):
            self._off[dst], self._cnt[dst], self._dl[dst] = (
                self._off[src],
                self._cnt[src],
                self._dl[src],
            )
            self._mark(dst)
        new_n = self.n - len(deleted)
        for row in range(new_n, self.n):
            self._mark(row)
        self._cnt[new_n : self.n] = 0
        self._dl[new_n : self.n] = 0
        self.n = new_n

    def _ids(self, tokens: Sequence[str]) -> npt.NDArray[np.int64]:
        vocab = self._vocab
        get = vocab.get
        found = [get(token, -1) for token in tokens]
        if -1 in found:  # new words: numbered in order of appearance
            for i, tid in enumerate(found):
                if tid == -1:  # new, or seen earlier in this same list
                    found[i] = vocab.setdefault(tokens[i], len(vocab))
            if len(vocab) > self._df.shape[0]:
                self._df = _grown(self._df, max(len(vocab), 2 * self._df.shape[0]))
        return np.fromiter(found, dtype=np.int64, count=len(found))

    def _unstat(self, row: int) -> None:
        start, count = self._off[row], self._cnt[row]
        self._df[self._terms[start : start + count]] -= 1
        self._sum_dl -= int(self._dl[row])
        self._docs -= int(self._dl[row] > 0)

    def _mark(self, row: int) -> None:
        if not self._stale[row]:
            self._stale[row] = True
            self._n_stale += 1

    def _grow_rows(self, need: int) -> None:
        if need > self._dl.shape[0]:
            size = max(need, 2 * self._dl.shape[0])
            self._dl, self._off, self._cnt = (
                _grown(a, size) for a in (self._dl, self._off, self._cnt)
            )
            self._stale = _grown(self._stale, size)

    def _grow_arena(self, extra: int) -> None:
        if self._used + extra <= self._terms.shape[0]:
            return
        live = int(self._cnt[: self.n].sum())
        if self._used > 2 * live + 4096:  # mostly dead entries of rewritten rows: compact
            idx = _row_entries(self._off[: self.n], self._cnt[: self.n])
            self._terms[: idx.shape[0]] = self._terms[idx]
            self._tf[: idx.shape[0]] = self._tf[idx]
            self._off[: self.n] = np.cumsum(self._cnt[: self.n]) - self._cnt[: self.n]
            self._used = idx.shape[0]
        if self._used + extra > self._terms.shape[0]:
            size = max(self._used + extra, 2 * self._terms.shape[0])
            self._terms, self._tf = _grown(self._terms, size), _grown(self._tf, size)

    def _rebuild_postings(self) -> None:
        n = self.n
        idx = _row_entries(self._off[:n], self._cnt[:n])
        terms = self._terms[idx]
        order = np.argsort(terms, kind="stable")  # rows stay ascending within each term
        self._rows = np.repeat(np.arange(n, dtype=np.int32), self._cnt[:n])[order]
        self._ptf = self._tf[idx][order].astype(np.float64)
        self._ptr = np.zeros(self._df.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(terms, minlength=self._df.shape[0]), out=self._ptr[1:])
        self._stale[:] = False
        self._n_stale = 0

    # ------------------------------------------------------------------ queries

    def search(
        self, text: str, top_k: int, mask: npt.NDArray[np.bool_] | None = None
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """The rows matching any term of ``text`` (among ``mask``'s), best first: at most
        ``top_k`` plus the rows tied with the last; their BM25 scores. Ties are left to the
        caller to order (by key)."""
        rows, total = self.scores(text, mask)
        return best(rows, total, top_k)

    def scores(
        self, text: str, mask: npt.NDArray[np.bool_] | None = None
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """Every row matching a term of ``text`` (among ``mask``'s) and its BM25 score,
        in row order."""
        if self._n_stale > max(4096, self.n // 20):
            self._rebuild_postings()
        known = {self._vocab[t] for t in self._analyze(text) if t in self._vocab}
        terms = np.asarray(sorted(t for t in known if self._df[t] > 0), dtype=np.int64)
        empty = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float64))
        if terms.shape[0] == 0 or self._docs == 0:
            return empty
        docs, scores = self._scored(terms, mask)
        if docs.shape[0] == 0:
            return empty
        return sum_by_row(docs, scores, self.n)

    def _scored(
        self, terms: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_] | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Every (row, term score) pair of the query's terms, from the postings and from the
        rows changed since they were built."""
        n, docs_count = self.n, self._docs
        idf = np.log(1.0 + (docs_count - self._df[terms] + 0.5) / (self._df[terms] + 0.5))
        avgdl = self._sum_dl / docs_count
        stale = self._stale[:n]

        def weight(rows: npt.NDArray[Any], tf: npt.NDArray[Any], term_idf: Any) -> Any:
            norm = BM25_K1 * (1.0 - BM25_B + BM25_B * self._dl[rows] / avgdl)
            return term_idf * tf / (tf + norm)

        rows_out: list[npt.NDArray[np.int64]] = []
        scores_out: list[npt.NDArray[np.float64]] = []
        for term, term_idf in zip(terms.tolist(), idf.tolist(), strict=True):
            if term + 1 >= self._ptr.shape[0]:
                continue  # new since the postings were built: found among the stale rows
            a, b = self._ptr[term], self._ptr[term + 1]
            rows = self._rows[a:b].astype(np.int64)
            keep = rows < n
            keep[keep] &= ~stale[rows[keep]]
            if mask is not None:
                keep[keep] &= mask[rows[keep]]
            rows, tf = rows[keep], self._ptf[a:b][keep]
            rows_out.append(rows)
            scores_out.append(weight(rows, tf, term_idf))
        if self._n_stale:
            changed = np.flatnonzero(stale)
            if mask is not None:
                changed = changed[mask[changed]]
            idx = _row_entries(self._off[changed], self._cnt[changed])
            owners = np.repeat(changed, self._cnt[changed])
            held = self._terms[idx].astype(np.int64)
            pos = np.searchsorted(terms, held)
            hit = (pos < terms.shape[0]) & (terms[np.minimum(pos, terms.shape[0] - 1)] == held)
            rows_out.append(owners[hit])
            scores_out.append(
                weight(owners[hit], self._tf[idx][hit].astype(np.float64), idf[pos[hit]])
            )
        if not rows_out:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        return np.concatenate(rows_out), np.concatenate(scores_out)


def sum_by_row(
    rows: npt.NDArray[Any], scores: npt.NDArray[np.float64], n: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """The distinct ``rows`` (ascending) and the sum of their ``scores`` (all positive).

    Many pairs (a common word) are summed into a dense array, O(n); few are sorted."""
    if rows.shape[0] > n // 8:
        dense = np.bincount(rows, weights=scores, minlength=n).astype(np.float64, copy=False)
        found = np.flatnonzero(dense)
        return found.astype(np.intp), dense[found]
    distinct, inverse = np.unique(rows, return_inverse=True)
    total: npt.NDArray[np.float64] = np.bincount(inverse, weights=scores).astype(np.float64)
    return distinct.astype(np.intp), total


def best(
    rows: npt.NDArray[np.intp], scores: npt.NDArray[np.float64], top_k: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """The ``top_k`` highest-scoring rows plus any tied with the k-th, best first."""
    if rows.shape[0] > top_k:
        kth = np.partition(scores, rows.shape[0] - top_k)[rows.shape[0] - top_k]
        keep = scores >= kth
        rows, scores = rows[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    return rows[order], scores[order]


def _row_entries(
    offsets: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The arena positions of rows whose entries start at ``offsets`` (``counts`` each)."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    out: npt.NDArray[np.int64] = np.repeat(offsets, counts) + (
        np.arange(total, dtype=np.int64) - np.repeat(starts, counts)
    )
    return out


def _grown(array: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    out = np.zeros(size, dtype=array.dtype)
    out[: array.shape[0]] = array
    return out
