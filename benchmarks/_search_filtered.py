"""The search benchmark's filtered queries: a selective filter (~1 % of the rows) against bare
numpy, and a broad one (~50 %) against the same store's unfiltered query."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks._contenders import Contender, K, cycling, timed
from benchmarks._data import Matrix, recall_at
from benchmarks._harness import Section, Table, median, ms, paired_ratio, ratio

log = logging.getLogger("benchmarks.search")

MASK_BASELINE = "numpy matmul + argpartition (precomputed boolean mask)"


def _mask_baseline(x: Matrix, allowed: npt.NDArray[np.bool_]) -> Callable[[Matrix], list[int]]:
    """Bare numpy given the filter as a boolean mask computed once, outside the timing."""

    def filtered(q: Matrix) -> list[int]:
        rows = np.flatnonzero(allowed)
        scores = x[rows] @ q
        top = np.argpartition(scores, scores.shape[0] - K)[-K:]
        return rows[top[np.argsort(-scores[top])]].tolist()  # type: ignore[no-any-return]

    return filtered


def run_filtered(
    name: str,
    x: Matrix,
    contenders: list[Contender],
    queries: Matrix,
    allowed: npt.NDArray[np.bool_],
    truth: list[list[int]],
    section: Section,
    result: dict[str, Any],
    *,
    timing: dict[str, Any],
    targets: bool,
) -> None:
    """Time the ~1 % filter (``category == c07``, ``allowed``) for every contender, and the
    ~50 % one for the exact store; add the tables, checks and targets."""
    answer: dict[str, Callable[[Matrix], list[int]]] = {}
    for c in contenders:
        if c.filtered is not None:
            answer[c.label] = c.filtered
            if c is contenders[0]:
                answer[MASK_BASELINE] = _mask_baseline(x, allowed)
    fns = {label: cycling(fn, queries) for label, fn in answer.items()}
    log.info("search: %s: timing filtered queries", name)
    fs = timed(fns, **timing)
    table = Table(
        f"{name}: single query with a selective filter (~1 % of rows: `category == c07`)",
        ["contender", "median ms", "x numpy", "x numpy (mask)", "recall@10", "rows outside filter"],
        note="x numpy: bare numpy given the category as a precomputed integer column (the mask "
        "computed per query); x numpy (mask): given a precomputed boolean mask.",
    )
    base, mask_base = fs[contenders[0].label], fs[MASK_BASELINE]
    result["filtered"] = {}
    kinds = {c.label: c.kind for c in contenders}
    for label, fn in answer.items():
        got = [fn(q) for q in queries]
        outside = sum(int(not allowed[r]) for rows in got for r in rows)
        rec = recall_at(got, truth, K)
        table.rows.append(
            [
                label,
                ms(median(fs[label])),
                ratio(paired_ratio(fs[label], base)),
                ratio(paired_ratio(fs[label], mask_base)),
                f"{rec:.4f}",
                str(outside),
            ]
        )
        result["filtered"][label] = {
            "median_ms": median(fs[label]) * 1e3,
            "x_numpy_mask": paired_ratio(fs[label], mask_base),
            "recall_at_10": rec,
            "outside": outside,
        }
        section.check(
            f"{name}: {label} honours the filter exactly",
            "smoke",
            outside == 0,
            f"{outside} rows outside the filter",
        )
        if kinds.get(label) == "sdk":
            section.check(
                f"{name}: filtered exact store query returns the exact top 10",
                "smoke",
                rec == 1.0,
                f"recall@10 = {rec:.4f}",
            )
            if targets:
                r, rm = paired_ratio(fs[label], base), paired_ratio(fs[label], mask_base)
                section.check(
                    f"{name}: selective filter (1 %) <= 1.0x numpy with a precomputed mask",
                    "target",
                    rm <= 1.0,
                    f"{rm:.2f}x numpy given a boolean mask, {r:.2f}x given an integer column "
                    f"({ms(median(fs[label]))} ms vs {ms(median(mask_base))} ms)",
                )
    section.tables.append(table)
    exact = next((c for c in contenders if c.kind == "sdk"), None)
    if exact is not None:
        _broad(name, exact, queries, section, result, timing=timing, targets=targets)
        _after_write(name, exact, queries, section, result, samples=4 * timing["repeats"])


def _broad(
    name: str,
    exact: Contender,
    queries: Matrix,
    section: Section,
    result: dict[str, Any],
    *,
    timing: dict[str, Any],
    targets: bool,
) -> None:
    """The exact store with a filter keeping ~50 % of the rows against no filter."""
    store = exact.extra["store"]
    broad = {"half": True}
    fns: dict[str, Callable[[], object]] = {
        "no filter": cycling(lambda q: store.query(q, top_k=K), queries),
        "filter keeping ~50 % (`half == true`)": cycling(
            lambda q: store.query(q, top_k=K, filter=broad), queries
        ),
    }
    log.info("search: %s: timing a broad filter", name)
    fs = timed(fns, **timing)
    plain = fs["no filter"]
    table = Table(
        f"{name}: {exact.label} with a broad filter (~50 % of rows)",
        ["query", "median ms", "x no filter"],
    )
    for label, samples in fs.items():
        table.rows.append([label, ms(median(samples)), ratio(paired_ratio(samples, plain))])
    section.tables.append(table)
    half = paired_ratio(fs["filter keeping ~50 % (`half == true`)"], plain)
    result["broad_filter_x_unfiltered"] = half
    if targets:
        section.check(
            f"{name}: a 50 % filter is no slower than the unfiltered query",
            "target",
            half <= 1.0,
            f"{half:.2f}x the unfiltered query",
        )


def _after_write(
    name: str,
    exact: Contender,
    queries: Matrix,
    section: Section,
    result: dict[str, Any],
    *,
    samples: int,
) -> None:
    """The selective filter's first query after a write (a record rewritten as it was: the
    store's remembered selections are dropped, its key indexes kept in step), against the
    same query repeated with no write between."""
    store = exact.extra["store"]
    flt = {"category": "c07"}
    rows = len(store)
    after: list[float] = []
    repeated: list[float] = []
    same = True
    log.info("search: %s: timing the first filtered query after a write", name)
    for i in range(samples):
        q = queries[i % len(queries)]
        record = store.get([str((i * 7919) % rows)]).records[0]
        store.put([record])
        start = time.perf_counter()
        first = store.query(q, top_k=K, filter=flt)
        after.append(time.perf_counter() - start)
        start = time.perf_counter()
        again = store.query(q, top_k=K, filter=flt)
        repeated.append(time.perf_counter() - start)
        same = same and [m.key for m in first] == [m.key for m in again]
    section.check(
        f"{name}: a filtered query right after a write answers as the query repeated",
        "smoke",
        same,
        f"{samples} writes",
    )
    table = Table(
        f"{name}: {exact.label}, selective filter (~1 %) right after a write",
        ["query", "median ms", "x repeated"],
        note=f"{samples} samples; each rewrites one record (the same vector and metadata), then "
        "times the filtered query, then the same query again.",
    )
    table.rows.append(
        ["first query after the write", ms(median(after)), ratio(median(after) / median(repeated))]
    )
    table.rows.append(["the same query repeated", ms(median(repeated)), "1.00x"])
    section.tables.append(table)
    result["filtered_after_write_ms"] = median(after) * 1e3
